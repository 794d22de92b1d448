//! The whole protocol, step by step: discovery, authorize, magic-link sign-in,
//! consent, token, API call, introspection, revocation. The client is the
//! `oauth2` crate, a third-party OAuth client, and the browser keeps cookies.

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IntrospectionUrl, PkceCodeChallenge, RedirectUrl,
    RevocationUrl, Scope, StandardRevocableToken, TokenIntrospectionResponse, TokenResponse, TokenUrl,
};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

#[actix_web::test]
async fn oauth_client_signs_in_calls_api_and_revokes() {
    let app = spawn_app().await;
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();

    // Discovery (RFC 8414): the client learns the endpoints from the issuer.
    let metadata: Value = http
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["issuer"], app.issuer.as_str());
    assert_eq!(metadata["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(metadata["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(metadata["authorization_response_iss_parameter_supported"], true);
    let endpoint = |name: &str| metadata[name].as_str().unwrap().to_string();

    // An operator registers the client through the ops API.
    let registered = app.client("client_secret_basic", "http://127.0.0.1:7000/callback").await;
    let client = BasicClient::new(ClientId::new(registered.id.clone()))
        .set_client_secret(ClientSecret::new(registered.secret.clone().unwrap()))
        .set_auth_uri(AuthUrl::new(endpoint("authorization_endpoint")).unwrap())
        .set_token_uri(TokenUrl::new(endpoint("token_endpoint")).unwrap())
        .set_revocation_url(RevocationUrl::new(endpoint("revocation_endpoint")).unwrap())
        .set_introspection_url(IntrospectionUrl::new(endpoint("introspection_endpoint")).unwrap())
        .set_redirect_uri(RedirectUrl::new(registered.redirect_uri.clone()).unwrap());

    // The client sends the browser to the authorization endpoint with a PKCE challenge.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (authorize_url, csrf_state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("read".into()))
        .set_pkce_challenge(challenge)
        .url();

    // Nobody is signed in, so the server sends the browser to sign in first.
    let browser = Browser::new();
    let first = browser.get(authorize_url.as_str()).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert!(first.location().starts_with("/auth?return_to=%2Foauth%2Fauthorize"), "{}", first.location());

    // The sign-in page asks for an email address, inside a frame-proof page with a CSRF token.
    let sign_in = browser.get(&app.url(first.location())).await;
    assert_eq!(sign_in.status, StatusCode::OK);
    assert!(sign_in.header("content-security-policy").contains("frame-ancestors 'none'"));
    assert!(sign_in.body.contains("type=\"email\""));
    let requested = browser
        .post_form(
            &app.url("/auth/email"),
            &[
                ("csrf_token", sign_in.hidden("csrf_token")),
                ("return_to", sign_in.hidden("return_to")),
                ("email", "ada@example.com".to_string()),
            ],
        )
        .await;
    assert_eq!(requested.status, StatusCode::OK);
    assert!(requested.body.contains("Check your email"));

    // The link arrives by mail. Opening it shows a confirmation page and consumes nothing,
    // so a mail scanner that prefetches it does no harm.
    let link = app.mailed_links("ada@example.com").pop().expect("sign-in mail in the outbox");
    let prefetched = Browser::new().get(&link).await;
    assert_eq!(prefetched.status, StatusCode::OK);
    let confirm = browser.get(&link).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Confirm sign-in"));

    // Confirming signs in with an HttpOnly, SameSite=Lax session cookie and returns to the authorize request.
    let confirmed = browser
        .post_form(&app.url("/auth/verify"), &[("csrf_token", confirm.hidden("csrf_token")), ("token", confirm.hidden("token"))])
        .await;
    assert_eq!(confirmed.status, StatusCode::SEE_OTHER);
    assert!(confirmed.location().starts_with("/oauth/authorize?"), "{}", confirmed.location());
    let session_cookie = confirmed.header("set-cookie");
    assert!(session_cookie.starts_with("ucca_session_"), "{session_cookie}");
    assert!(session_cookie.contains("HttpOnly"));
    assert!(session_cookie.contains("SameSite=Lax"));

    // The consent page names the client and the scope in plain words.
    let consent = browser.get(&app.url(confirmed.location())).await;
    assert_eq!(consent.status, StatusCode::OK);
    assert!(consent.header("content-security-policy").contains("frame-ancestors 'none'"));
    assert!(consent.body.contains("Test client"));
    assert!(consent.body.contains("Search and read the training corpus"));
    assert!(consent.body.contains("you return to <strong>127.0.0.1</strong>"), "the consent page names where the code goes");

    // Allowing redirects to the client with code, state and iss (RFC 9207).
    let mut fields = consent.hidden_fields();
    fields.push(("decision".into(), "allow".into()));
    let allowed = browser.post_form(&app.url("/oauth/authorize"), &fields).await;
    assert_eq!(allowed.status, StatusCode::SEE_OTHER);
    let callback = url::Url::parse(allowed.location()).unwrap();
    assert_eq!(format!("{}://{}{}", callback.scheme(), callback.authority(), callback.path()), registered.redirect_uri);
    assert_eq!(query_value(&callback, "state").as_deref(), Some(csrf_state.secret().as_str()));
    assert_eq!(query_value(&callback, "iss").as_deref(), Some(app.issuer.as_str()));
    let code = query_value(&callback, "code").expect("code in the redirect");

    // The client exchanges the code with its verifier.
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("token exchange succeeds");
    let access_token = token.access_token().secret().clone();
    assert_eq!(access_token.len(), 96);
    assert!(access_token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(token.expires_in(), Some(std::time::Duration::from_secs(3600)));
    assert_eq!(token.scopes().map(|scopes| scopes[0].to_string()), Some("read".into()));

    // The token opens the protected API.
    let lookup = app.get_with_token("/v1/lookup?code=BSB30120", &access_token).await;
    assert_eq!(lookup.status(), StatusCode::OK);
    let entry: Value = lookup.json().await.unwrap();
    assert_eq!(entry["code"], "BSB30120");
    assert_eq!(entry["kind"], "qualification");

    // Introspection (RFC 7662) describes it.
    let described = client.introspect(token.access_token()).request_async(&http).await.unwrap();
    assert!(described.active());
    assert_eq!(described.client_id().map(|id| id.to_string()), Some(registered.id.clone()));
    assert_eq!(described.scopes().map(|scopes| scopes[0].to_string()), Some("read".into()));

    // Revocation (RFC 7009) ends it everywhere at once. The oauth2 crate refuses a
    // revocation URL that is not https, as RFC 7009 section 2 asks, and this test
    // server is loopback http, so this step sends the same request by hand.
    let revocation = client.revoke_token(StandardRevocableToken::AccessToken(token.access_token().clone()));
    assert!(revocation.is_err(), "oauth2 accepted a plain-http revocation URL");
    let revoked = http
        .post(endpoint("revocation_endpoint"))
        .basic_auth(&registered.id, registered.secret.as_ref())
        .form(&[("token", access_token.as_str()), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    let refused = app.get_with_token("/v1/lookup?code=BSB30120", &access_token).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers()["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
    let described = client.introspect(token.access_token()).request_async(&http).await.unwrap();
    assert!(!described.active());

    app.stop().await;
}
