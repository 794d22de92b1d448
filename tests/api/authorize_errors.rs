//! Errors at the authorization endpoint. While the client or the redirect URI
//! cannot be trusted, the server shows an error page and never redirects.
//! Every later error is redirected to the client with `error`,
//! `error_description`, `iss` and a valid `state` (RFC 6749 section 4.1.2.1, RFC 9207).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const WEB_REDIRECT: &str = "https://app.example/cb";
const OTHER_WEB_REDIRECT: &str = "https://app.example/other";
const NATIVE_REDIRECT: &str = "http://127.0.0.1:7000/cb";
const STATE: &str = "state-123";

/// Builds a request that the server accepts for `client_id`, with a fresh PKCE challenge.
fn valid_request(client_id: &str, redirect_uri: &str) -> Pairs {
    let pkce = Pkce::new();
    Pairs::new(&[
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("code_challenge", &pkce.challenge),
        ("code_challenge_method", "S256"),
        ("scope", "read"),
        ("state", STATE),
    ])
}

fn authorize_url(app: &TestApp, request: &Pairs) -> String {
    format!("{}?{}", app.url("/oauth/authorize"), request.encode())
}

/// Registers a client with the given redirect URIs and authentication method and returns its id.
async fn register(app: &TestApp, redirect_uris: &[&str], method: &str) -> String {
    let response = app
        .register_client(json!({
            "client_name": "Test client",
            "redirect_uris": redirect_uris,
            "token_endpoint_auth_method": method,
        }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    body["client_id"].as_str().unwrap().to_string()
}

/// Returns the redirect target without its query: scheme, authority and path.
fn without_query(url: &url::Url) -> String {
    format!("{}://{}{}", url.scheme(), url.authority(), url.path())
}

#[actix_web::test]
async fn untrusted_client_or_redirect_uri_gets_error_page() {
    let app = spawn_app().await;
    let web = register(&app, &[WEB_REDIRECT], "client_secret_basic").await;
    let several = register(&app, &[WEB_REDIRECT, OTHER_WEB_REDIRECT], "client_secret_basic").await;
    let native = register(&app, &[NATIVE_REDIRECT], "none").await;
    let deactivated = register(&app, &[WEB_REDIRECT], "client_secret_basic").await;
    assert_eq!(app.deactivate_client(&deactivated).await.status(), StatusCode::NO_CONTENT);

    let rows: Vec<(&str, Pairs)> = vec![
        ("client_id missing", valid_request(&web, WEB_REDIRECT).without("client_id")),
        ("client_id unknown", valid_request("0123456789abcdef0123456789abcdef", WEB_REDIRECT)),
        ("client deactivated", valid_request(&deactivated, WEB_REDIRECT)),
        ("client_id repeated with the same value", valid_request(&web, WEB_REDIRECT).plus("client_id", &web)),
        ("client_id repeated with another client", valid_request(&web, WEB_REDIRECT).plus("client_id", &several)),
        ("redirect_uri not registered", valid_request(&web, "https://attacker.example/cb")),
        ("redirect_uri differs by path", valid_request(&web, "https://app.example/cb2")),
        ("redirect_uri differs by a trailing slash", valid_request(&web, "https://app.example/cb/")),
        ("redirect_uri differs by port on an https host", valid_request(&web, "https://app.example:8443/cb")),
        ("redirect_uri differs by scheme", valid_request(&web, "http://app.example/cb")),
        ("redirect_uri adds a query", valid_request(&web, "https://app.example/cb?next=1")),
        ("redirect_uri missing while several are registered", valid_request(&several, WEB_REDIRECT).without("redirect_uri")),
        ("redirect_uri repeated with the same value", valid_request(&web, WEB_REDIRECT).plus("redirect_uri", WEB_REDIRECT)),
        ("redirect_uri repeated with two registered values", valid_request(&several, WEB_REDIRECT).plus("redirect_uri", OTHER_WEB_REDIRECT)),
        ("loopback redirect_uri differs by path and port", valid_request(&native, "http://127.0.0.1:7001/other")),
        ("loopback redirect_uri names localhost for 127.0.0.1", valid_request(&native, "http://localhost:7000/cb")),
        ("loopback redirect_uri uses https", valid_request(&native, "https://127.0.0.1:7000/cb")),
    ];

    for (description, query) in &rows {
        let page = Browser::new().get(&authorize_url(&app, query)).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{description}: status");
        assert_eq!(page.location(), "", "{description}: must not redirect");
        assert!(page.header("content-type").starts_with("text/html"), "{description}: content type {}", page.header("content-type"));
        assert!(page.body.contains("Authorization request rejected"), "{description}: page body {}", page.body);
        assert!(page.header("content-security-policy").contains("frame-ancestors 'none'"), "{description}: framing allowed");
    }

    app.stop().await;
}

#[actix_web::test]
async fn loopback_redirect_uri_may_differ_only_in_port() {
    let app = spawn_app().await;
    let native = register(&app, &[NATIVE_REDIRECT], "none").await;

    // Each differs from the registered http://127.0.0.1:7000/cb in more than the port,
    // although a URL parser resolves it to the same place.
    let rows = [
        ("dot segments in the path", "http://127.0.0.1:7001/x/../cb"),
        ("encoded dot segments in the path", "http://127.0.0.1:7001/x/%2e%2e/cb"),
        ("backslash in the path", "http://127.0.0.1:7001/x\\..\\cb"),
        ("127.1 shorthand for 127.0.0.1", "http://127.1:7001/cb"),
        ("upper-case scheme", "HTTP://127.0.0.1:7001/cb"),
    ];

    let mut accepted = Vec::new();
    for (description, redirect_uri) in rows {
        let page = Browser::new().get(&authorize_url(&app, &valid_request(&native, redirect_uri))).await;
        if page.status != StatusCode::BAD_REQUEST || !page.location().is_empty() {
            accepted.push(format!("{description} ({redirect_uri}): {} {}", page.status, page.location()));
        }
    }
    assert!(accepted.is_empty(), "redirect URIs accepted although they differ in more than the port:\n{}", accepted.join("\n"));

    app.stop().await;
}

#[actix_web::test]
async fn bad_request_redirects_error_to_client() {
    let app = spawn_app().await;
    let web = register(&app, &[WEB_REDIRECT], "client_secret_basic").await;
    let native = register(&app, &[NATIVE_REDIRECT], "none").await;
    let native_other_port = "http://127.0.0.1:53121/cb";
    let longest_state = "s".repeat(1024);
    let too_long_state = "s".repeat(1025);
    let valid = || valid_request(&web, WEB_REDIRECT);

    // (description, request, redirect target, error, whether `state` is echoed)
    let rows: Vec<(&str, Pairs, &str, &str, bool)> = vec![
        ("response_type missing", valid().without("response_type"), WEB_REDIRECT, "invalid_request", true),
        ("response_type token", valid().with("response_type", "token"), WEB_REDIRECT, "unsupported_response_type", true),
        ("response_type code token", valid().with("response_type", "code token"), WEB_REDIRECT, "unsupported_response_type", true),
        ("code_challenge missing", valid().without("code_challenge"), WEB_REDIRECT, "invalid_request", true),
        ("code_challenge_method plain", valid().with("code_challenge_method", "plain"), WEB_REDIRECT, "invalid_request", true),
        ("code_challenge_method missing", valid().without("code_challenge_method"), WEB_REDIRECT, "invalid_request", true),
        ("code_challenge_method lower-case s256", valid().with("code_challenge_method", "s256"), WEB_REDIRECT, "invalid_request", true),
        ("code_challenge of 42 characters", valid().with("code_challenge", &"a".repeat(42)), WEB_REDIRECT, "invalid_request", true),
        ("code_challenge of 44 characters", valid().with("code_challenge", &"a".repeat(44)), WEB_REDIRECT, "invalid_request", true),
        (
            "code_challenge in standard base64 alphabet",
            valid().with("code_challenge", &format!("{}+/", "a".repeat(41))),
            WEB_REDIRECT,
            "invalid_request",
            true,
        ),
        ("code_challenge with padding", valid().with("code_challenge", &format!("{}=", "a".repeat(42))), WEB_REDIRECT, "invalid_request", true),
        ("state repeated", valid().plus("state", "other-state"), WEB_REDIRECT, "invalid_request", false),
        ("scope repeated", valid().plus("scope", "read"), WEB_REDIRECT, "invalid_request", true),
        ("response_type repeated", valid().plus("response_type", "code"), WEB_REDIRECT, "invalid_request", true),
        ("code_challenge repeated", valid().plus("code_challenge", &Pkce::new().challenge), WEB_REDIRECT, "invalid_request", true),
        ("state with a control character", valid().with("state", "abc\u{1}def"), WEB_REDIRECT, "invalid_request", false),
        ("state with a non-ASCII character", valid().with("state", "caf\u{e9}"), WEB_REDIRECT, "invalid_request", false),
        ("state of 1025 characters", valid().with("state", &too_long_state), WEB_REDIRECT, "invalid_request", false),
        ("state of 1024 characters is echoed", valid().with("state", &longest_state).without("response_type"), WEB_REDIRECT, "invalid_request", true),
        ("scope unknown", valid().with("scope", "write"), WEB_REDIRECT, "invalid_scope", true),
        ("scope with a quote character", valid().with("scope", "read\""), WEB_REDIRECT, "invalid_scope", true),
        ("scope known and unknown together", valid().with("scope", "read write"), WEB_REDIRECT, "invalid_scope", true),
        ("scope the client did not register", valid().with("scope", "rtopacks:developer"), WEB_REDIRECT, "invalid_scope", true),
        ("scope held only by the ops key", valid().with("scope", "ucca:admin"), WEB_REDIRECT, "invalid_scope", true),
        ("resource unknown", valid().with("resource", "https://api.example/v1"), WEB_REDIRECT, "invalid_target", true),
        ("resource is the issuer itself", valid().with("resource", &app.issuer), WEB_REDIRECT, "invalid_target", true),
        (
            "two different resources",
            valid().with("resource", &format!("{}/v1", app.issuer)).plus("resource", &format!("{}/mcp", app.issuer)),
            WEB_REDIRECT,
            "invalid_target",
            true,
        ),
        // The next two reach the response_type check, so neither repeat was taken for an error.
        (
            "an unrecognized parameter repeated is ignored",
            valid().plus("foo", "1").plus("foo", "2").with("response_type", "token"),
            WEB_REDIRECT,
            "unsupported_response_type",
            true,
        ),
        (
            "resource repeated with the same value",
            valid().with("resource", &format!("{}/v1", app.issuer)).plus("resource", &format!("{}/v1", app.issuer)).with("response_type", "token"),
            WEB_REDIRECT,
            "unsupported_response_type",
            true,
        ),
        ("prompt none without a session", valid().with("prompt", "none"), WEB_REDIRECT, "login_required", true),
        ("prompt unknown", valid().with("prompt", "sometimes"), WEB_REDIRECT, "invalid_request", true),
        (
            "redirect_uri omitted with one registered",
            valid().without("redirect_uri").with("response_type", "token"),
            WEB_REDIRECT,
            "unsupported_response_type",
            true,
        ),
        (
            "loopback redirect_uri on another port",
            valid_request(&native, native_other_port).with("response_type", "token"),
            native_other_port,
            "unsupported_response_type",
            true,
        ),
    ];

    for (description, query, target, error, echoes_state) in &rows {
        let page = Browser::new().get(&authorize_url(&app, query)).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{description}: status, body {}", page.body);
        let location = url::Url::parse(page.location()).unwrap_or_else(|_| panic!("{description}: Location {:?}", page.location()));
        assert_eq!(without_query(&location), *target, "{description}: redirect target");
        assert_eq!(query_value(&location, "error").as_deref(), Some(*error), "{description}: error");
        let error_description = query_value(&location, "error_description").unwrap_or_default();
        assert!(!error_description.is_empty(), "{description}: error_description missing");
        assert_eq!(query_value(&location, "iss").as_deref(), Some(app.issuer.as_str()), "{description}: iss");
        let expected_state = if *echoes_state { query.get("state") } else { None };
        assert_eq!(query_value(&location, "state").as_deref(), expected_state, "{description}: state");
        assert_eq!(query_value(&location, "code"), None, "{description}: a code was issued");
    }

    app.stop().await;
}

#[actix_web::test]
async fn error_redirect_keeps_redirect_uri_query() {
    let app = spawn_app().await;
    let registered = "https://app.example/cb?tenant=7";
    let client = register(&app, &[registered], "client_secret_basic").await;

    let query = valid_request(&client, registered).with("response_type", "token");
    let page = Browser::new().get(&authorize_url(&app, &query)).await;

    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let location = url::Url::parse(page.location()).unwrap();
    assert_eq!(without_query(&location), "https://app.example/cb");
    assert_eq!(query_value(&location, "tenant").as_deref(), Some("7"));
    assert_eq!(query_value(&location, "error").as_deref(), Some("unsupported_response_type"));
    assert_eq!(query_value(&location, "iss").as_deref(), Some(app.issuer.as_str()));
    assert_eq!(query_value(&location, "state").as_deref(), Some(STATE));

    app.stop().await;
}

#[actix_web::test]
async fn loopback_redirect_uri_accepts_another_port() {
    let app = spawn_app().await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let registered = ["http://127.0.0.1:7000/cb", "http://[::1]:7000/cb", "http://localhost:7000/cb"];
    let client_id = register(&app, &registered, "none").await;

    // (registered form, the same URI on another port)
    let variants = [
        ("http://127.0.0.1:7000/cb", "http://127.0.0.1:53121/cb"),
        ("http://127.0.0.1:7000/cb", "http://127.0.0.1/cb"),
        ("http://[::1]:7000/cb", "http://[::1]:8123/cb"),
        ("http://localhost:7000/cb", "http://localhost:9/cb"),
    ];
    for (registered_form, requested) in variants {
        let consent = browser.get(&authorize_url(&app, &valid_request(&client_id, requested))).await;
        assert_eq!(consent.status, StatusCode::OK, "{requested} for {registered_form}: {}", consent.body);
    }

    // The code is bound to the port the request named, and the redirect goes there.
    let client = TestClient { id: client_id, secret: None, redirect_uri: "http://127.0.0.1:53121/cb".into() };
    let pkce = Pkce::new();
    let redirect = app.authorize(&browser, &client, &pkce, &[]).await;
    assert_eq!(without_query(&redirect), "http://127.0.0.1:53121/cb");
    assert_eq!(query_value(&redirect, "iss").as_deref(), Some(app.issuer.as_str()));
    let code = query_value(&redirect, "code").expect("redirect carries a code");

    let registered_port = TestClient { redirect_uri: "http://127.0.0.1:7000/cb".into(), ..client };
    let refused = JsonReply::read(app.exchange(&registered_port, &code, &pkce.verifier).await).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "exchange with the registered port: {}", refused.text);
    assert_eq!(refused.body["error"], "invalid_grant");

    let client = TestClient { redirect_uri: "http://127.0.0.1:53121/cb".into(), ..registered_port };
    let exchanged = JsonReply::read(app.exchange(&client, &code, &pkce.verifier).await).await;
    assert_eq!(exchanged.status, StatusCode::OK, "exchange with the requested port: {}", exchanged.text);

    app.stop().await;
}

#[actix_web::test]
async fn consent_post_without_valid_csrf_is_forbidden() {
    let app = spawn_app().await;
    let client = app.client("client_secret_basic", NATIVE_REDIRECT).await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let other_browser = app.signed_in_browser("bob@example.com").await;
    let query = valid_request(&client.id, NATIVE_REDIRECT);
    let consent = browser.get(&authorize_url(&app, &query)).await;
    assert_eq!(consent.status, StatusCode::OK);

    let mut allow = consent.hidden_fields();
    allow.push(("decision".into(), "allow".into()));
    let without_token: Vec<(String, String)> = allow.iter().filter(|(name, _)| name != "csrf_token").cloned().collect();
    let wrong_token: Vec<(String, String)> = allow
        .iter()
        .map(|(name, value)| if name == "csrf_token" { (name.clone(), "0".repeat(64)) } else { (name.clone(), value.clone()) })
        .collect();

    let rows: [(&str, &Browser, &Vec<(String, String)>); 3] = [
        ("csrf_token missing", &browser, &without_token),
        ("csrf_token wrong", &browser, &wrong_token),
        ("csrf_token from another browser", &other_browser, &allow),
    ];
    for (description, sender, fields) in rows {
        let response = sender.post_form(&app.url("/oauth/authorize"), fields).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{description}: status");
        assert_eq!(response.location(), "", "{description}: must not redirect");
        assert!(!response.body.contains("code="), "{description}: body carries a code");
    }

    // The rejected posts changed nothing: the genuine form still works.
    let allowed = browser.post_form(&app.url("/oauth/authorize"), &allow).await;
    assert_eq!(allowed.status, StatusCode::SEE_OTHER);
    let location = url::Url::parse(allowed.location()).unwrap();
    assert!(query_value(&location, "code").is_some(), "genuine consent issues a code");

    app.stop().await;
}

#[actix_web::test]
async fn consent_deny_redirects_access_denied() {
    let app = spawn_app().await;
    let client = app.client("client_secret_basic", NATIVE_REDIRECT).await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let consent = browser.get(&authorize_url(&app, &valid_request(&client.id, NATIVE_REDIRECT))).await;
    assert_eq!(consent.status, StatusCode::OK);

    let mut fields = consent.hidden_fields();
    fields.push(("decision".into(), "deny".into()));
    let denied = browser.post_form(&app.url("/oauth/authorize"), &fields).await;

    assert_eq!(denied.status, StatusCode::SEE_OTHER);
    let location = url::Url::parse(denied.location()).unwrap();
    assert_eq!(without_query(&location), NATIVE_REDIRECT);
    assert_eq!(query_value(&location, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_value(&location, "state").as_deref(), Some(STATE));
    assert_eq!(query_value(&location, "iss").as_deref(), Some(app.issuer.as_str()));
    assert_eq!(query_value(&location, "code"), None);

    app.stop().await;
}

#[actix_web::test]
async fn prompt_none_with_session_requires_consent() {
    let app = spawn_app().await;
    let client = app.client("client_secret_basic", NATIVE_REDIRECT).await;
    let browser = app.signed_in_browser("ada@example.com").await;

    let response = browser.get(&authorize_url(&app, &valid_request(&client.id, NATIVE_REDIRECT).with("prompt", "none"))).await;

    assert_eq!(response.status, StatusCode::SEE_OTHER);
    let location = url::Url::parse(response.location()).unwrap();
    assert_eq!(query_value(&location, "error").as_deref(), Some("consent_required"));
    assert_eq!(query_value(&location, "state").as_deref(), Some(STATE));
    assert_eq!(query_value(&location, "code"), None);

    app.stop().await;
}

#[actix_web::test]
async fn consent_page_forbids_framing() {
    let app = spawn_app().await;
    let client = app.client("client_secret_basic", NATIVE_REDIRECT).await;
    let browser = app.signed_in_browser("ada@example.com").await;

    let consent = browser.get(&authorize_url(&app, &valid_request(&client.id, NATIVE_REDIRECT))).await;

    assert_eq!(consent.status, StatusCode::OK);
    assert!(consent.header("content-security-policy").contains("frame-ancestors 'none'"), "{}", consent.header("content-security-policy"));
    assert_eq!(consent.header("x-frame-options"), "DENY");
    assert_eq!(consent.header("cache-control"), "no-store");

    app.stop().await;
}

#[actix_web::test]
async fn longest_valid_request_reaches_sign_in() {
    let app = spawn_app().await;
    // A 2000-byte redirect URI and a 1024-character state are the largest the server accepts.
    // Form encoding turns '~', a printable ASCII character, into three bytes.
    let long_redirect = format!("https://app.example/{}", "a".repeat(2000 - "https://app.example/".len()));
    let client = register(&app, &[&long_redirect], "client_secret_basic").await;
    let request = valid_request(&client, &long_redirect).with("state", &"~".repeat(1024));
    let browser = Browser::new();

    let first = browser.get(&authorize_url(&app, &request)).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "authorize: {}", first.body);
    assert!(first.location().starts_with("/auth?return_to="), "{}", first.location());
    let sign_in = browser.get(&app.url(first.location())).await;

    assert_eq!(sign_in.status, StatusCode::OK, "sign-in page for the largest valid request: {}", sign_in.body);
    let fields = [
        ("csrf_token", sign_in.hidden("csrf_token")),
        ("return_to", sign_in.hidden("return_to")),
        ("email", "ada@example.com".to_string()),
    ];
    let requested = browser.post_form(&app.url("/auth/email"), &fields).await;
    assert_eq!(requested.status, StatusCode::OK, "link request: {}", requested.body);
    let link = app.mailed_links("ada@example.com").pop().expect("sign-in mail in the outbox");
    let confirm = browser.get(&link).await;
    let confirmed = browser
        .post_form(&app.url("/auth/verify"), &[("csrf_token", confirm.hidden("csrf_token")), ("token", confirm.hidden("token"))])
        .await;
    assert_eq!(confirmed.status, StatusCode::SEE_OTHER);
    let consent = browser.get(&app.url(confirmed.location())).await;
    assert_eq!(consent.status, StatusCode::OK, "consent after sign-in: {}", consent.body);

    app.stop().await;
}

#[actix_web::test]
async fn long_unknown_scope_is_quoted_shortened() {
    let app = spawn_app().await;
    let web = register(&app, &[WEB_REDIRECT], "client_secret_basic").await;
    let scope = "x".repeat(5000);
    let page = Browser::new().get(&authorize_url(&app, &valid_request(&web, WEB_REDIRECT).with("scope", &scope))).await;
    let location = url::Url::parse(page.location()).unwrap_or_else(|_| panic!("Location {:?}", page.location()));
    assert_eq!(query_value(&location, "error").as_deref(), Some("invalid_scope"));
    let description = query_value(&location, "error_description").unwrap_or_default();
    assert!(description.starts_with(&format!("scope {}…", "x".repeat(64))), "{description}");
    assert!(description.len() < 200, "the description quotes only the start of the scope: {} bytes", description.len());
    app.stop().await;
}
