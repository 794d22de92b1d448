//! Errors at the token, revocation and introspection endpoints: status, RFC 6749
//! section 5.2 error code, a JSON body of exactly `error` and `error_description`,
//! and proof that a rejected request consumed nothing.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

const REDIRECT: &str = "http://127.0.0.1:7000/cb";
const FORM: &str = "application/x-www-form-urlencoded";

/// One request to an OAuth endpoint that must fail.
struct BadRequest {
    description: &'static str,
    authorization: Option<String>,
    /// `None` sends no Content-Type header.
    content_type: Option<&'static str>,
    body: String,
    status: StatusCode,
    error: &'static str,
    /// Whether the response must carry `WWW-Authenticate: Basic`, as it must when the client tried Basic.
    basic_challenge: bool,
}

impl BadRequest {
    fn form(description: &'static str, authorization: Option<String>, form: &Pairs, status: StatusCode, error: &'static str) -> BadRequest {
        let basic_challenge = status == StatusCode::UNAUTHORIZED && authorization.is_some();
        BadRequest { description, authorization, content_type: Some(FORM), body: form.encode(), status, error, basic_challenge }
    }
}

async fn send(app: &TestApp, path: &str, authorization: Option<&str>, content_type: Option<&str>, body: String) -> JsonReply {
    let mut request = app.http.post(app.url(path)).body(body);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(value) = content_type {
        request = request.header("content-type", value);
    }
    JsonReply::read(request.send().await.unwrap()).await
}

async fn form_post(app: &TestApp, path: &str, authorization: Option<&str>, form: &Pairs) -> JsonReply {
    send(app, path, authorization, Some(FORM), form.encode()).await
}

/// Sends every row to `path` and checks status, error code, body fields, caching and the Basic challenge.
/// `secrets` must not appear in any response.
async fn check_rows(app: &TestApp, path: &str, rows: &[BadRequest], secrets: &[&str]) {
    for row in rows {
        let description = row.description;
        let reply = send(app, path, row.authorization.as_deref(), row.content_type, row.body.clone()).await;
        assert_eq!(reply.status, row.status, "{description}: status, body {}", reply.text);
        assert_eq!(reply.body["error"], row.error, "{description}: error, body {}", reply.text);
        assert_eq!(reply.field_names(), ["error", "error_description"], "{description}: body fields, body {}", reply.text);
        assert!(!reply.body["error_description"].as_str().unwrap_or("").is_empty(), "{description}: error_description is empty");
        assert_eq!(reply.header("cache-control"), "no-store", "{description}: Cache-Control");
        let challenge = reply.header("www-authenticate");
        if row.basic_challenge {
            assert!(challenge.starts_with("Basic"), "{description}: WWW-Authenticate {challenge:?}");
        } else {
            assert_eq!(challenge, "", "{description}: unexpected WWW-Authenticate");
        }
        for secret in secrets {
            assert!(!reply.text.contains(secret), "{description}: the response echoes a secret");
        }
    }
}

#[actix_web::test]
async fn bad_token_request_consumes_nothing() {
    let app = spawn_app().await;
    let client = app.client("client_secret_basic", REDIRECT).await;
    let other = app.client("client_secret_basic", REDIRECT).await;
    let post_client = app.client("client_secret_post", REDIRECT).await;
    let public_client = app.client("none", REDIRECT).await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let pkce = Pkce::new();
    let code = app.code_for(&browser, &client, &pkce).await;

    let secret = client.secret.clone().unwrap();
    let basic = || Some(basic_authorization(&client.id, &secret));
    let valid = Pairs::new(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &pkce.verifier),
    ]);
    let as_json = json!({
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": pkce.verifier,
    })
    .to_string();
    let bad = StatusCode::BAD_REQUEST;
    let unauthorized = StatusCode::UNAUTHORIZED;

    let rows = vec![
        BadRequest {
            description: "content type JSON",
            authorization: basic(),
            content_type: Some("application/json"),
            body: as_json,
            status: bad,
            error: "invalid_request",
            basic_challenge: false,
        },
        BadRequest {
            description: "content type missing",
            authorization: basic(),
            content_type: None,
            body: valid.encode(),
            status: bad,
            error: "invalid_request",
            basic_challenge: false,
        },
        BadRequest {
            description: "content type text/plain",
            authorization: basic(),
            content_type: Some("text/plain"),
            body: valid.encode(),
            status: bad,
            error: "invalid_request",
            basic_challenge: false,
        },
        BadRequest::form("code repeated", basic(), &valid.clone().plus("code", &code), bad, "invalid_request"),
        BadRequest::form("grant_type repeated", basic(), &valid.clone().plus("grant_type", "authorization_code"), bad, "invalid_request"),
        BadRequest::form("grant_type missing", basic(), &valid.clone().without("grant_type"), bad, "invalid_request"),
        BadRequest::form(
            "two different resources",
            basic(),
            &valid.clone().plus("resource", &format!("{}/v1", app.issuer)).plus("resource", &format!("{}/mcp", app.issuer)),
            bad,
            "invalid_target",
        ),
        // Reaching the grant_type check shows the repeat of an unrecognized parameter was ignored.
        BadRequest::form(
            "an unrecognized parameter repeated is ignored",
            basic(),
            &valid.clone().plus("foo", "1").plus("foo", "2").with("grant_type", "password"),
            bad,
            "unsupported_grant_type",
        ),
        BadRequest::form("grant_type password", basic(), &valid.clone().with("grant_type", "password"), bad, "unsupported_grant_type"),
        BadRequest::form(
            "grant_type client_credentials",
            basic(),
            &valid.clone().with("grant_type", "client_credentials"),
            bad,
            "unsupported_grant_type",
        ),
        BadRequest::form(
            "grant_type device_code",
            basic(),
            &valid.clone().with("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            bad,
            "unsupported_grant_type",
        ),
        BadRequest::form(
            "grant_type refresh_token without refresh_token",
            basic(),
            &valid.clone().with("grant_type", "refresh_token"),
            bad,
            "invalid_request",
        ),
        BadRequest::form(
            "refresh_token unknown",
            basic(),
            &valid.clone().with("grant_type", "refresh_token").with("refresh_token", &"0".repeat(96)),
            bad,
            "invalid_grant",
        ),
        BadRequest::form("code missing", basic(), &valid.clone().without("code"), bad, "invalid_request"),
        BadRequest::form("code_verifier missing", basic(), &valid.clone().without("code_verifier"), bad, "invalid_request"),
        BadRequest::form("code_verifier of 42 characters", basic(), &valid.clone().with("code_verifier", &"a".repeat(42)), bad, "invalid_request"),
        BadRequest::form("code_verifier of 129 characters", basic(), &valid.clone().with("code_verifier", &"a".repeat(129)), bad, "invalid_request"),
        BadRequest::form(
            "code_verifier with a character outside the unreserved set",
            basic(),
            &valid.clone().with("code_verifier", &format!("{}+", "a".repeat(50))),
            bad,
            "invalid_request",
        ),
        BadRequest::form("code_verifier wrong", basic(), &valid.clone().with("code_verifier", &Pkce::new().verifier), bad, "invalid_grant"),
        BadRequest::form("code unknown", basic(), &valid.clone().with("code", &"0".repeat(64)), bad, "invalid_grant"),
        BadRequest::form("redirect_uri differs", basic(), &valid.clone().with("redirect_uri", "http://127.0.0.1:7000/other"), bad, "invalid_grant"),
        BadRequest::form("redirect_uri on another loopback port", basic(), &valid.clone().with("redirect_uri", "http://127.0.0.1:7001/cb"), bad, "invalid_grant"),
        BadRequest::form("redirect_uri missing though the request named it", basic(), &valid.clone().without("redirect_uri"), bad, "invalid_grant"),
        BadRequest::form(
            "code of another client",
            Some(basic_authorization(&other.id, other.secret.as_deref().unwrap())),
            &valid,
            bad,
            "invalid_grant",
        ),
        BadRequest::form("resource unknown", basic(), &valid.clone().with("resource", "https://api.example/v1"), bad, "invalid_target"),
        BadRequest::form("Basic and client_secret together", basic(), &valid.clone().with("client_secret", &secret), bad, "invalid_request"),
        BadRequest::form("Basic and another client_id", basic(), &valid.clone().with("client_id", &other.id), bad, "invalid_request"),
        BadRequest::form("client_secret without client_id", None, &valid.clone().with("client_secret", &secret), bad, "invalid_request"),
        BadRequest::form("secret wrong", Some(basic_authorization(&client.id, "wrong-secret")), &valid, unauthorized, "invalid_client"),
        BadRequest::form("secret of another client", Some(basic_authorization(&client.id, other.secret.as_deref().unwrap())), &valid, unauthorized, "invalid_client"),
        BadRequest::form("client unknown", Some(basic_authorization("0123456789abcdef", &secret)), &valid, unauthorized, "invalid_client"),
        BadRequest::form("Basic value not base64", Some("Basic %%%".into()), &valid, unauthorized, "invalid_client"),
        BadRequest::form("Basic value without a colon", Some(format!("Basic {}", base64_of(&client.id))), &valid, unauthorized, "invalid_client"),
        BadRequest::form(
            "basic client sends client_secret_post",
            None,
            &valid.clone().with("client_id", &client.id).with("client_secret", &secret),
            unauthorized,
            "invalid_client",
        ),
        BadRequest::form("basic client sends only client_id", None, &valid.clone().with("client_id", &client.id), unauthorized, "invalid_client"),
        BadRequest::form(
            "post client uses Basic",
            Some(basic_authorization(&post_client.id, post_client.secret.as_deref().unwrap())),
            &valid,
            unauthorized,
            "invalid_client",
        ),
        BadRequest::form(
            "public client sends a secret",
            None,
            &valid.clone().with("client_id", &public_client.id).with("client_secret", "made-up"),
            unauthorized,
            "invalid_client",
        ),
        BadRequest::form("public client uses Basic", Some(basic_authorization(&public_client.id, "made-up")), &valid, unauthorized, "invalid_client"),
        BadRequest::form("public client without client_id", None, &valid, unauthorized, "invalid_client"),
    ];
    check_rows(&app, "/oauth/token", &rows, &[&code, &pkce.verifier, &secret]).await;

    // No row consumed the code: the genuine exchange still succeeds.
    let exchanged = JsonReply::read(app.exchange(&client, &code, &pkce.verifier).await).await;
    assert_eq!(exchanged.status, StatusCode::OK, "{}", exchanged.text);
    assert!(exchanged.body["access_token"].is_string());

    app.stop().await;
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[actix_web::test]
async fn token_response_is_bearer_and_not_cached() {
    let app = spawn_app().await;
    let client = app.client("client_secret_basic", REDIRECT).await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let pkce = Pkce::new();
    let code = app.code_for(&browser, &client, &pkce).await;

    let reply = JsonReply::read(app.exchange(&client, &code, &pkce.verifier).await).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.header("cache-control"), "no-store");
    assert!(reply.header("content-type").starts_with("application/json"), "{}", reply.header("content-type"));
    assert_eq!(reply.body["token_type"], "Bearer");
    let token = reply.body["access_token"].as_str().unwrap_or("");
    assert_eq!(token.len(), 96, "access token {token:?}");
    assert!(token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "access token is not lowercase hex: {token:?}");
    assert_eq!(reply.body["expires_in"], 3600);
    assert_eq!(reply.body["scope"], "read");
    let refresh_token = reply.body["refresh_token"].as_str().unwrap_or("");
    assert_eq!(refresh_token.len(), 96, "refresh token {refresh_token:?}");
    assert_ne!(refresh_token, token, "the refresh token repeats the access token");

    app.stop().await;
}

#[actix_web::test]
async fn post_and_public_clients_exchange_codes() {
    let app = spawn_app().await;
    let post_client = app.client("client_secret_post", REDIRECT).await;
    let public_client = app.client("none", REDIRECT).await;
    let browser = app.signed_in_browser("ada@example.com").await;

    let post_pkce = Pkce::new();
    let post_code = app.code_for(&browser, &post_client, &post_pkce).await;
    let post_form = Pairs::new(&[
        ("grant_type", "authorization_code"),
        ("code", &post_code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &post_pkce.verifier),
        ("client_id", &post_client.id),
        ("client_secret", post_client.secret.as_deref().unwrap()),
    ]);
    let posted = form_post(&app, "/oauth/token", None, &post_form).await;
    assert_eq!(posted.status, StatusCode::OK, "client_secret_post: {}", posted.text);

    // app.exchange sends only client_id for a client without a secret.
    let public_pkce = Pkce::new();
    let public_code = app.code_for(&browser, &public_client, &public_pkce).await;
    let public = JsonReply::read(app.exchange(&public_client, &public_code, &public_pkce.verifier).await).await;
    assert_eq!(public.status, StatusCode::OK, "public client: {}", public.text);

    app.stop().await;
}

#[actix_web::test]
async fn revocation_errors_leave_token_working() {
    let app = spawn_app().await;
    let (client, token) = app.token_for("ada@example.com").await;
    let other = app.client("client_secret_basic", REDIRECT).await;
    let secret = client.secret.clone().unwrap();
    let basic = || Some(basic_authorization(&client.id, &secret));
    let revoke = Pairs::new(&[("token", &token), ("token_type_hint", "access_token")]);
    let bad = StatusCode::BAD_REQUEST;
    let unauthorized = StatusCode::UNAUTHORIZED;

    let rows = vec![
        BadRequest::form("token missing", basic(), &revoke.clone().without("token"), bad, "invalid_request"),
        BadRequest::form("token repeated", basic(), &revoke.clone().plus("token", &token), bad, "invalid_request"),
        BadRequest::form("no client authentication", None, &revoke, unauthorized, "invalid_client"),
        BadRequest::form("secret wrong", Some(basic_authorization(&client.id, "wrong-secret")), &revoke, unauthorized, "invalid_client"),
        BadRequest::form(
            "token of another client",
            Some(basic_authorization(&other.id, other.secret.as_deref().unwrap())),
            &revoke,
            bad,
            "unauthorized_client",
        ),
        BadRequest {
            description: "content type JSON",
            authorization: basic(),
            content_type: Some("application/json"),
            body: json!({ "token": token }).to_string(),
            status: bad,
            error: "invalid_request",
            basic_challenge: false,
        },
    ];
    check_rows(&app, "/oauth/revoke", &rows, &[&token, &secret]).await;

    let still_working = app.get_with_token("/v1/lookup?code=BSB30120", &token).await;
    assert_eq!(still_working.status(), StatusCode::OK, "a rejected revocation revoked the token");

    // An unknown token is revoked successfully (RFC 7009 section 2.2), and changes nothing.
    let unknown = form_post(&app, "/oauth/revoke", basic().as_deref(), &revoke.clone().with("token", &"0".repeat(96))).await;
    assert_eq!(unknown.status, StatusCode::OK, "unknown token: {}", unknown.text);
    let still_working = app.get_with_token("/v1/lookup?code=BSB30120", &token).await;
    assert_eq!(still_working.status(), StatusCode::OK, "revoking an unknown token revoked this one");

    let revoked = form_post(&app, "/oauth/revoke", basic().as_deref(), &revoke).await;
    assert_eq!(revoked.status, StatusCode::OK, "own token: {}", revoked.text);
    assert_eq!(app.get_with_token("/v1/lookup?code=BSB30120", &token).await.status(), StatusCode::UNAUTHORIZED);

    let again = form_post(&app, "/oauth/revoke", basic().as_deref(), &revoke).await;
    assert_eq!(again.status, StatusCode::OK, "already revoked token: {}", again.text);

    app.stop().await;
}

#[actix_web::test]
async fn introspection_errors_and_responses() {
    let app = spawn_app().await;
    let (client, token) = app.token_for("ada@example.com").await;
    let public_client = app.client("none", REDIRECT).await;
    let secret = client.secret.clone().unwrap();
    let basic = || Some(basic_authorization(&client.id, &secret));
    let introspect = Pairs::new(&[("token", &token)]);

    let rows = vec![
        BadRequest::form(
            "public client",
            None,
            &introspect.clone().with("client_id", &public_client.id),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        BadRequest::form("no client authentication", None, &introspect, StatusCode::UNAUTHORIZED, "invalid_client"),
        BadRequest::form("secret wrong", Some(basic_authorization(&client.id, "wrong-secret")), &introspect, StatusCode::UNAUTHORIZED, "invalid_client"),
        BadRequest::form("token missing", basic(), &introspect.clone().without("token"), StatusCode::BAD_REQUEST, "invalid_request"),
    ];
    check_rows(&app, "/oauth/introspect", &rows, &[&token, &secret]).await;

    let unknown = form_post(&app, "/oauth/introspect", basic().as_deref(), &introspect.clone().with("token", &"0".repeat(96))).await;
    assert_eq!(unknown.status, StatusCode::OK, "unknown token: {}", unknown.text);
    assert_eq!(unknown.body, json!({ "active": false }), "unknown token");
    assert_eq!(unknown.header("cache-control"), "no-store", "unknown token");

    let active = form_post(&app, "/oauth/introspect", basic().as_deref(), &introspect).await;
    assert_eq!(active.status, StatusCode::OK, "active token: {}", active.text);
    assert_eq!(active.header("cache-control"), "no-store", "active token");
    for field in ["active", "scope", "client_id", "sub", "aud", "exp", "iat", "token_type"] {
        assert!(active.field_names().iter().any(|name| name == field), "active token lacks {field}: {}", active.text);
    }
    assert_eq!(active.body["active"], true);
    assert_eq!(active.body["scope"], "read");
    assert_eq!(active.body["client_id"], client.id.as_str());
    let sub = active.body["sub"].as_str().unwrap_or("");
    assert!(!sub.is_empty(), "sub is empty");
    assert!(!sub.contains('@'), "sub must be an opaque id, not the email: {sub}");
    assert_eq!(active.body["aud"], format!("{}/v1", app.issuer));
    assert_eq!(active.body["iat"], START);
    assert_eq!(active.body["exp"], START + 3600);
    assert_eq!(active.body["token_type"], "Bearer");

    let revoked = form_post(&app, "/oauth/revoke", basic().as_deref(), &introspect).await;
    assert_eq!(revoked.status, StatusCode::OK);
    let inactive = form_post(&app, "/oauth/introspect", basic().as_deref(), &introspect).await;
    assert_eq!(inactive.body, json!({ "active": false }), "revoked token");

    app.stop().await;
}

#[actix_web::test]
async fn oversized_body_gets_a_json_error() {
    let app = spawn_app().await;
    let body = format!("grant_type=authorization_code&code={}", "a".repeat(300 * 1024));
    let response = app.http.post(app.url("/oauth/token")).header("content-type", "application/x-www-form-urlencoded").body(body).send().await.unwrap();
    let reply = JsonReply::read(response).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", reply.text);
    assert!(reply.header("content-type").starts_with("application/json"), "{}", reply.header("content-type"));
    assert_eq!(reply.body["error"], "invalid_request", "{}", reply.text);
    assert!(!reply.body["error_description"].as_str().unwrap_or_default().is_empty(), "{}", reply.text);
    app.stop().await;
}
