//! Secrecy of the log: the real binary runs with `UCCA_LOG=debug`, every flow
//! runs including its error paths, and no secret value the test saw may appear
//! anywhere in what the server wrote to stderr.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{query_value, Pkce};
use crate::process::{random_hex, Agent, Launch, RemoteClient, ServerProcess, OPS_KEY};

/// Every secret value the test saw, each with a name for the failure message.
#[derive(Default)]
struct Secrets(Vec<(String, String)>);

impl Secrets {
    fn add(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let value = value.into();
        assert!(value.len() >= 16, "secret values must be long enough not to match by chance");
        self.0.push((name.into(), value));
    }

    /// Adds every string field of a token response whose name ends in `token`.
    fn add_tokens(&mut self, name: &str, body: &Value) {
        let fields = body.as_object().into_iter().flatten();
        for (field, value) in fields.filter(|(field, _)| field.ends_with("token")) {
            if let Some(value) = value.as_str() {
                self.add(format!("{field} from {name}"), value);
            }
        }
    }
}

/// Registers `client`'s secret, both as issued and as it travels in an `Authorization: Basic` header.
fn add_client_secret(secrets: &mut Secrets, client: &RemoteClient) {
    if let Some(secret) = &client.secret {
        secrets.add(format!("{} client secret", client.method), secret.clone());
        secrets.add(format!("{} client Basic credentials", client.method), STANDARD.encode(format!("{}:{secret}", client.id)));
    }
}

#[tokio::test]
async fn debug_log_contains_no_secret() {
    let dir = tempfile::tempdir().expect("create temporary directory");
    let mut launch = Launch::new(dir.path());
    launch.log_filter = "debug".into();
    let mut server = ServerProcess::start(launch);
    let remote = server.endpoint();
    let mut secrets = Secrets::default();
    secrets.add("OPS_API_KEY", OPS_KEY);

    // The ops API with a wrong key, with none, and with the right one.
    let wrong_ops_key = random_hex(24);
    secrets.add("wrong ops key", wrong_ops_key.clone());
    assert_eq!(remote.list_clients_with(Some(&wrong_ops_key)).await.unwrap(), StatusCode::UNAUTHORIZED);
    assert_eq!(remote.list_clients_with(None).await.unwrap(), StatusCode::UNAUTHORIZED);
    let basic = remote.register_client("client_secret_basic").await.unwrap();
    let post = remote.register_client("client_secret_post").await.unwrap();
    let public = remote.register_client("none").await.unwrap();
    for client in [&basic, &post, &public] {
        add_client_secret(&mut secrets, client);
    }
    assert_eq!(remote.list_clients_with(Some(OPS_KEY)).await.unwrap(), StatusCode::OK);

    // Magic-link sign-in, then the same link again and a link that matches nothing.
    let browser = Agent::new();
    let link = remote.request_link(&browser, "ada@example.com").await.unwrap();
    secrets.add("magic link token", link.clone());
    secrets.add("CSRF cookie", browser.cookie(&remote.base, "ucca_csrf_").expect("the sign-in page sets a CSRF cookie"));
    secrets.add("CSRF form token", remote.csrf_token(&browser).await.unwrap());
    remote.confirm_link(&browser, &link).await.unwrap();
    let session = browser.cookie(&remote.base, "ucca_session_").expect("sign-in sets a session cookie");
    secrets.add("session cookie", session);
    assert_eq!(remote.confirm_status(&link).await.unwrap(), StatusCode::GONE);
    let unknown_link = random_hex(32);
    secrets.add("unknown link token", unknown_link.clone());
    assert_eq!(remote.link_page_status(&unknown_link).await.unwrap(), StatusCode::NOT_FOUND);
    assert_eq!(remote.confirm_status(&unknown_link).await.unwrap(), StatusCode::NOT_FOUND);

    // Each client: a wrong verifier, a wrong secret, the exchange, a replay, then use, introspection and revocation.
    for client in [&basic, &post, &public] {
        let name = &client.method;
        let pkce = Pkce::new();
        let code = remote.authorize(&browser, client, &pkce).await.unwrap();
        secrets.add(format!("code for {name}"), code.clone());
        secrets.add(format!("verifier for {name}"), pkce.verifier.clone());

        let wrong_verifier = Pkce::new().verifier;
        secrets.add(format!("wrong verifier for {name}"), wrong_verifier.clone());
        let (status, body) = remote.exchange(client, &code, &wrong_verifier).await.unwrap();
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{name} with a wrong verifier");
        if client.secret.is_some() {
            let wrong_secret = random_hex(32);
            secrets.add(format!("wrong secret for {name}"), wrong_secret.clone());
            let (status, _) = remote.exchange_as(client, Some(&wrong_secret), &code, &pkce.verifier).await.unwrap();
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name} with a wrong secret");
        }

        let (status, issued) = remote.exchange(client, &code, &pkce.verifier).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{name} exchange: {}", issued["error"]);
        secrets.add_tokens(&format!("{name} exchange"), &issued);
        let (status, body) = remote.exchange(client, &code, &pkce.verifier).await.unwrap();
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{name} replayed code");

        // The replay revoked the first token, so a second authorization gives one to use.
        let pkce = Pkce::new();
        let code = remote.authorize(&browser, client, &pkce).await.unwrap();
        secrets.add(format!("second code for {name}"), code.clone());
        secrets.add(format!("second verifier for {name}"), pkce.verifier.clone());
        let (status, issued) = remote.exchange(client, &code, &pkce.verifier).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{name} second exchange: {}", issued["error"]);
        secrets.add_tokens(&format!("{name} second exchange"), &issued);
        let token = issued["access_token"].as_str().expect("access_token in the token response").to_string();

        assert_eq!(remote.lookup(&token).await.unwrap(), StatusCode::OK, "{name} token on the API");
        let (status, described) = remote.introspect(client, &token).await.unwrap();
        if client.secret.is_some() {
            assert_eq!((status, described["active"].as_bool()), (StatusCode::OK, Some(true)), "{name} introspection");
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "a public client may not introspect");
        }
        assert_eq!(remote.revoke(client, &token).await.unwrap(), StatusCode::OK, "{name} revocation");
        assert_eq!(remote.lookup(&token).await.unwrap(), StatusCode::UNAUTHORIZED, "{name} revoked token on the API");
    }

    // Tokens that match nothing, and one that is not even token-shaped.
    let unknown_token = random_hex(48);
    secrets.add("unknown access token", unknown_token.clone());
    assert_eq!(remote.lookup(&unknown_token).await.unwrap(), StatusCode::UNAUTHORIZED);
    let (status, described) = remote.introspect(&basic, &unknown_token).await.unwrap();
    assert_eq!((status, described["active"].as_bool()), (StatusCode::OK, Some(false)));
    let malformed_token = format!("not-a-token-{}", random_hex(16));
    secrets.add("malformed access token", malformed_token.clone());
    assert_eq!(remote.lookup(&malformed_token).await.unwrap(), StatusCode::UNAUTHORIZED);

    // Consent denied: the client learns access_denied and gets no code.
    let pkce = Pkce::new();
    let denied = remote.decide(&browser, &basic, &pkce, "deny").await.unwrap();
    assert_eq!(query_value(&denied, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_value(&denied, "code"), None);

    // Sign-out with a forged form token, then for real.
    let forged_csrf = random_hex(32);
    secrets.add("forged CSRF form token", forged_csrf.clone());
    assert_eq!(remote.sign_out(&browser, &forged_csrf).await.unwrap(), StatusCode::FORBIDDEN);
    let csrf = remote.csrf_token(&browser).await.unwrap();
    assert_eq!(remote.sign_out(&browser, &csrf).await.unwrap(), StatusCode::SEE_OTHER);
    assert!(!remote.is_signed_in(&browser).await.unwrap(), "sign-out left the browser signed in");

    // Deactivation revokes what the client still holds.
    assert_eq!(remote.deactivate_client(&post.id).await.unwrap(), StatusCode::NO_CONTENT);
    assert!(!remote.client_authenticates(&post).await.unwrap(), "a deactivated client still authenticates");

    // A clean stop, so the log is complete.
    server.terminate();
    let status = server.wait_for_exit(std::time::Duration::from_secs(15)).expect("the server stops after SIGTERM");
    assert!(status.success(), "the server exited with {status}");
    let log = server.complete_log();

    // The log is the one the checks need: at debug level, with the security events in it.
    assert!(log.contains(" DEBUG "), "the log has no debug lines, so UCCA_LOG=debug did not take effect");
    assert!(log.contains("request served"), "the log has no access lines");
    assert!(log.contains(&basic.id), "the log never names the client, so security events are missing");
    for (name, value) in &secrets.0 {
        assert!(!log.contains(value.as_str()), "the {name} appears in the server log");
    }
}
