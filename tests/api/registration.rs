//! Client registration and management through the ops API (RFC 7591 metadata):
//! good and bad registrations, the ops key, listing without secrets, and deactivation.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const REDIRECT: &str = "http://127.0.0.1:7000/cb";

async fn list_clients(app: &TestApp) -> JsonReply {
    JsonReply::read(app.http.get(format!("{}/ops/clients", app.ops)).bearer_auth(OPS_KEY).send().await.unwrap()).await
}

async fn post_raw(app: &TestApp, body: &str) -> JsonReply {
    let response = app
        .http
        .post(format!("{}/ops/clients", app.ops))
        .bearer_auth(OPS_KEY)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    JsonReply::read(response).await
}

/// Revokes an unknown token on behalf of a client: 200 exactly when the client authenticates.
async fn revoke_unknown_token(app: &TestApp, authorization: Option<String>, form: &[(&str, &str)]) -> StatusCode {
    let unknown = "0".repeat(96);
    let mut fields = vec![("token", unknown.as_str())];
    fields.extend_from_slice(form);
    let mut request = app.http.post(app.url("/oauth/revoke")).form(&fields);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap().status()
}

#[actix_web::test]
async fn registration_returns_secret_only_for_confidential_clients() {
    let app = spawn_app().await;

    // (description, metadata, expected method, whether a secret is issued)
    let rows: [(&str, Value, &str, bool); 5] = [
        (
            "client_secret_basic",
            json!({ "client_name": "Basic app", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_basic" }),
            "client_secret_basic",
            true,
        ),
        (
            "client_secret_post",
            json!({ "client_name": "Post app", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "client_secret_post" }),
            "client_secret_post",
            true,
        ),
        (
            "none",
            json!({ "client_name": "Native app", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none" }),
            "none",
            false,
        ),
        (
            "method omitted",
            json!({ "client_name": "Default app", "redirect_uris": ["https://app.example/cb", REDIRECT] }),
            "client_secret_basic",
            true,
        ),
        (
            "scope listed",
            json!({ "client_name": "Scoped app", "redirect_uris": [REDIRECT], "scope": "read rtopacks:developer" }),
            "client_secret_basic",
            true,
        ),
    ];

    for (description, metadata, method, has_secret) in rows {
        let reply = JsonReply::read(app.register_client(metadata.clone()).await).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{description}: status, body {}", reply.text);
        assert_eq!(reply.header("cache-control"), "no-store", "{description}: Cache-Control");
        let client_id = reply.body["client_id"].as_str().unwrap_or("").to_string();
        assert!(!client_id.is_empty(), "{description}: client_id missing");
        assert_eq!(reply.body["token_endpoint_auth_method"], method, "{description}: method");
        assert_eq!(reply.body["client_name"], metadata["client_name"], "{description}: client_name");
        assert_eq!(reply.body["redirect_uris"], metadata["redirect_uris"], "{description}: redirect_uris");
        assert_eq!(reply.body.get("client_secret").is_some(), has_secret, "{description}: client_secret presence");
        // A client that names no scope may request only `read`.
        let expected_scope = metadata.get("scope").cloned().unwrap_or(json!("read"));
        assert_eq!(reply.body["scope"], expected_scope, "{description}: scope");

        // The registered credentials authenticate the client at the revocation endpoint.
        let secret = reply.body["client_secret"].as_str().unwrap_or("").to_string();
        let status = match method {
            "client_secret_basic" => revoke_unknown_token(&app, Some(basic_authorization(&client_id, &secret)), &[]).await,
            "client_secret_post" => revoke_unknown_token(&app, None, &[("client_id", &client_id), ("client_secret", &secret)]).await,
            _ => revoke_unknown_token(&app, None, &[("client_id", &client_id)]).await,
        };
        assert_eq!(status, StatusCode::OK, "{description}: the new client does not authenticate");
        if has_secret {
            assert_eq!(reply.body["client_secret_expires_at"], 0, "{description}: client_secret_expires_at");
            let wrong = revoke_unknown_token(&app, Some(basic_authorization(&client_id, "wrong-secret")), &[]).await;
            assert_eq!(wrong, StatusCode::UNAUTHORIZED, "{description}: a wrong secret authenticates");
        }
    }

    app.stop().await;
}

#[actix_web::test]
async fn bad_registration_is_rejected_and_stores_nothing() {
    let app = spawn_app().await;
    let with_uris = |uris: Value| json!({ "client_name": "App", "redirect_uris": uris }).to_string();

    // (description, request body, expected error)
    let rows: Vec<(&str, String, &str)> = vec![
        ("redirect URI with a fragment", with_uris(json!(["https://app.example/cb#top"])), "invalid_redirect_uri"),
        ("redirect URI with an empty fragment", with_uris(json!(["https://app.example/cb#"])), "invalid_redirect_uri"),
        ("redirect URI with userinfo", with_uris(json!(["https://user:pw@app.example/cb"])), "invalid_redirect_uri"),
        ("redirect URI with a user name only", with_uris(json!(["https://user@app.example/cb"])), "invalid_redirect_uri"),
        ("http redirect URI on a public host", with_uris(json!(["http://app.example/cb"])), "invalid_redirect_uri"),
        ("http redirect URI on a host that starts like 127.0.0.1", with_uris(json!(["http://127.0.0.1.attacker.example/cb"])), "invalid_redirect_uri"),
        ("http redirect URI on a host that starts like localhost", with_uris(json!(["http://localhost.attacker.example/cb"])), "invalid_redirect_uri"),
        ("javascript: redirect URI", with_uris(json!(["javascript:alert(1)"])), "invalid_redirect_uri"),
        ("JAVASCRIPT: redirect URI", with_uris(json!(["JAVASCRIPT:alert(1)"])), "invalid_redirect_uri"),
        ("data: redirect URI", with_uris(json!(["data:text/html,<script>alert(1)</script>"])), "invalid_redirect_uri"),
        ("custom scheme redirect URI", with_uris(json!(["com.example.app:/cb"])), "invalid_redirect_uri"),
        ("relative redirect URI", with_uris(json!(["/cb"])), "invalid_redirect_uri"),
        ("scheme-relative redirect URI", with_uris(json!(["//app.example/cb"])), "invalid_redirect_uri"),
        ("redirect URI with a space", with_uris(json!(["https://app.example/c b"])), "invalid_redirect_uri"),
        ("empty redirect URI", with_uris(json!([""])), "invalid_redirect_uri"),
        ("one good and one bad redirect URI", with_uris(json!(["https://app.example/cb", "http://app.example/cb"])), "invalid_redirect_uri"),
        ("empty redirect URI list", with_uris(json!([])), "invalid_redirect_uri"),
        ("redirect_uris missing", json!({ "client_name": "App" }).to_string(), "invalid_redirect_uri"),
        ("redirect_uris a string, not a list", json!({ "client_name": "App", "redirect_uris": REDIRECT }).to_string(), "invalid_client_metadata"),
        ("client_name missing", json!({ "redirect_uris": [REDIRECT] }).to_string(), "invalid_client_metadata"),
        ("client_name blank", json!({ "client_name": "   ", "redirect_uris": [REDIRECT] }).to_string(), "invalid_client_metadata"),
        (
            "client_name with a control character",
            json!({ "client_name": "App\u{7}", "redirect_uris": [REDIRECT] }).to_string(),
            "invalid_client_metadata",
        ),
        (
            "auth method unknown",
            json!({ "client_name": "App", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "private_key_jwt" }).to_string(),
            "invalid_client_metadata",
        ),
        (
            "scope unknown",
            json!({ "client_name": "App", "redirect_uris": [REDIRECT], "scope": "write" }).to_string(),
            "invalid_client_metadata",
        ),
        (
            "scope held only by the ops key",
            json!({ "client_name": "App", "redirect_uris": [REDIRECT], "scope": "read ucca:admin" }).to_string(),
            "invalid_client_metadata",
        ),
        (
            "scope malformed",
            json!({ "client_name": "App", "redirect_uris": [REDIRECT], "scope": "read\"" }).to_string(),
            "invalid_client_metadata",
        ),
        (
            "grant_types with implicit",
            json!({ "client_name": "App", "redirect_uris": [REDIRECT], "grant_types": ["authorization_code", "implicit"] }).to_string(),
            "invalid_client_metadata",
        ),
        (
            "grant_types with password",
            json!({ "client_name": "App", "redirect_uris": [REDIRECT], "grant_types": ["password"] }).to_string(),
            "invalid_client_metadata",
        ),
        (
            "response_types with token",
            json!({ "client_name": "App", "redirect_uris": [REDIRECT], "response_types": ["token"] }).to_string(),
            "invalid_client_metadata",
        ),
        ("body is not JSON", "{\"client_name\": \"App\",".to_string(), "invalid_client_metadata"),
        ("body is a JSON list", json!([{ "client_name": "App", "redirect_uris": [REDIRECT] }]).to_string(), "invalid_client_metadata"),
        ("body is empty", String::new(), "invalid_client_metadata"),
    ];

    for (description, body, error) in &rows {
        let reply = post_raw(&app, body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{description}: status, body {}", reply.text);
        assert_eq!(reply.body["error"], *error, "{description}: error, body {}", reply.text);
        assert_eq!(reply.field_names(), ["error", "error_description"], "{description}: body fields");
        assert!(!reply.body["error_description"].as_str().unwrap_or("").is_empty(), "{description}: error_description is empty");
    }

    // Each kind of bad name gets its own message.
    let names = [
        (json!("   "), "client_name is missing: send 1 to 200 bytes of text"),
        (json!("n".repeat(201)), "client_name is 201 bytes long; the limit is 200"),
        (json!("tab\there"), "client_name contains a control character"),
    ];
    for (name, expected) in names {
        let reply = post_raw(&app, &json!({ "client_name": name, "redirect_uris": [REDIRECT] }).to_string()).await;
        assert_eq!(reply.body["error_description"], expected, "{}", reply.text);
    }
    let listed_array = post_raw(&app, &json!([1]).to_string()).await;
    assert!(listed_array.body["error_description"].as_str().unwrap_or("").contains("the body is not a JSON object"), "{}", listed_array.text);

    let listed = list_clients(&app).await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.body["clients"], json!([]), "a rejected registration stored a client");

    app.stop().await;
}

#[actix_web::test]
async fn ops_api_requires_key() {
    let app = spawn_app().await;
    let registered = app.client("client_secret_basic", REDIRECT).await;
    let metadata = json!({ "client_name": "App", "redirect_uris": [REDIRECT] }).to_string();
    let clients = format!("{}/ops/clients", app.ops);
    let one_client = format!("{}/ops/clients/{}", app.ops, registered.id);
    let almost_key = &OPS_KEY[..OPS_KEY.len() - 1];

    // (description, method, URL, Authorization value)
    let rows: Vec<(&str, Method, &str, Option<String>)> = vec![
        ("register without a key", Method::POST, &clients, None),
        ("list without a key", Method::GET, &clients, None),
        ("deactivate without a key", Method::DELETE, &one_client, None),
        ("register with a wrong key", Method::POST, &clients, Some("Bearer wrong-key".into())),
        ("list with a wrong key", Method::GET, &clients, Some("Bearer wrong-key".into())),
        ("deactivate with a wrong key", Method::DELETE, &one_client, Some("Bearer wrong-key".into())),
        ("list with the key minus its last character", Method::GET, &clients, Some(format!("Bearer {almost_key}"))),
        ("list with the key plus a character", Method::GET, &clients, Some(format!("Bearer {OPS_KEY}x"))),
        ("list with the key under the Basic scheme", Method::GET, &clients, Some(format!("Basic {OPS_KEY}"))),
        ("list with the key and no scheme", Method::GET, &clients, Some(OPS_KEY.to_string())),
    ];

    for (description, method, url, authorization) in rows {
        let mut request = app.http.request(method, url).header("content-type", "application/json").body(metadata.clone());
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let reply = JsonReply::read(request.send().await.unwrap()).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{description}: status, body {}", reply.text);
        assert_eq!(reply.field_names(), ["error", "error_description"], "{description}: body fields");
        assert!(reply.header("www-authenticate").starts_with("Bearer"), "{description}: WWW-Authenticate {:?}", reply.header("www-authenticate"));
        assert!(!reply.text.contains(OPS_KEY), "{description}: the response echoes the ops key");
        let explanation = reply.body["error_description"].as_str().unwrap_or_default();
        let expected = if description.contains("without a key") || description.contains("Basic") || description.contains("no scheme") {
            "needs Authorization: Bearer"
        } else {
            "not the server's OPS_API_KEY"
        };
        assert!(explanation.contains(expected), "{description}: description {explanation:?}");
    }

    // Nothing was registered or deactivated by the rejected requests.
    let listed = list_clients(&app).await;
    let entries = listed.body["clients"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "clients after rejected requests: {}", listed.text);
    assert_eq!(entries[0]["active"], true, "a rejected request deactivated the client");

    app.stop().await;
}

#[actix_web::test]
async fn ops_api_without_a_configured_key_says_how_to_enable_it() {
    let app = spawn_app_with(|settings| settings.ops_api_key = None).await;
    let metadata = json!({ "client_name": "App", "redirect_uris": [REDIRECT] });
    let rows = [
        ("list", app.http.get(format!("{}/ops/clients", app.ops))),
        ("register", app.http.post(format!("{}/ops/clients", app.ops)).json(&metadata)),
    ];
    for (description, request) in rows {
        let reply = JsonReply::read(request.bearer_auth(OPS_KEY).send().await.unwrap()).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{description}: body {}", reply.text);
        assert_eq!(reply.body["error"], "temporarily_unavailable", "{description}: body {}", reply.text);
        let explanation = reply.body["error_description"].as_str().unwrap_or_default();
        assert!(explanation.contains("OPS_API_KEY"), "{description}: the answer names the variable to set: {explanation:?}");
        let request_id = reply.header("x-request-id");
        assert!(!request_id.is_empty(), "{description}: the answer carries no request id");
        assert!(explanation.contains(request_id), "{description}: the body names request id {request_id}: {explanation:?}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn ops_routes_are_absent_from_public_listener() {
    let app = spawn_app().await;
    let registered = app.client("client_secret_basic", REDIRECT).await;
    let metadata = json!({ "client_name": "App", "redirect_uris": [REDIRECT] });

    let rows = [
        ("register", app.http.post(app.url("/ops/clients")).json(&metadata)),
        ("list", app.http.get(app.url("/ops/clients"))),
        ("deactivate", app.http.delete(app.url(&format!("/ops/clients/{}", registered.id)))),
    ];
    for (description, request) in rows {
        let reply = JsonReply::read(request.bearer_auth(OPS_KEY).send().await.unwrap()).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{description} on the public listener: body {}", reply.text);
    }

    let listed = list_clients(&app).await;
    let entries = listed.body["clients"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "the public listener registered a client: {}", listed.text);
    assert_eq!(entries[0]["active"], true, "the public listener deactivated the client");

    app.stop().await;
}

#[actix_web::test]
async fn client_list_omits_secrets() {
    let app = spawn_app().await;
    let first = app.client("client_secret_basic", REDIRECT).await;
    let second = app.client("client_secret_post", "https://app.example/cb").await;
    let public = app.client("none", REDIRECT).await;

    let listed = list_clients(&app).await;

    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let entries = listed.body["clients"].as_array().cloned().unwrap_or_default();
    let mut ids: Vec<&str> = entries.iter().filter_map(|entry| entry["client_id"].as_str()).collect();
    ids.sort();
    let mut expected = vec![first.id.as_str(), second.id.as_str(), public.id.as_str()];
    expected.sort();
    assert_eq!(ids, expected);
    for entry in &entries {
        assert!(entry.get("client_secret").is_none(), "listed entry has client_secret: {entry}");
    }
    for secret in [first.secret.as_deref().unwrap(), second.secret.as_deref().unwrap()] {
        assert!(!listed.text.contains(secret), "the list contains a client secret");
    }

    app.stop().await;
}

#[actix_web::test]
async fn deactivated_client_loses_tokens_and_codes() {
    let app = spawn_app().await;
    let client = app.client("client_secret_basic", REDIRECT).await;
    let bystander = app.client("client_secret_basic", REDIRECT).await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let issued_pkce = Pkce::new();
    let issued_code = app.code_for(&browser, &client, &issued_pkce).await;
    let token_reply = JsonReply::read(app.exchange(&client, &issued_code, &issued_pkce.verifier).await).await;
    let token = token_reply.body["access_token"].as_str().unwrap().to_string();
    let pending_pkce = Pkce::new();
    let pending_code = app.code_for(&browser, &client, &pending_pkce).await;
    let bystander_pkce = Pkce::new();
    let bystander_code = app.code_for(&browser, &bystander, &bystander_pkce).await;
    let bystander_reply = JsonReply::read(app.exchange(&bystander, &bystander_code, &bystander_pkce.verifier).await).await;
    let bystander_token = bystander_reply.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(app.get_with_token("/v1/lookup?code=BSB30120", &token).await.status(), StatusCode::OK);

    let deactivated = app.deactivate_client(&client.id).await;
    assert_eq!(deactivated.status(), StatusCode::NO_CONTENT);

    let refused = app.get_with_token("/v1/lookup?code=BSB30120", &token).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "the deactivated client's token still works");
    let challenge = refused.headers().get("www-authenticate").and_then(|value| value.to_str().ok()).unwrap_or("").to_string();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");

    let exchange = JsonReply::read(app.exchange(&client, &pending_code, &pending_pkce.verifier).await).await;
    assert_eq!(exchange.status, StatusCode::UNAUTHORIZED, "code exchange by a deactivated client: {}", exchange.text);
    assert_eq!(exchange.body["error"], "invalid_client");

    let authorize_url = format!(
        "{}?response_type=code&client_id={}&redirect_uri={}&code_challenge={}&code_challenge_method=S256&state=s",
        app.url("/oauth/authorize"),
        client.id,
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>(),
        Pkce::new().challenge,
    );
    let page = browser.get(&authorize_url).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "authorize for a deactivated client");
    assert_eq!(page.location(), "", "authorize for a deactivated client must not redirect");

    // Other clients keep their tokens.
    let unaffected = app.get_with_token("/v1/lookup?code=BSB30120", &bystander_token).await;
    assert_eq!(unaffected.status(), StatusCode::OK, "deactivating one client revoked another client's token");

    let listed = list_clients(&app).await;
    let entry = listed.body["clients"].as_array().unwrap().iter().find(|entry| entry["client_id"] == client.id.as_str()).cloned();
    assert_eq!(entry.map(|entry| entry["active"].clone()), Some(json!(false)), "listed state: {}", listed.text);

    let repeated = app.deactivate_client(&client.id).await;
    assert_eq!(repeated.status(), StatusCode::NO_CONTENT, "deactivating twice");

    let unknown = JsonReply::read(app.deactivate_client("0123456789abcdef0123456789abcdef").await).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "unknown client: {}", unknown.text);
    assert_eq!(unknown.field_names(), ["error", "error_description"]);

    app.stop().await;
}
