//! Scopes end to end. Covers what each scope lets a token call, the challenge
//! that names a missing scope, and granting only what the user holds. Also
//! covers remembered consent and its withdrawal, `invalid_scope` and
//! `invalid_target`, the discovery metadata, and CORS for browser clients.

use std::collections::HashMap;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const SEARCH: &str = "/v1/search?q=business";
const LOOKUP: &str = "/v1/lookup?code=BSB30120";
const LADDER: &str = "/v1/ladder?code=BSB30120";
const PATHWAY: &str = "/v1/analytics/pathway?from=BSB30120&to=BSB40120";

/// Every scope a user can hold. Clients registered with this list may request any of them.
const USER_SCOPES: &str = "read rtopacks:operational rtopacks:developer rtopacks:professional rtopacks:enterprise ucco:framework";

const OPERATIONAL: &str = "rtopacks:operational";
const PROFESSIONAL: &str = "rtopacks:professional";

/// An address no route of this server serves.
const FOREIGN_RESOURCE: &str = "https://elsewhere.example/api";

/// What a protected route does with a token.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Allowed,
    /// 403 with an `insufficient_scope` challenge naming this scope.
    Denied(&'static str),
}

struct CapabilityRow {
    description: &'static str,
    entitlements: &'static [&'static str],
    scope: &'static str,
    route: &'static str,
    expected: Outcome,
}

/// Collects the `data-scope` values of the consent page's scope list, in page order.
fn listed_scopes(page: &Page) -> Vec<String> {
    let mut scopes = Vec::new();
    let mut rest = page.body.as_str();
    while let Some(start) = rest.find("<li data-scope=\"") {
        rest = &rest[start + "<li data-scope=\"".len()..];
        let end = rest.find('"').expect("data-scope attribute is closed");
        scopes.push(rest[..end].to_string());
        rest = &rest[end..];
    }
    scopes
}

/// Parses the URL a redirect points to, and panics with the response body when `page` is no redirect.
fn redirect_target(page: &Page, step: &str) -> url::Url {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{step}: expected a redirect, body {}", page.body);
    url::Url::parse(page.location()).unwrap_or_else(|_| panic!("{step}: location {:?} is not absolute", page.location()))
}

/// Sends an OPTIONS preflight from `origin` for `method` (and `headers`, when given) to `path`.
async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str, headers: Option<&str>) -> JsonReply {
    let mut request = app
        .http
        .request(Method::OPTIONS, app.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method);
    if let Some(headers) = headers {
        request = request.header("access-control-request-headers", headers);
    }
    JsonReply::read(request.send().await.unwrap()).await
}

#[actix_web::test]
async fn scope_decides_each_route() {
    use Outcome::{Allowed, Denied};
    let rows = [
        CapabilityRow { description: "read: search", entitlements: &[], scope: "read", route: SEARCH, expected: Allowed },
        CapabilityRow { description: "read: lookup", entitlements: &[], scope: "read", route: LOOKUP, expected: Allowed },
        CapabilityRow { description: "read: ladder", entitlements: &[], scope: "read", route: LADDER, expected: Allowed },
        CapabilityRow { description: "read: pathway", entitlements: &[], scope: "read", route: PATHWAY, expected: Denied(PROFESSIONAL) },
        CapabilityRow { description: "operational: search", entitlements: &[OPERATIONAL], scope: OPERATIONAL, route: SEARCH, expected: Allowed },
        CapabilityRow { description: "operational: lookup", entitlements: &[OPERATIONAL], scope: OPERATIONAL, route: LOOKUP, expected: Allowed },
        CapabilityRow { description: "operational: ladder", entitlements: &[OPERATIONAL], scope: OPERATIONAL, route: LADDER, expected: Allowed },
        CapabilityRow { description: "operational: pathway", entitlements: &[OPERATIONAL], scope: OPERATIONAL, route: PATHWAY, expected: Denied(PROFESSIONAL) },
        CapabilityRow { description: "developer: search", entitlements: &["rtopacks:developer"], scope: "rtopacks:developer", route: SEARCH, expected: Allowed },
        CapabilityRow { description: "developer: lookup", entitlements: &["rtopacks:developer"], scope: "rtopacks:developer", route: LOOKUP, expected: Allowed },
        CapabilityRow { description: "developer: ladder", entitlements: &["rtopacks:developer"], scope: "rtopacks:developer", route: LADDER, expected: Allowed },
        CapabilityRow { description: "developer: pathway", entitlements: &["rtopacks:developer"], scope: "rtopacks:developer", route: PATHWAY, expected: Denied(PROFESSIONAL) },
        CapabilityRow { description: "developer holder asking for operational: search", entitlements: &["rtopacks:developer"], scope: OPERATIONAL, route: SEARCH, expected: Allowed },
        CapabilityRow { description: "developer holder asking for operational: pathway", entitlements: &["rtopacks:developer"], scope: OPERATIONAL, route: PATHWAY, expected: Denied(PROFESSIONAL) },
        CapabilityRow { description: "professional: search", entitlements: &[PROFESSIONAL], scope: PROFESSIONAL, route: SEARCH, expected: Allowed },
        CapabilityRow { description: "professional: lookup", entitlements: &[PROFESSIONAL], scope: PROFESSIONAL, route: LOOKUP, expected: Allowed },
        CapabilityRow { description: "professional: ladder", entitlements: &[PROFESSIONAL], scope: PROFESSIONAL, route: LADDER, expected: Allowed },
        CapabilityRow { description: "professional: pathway", entitlements: &[PROFESSIONAL], scope: PROFESSIONAL, route: PATHWAY, expected: Allowed },
        CapabilityRow { description: "enterprise: search", entitlements: &["rtopacks:enterprise"], scope: "rtopacks:enterprise", route: SEARCH, expected: Allowed },
        CapabilityRow { description: "enterprise: lookup", entitlements: &["rtopacks:enterprise"], scope: "rtopacks:enterprise", route: LOOKUP, expected: Allowed },
        CapabilityRow { description: "enterprise: ladder", entitlements: &["rtopacks:enterprise"], scope: "rtopacks:enterprise", route: LADDER, expected: Allowed },
        CapabilityRow { description: "enterprise: pathway", entitlements: &["rtopacks:enterprise"], scope: "rtopacks:enterprise", route: PATHWAY, expected: Allowed },
        CapabilityRow { description: "framework only: search", entitlements: &["ucco:framework"], scope: "ucco:framework", route: SEARCH, expected: Denied(OPERATIONAL) },
        CapabilityRow { description: "framework only: lookup", entitlements: &["ucco:framework"], scope: "ucco:framework", route: LOOKUP, expected: Denied(OPERATIONAL) },
        CapabilityRow { description: "framework only: ladder", entitlements: &["ucco:framework"], scope: "ucco:framework", route: LADDER, expected: Denied(OPERATIONAL) },
        CapabilityRow { description: "framework only: pathway", entitlements: &["ucco:framework"], scope: "ucco:framework", route: PATHWAY, expected: Denied(PROFESSIONAL) },
    ];
    let app = spawn_app().await;
    let client = app.scoped_client(USER_SCOPES).await;

    // One user and one token per (entitlements, requested scope), shared by the rows that name them.
    let mut tokens: HashMap<String, String> = HashMap::new();
    for row in &rows {
        let description = row.description;
        let key = format!("{:?} {}", row.entitlements, row.scope);
        if !tokens.contains_key(&key) {
            let email = format!("user{}@example.com", tokens.len());
            let entitled = app.put_entitlements(&email, row.entitlements).await;
            assert_eq!(entitled.status, StatusCode::OK, "{description}: set entitlements, body {}", entitled.text);
            let browser = app.signed_in_browser(&email).await;
            let granted = app.grant_tokens(&browser, &client, &[("scope", row.scope)]).await;
            assert_eq!(granted.body["scope"], row.scope, "{description}: granted scope");
            let token = granted.body["access_token"].as_str().expect("token response has access_token").to_string();
            tokens.insert(key.clone(), token);
        }

        let reply = JsonReply::read(app.get_with_token(row.route, &tokens[&key]).await).await;

        match row.expected {
            Outcome::Allowed => {
                assert_eq!(reply.status, StatusCode::OK, "{description}: status, body {}", reply.text);
            }
            Outcome::Denied(needed) => {
                assert_eq!(reply.status, StatusCode::FORBIDDEN, "{description}: status, body {}", reply.text);
                let challenge = reply.header("www-authenticate");
                assert!(challenge.starts_with("Bearer "), "{description}: challenge scheme in {challenge:?}");
                assert!(challenge.contains("error=\"insufficient_scope\""), "{description}: error in {challenge:?}");
                assert!(challenge.contains(&format!("scope=\"{needed}\"")), "{description}: needed scope in {challenge:?}");
                assert_eq!(reply.body["error"], "insufficient_scope", "{description}: body error");
            }
        }
    }

    app.stop().await;
}

#[actix_web::test]
async fn old_pathway_route_is_404() {
    let app = spawn_app().await;
    let client = app.scoped_client(USER_SCOPES).await;
    app.put_entitlements("pro@example.com", &[PROFESSIONAL]).await;
    let browser = app.signed_in_browser("pro@example.com").await;
    let granted = app.grant_tokens(&browser, &client, &[("scope", PROFESSIONAL)]).await;
    let token = granted.body["access_token"].as_str().unwrap().to_string();

    let with_token = JsonReply::read(app.get_with_token("/v1/pathway?from=BSB30120&to=BSB40120", &token).await).await;
    let without_token = JsonReply::read(app.http.get(app.url("/v1/pathway?from=BSB30120&to=BSB40120")).send().await.unwrap()).await;

    for (description, reply) in [("professional token", &with_token), ("no token", &without_token)] {
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{description}: status, body {}", reply.text);
        assert_eq!(reply.field_names(), ["error", "error_description"], "{description}: body fields, body {}", reply.text);
        let explanation = reply.body["error_description"].as_str().unwrap_or("");
        assert!(explanation.contains("/v1/analytics/pathway"), "{description}: description {explanation:?}");
    }

    app.stop().await;
}

#[actix_web::test]
async fn professional_pathway_lists_units() {
    let app = spawn_app().await;
    let client = app.scoped_client(USER_SCOPES).await;
    app.put_entitlements("pro@example.com", &[PROFESSIONAL]).await;
    let browser = app.signed_in_browser("pro@example.com").await;
    let granted = app.grant_tokens(&browser, &client, &[("scope", PROFESSIONAL)]).await;
    let token = granted.body["access_token"].as_str().unwrap().to_string();

    let reply = JsonReply::read(app.get_with_token(PATHWAY, &token).await).await;

    assert_eq!(reply.status, StatusCode::OK, "body {}", reply.text);
    // BSB40120 shares BSBWHS311, BSBTEC301 and BSBOPS304 with BSB30120, and its other core units are new.
    assert_eq!(reply.body["carried_over"], json!(["BSBWHS311", "BSBTEC301", "BSBOPS304"]), "carried_over, body {}", reply.text);
    assert_eq!(reply.body["core_to_complete"], json!(["BSBFIN401", "BSBLDR411"]), "core_to_complete, body {}", reply.text);

    app.stop().await;
}

#[actix_web::test]
async fn grant_drops_unheld_scopes() {
    let app = spawn_app().await;
    let client = app.scoped_client(USER_SCOPES).await;
    app.put_entitlements("dev@example.com", &["rtopacks:developer"]).await;
    let browser = app.signed_in_browser("dev@example.com").await;
    let pkce = Pkce::new();
    let url = app.authorize_url(&client, &pkce, &[("scope", "rtopacks:professional rtopacks:operational")]);

    let consent = browser.get(&url).await;

    assert_eq!(consent.status, StatusCode::OK, "consent page, body {}", consent.body);
    assert_eq!(listed_scopes(&consent), [OPERATIONAL], "scopes on the consent page");
    let mut fields = consent.hidden_fields();
    fields.push(("decision".into(), "allow".into()));
    let allowed = browser.post_form(&app.url("/oauth/authorize"), &fields).await;
    let back = redirect_target(&allowed, "allow");
    let code = query_value(&back, "code").unwrap_or_else(|| panic!("redirect has no code: {back}"));
    let tokens = JsonReply::read(app.exchange(&client, &code, &pkce.verifier).await).await;
    assert_eq!(tokens.status, StatusCode::OK, "token exchange, body {}", tokens.text);
    assert_eq!(tokens.body["scope"], OPERATIONAL, "token response scope");

    app.stop().await;
}

#[actix_web::test]
async fn no_held_scope_is_access_denied() {
    let app = spawn_app().await;
    let client = app.scoped_client(USER_SCOPES).await;
    let browser = app.signed_in_browser("plain@example.com").await;
    let url = app.authorize_url(&client, &Pkce::new(), &[("scope", "rtopacks:professional ucco:framework")]);

    let refused = browser.get(&url).await;

    let back = redirect_target(&refused, "authorize");
    assert!(back.as_str().starts_with(&client.redirect_uri), "redirected to {back}");
    assert_eq!(query_value(&back, "error").as_deref(), Some("access_denied"), "error in {back}");
    assert_eq!(query_value(&back, "state").as_deref(), Some("xyz-state"), "state in {back}");
    assert_eq!(query_value(&back, "code"), None, "code in {back}");
    assert!(!refused.body.contains("data-scope"), "a consent page was shown");

    app.stop().await;
}

#[actix_web::test]
async fn unrequestable_scope_is_invalid_scope() {
    let app = spawn_app().await;
    let broad = app.scoped_client(USER_SCOPES).await;
    let read_only = app.scoped_client("read").await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let rows = [
        ("unknown scope", &broad, "read rtopacks:bogus"),
        ("scope the client may not request", &read_only, "read rtopacks:operational"),
        ("admin scope", &broad, "ucca:admin"),
    ];

    for (description, client, scope) in rows {
        let page = browser.get(&app.authorize_url(client, &Pkce::new(), &[("scope", scope)])).await;

        let back = redirect_target(&page, description);
        assert!(back.as_str().starts_with(&client.redirect_uri), "{description}: redirected to {back}");
        assert_eq!(query_value(&back, "error").as_deref(), Some("invalid_scope"), "{description}: error in {back}");
        assert_eq!(query_value(&back, "state").as_deref(), Some("xyz-state"), "{description}: state in {back}");
        assert_eq!(query_value(&back, "iss").as_deref(), Some(app.issuer.as_str()), "{description}: iss in {back}");
        assert_eq!(query_value(&back, "code"), None, "{description}: code in {back}");
    }

    app.stop().await;
}

#[actix_web::test]
async fn registration_rejects_admin_scope() {
    let app = spawn_app().await;
    let rows = [("admin alone", "ucca:admin"), ("admin with read", "read ucca:admin")];

    for (description, scope) in rows {
        let reply = JsonReply::read(
            app.register_client(json!({
                "client_name": "Wants admin",
                "redirect_uris": [SCOPED_REDIRECT],
                "scope": scope,
            }))
            .await,
        )
        .await;

        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{description}: status, body {}", reply.text);
        assert_eq!(reply.body["error"], "invalid_client_metadata", "{description}: error");
    }
    let listed = JsonReply::read(app.http.get(format!("{}/ops/clients", app.ops)).bearer_auth(OPS_KEY).send().await.unwrap()).await;
    assert_eq!(listed.body["clients"], json!([]), "a rejected registration left a client behind");

    app.stop().await;
}

#[actix_web::test]
async fn bad_entitlements_change_nothing() {
    let app = spawn_app().await;
    let email = "ada@example.com";
    let set = app.put_entitlements(email, &[OPERATIONAL]).await;
    assert_eq!(set.status, StatusCode::OK, "initial entitlements, body {}", set.text);
    let rows: [(&str, &[&str], &str); 3] = [
        ("admin scope", &["ucca:admin"], "ucca:admin"),
        ("admin among valid scopes", &["rtopacks:developer", "ucca:admin"], "ucca:admin"),
        ("unknown scope", &["rtopacks:bogus"], "rtopacks:bogus"),
    ];

    for (description, scopes, named) in rows {
        let reply = app.put_entitlements(email, scopes).await;

        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{description}: status, body {}", reply.text);
        let explanation = reply.body["error_description"].as_str().unwrap_or("");
        assert!(explanation.contains(named), "{description}: description {explanation:?} names the scope");
        let stored = app.get_entitlements(email).await;
        assert_eq!(stored.status, StatusCode::OK, "{description}: read back, body {}", stored.text);
        assert_eq!(stored.body["scopes"], json!([OPERATIONAL]), "{description}: stored entitlements");
    }

    app.stop().await;
}

#[actix_web::test]
async fn entitlements_reject_bad_email() {
    let app = spawn_app().await;

    for email in ["not-an-email", "ada@localhost"] {
        let reply = app.put_entitlements(email, &[OPERATIONAL]).await;

        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{email}: status, body {}", reply.text);
        assert_eq!(reply.body["error"], "invalid_request", "{email}: error");
    }

    app.stop().await;
}

#[actix_web::test]
async fn remembered_consent_skips_page() {
    let app = spawn_app().await;
    let client = app.scoped_client("read").await;
    let unconsented = app.scoped_client("read").await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let first = app.authorize_allowing(&browser, &client, &Pkce::new(), &[("scope", "read")]).await;
    assert!(query_value(&first, "code").is_some(), "first authorization: {first}");

    let again = browser.get(&app.authorize_url(&client, &Pkce::new(), &[("scope", "read")])).await;
    let again = redirect_target(&again, "second authorization");
    assert!(query_value(&again, "code").is_some(), "second authorization has a code: {again}");
    assert_eq!(query_value(&again, "error"), None, "second authorization error: {again}");

    let forced = browser.get(&app.authorize_url(&client, &Pkce::new(), &[("scope", "read"), ("prompt", "consent")])).await;
    assert_eq!(forced.status, StatusCode::OK, "prompt=consent shows the page, body {}", forced.body);
    assert_eq!(listed_scopes(&forced), ["read"], "prompt=consent: scopes on the page");

    let silent = browser.get(&app.authorize_url(&client, &Pkce::new(), &[("scope", "read"), ("prompt", "none")])).await;
    let silent = redirect_target(&silent, "prompt=none with consent");
    assert!(query_value(&silent, "code").is_some(), "prompt=none with consent has a code: {silent}");

    let unapproved = browser.get(&app.authorize_url(&unconsented, &Pkce::new(), &[("scope", "read"), ("prompt", "none")])).await;
    let unapproved = redirect_target(&unapproved, "prompt=none without consent");
    assert_eq!(query_value(&unapproved, "error").as_deref(), Some("consent_required"), "prompt=none without consent: {unapproved}");
    assert_eq!(query_value(&unapproved, "code"), None, "prompt=none without consent: {unapproved}");

    app.stop().await;
}

#[actix_web::test]
async fn withdrawn_consent_revokes_tokens() {
    let app = spawn_app().await;
    let client = app.scoped_client("read").await;
    let other_client = app.scoped_client("read").await;
    let ada = app.signed_in_browser("ada@example.com").await;
    let bob = app.signed_in_browser("bob@example.com").await;
    let first = app.grant_tokens(&ada, &client, &[("scope", "read")]).await;
    let second = app.grant_tokens(&ada, &client, &[("scope", "read")]).await;
    let ada_elsewhere = app.grant_tokens(&ada, &other_client, &[("scope", "read")]).await;
    let bob_tokens = app.grant_tokens(&bob, &client, &[("scope", "read")]).await;
    let access = |reply: &JsonReply| reply.body["access_token"].as_str().unwrap().to_string();

    let withdrawn = app.withdraw_consent("ada@example.com", &client.id).await;

    assert_eq!(withdrawn.status, StatusCode::NO_CONTENT, "withdraw, body {}", withdrawn.text);
    let rows = [
        ("ada's first grant for the client", access(&first), StatusCode::UNAUTHORIZED),
        ("ada's second grant for the client", access(&second), StatusCode::UNAUTHORIZED),
        ("ada's grant for another client", access(&ada_elsewhere), StatusCode::OK),
        ("bob's grant for the client", access(&bob_tokens), StatusCode::OK),
    ];
    for (description, token, expected) in rows {
        let reply = JsonReply::read(app.get_with_token(SEARCH, &token).await).await;
        assert_eq!(reply.status, expected, "{description}: status, body {}", reply.text);
        if expected == StatusCode::UNAUTHORIZED {
            let challenge = reply.header("www-authenticate");
            assert!(challenge.contains("error=\"invalid_token\""), "{description}: challenge {challenge:?}");
        }
    }
    let refreshed = app.refresh_grant(&client, first.body["refresh_token"].as_str().unwrap(), &[]).await;
    assert_eq!(refreshed.status, StatusCode::BAD_REQUEST, "refresh after withdrawal, body {}", refreshed.text);
    assert_eq!(refreshed.body["error"], "invalid_grant", "refresh after withdrawal");

    let page = ada.get(&app.authorize_url(&client, &Pkce::new(), &[("scope", "read")])).await;
    assert_eq!(page.status, StatusCode::OK, "consent page after withdrawal, body {}", page.body);
    assert_eq!(listed_scopes(&page), ["read"], "scopes on the page after withdrawal");

    let again = app.withdraw_consent("ada@example.com", &client.id).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "second withdrawal, body {}", again.text);

    app.stop().await;
}

#[actix_web::test]
async fn metadata_lists_issuable_scopes() {
    let app = spawn_app().await;

    let metadata = JsonReply::read(app.http.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap()).await;

    assert_eq!(metadata.status, StatusCode::OK, "body {}", metadata.text);
    let mut scopes: Vec<&str> = metadata.body["scopes_supported"].as_array().expect("scopes_supported is a list").iter().filter_map(Value::as_str).collect();
    scopes.sort_unstable();
    let mut expected: Vec<&str> = USER_SCOPES.split(' ').collect();
    expected.sort_unstable();
    assert_eq!(scopes, expected, "scopes_supported");
    assert!(!scopes.contains(&"ucca:admin"), "scopes_supported lists ucca:admin");
    let grant_types = metadata.body["grant_types_supported"].as_array().expect("grant_types_supported is a list");
    assert!(grant_types.contains(&json!("refresh_token")), "grant_types_supported: {grant_types:?}");

    app.stop().await;
}

#[actix_web::test]
async fn resource_metadata_names_rest_api() {
    let app = spawn_app().await;
    let rest_resource = format!("{}/v1", app.issuer);

    for path in ["/.well-known/oauth-protected-resource/v1", "/.well-known/oauth-protected-resource"] {
        let reply = JsonReply::read(app.http.get(app.url(path)).send().await.unwrap()).await;

        assert_eq!(reply.status, StatusCode::OK, "{path}: status, body {}", reply.text);
        assert_eq!(reply.body["resource"], rest_resource.as_str(), "{path}: resource");
        assert_eq!(reply.body["authorization_servers"], json!([app.issuer]), "{path}: authorization_servers");
    }

    app.stop().await;
}

#[actix_web::test]
async fn resource_sets_token_audience() {
    let app = spawn_app().await;
    let client = app.scoped_client("read").await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let rest_resource = format!("{}/v1", app.issuer);

    let granted = app.grant_tokens(&browser, &client, &[("scope", "read"), ("resource", rest_resource.as_str())]).await;

    let token = granted.body["access_token"].as_str().unwrap();
    let described = app.introspect_token(&client, token, Some("access_token")).await;
    assert_eq!(described.body["active"], true, "introspection, body {}", described.text);
    assert_eq!(described.body["aud"], rest_resource.as_str(), "aud");
    assert_eq!(app.get_with_token(SEARCH, token).await.status(), StatusCode::OK, "API call with the bound token");

    app.stop().await;
}

#[actix_web::test]
async fn unknown_resource_is_invalid_target() {
    let app = spawn_app().await;
    let client = app.scoped_client("read").await;
    let browser = app.signed_in_browser("ada@example.com").await;

    let at_authorize = browser.get(&app.authorize_url(&client, &Pkce::new(), &[("resource", FOREIGN_RESOURCE)])).await;

    let back = redirect_target(&at_authorize, "authorize");
    assert_eq!(query_value(&back, "error").as_deref(), Some("invalid_target"), "authorize: error in {back}");
    assert_eq!(query_value(&back, "code"), None, "authorize: code in {back}");

    let pkce = Pkce::new();
    let redirect = app.authorize_allowing(&browser, &client, &pkce, &[]).await;
    let code = query_value(&redirect, "code").unwrap_or_else(|| panic!("redirect has no code: {redirect}"));
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", client.redirect_uri.as_str()),
        ("code_verifier", pkce.verifier.as_str()),
        ("resource", FOREIGN_RESOURCE),
    ];
    let at_token = JsonReply::read(
        app.http.post(app.url("/oauth/token")).basic_auth(&client.id, client.secret.as_ref()).form(&form).send().await.unwrap(),
    )
    .await;
    assert_eq!(at_token.status, StatusCode::BAD_REQUEST, "token: status, body {}", at_token.text);
    assert_eq!(at_token.body["error"], "invalid_target", "token: error");

    // The rejected exchange consumed nothing, so the code still works without the foreign resource.
    let retried = JsonReply::read(app.exchange(&client, &code, &pkce.verifier).await).await;
    assert_eq!(retried.status, StatusCode::OK, "exchange after invalid_target, body {}", retried.text);

    app.stop().await;
}

#[actix_web::test]
async fn cors_preflight_is_allowed() {
    let app = spawn_app().await;
    let origin = "https://app.example";
    let rows = [
        ("token endpoint", "/oauth/token", "POST", None),
        ("server metadata", "/.well-known/oauth-authorization-server", "GET", None),
        ("search with a bearer token", "/v1/search", "GET", Some("authorization")),
    ];

    for (description, path, method, headers) in rows {
        let reply = preflight(&app, path, origin, method, headers).await;

        assert!(reply.status.is_success(), "{description}: status {}, body {}", reply.status, reply.text);
        let allowed_origin = reply.header("access-control-allow-origin");
        assert!(allowed_origin == origin || allowed_origin == "*", "{description}: Access-Control-Allow-Origin {allowed_origin:?}");
        let allowed_methods = reply.header("access-control-allow-methods");
        assert!(allowed_methods.contains(method), "{description}: Access-Control-Allow-Methods {allowed_methods:?}");
    }

    app.stop().await;
}

#[actix_web::test]
async fn cors_exposes_challenge_header() {
    let app = spawn_app().await;

    let reply = JsonReply::read(app.http.get(app.url(SEARCH)).header("origin", "https://app.example").send().await.unwrap()).await;

    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "body {}", reply.text);
    assert!(reply.header("www-authenticate").starts_with("Bearer "), "challenge {:?}", reply.header("www-authenticate"));
    let exposed = reply.header("access-control-expose-headers").to_ascii_lowercase();
    assert!(exposed.split(',').any(|name| name.trim() == "www-authenticate"), "Access-Control-Expose-Headers {exposed:?}");

    app.stop().await;
}

#[actix_web::test]
async fn lookup_withholds_unit_components_below_developer() {
    let app = spawn_app().await;
    app.put_entitlements("ines@example.com", &["rtopacks:operational"]).await;
    app.put_entitlements("joao@example.com", &["rtopacks:developer"]).await;
    let client = app.scoped_client("rtopacks:operational rtopacks:developer").await;
    let token = |email: &'static str, scope: &'static str| {
        let (app, client) = (&app, &client);
        async move {
            let browser = app.signed_in_browser(email).await;
            let reply = app.grant_tokens(&browser, client, &[("scope", scope)]).await;
            reply.body["access_token"].as_str().unwrap().to_string()
        }
    };
    let operational = token("ines@example.com", "rtopacks:operational").await;
    let developer = token("joao@example.com", "rtopacks:developer").await;

    let summary: Value = app.get_with_token("/v1/lookup?code=BSBWHS311", &operational).await.json().await.unwrap();
    assert_eq!(summary["code"], "BSBWHS311");
    assert!(summary.get("elements").is_none(), "an operational token got the elements: {summary}");
    assert!(summary["element_count"].as_u64().is_some_and(|count| count > 0), "{summary}");
    let note = summary["components_withheld"].as_str().unwrap_or_default();
    assert!(note.contains("rtopacks:developer"), "the note names the scope: {note}");

    let full: Value = app.get_with_token("/v1/lookup?code=BSBWHS311", &developer).await.json().await.unwrap();
    let elements = full["elements"].as_array().cloned().unwrap_or_default();
    assert_eq!(elements.len() as u64, summary["element_count"].as_u64().unwrap(), "{full}");
    assert!(elements[0]["performance_criteria"].as_array().is_some_and(|criteria| !criteria.is_empty()), "{full}");
    assert!(full.get("components_withheld").is_none());

    // A qualification carries no components, so every lookup credential sees all of it.
    let qualification: Value = app.get_with_token("/v1/lookup?code=BSB30120", &operational).await.json().await.unwrap();
    assert_eq!(qualification["kind"], "qualification");
    assert!(qualification["core_units"].as_array().is_some_and(|units| !units.is_empty()), "{qualification}");

    app.stop().await;
}

#[actix_web::test]
async fn wrong_method_is_405_and_counts_nothing() {
    let app = spawn_app().await;
    let (_, token) = app.token_for("kofi@example.com").await;
    let remaining = |response: &reqwest::Response| response.headers().get("ratelimit").and_then(|value| value.to_str().ok()).unwrap_or("").to_string();

    let before = app.get_with_token("/v1/search?q=business", &token).await;
    let before = remaining(&before);
    let posted = app.http.post(app.url("/v1/search?q=business")).bearer_auth(&token).send().await.unwrap();
    let reply = JsonReply::read(posted).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(reply.header("allow"), "GET");
    assert_eq!(reply.body["error"], "method_not_allowed", "{}", reply.text);
    let after = app.get_with_token("/v1/search?q=business", &token).await;
    let monthly = |fields: &str| fields.split(',').find(|item| item.contains("\"monthly\"")).unwrap_or("").to_string();
    let used = |fields: &str| monthly(fields).split("r=").nth(1).and_then(|rest| rest.split(';').next()).and_then(|n| n.parse::<u64>().ok());
    assert_eq!(used(&remaining(&after)), used(&before).map(|r| r - 1), "only the second GET was counted: {before} then {}", remaining(&after));

    // Elsewhere, actix-web's empty 405 gets the same JSON body.
    let get_token = JsonReply::read(app.http.get(app.url("/oauth/token")).send().await.unwrap()).await;
    assert_eq!(get_token.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get_token.body["error"], "method_not_allowed", "{}", get_token.text);
    assert!(get_token.body["error_description"].as_str().unwrap_or_default().contains("POST"), "{}", get_token.text);

    // A known path with another method is a 405 naming the methods it serves, on both listeners.
    let rows = [
        (Method::GET, app.url("/auth/email"), "POST"),
        (Method::GET, app.url("/billing/stripe/webhook"), "POST"),
        (Method::DELETE, app.url("/auth/verify"), "GET"),
        (Method::POST, format!("{}/ops/usage", app.ops), "GET"),
        (Method::PUT, format!("{}/ops/keys", app.ops), "POST"),
        (Method::POST, format!("{}/ops/users/ada@example.com/entitlements", app.ops), "PUT"),
    ];
    for (method, url, allowed) in rows {
        let reply = JsonReply::read(app.http.request(method.clone(), &url).bearer_auth(OPS_KEY).send().await.unwrap()).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {url}: {}", reply.text);
        assert!(reply.header("allow").contains(allowed), "{method} {url}: Allow {:?}", reply.header("allow"));
        assert_eq!(reply.body["error"], "method_not_allowed", "{method} {url}: {}", reply.text);
    }
    // HEAD is GET without the body (RFC 9110 section 9.3.2).
    let head = app.http.head(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    let length: usize = head.headers().get("content-length").and_then(|value| value.to_str().ok()).and_then(|value| value.parse().ok()).unwrap_or(0);
    assert!(length > 0, "HEAD announces the length of the GET body");
    assert!(head.bytes().await.unwrap().is_empty(), "HEAD sends no body");

    let unknown = JsonReply::read(app.http.get(app.url("/nowhere")).send().await.unwrap()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["error_description"], "no resource at /nowhere accepts GET");

    app.stop().await;
}
