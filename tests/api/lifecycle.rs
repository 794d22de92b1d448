//! Lifetimes and single use of codes, tokens, sign-in links and sessions on the
//! pinned clock, durability across a restart, and the protected API's challenges.

use reqwest::StatusCode;
use serde_json::Value;
use ucca_actors::StoreError;
use ucca_auth::settings::Settings;
use ucca_auth::startup::{Application, StartupError};

use crate::helpers::*;

const LOOKUP: &str = "/v1/lookup?code=BSB30120";

/// Checks whether a request carrying only this session cookie (`name=value`) is signed in.
async fn is_signed_in(app: &TestApp, session_cookie: &str) -> bool {
    let response = app.http.get(app.url("/auth")).header("cookie", session_cookie).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap().contains("You are signed in as")
}

/// Requests a sign-in link for `email` in `browser` and returns the mailed link.
async fn request_link(app: &TestApp, browser: &Browser, email: &str) -> String {
    let form = browser.get(&app.url("/auth")).await;
    let sent = browser
        .post_form(&app.url("/auth/email"), &[("csrf_token", form.hidden("csrf_token")), ("email", email.to_string())])
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    app.mailed_links(email).pop().expect("a sign-in link was mailed")
}

fn confirm_fields(confirm: &Page) -> Vec<(String, String)> {
    vec![("csrf_token".into(), confirm.hidden("csrf_token")), ("token".into(), confirm.hidden("token"))]
}

fn challenge(response: &reqwest::Response) -> String {
    response.headers().get("www-authenticate").and_then(|value| value.to_str().ok()).unwrap_or("").to_string()
}

#[actix_web::test]
async fn reused_code_revokes_its_tokens() {
    let app = spawn_app().await;
    let client = app.client("client_secret_basic", "http://127.0.0.1:7000/cb").await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let pkce = Pkce::new();
    let code = app.code_for(&browser, &client, &pkce).await;
    let first = JsonReply::read(app.exchange(&client, &code, &pkce.verifier).await).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let token = first.body["access_token"].as_str().unwrap().to_string();
    let refresh_token = first.body["refresh_token"].as_str().unwrap_or("").to_string();
    assert_eq!(app.get_with_token(LOOKUP, &token).await.status(), StatusCode::OK);

    let second = JsonReply::read(app.exchange(&client, &code, &pkce.verifier).await).await;

    assert_eq!(second.status, StatusCode::BAD_REQUEST, "{}", second.text);
    assert_eq!(second.body["error"], "invalid_grant");
    assert!(second.body.get("access_token").is_none(), "a reused code issued a token");
    let refused = app.get_with_token(LOOKUP, &token).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "the token from a reused code still works");
    assert!(challenge(&refused).contains("error=\"invalid_token\""), "{}", challenge(&refused));
    let refreshed = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth(&client.id, client.secret.as_ref())
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token.as_str())])
        .send()
        .await
        .unwrap();
    let refreshed = JsonReply::read(refreshed).await;
    assert_eq!(refreshed.status, StatusCode::BAD_REQUEST, "refresh token from a reused code: {}", refreshed.text);
    assert_eq!(refreshed.body["error"], "invalid_grant");

    app.stop().await;
}

#[actix_web::test]
async fn code_expires_after_120_seconds() {
    let app = spawn_app().await;
    let client = app.client("client_secret_basic", "http://127.0.0.1:7000/cb").await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let early_pkce = Pkce::new();
    let early_code = app.code_for(&browser, &client, &early_pkce).await;
    let late_pkce = Pkce::new();
    let late_code = app.code_for(&browser, &client, &late_pkce).await;

    app.clock.advance(119);
    let early = JsonReply::read(app.exchange(&client, &early_code, &early_pkce.verifier).await).await;
    assert_eq!(early.status, StatusCode::OK, "code at 119 s: {}", early.text);

    app.clock.advance(2);
    let late = JsonReply::read(app.exchange(&client, &late_code, &late_pkce.verifier).await).await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST, "code at 121 s: {}", late.text);
    assert_eq!(late.body["error"], "invalid_grant");
    assert!(late.body["error_description"].as_str().unwrap_or("").contains("expired"), "{}", late.text);

    app.stop().await;
}

#[actix_web::test]
async fn access_token_expires_after_one_hour() {
    let app = spawn_app().await;
    let (client, token) = app.token_for("ada@example.com").await;

    app.clock.advance(3599);
    assert_eq!(app.get_with_token(LOOKUP, &token).await.status(), StatusCode::OK, "token at 3599 s");

    app.clock.advance(1);
    let refused = app.get_with_token(LOOKUP, &token).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "token at 3600 s");
    let header = challenge(&refused);
    assert!(header.contains("error=\"invalid_token\""), "{header}");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
    assert!(body["error_description"].as_str().unwrap_or("").contains("expired"), "{body}");

    let described = app
        .http
        .post(app.url("/oauth/introspect"))
        .basic_auth(&client.id, client.secret.as_ref())
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    let described: Value = described.json().await.unwrap();
    assert_eq!(described, serde_json::json!({ "active": false }), "introspection of an expired token");

    app.stop().await;
}

#[actix_web::test]
async fn magic_link_works_once() {
    let app = spawn_app().await;
    let browser = Browser::new();
    let link = request_link(&app, &browser, "ada@example.com").await;

    // Opening the link, as a mail scanner would, consumes nothing.
    for attempt in 1..=2 {
        let prefetched = Browser::new().get(&link).await;
        assert_eq!(prefetched.status, StatusCode::OK, "GET number {attempt} of the link");
    }
    let confirm = browser.get(&link).await;
    assert_eq!(confirm.status, StatusCode::OK);

    let first = browser.post_form(&app.url("/auth/verify"), &confirm_fields(&confirm)).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "first confirmation");

    // The same form again, and the link's token from another browser with that browser's own CSRF token.
    let again = browser.post_form(&app.url("/auth/verify"), &confirm_fields(&confirm)).await;
    let stranger = Browser::new();
    let stranger_form = stranger.get(&app.url("/auth")).await;
    let stranger_fields = vec![("csrf_token".to_string(), stranger_form.hidden("csrf_token")), ("token".to_string(), confirm.hidden("token"))];
    let from_stranger = stranger.post_form(&app.url("/auth/verify"), &stranger_fields).await;
    for (description, replayed) in [("same browser", &again), ("another browser", &from_stranger)] {
        assert_eq!(replayed.status, StatusCode::GONE, "{description}: second confirmation, body {}", replayed.body);
        assert!(replayed.body.contains("already used"), "{description}: {}", replayed.body);
        assert_eq!(replayed.cookie_pair("ucca_session_"), None, "{description}: a used link set a session");
    }

    let reopened = Browser::new().get(&link).await;
    assert_eq!(reopened.status, StatusCode::GONE, "opening a used link");

    app.stop().await;
}

#[actix_web::test]
async fn magic_link_expires_after_15_minutes() {
    let app = spawn_app().await;
    let browser = Browser::new();
    let link = request_link(&app, &browser, "ada@example.com").await;

    app.clock.advance(15 * 60 - 1);
    let confirm = browser.get(&link).await;
    assert_eq!(confirm.status, StatusCode::OK, "link at 899 s");

    app.clock.advance(1);
    let reopened = Browser::new().get(&link).await;
    assert_eq!(reopened.status, StatusCode::GONE, "opening the link at 900 s");
    let confirmed = browser.post_form(&app.url("/auth/verify"), &confirm_fields(&confirm)).await;
    assert_eq!(confirmed.status, StatusCode::GONE, "confirming the link at 900 s: {}", confirmed.body);
    assert!(confirmed.body.contains("expired"), "{}", confirmed.body);
    assert_eq!(confirmed.cookie_pair("ucca_session_"), None, "an expired link set a session");

    app.stop().await;
}

#[actix_web::test]
async fn sign_out_ends_session() {
    let app = spawn_app().await;
    let browser = Browser::new();
    let session = app.sign_in(&browser, "ada@example.com").await;
    let signed_in_page = browser.get(&app.url("/auth")).await;
    assert!(signed_in_page.body.contains("You are signed in as"), "{}", signed_in_page.body);

    // Without the form's CSRF token the session survives.
    let forged = browser.post_form(&app.url("/auth/logout"), &[("csrf_token", "0".repeat(64))]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "sign-out with a wrong CSRF token");
    let missing = browser.post_form(&app.url("/auth/logout"), &[("other", "x")]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN, "sign-out without a CSRF token");
    assert!(is_signed_in(&app, &session).await, "a rejected sign-out ended the session");

    let signed_out = browser.post_form(&app.url("/auth/logout"), &[("csrf_token", signed_in_page.hidden("csrf_token"))]).await;

    assert_eq!(signed_out.status, StatusCode::SEE_OTHER);
    assert_eq!(signed_out.location(), "/auth");
    let after = browser.get(&app.url("/auth")).await;
    assert!(!after.body.contains("You are signed in as"), "the browser is still signed in");
    assert!(!is_signed_in(&app, &session).await, "the old session cookie still signs in");

    app.stop().await;
}

#[actix_web::test]
async fn fresh_sign_in_sets_new_session_id() {
    let app = spawn_app().await;
    let browser = Browser::new();
    let first = app.sign_in(&browser, "ada@example.com").await;

    let second = app.sign_in(&browser, "ada@example.com").await;

    assert_ne!(first, second, "the second sign-in kept the session id");
    assert!(is_signed_in(&app, &second).await, "the new session does not sign in");
    assert!(!is_signed_in(&app, &first).await, "the replaced session still signs in");

    app.stop().await;
}

#[actix_web::test]
async fn restart_keeps_clients_tokens_and_used_codes() {
    let app = spawn_app().await;
    let client = app.client("client_secret_basic", "http://127.0.0.1:7000/cb").await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let pkce = Pkce::new();
    let code = app.code_for(&browser, &client, &pkce).await;
    let exchanged = JsonReply::read(app.exchange(&client, &code, &pkce.verifier).await).await;
    let token = exchanged.body["access_token"].as_str().unwrap().to_string();

    let address = app.public_address();
    let clock = app.clock.clone();
    let dir = app.stop().await.expect("spawn_app owns a temporary directory");
    let app = spawn_app_at(dir.path(), clock, address).await;

    assert_eq!(app.get_with_token(LOOKUP, &token).await.status(), StatusCode::OK, "token after restart");
    let introspected = app
        .http
        .post(app.url("/oauth/introspect"))
        .basic_auth(&client.id, client.secret.as_ref())
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(introspected.status(), StatusCode::OK, "client authentication after restart");
    let described: Value = introspected.json().await.unwrap();
    assert_eq!(described["active"], true, "introspection after restart: {described}");

    let replayed = JsonReply::read(app.exchange(&client, &code, &pkce.verifier).await).await;
    assert_eq!(replayed.status, StatusCode::BAD_REQUEST, "code used before the restart: {}", replayed.text);
    assert_eq!(replayed.body["error"], "invalid_grant");
    assert_eq!(app.get_with_token(LOOKUP, &token).await.status(), StatusCode::UNAUTHORIZED, "replay after restart revokes the token");

    app.stop().await;
    drop(dir);
}

#[actix_web::test]
async fn second_instance_on_used_data_dir_reports_locked() {
    let app = spawn_app().await;
    let mut settings = Settings::defaults();
    settings.bind = "127.0.0.1:0".parse().unwrap();
    settings.ops_bind = "127.0.0.1:0".parse().unwrap();
    settings.data_dir = app.data_dir.clone();

    let second = Application::build(settings, app.clock.clone()).await;

    match second {
        Err(StartupError::Store(StoreError::Locked(path))) => assert_eq!(path, app.data_dir.join("store")),
        Err(other) => panic!("expected the store to be reported as in use, got: {other}"),
        Ok(_) => panic!("a second instance opened a data directory that is in use"),
    }

    app.stop().await;
}

#[actix_web::test]
async fn protected_api_challenges_point_to_metadata() {
    let app = spawn_app().await;
    let client = app.client("client_secret_basic", "http://127.0.0.1:7000/cb").await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let pkce = Pkce::new();
    let code = app.code_for(&browser, &client, &pkce).await;
    let issued = JsonReply::read(app.exchange(&client, &code, &pkce.verifier).await).await;
    let revoked_token = issued.body["access_token"].as_str().unwrap().to_string();
    let refresh_token = issued.body["refresh_token"].as_str().unwrap_or("").to_string();
    let revoked = app
        .http
        .post(app.url("/oauth/revoke"))
        .basic_auth(&client.id, client.secret.as_ref())
        .form(&[("token", revoked_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let metadata = format!("resource_metadata=\"{}/.well-known/oauth-protected-resource/v1\"", app.issuer);

    // (description, path, Authorization value, expected `error` attribute)
    let rows: Vec<(&str, String, Option<String>, Option<&str>)> = vec![
        ("no credential", LOOKUP.to_string(), None, None),
        ("token only in the query string", format!("{LOOKUP}&access_token={revoked_token}"), None, None),
        ("malformed token", LOOKUP.to_string(), Some("Bearer not-a-token".into()), Some("invalid_token")),
        ("upper-case hex token", LOOKUP.to_string(), Some(format!("Bearer {}", "A".repeat(96))), Some("invalid_token")),
        ("unknown token", LOOKUP.to_string(), Some(format!("Bearer {}", "0".repeat(96))), Some("invalid_token")),
        ("revoked token", LOOKUP.to_string(), Some(format!("Bearer {revoked_token}")), Some("invalid_token")),
        ("refresh token", LOOKUP.to_string(), Some(format!("Bearer {refresh_token}")), Some("invalid_token")),
        ("search without a credential", "/v1/search?q=business".to_string(), None, None),
        ("ladder with an unknown token", "/v1/ladder?code=BSB30120".to_string(), Some(format!("Bearer {}", "1".repeat(96))), Some("invalid_token")),
    ];

    for (description, path, authorization, error) in rows {
        let mut request = app.http.get(app.url(&path));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{description}: status");
        let header = challenge(&response);
        assert!(header.starts_with("Bearer "), "{description}: WWW-Authenticate {header:?}");
        assert!(header.contains(&metadata), "{description}: resource_metadata in {header:?}");
        match error {
            Some(code) => assert!(header.contains(&format!("error=\"{code}\"")), "{description}: error in {header:?}"),
            None => assert!(!header.contains("error="), "{description}: a request without a credential got an error in {header:?}"),
        }
        let reply = JsonReply::read(response).await;
        assert_eq!(reply.field_names(), ["error", "error_description"], "{description}: body {}", reply.text);
        assert!(!reply.text.contains(&revoked_token), "{description}: the response echoes the token");
    }

    app.stop().await;
}

#[actix_web::test]
async fn every_response_has_request_id() {
    let app = spawn_app().await;
    let (client, token) = app.token_for("ada@example.com").await;
    let authorize = format!("/oauth/authorize?response_type=code&client_id={}", client.id);

    let rows = vec![
        ("health", app.http.get(app.url("/healthz"))),
        ("unknown path", app.http.get(app.url("/no/such/page"))),
        ("discovery", app.http.get(app.url("/.well-known/oauth-authorization-server"))),
        ("resource metadata", app.http.get(app.url("/.well-known/oauth-protected-resource/v1"))),
        ("sign-in page", app.http.get(app.url("/auth"))),
        ("authorize error page", app.http.get(app.url("/oauth/authorize"))),
        ("authorize sign-in redirect", app.http.get(app.url(&authorize))),
        ("token error", app.http.post(app.url("/oauth/token")).form(&[("grant_type", "password")])),
        ("API without a credential", app.http.get(app.url(LOOKUP))),
        ("API call", app.http.get(app.url(LOOKUP)).bearer_auth(&token)),
        ("API not found", app.http.get(app.url("/v1/lookup?code=NOPE1")).bearer_auth(&token)),
        ("ops without a key", app.http.get(format!("{}/ops/clients", app.ops))),
        ("ops list", app.http.get(format!("{}/ops/clients", app.ops)).bearer_auth(OPS_KEY)),
        ("ops health", app.http.get(format!("{}/healthz", app.ops))),
        ("ops unknown path", app.http.get(format!("{}/nothing", app.ops))),
        (
            "CORS preflight",
            app.http
                .request(reqwest::Method::OPTIONS, app.url("/oauth/token"))
                .header("origin", "https://app.example")
                .header("access-control-request-method", "POST"),
        ),
        (
            "CORS preflight for a method not allowed",
            app.http
                .request(reqwest::Method::OPTIONS, app.url("/oauth/token"))
                .header("origin", "https://app.example")
                .header("access-control-request-method", "DELETE"),
        ),
    ];

    let mut seen: Vec<String> = Vec::new();
    for (description, request) in rows {
        let response = request.send().await.unwrap();
        let id = response.headers().get("x-request-id").and_then(|value| value.to_str().ok()).unwrap_or("").to_string();
        assert!(!id.is_empty(), "{description}: X-Request-Id missing (status {})", response.status());
        assert!(!seen.contains(&id), "{description}: X-Request-Id {id} repeats an earlier one");
        seen.push(id);
    }

    app.stop().await;
}
