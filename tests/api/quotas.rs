//! API keys, quotas per customer and plan, rate-limit fields, and usage analytics.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const SHIPPED_CATALOG: &str = include_str!("../../data/catalog.toml");

/// Starts the server with the shipped catalog, the developer plan's limits replaced.
async fn app_with_developer_limits(monthly: u64, burst: Option<u64>) -> (TestApp, tempfile::TempDir) {
    let mut catalog = SHIPPED_CATALOG.replace("call_limit_monthly = 5_000", &format!("call_limit_monthly = {monthly}"));
    catalog = match burst {
        Some(burst) => catalog.replace("burst_per_second = 10", &format!("burst_per_second = {burst}")),
        None => catalog.replace("burst_per_second = 10\n", ""),
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("catalog.toml");
    std::fs::write(&path, catalog).unwrap();
    let app = spawn_app_with(|settings| settings.catalog = Some(path)).await;
    (app, dir)
}

async fn create_key(app: &TestApp, email: &str, tier: &str) -> (String, String) {
    let response = app
        .http
        .post(format!("{}/ops/keys", app.ops))
        .bearer_auth(OPS_KEY)
        .json(&json!({ "user": email, "tier": tier }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    (body["id"].as_str().unwrap().to_string(), body["key"].as_str().unwrap().to_string())
}

/// Signs `email` in with a developer entitlement and returns a developer-scoped access token.
async fn developer_token(app: &TestApp, email: &str) -> String {
    let entitled = app
        .http
        .put(format!("{}/ops/users/{email}/entitlements", app.ops))
        .bearer_auth(OPS_KEY)
        .json(&json!({ "scopes": ["rtopacks:developer"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(entitled.status(), StatusCode::OK);
    let client = app.scoped_client("rtopacks:developer").await;
    let browser = app.signed_in_browser(email).await;
    let pkce = Pkce::new();
    let redirect = app.authorize(&browser, &client, &pkce, &[("scope", "rtopacks:developer")]).await;
    let code = query_value(&redirect, "code").unwrap();
    let body: Value = app.exchange(&client, &code, &pkce.verifier).await.json().await.unwrap();
    assert_eq!(body["scope"], "rtopacks:developer");
    body["access_token"].as_str().unwrap().to_string()
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response.headers().get(name).map(|value| value.to_str().unwrap().to_string()).unwrap_or_default()
}

#[actix_web::test]
async fn key_and_token_of_one_customer_share_a_counter() {
    let (app, _catalog) = app_with_developer_limits(3, None).await;
    let token = developer_token(&app, "lin@example.com").await;
    let (_, key) = create_key(&app, "lin@example.com", "developer").await;

    for (description, credential) in [("token call 1", &token), ("key call 2", &key), ("token call 3", &token)] {
        let response = app.get_with_token("/v1/search?q=business", credential).await;
        assert_eq!(response.status(), StatusCode::OK, "{description}");
    }
    for (description, credential) in [("key past the limit", &key), ("token past the limit", &token)] {
        let response = app.get_with_token("/v1/search?q=business", credential).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{description}");
    }

    let usage: Value = app.http.get(format!("{}/ops/users/lin@example.com/usage", app.ops)).bearer_auth(OPS_KEY).send().await.unwrap().json().await.unwrap();
    let developer = usage["plans"].as_array().unwrap().iter().find(|plan| plan["plan"] == "developer").unwrap();
    assert_eq!(developer["calls_this_month"], 3);
    assert_eq!(developer["limit"], 3);
    assert_eq!(developer["remaining"], 0);
    app.stop().await;
}

#[actix_web::test]
async fn concurrent_calls_never_exceed_the_limit() {
    let (app, _catalog) = app_with_developer_limits(150, None).await;
    let (_, key) = create_key(&app, "kim@example.com", "developer").await;

    let calls = (0..200).map(|_| {
        let request = app.http.get(app.url("/v1/lookup?code=BSB30120")).bearer_auth(&key);
        async move { request.send().await.unwrap().status() }
    });
    let statuses = futures_util::future::join_all(calls).await;

    let granted = statuses.iter().filter(|status| **status == StatusCode::OK).count();
    let refused = statuses.iter().filter(|status| **status == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!(granted, 150, "statuses: {statuses:?}");
    assert_eq!(refused, 50, "statuses: {statuses:?}");
    app.stop().await;
}

#[actix_web::test]
async fn quota_resets_at_the_start_of_the_utc_month() {
    let (app, _catalog) = app_with_developer_limits(2, None).await;
    let (_, key) = create_key(&app, "ana@example.com", "developer").await;
    // START is 2026-01-01T00:00:00Z; 2026-02-01T00:00:00Z is 31 days later.
    let february = START + 31 * 86_400;
    app.clock.set(february - 100);

    for _ in 0..2 {
        assert_eq!(app.get_with_token("/v1/search?q=it", &key).await.status(), StatusCode::OK);
    }
    let refused = app.get_with_token("/v1/search?q=it", &key).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&refused, "retry-after"), "100", "Retry-After counts the seconds to the new month");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");

    app.clock.set(february);
    assert_eq!(app.get_with_token("/v1/search?q=it", &key).await.status(), StatusCode::OK, "a new month starts a new count");
    app.stop().await;
}

#[actix_web::test]
async fn responses_carry_ratelimit_fields() {
    let (app, _catalog) = app_with_developer_limits(5, Some(2)).await;
    let (_, key) = create_key(&app, "ola@example.com", "developer").await;

    let first = app.get_with_token("/v1/search?q=it", &key).await;
    assert_eq!(first.status(), StatusCode::OK);
    let policy = header(&first, "ratelimit-policy");
    assert!(policy.contains("\"monthly\";q=5;w=2678400"), "January has 31 days: {policy}");
    assert!(policy.contains("\"burst\";q=2;w=1"), "{policy}");
    let state = header(&first, "ratelimit");
    assert!(state.contains("\"monthly\";r=4;t=2678400"), "{state}");
    assert!(state.contains("\"burst\";r=1;t=1"), "{state}");

    // The pinned clock does not move, so every call falls in the same second.
    assert_eq!(app.get_with_token("/v1/search?q=it", &key).await.status(), StatusCode::OK);
    let burst = app.get_with_token("/v1/search?q=it", &key).await;
    assert_eq!(burst.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&burst, "retry-after"), "1");
    assert!(header(&burst, "ratelimit").contains("\"burst\";r=0"), "{}", header(&burst, "ratelimit"));

    app.clock.advance(1);
    let next_second = app.get_with_token("/v1/search?q=it", &key).await;
    assert_eq!(next_second.status(), StatusCode::OK, "the refused burst call consumed nothing");
    assert!(header(&next_second, "ratelimit").contains("\"monthly\";r=2;"), "{}", header(&next_second, "ratelimit"));
    app.stop().await;
}

#[actix_web::test]
async fn bad_credential_is_401_even_when_quota_is_spent() {
    let (app, _catalog) = app_with_developer_limits(1, None).await;
    let (_, key) = create_key(&app, "eve@example.com", "developer").await;
    assert_eq!(app.get_with_token("/v1/search?q=it", &key).await.status(), StatusCode::OK);
    assert_eq!(app.get_with_token("/v1/search?q=it", &key).await.status(), StatusCode::TOO_MANY_REQUESTS);

    let mut forged = key.clone();
    forged.replace_range(forged.len() - 4.., "0000");
    let cases = [("forged key", Some(forged.as_str())), ("no credential", None)];
    for (description, credential) in cases {
        let mut request = app.http.get(app.url("/v1/search?q=it"));
        if let Some(credential) = credential {
            request = request.bearer_auth(credential);
        }
        assert_eq!(request.send().await.unwrap().status(), StatusCode::UNAUTHORIZED, "{description}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn keys_rotate_deactivate_and_accept_the_legacy_header() {
    let app = spawn_app().await;
    let ops = |path: &str| format!("{}{path}", app.ops);

    let (id, key) = create_key(&app, "max@example.com", "professional").await;
    assert!(key.starts_with("ucca_professional_"), "the prefix names product and tier: {key}");
    let legacy = app.http.get(app.url("/v1/search?q=it")).header("X-RTOpacks-Key", &key).send().await.unwrap();
    assert_eq!(legacy.status(), StatusCode::OK, "X-RTOpacks-Key is accepted as an alias");

    let listed: Value = app.http.get(ops("/ops/keys?user=max@example.com")).bearer_auth(OPS_KEY).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["keys"][0]["id"], id.as_str());
    assert_eq!(listed["keys"][0]["tier"], "professional");
    assert_eq!(listed["keys"][0]["last_used_at"], START, "the call above updated last use");
    assert!(!listed.to_string().contains(&key), "the listing never shows a key");

    let rotated = app.http.post(ops(&format!("/ops/keys/{id}/rotate"))).bearer_auth(OPS_KEY).send().await.unwrap();
    assert_eq!(rotated.status(), StatusCode::CREATED);
    let rotated: Value = rotated.json().await.unwrap();
    let new_key = rotated["key"].as_str().unwrap().to_string();
    let new_id = rotated["id"].as_str().unwrap().to_string();
    assert_eq!(app.get_with_token("/v1/search?q=it", &key).await.status(), StatusCode::UNAUTHORIZED, "the old key stops at once");
    assert_eq!(app.get_with_token("/v1/search?q=it", &new_key).await.status(), StatusCode::OK);
    let again = app.http.post(ops(&format!("/ops/keys/{id}/rotate"))).bearer_auth(OPS_KEY).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT, "a rotated key cannot be rotated again");

    let deleted = app.http.delete(ops(&format!("/ops/keys/{new_id}"))).bearer_auth(OPS_KEY).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.get_with_token("/v1/search?q=it", &new_key).await.status(), StatusCode::UNAUTHORIZED, "a deactivated key stops at once");

    let cases = [
        ("unknown tier", json!({ "user": "max@example.com", "tier": "platinum" }), StatusCode::BAD_REQUEST),
        ("bad email", json!({ "user": "max", "tier": "developer" }), StatusCode::BAD_REQUEST),
        ("unknown field", json!({ "user": "max@example.com", "tier": "developer", "colour": "red" }), StatusCode::BAD_REQUEST),
        ("empty subscription", json!({ "user": "max@example.com", "tier": "developer", "subscription_id": "" }), StatusCode::BAD_REQUEST),
        (
            "unknown subscription",
            json!({ "user": "max@example.com", "tier": "professional", "subscription_id": "sub_doesnotexist" }),
            StatusCode::BAD_REQUEST,
        ),
        (
            "subscription of a new user",
            json!({ "user": "new@example.com", "tier": "professional", "subscription_id": "sub_doesnotexist" }),
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (description, body, expected) in cases {
        let response = app.http.post(ops("/ops/keys")).bearer_auth(OPS_KEY).json(&body).send().await.unwrap();
        assert_eq!(response.status(), expected, "{description}");
    }
    let listed: Value = app.http.get(ops("/ops/keys?user=max@example.com")).bearer_auth(OPS_KEY).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["keys"].as_array().unwrap().len(), 2, "only the first key and its replacement exist: {listed}");
    let new_user = app.http.get(ops("/ops/keys?user=new@example.com")).bearer_auth(OPS_KEY).send().await.unwrap();
    assert_eq!(new_user.status(), StatusCode::NOT_FOUND, "a rejected key creates no user");
    let missing = app.http.delete(ops("/ops/keys/nosuchkey")).bearer_auth(OPS_KEY).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[actix_web::test]
async fn usage_aggregates_match_the_calls_made() {
    let app = spawn_app().await;
    let (key_id, key) = create_key(&app, "ivy@example.com", "developer").await;
    let calls = [
        ("/v1/search?q=business", StatusCode::OK),
        ("/v1/search?q=technology", StatusCode::OK),
        ("/v1/search?q=safety", StatusCode::OK),
        ("/v1/lookup?code=BSB30120", StatusCode::OK),
        ("/v1/lookup?code=NOPE1", StatusCode::NOT_FOUND),
    ];
    for (path, expected) in calls {
        assert_eq!(app.get_with_token(path, &key).await.status(), expected, "{path}");
    }
    // A call without a credential is counted too, as unauthenticated.
    assert_eq!(app.http.get(app.url("/v1/ladder?code=BSB30120")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // A call refused for its plan still belongs to the key that made it.
    let refused = app.get_with_token("/v1/analytics/pathway?from=BSB20120&to=BSB40120", &key).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let refused: Value = refused.json().await.unwrap();
    let explanation = refused["error_description"].as_str().unwrap_or_default();
    assert!(explanation.contains("developer plan does not include"), "the answer names the key's plan: {explanation}");
    assert!(explanation.contains("professional"), "the message names the plans that include pathway: {explanation}");
    assert!(explanation.contains("enterprise"), "the message names the plans that include pathway: {explanation}");

    let by_tool: Value = app.http.get(format!("{}/ops/usage?group_by=tool", app.ops)).bearer_auth(OPS_KEY).send().await.unwrap().json().await.unwrap();
    let group = |name: &str| by_tool["groups"].as_array().unwrap().iter().find(|group| group["key"] == name).cloned().unwrap_or(Value::Null);
    assert_eq!(group("search")["calls"], 3);
    assert_eq!(group("search")["errors"], 0);
    assert_eq!(group("lookup")["calls"], 2);
    assert_eq!(group("lookup")["errors"], 1);
    assert_eq!(group("ladder")["calls"], 1);
    assert_eq!(group("ladder")["authenticated"], 0);
    assert_eq!(group("pathway")["calls"], 1);
    assert_eq!(group("pathway")["errors"], 1);
    assert_eq!(group("pathway")["authenticated"], 1, "the refused call carried a valid key");

    let by_client: Value = app.http.get(format!("{}/ops/usage?group_by=client", app.ops)).bearer_auth(OPS_KEY).send().await.unwrap().json().await.unwrap();
    let key_group = by_client["groups"].as_array().unwrap().iter().find(|group| group["key"] == key_id.as_str()).unwrap();
    assert_eq!(key_group["calls"], 6, "the key's five served calls and its refused one");
    let nobody = by_client["groups"].as_array().unwrap().iter().find(|group| group["key"] == "(no credential)").unwrap();
    assert_eq!(nobody["calls"], 1, "only the call without a credential lacks a client");
    let by_customer: Value = app.http.get(format!("{}/ops/usage?group_by=customer", app.ops)).bearer_auth(OPS_KEY).send().await.unwrap().json().await.unwrap();
    let customers: Vec<(String, u64)> = by_customer["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| (group["key"].as_str().unwrap_or_default().to_string(), group["calls"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(customers.len(), 2, "one customer and the calls without a credential: {customers:?}");
    assert!(customers.contains(&("(no credential)".to_string(), 1)), "{customers:?}");
    assert!(customers.iter().any(|(customer, calls)| customer != "(no credential)" && *calls == 6), "{customers:?}");

    let csv = app
        .http
        .get(format!("{}/ops/usage?group_by=day", app.ops))
        .bearer_auth(OPS_KEY)
        .header("Accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(header(&csv, "content-type").starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "key,calls,errors,authenticated,average_latency_ms");
    assert!(lines[1].starts_with("2026-01-01,7,3,6,"), "{text}");

    let bad = app.http.get(format!("{}/ops/usage?group_by=planet", app.ops)).bearer_auth(OPS_KEY).send().await.unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    app.stop().await;
}
