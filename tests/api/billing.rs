//! The payment webhook in Stripe's format, signed here with the real scheme:
//! subscriptions grant plans, the ecosystem rate follows the corpus
//! subscription, and ended subscriptions revoke what depended on them.

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::Sha256;
use ucca_actors::secret::Secret;

use crate::helpers::*;

const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef";
const EMAIL: &str = "bea@example.com";
const CUSTOMER: &str = "cus_TEST123";
const CORPUS_PRICE: &str = "price_ucca_corpus";
const DEVELOPER_PRICE: &str = "price_ucca_developer_standard";

async fn billing_app() -> TestApp {
    spawn_app_with(|settings| settings.stripe_webhook_secret = Some(Secret::from_presented(WEBHOOK_SECRET))).await
}

/// A `Stripe-Signature` header for `payload` signed at `timestamp` with `secret`.
fn signature(payload: &str, secret: &str, timestamp: u64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.{payload}").as_bytes());
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

fn event(id: &str, event_type: &str, created: u64, object: Value) -> String {
    json!({ "id": id, "object": "event", "type": event_type, "created": created, "livemode": false, "data": { "object": object } }).to_string()
}

fn checkout(id: &str, created: u64) -> String {
    checkout_for(id, created, CUSTOMER, EMAIL)
}

fn checkout_for(id: &str, created: u64, customer: &str, email: &str) -> String {
    let object = json!({ "id": "cs_test_1", "object": "checkout.session", "customer": customer, "customer_details": { "email": email }, "mode": "subscription" });
    event(id, "checkout.session.completed", created, object)
}

fn subscription(id: &str, event_type: &str, created: u64, subscription: &str, status: &str, price: &str) -> String {
    subscription_for(id, event_type, created, CUSTOMER, subscription, status, price)
}

fn subscription_for(id: &str, event_type: &str, created: u64, customer: &str, subscription: &str, status: &str, price: &str) -> String {
    let object = json!({
        "id": subscription, "object": "subscription", "customer": customer, "status": status,
        "items": { "object": "list", "data": [ { "id": "si_1", "price": { "id": price, "object": "price" } } ] },
    });
    event(id, event_type, created, object)
}

fn payment_failed(id: &str, created: u64, subscription: &str) -> String {
    event(id, "invoice.payment_failed", created, json!({ "id": "in_1", "object": "invoice", "customer": CUSTOMER, "subscription": subscription }))
}

async fn deliver(app: &TestApp, payload: &str) -> reqwest::Response {
    deliver_signed(app, payload, Some(signature(payload, WEBHOOK_SECRET, app.clock_now()))).await
}

async fn deliver_signed(app: &TestApp, payload: &str, header: Option<String>) -> reqwest::Response {
    let mut request = app.http.post(app.url("/billing/stripe/webhook")).header("content-type", "application/json").body(payload.to_string());
    if let Some(header) = header {
        request = request.header("Stripe-Signature", header);
    }
    request.send().await.unwrap()
}

async fn summary(app: &TestApp) -> Value {
    let response = app.http.get(format!("{}/ops/billing/customers/{EMAIL}", app.ops)).bearer_auth(OPS_KEY).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

fn price_paid(summary: &Value, plan: &str) -> u64 {
    summary["prices"].as_array().unwrap().iter().find(|price| price["plan"] == plan).unwrap()["pays_aud_monthly"].as_u64().unwrap()
}

impl TestApp {
    fn clock_now(&self) -> u64 {
        use ucca_actors::Clock;
        self.clock.now()
    }
}

#[actix_web::test]
async fn corpus_subscription_turns_the_ecosystem_rate_on_and_off() {
    let app = billing_app().await;
    assert_eq!(deliver(&app, &checkout("evt_1", START)).await.status(), StatusCode::OK);
    let before = summary(&app).await;
    assert_eq!(before["ecosystem_rate"], false);
    assert_eq!(price_paid(&before, "developer"), 199);
    assert_eq!(price_paid(&before, "professional"), 399);

    let created = subscription("evt_2", "customer.subscription.created", START + 1, "sub_corpus", "active", CORPUS_PRICE);
    assert_eq!(deliver(&app, &created).await.status(), StatusCode::OK);
    let during = summary(&app).await;
    assert_eq!(during["ecosystem_rate"], true);
    assert_eq!(during["active_plans"], json!(["operational"]));
    assert_eq!(price_paid(&during, "developer"), 99, "AUD 100 off developer");
    assert_eq!(price_paid(&during, "professional"), 299, "AUD 100 off professional");
    assert!(during["provisioned_client_id"].is_string(), "a client is provisioned for the customer's systems");

    let deleted = subscription("evt_3", "customer.subscription.deleted", START + 2, "sub_corpus", "canceled", CORPUS_PRICE);
    assert_eq!(deliver(&app, &deleted).await.status(), StatusCode::OK);
    let after = summary(&app).await;
    assert_eq!(after["ecosystem_rate"], false);
    assert_eq!(price_paid(&after, "developer"), 199);
    app.stop().await;
}

#[actix_web::test]
async fn duplicate_events_apply_once() {
    let app = billing_app().await;
    deliver(&app, &checkout("evt_1", START)).await;
    let created = subscription("evt_2", "customer.subscription.created", START + 1, "sub_dev", "active", DEVELOPER_PRICE);
    let first: Value = deliver(&app, &created).await.json().await.unwrap();
    assert_eq!(first["duplicate"], false);
    let deleted = subscription("evt_3", "customer.subscription.deleted", START + 2, "sub_dev", "canceled", DEVELOPER_PRICE);
    deliver(&app, &deleted).await;

    // Redelivering the creation must not bring the subscription back.
    let again = deliver(&app, &created).await;
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["duplicate"], true);
    assert_eq!(summary(&app).await["active_plans"], json!([]));
    app.stop().await;
}

#[actix_web::test]
async fn late_update_never_revives_a_deleted_subscription() {
    let app = billing_app().await;
    deliver(&app, &checkout("evt_1", START)).await;
    let cases = [
        ("deleted", subscription("evt_del", "customer.subscription.deleted", START + 20, "sub_1", "canceled", DEVELOPER_PRICE)),
        ("older update", subscription("evt_old", "customer.subscription.updated", START + 10, "sub_1", "active", DEVELOPER_PRICE)),
        ("same-second update", subscription("evt_same", "customer.subscription.updated", START + 20, "sub_1", "active", DEVELOPER_PRICE)),
    ];
    for (description, payload) in cases {
        assert_eq!(deliver(&app, &payload).await.status(), StatusCode::OK, "{description}");
        let state = summary(&app).await;
        assert_eq!(state["active_plans"], json!([]), "after {description}");
        assert_eq!(state["subscriptions"][0]["status"], "canceled", "after {description}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn bad_signatures_are_rejected_and_change_nothing() {
    let app = billing_app().await;
    deliver(&app, &checkout("evt_1", START)).await;
    let payload = subscription("evt_2", "customer.subscription.created", START + 1, "sub_corpus", "active", CORPUS_PRICE);
    let now = app.clock_now();
    let cases = [
        ("missing header", None),
        ("wrong secret", Some(signature(&payload, "whsec_other", now))),
        ("expired timestamp", Some(signature(&payload, WEBHOOK_SECRET, now - 301))),
        ("future timestamp", Some(signature(&payload, WEBHOOK_SECRET, now + 301))),
        ("no v1 signature", Some(format!("t={now},v0=abc"))),
        ("signature of other payload", Some(signature(&payload.replace("active", "trialing"), WEBHOOK_SECRET, now))),
        ("garbage", Some("not a signature".to_string())),
    ];
    for (description, header) in cases {
        let response = deliver_signed(&app, &payload, header).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{description}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_signature", "{description}");
    }
    assert_eq!(summary(&app).await["subscriptions"], json!([]), "no rejected event changed anything");

    // One of several v1 signatures may match, as while a secret is rolled.
    let rolled = format!("{},v1={}", signature(&payload, WEBHOOK_SECRET, now), "00".repeat(32));
    assert_eq!(deliver_signed(&app, &payload, Some(rolled)).await.status(), StatusCode::OK);
    assert_eq!(summary(&app).await["active_plans"], json!(["operational"]));
    app.stop().await;
}

#[actix_web::test]
async fn events_before_the_checkout_wait_for_the_link() {
    let app = billing_app().await;
    let created = subscription("evt_1", "customer.subscription.created", START, "sub_dev", "active", DEVELOPER_PRICE);
    let held = JsonReply::read(deliver(&app, &created).await).await;
    assert_eq!(held.status, StatusCode::OK, "a held event is answered 2xx so that Stripe does not retry it");
    assert_eq!(held.body["received"], true, "{}", held.text);
    assert_eq!(held.body["handled"], false, "the held event has not taken effect: {}", held.text);
    assert_eq!(held.body["pending"], true, "{}", held.text);
    assert_eq!(held.body["duplicate"], false, "{}", held.text);
    let unknown = app.http.get(format!("{}/ops/billing/customers/{EMAIL}", app.ops)).bearer_auth(OPS_KEY).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND, "no user exists before the checkout");

    let linked = JsonReply::read(deliver(&app, &checkout("evt_2", START + 5)).await).await;
    assert_eq!(linked.status, StatusCode::OK);
    assert_eq!(linked.body["handled"], true, "{}", linked.text);
    assert_eq!(linked.body["pending"], false, "{}", linked.text);
    assert_eq!(summary(&app).await["active_plans"], json!(["developer"]), "the waiting event applied once linked");

    let redelivered = JsonReply::read(deliver(&app, &created).await).await;
    assert_eq!(redelivered.status, StatusCode::OK);
    assert_eq!(redelivered.body["duplicate"], true, "the held event was applied with the checkout: {}", redelivered.text);
    assert_eq!(redelivered.body["pending"], false, "{}", redelivered.text);

    let other_type = event("evt_3", "customer.created", START + 6, json!({ "id": CUSTOMER, "object": "customer" }));
    let ignored = JsonReply::read(deliver(&app, &other_type).await).await;
    assert_eq!(ignored.status, StatusCode::OK);
    assert_eq!(ignored.body["handled"], false, "{}", ignored.text);
    assert_eq!(ignored.body["pending"], false, "an event type this server ignores is not held: {}", ignored.text);
    app.stop().await;
}

#[actix_web::test]
async fn ending_the_corpus_subscription_revokes_its_grants() {
    let app = billing_app().await;
    deliver(&app, &checkout("evt_1", START)).await;
    deliver(&app, &subscription("evt_2", "customer.subscription.created", START + 1, "sub_corpus", "active", CORPUS_PRICE)).await;

    // The subscriber authorizes a client for the operational scope the subscription grants.
    let client = app.scoped_client("rtopacks:operational").await;
    let browser = app.signed_in_browser(EMAIL).await;
    let pkce = Pkce::new();
    let redirect = app.authorize(&browser, &client, &pkce, &[("scope", "rtopacks:operational")]).await;
    let tokens: Value = app.exchange(&client, &query_value(&redirect, "code").unwrap(), &pkce.verifier).await.json().await.unwrap();
    assert_eq!(tokens["scope"], "rtopacks:operational");
    let token = tokens["access_token"].as_str().unwrap();
    assert_eq!(app.get_with_token("/v1/search?q=it", token).await.status(), StatusCode::OK);

    deliver(&app, &subscription("evt_3", "customer.subscription.deleted", START + 2, "sub_corpus", "canceled", CORPUS_PRICE)).await;
    assert_eq!(app.get_with_token("/v1/search?q=it", token).await.status(), StatusCode::UNAUTHORIZED, "the grant ended with the subscription");
    app.stop().await;
}

#[actix_web::test]
async fn failed_payment_ends_the_plan_after_the_grace_period() {
    let app = billing_app().await;
    deliver(&app, &checkout("evt_1", START)).await;
    deliver(&app, &subscription("evt_2", "customer.subscription.created", START + 1, "sub_dev", "active", DEVELOPER_PRICE)).await;
    assert_eq!(deliver(&app, &payment_failed("evt_3", START + 2, "sub_dev")).await.status(), StatusCode::OK);

    app.clock.advance(7 * 86_400 - 10);
    assert_eq!(summary(&app).await["active_plans"], json!(["developer"]), "inside the 7-day grace period");
    app.clock.advance(20);
    assert_eq!(summary(&app).await["active_plans"], json!([]), "after the grace period");
    app.stop().await;
}

const PROFESSIONAL_PRICE: &str = "price_ucca_professional_standard";
const PATHWAY: &str = "/v1/analytics/pathway?from=BSB20120&to=BSB40120";

async fn post_key(app: &TestApp, body: Value) -> JsonReply {
    JsonReply::read(app.http.post(format!("{}/ops/keys", app.ops)).bearer_auth(OPS_KEY).json(&body).send().await.unwrap()).await
}

/// Creates a key for `EMAIL` and returns its id and secret.
async fn key_for(app: &TestApp, tier: &str, subscription_id: Option<&str>) -> (String, String) {
    let created = post_key(app, json!({ "user": EMAIL, "tier": tier, "subscription_id": subscription_id })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{tier} key on {subscription_id:?}: {}", created.text);
    assert_eq!(created.body["subscription_id"], json!(subscription_id));
    (created.body["id"].as_str().unwrap().to_string(), created.body["key"].as_str().unwrap().to_string())
}

/// Maps each of `EMAIL`'s key ids to whether the key is active.
async fn key_states(app: &TestApp) -> Vec<(String, bool)> {
    let listed = app.http.get(format!("{}/ops/keys?user={EMAIL}", app.ops)).bearer_auth(OPS_KEY).send().await.unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    let listed: Value = listed.json().await.unwrap();
    listed["keys"].as_array().unwrap().iter().map(|key| (key["id"].as_str().unwrap().to_string(), key["active"] == true)).collect()
}

#[actix_web::test]
async fn ended_subscriptions_deactivate_their_keys() {
    let app = spawn_app_with(|settings| {
        settings.stripe_webhook_secret = Some(Secret::from_presented(WEBHOOK_SECRET));
        settings.billing_grace_days = 0;
    })
    .await;
    deliver(&app, &checkout("evt_1", START)).await;
    deliver(&app, &subscription("evt_2", "customer.subscription.created", START + 1, "sub_pro", "active", PROFESSIONAL_PRICE)).await;
    deliver(&app, &subscription("evt_3", "customer.subscription.created", START + 1, "sub_dev", "active", DEVELOPER_PRICE)).await;
    deliver(&app, &subscription("evt_4", "customer.subscription.created", START + 1, "sub_corpus", "active", CORPUS_PRICE)).await;

    let (pro_id, pro_key) = key_for(&app, "professional", Some("sub_pro")).await;
    let (dev_id, dev_key) = key_for(&app, "developer", Some("sub_dev")).await;
    let (corpus_id, corpus_key) = key_for(&app, "operational", Some("sub_corpus")).await;
    let (plain_id, plain_key) = key_for(&app, "developer", None).await;
    assert_eq!(app.get_with_token(PATHWAY, &pro_key).await.status(), StatusCode::OK, "the professional key works while paid");

    // With no grace period, a failed payment ends the subscription once the clock reaches it.
    app.clock.advance(10);
    assert_eq!(deliver(&app, &payment_failed("evt_5", START + 2, "sub_pro")).await.status(), StatusCode::OK);
    assert_eq!(app.get_with_token(PATHWAY, &pro_key).await.status(), StatusCode::UNAUTHORIZED, "the key of the unpaid subscription stops");
    for (name, key) in [("developer", &dev_key), ("corpus", &corpus_key), ("plain", &plain_key)] {
        assert_eq!(app.get_with_token("/v1/search?q=it", key).await.status(), StatusCode::OK, "the {name} key keeps working");
    }

    let deleted = subscription("evt_6", "customer.subscription.deleted", START + 3, "sub_dev", "canceled", DEVELOPER_PRICE);
    assert_eq!(deliver(&app, &deleted).await.status(), StatusCode::OK);
    assert_eq!(app.get_with_token("/v1/search?q=it", &dev_key).await.status(), StatusCode::UNAUTHORIZED, "the key of the deleted subscription stops");
    for (name, key) in [("corpus", &corpus_key), ("plain", &plain_key)] {
        assert_eq!(app.get_with_token("/v1/search?q=it", key).await.status(), StatusCode::OK, "the {name} key keeps working");
    }

    let expected = vec![(pro_id.clone(), false), (dev_id.clone(), false), (corpus_id.clone(), true), (plain_id.clone(), true)];
    let mut states = key_states(&app).await;
    states.sort_by_key(|(id, _)| [&pro_id, &dev_id, &corpus_id, &plain_id].iter().position(|known| *known == id));
    assert_eq!(states, expected, "the listing shows which keys were deactivated");

    // After a restart with a 7-day grace period the unpaid subscription counts as
    // active again, so only a stored deactivation keeps its key stopped.
    let clock = app.clock.clone();
    let dir = app.stop().await.expect("spawn_app_with owns a temporary directory");
    let app = spawn_app_in(dir.path(), clock).await;
    assert_eq!(summary(&app).await["active_plans"], json!(["operational", "professional"]), "inside the default grace period");
    assert_eq!(app.get_with_token(PATHWAY, &pro_key).await.status(), StatusCode::UNAUTHORIZED, "the deactivation outlives a restart");
    assert_eq!(app.get_with_token("/v1/search?q=it", &dev_key).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.get_with_token("/v1/search?q=it", &corpus_key).await.status(), StatusCode::OK);
    app.stop().await;
    drop(dir);
}

#[actix_web::test]
async fn ops_keys_check_the_subscription() {
    let app = billing_app().await;
    deliver(&app, &checkout("evt_1", START)).await;
    deliver(&app, &subscription("evt_2", "customer.subscription.created", START + 1, "sub_pro", "active", PROFESSIONAL_PRICE)).await;
    deliver(&app, &subscription("evt_3", "customer.subscription.created", START + 1, "sub_dev", "active", DEVELOPER_PRICE)).await;
    deliver(&app, &subscription("evt_4", "customer.subscription.created", START + 1, "sub_old", "active", DEVELOPER_PRICE)).await;
    deliver(&app, &subscription("evt_5", "customer.subscription.deleted", START + 2, "sub_old", "canceled", DEVELOPER_PRICE)).await;
    deliver(&app, &subscription("evt_6", "customer.subscription.created", START + 1, "sub_unpaid", "active", DEVELOPER_PRICE)).await;
    deliver(&app, &payment_failed("evt_7", START + 2, "sub_unpaid")).await;
    deliver(&app, &checkout_for("evt_8", START + 3, "cus_OTHER", "cy@example.com")).await;
    deliver(&app, &subscription_for("evt_9", "customer.subscription.created", START + 4, "cus_OTHER", "sub_cy", "active", PROFESSIONAL_PRICE)).await;
    app.clock.advance(8 * 86_400);
    deliver(&app, &subscription("evt_10", "customer.subscription.created", app.clock_now(), "sub_incomplete", "incomplete", DEVELOPER_PRICE)).await;

    let cases = [
        ("unknown subscription", EMAIL, "professional", "sub_doesnotexist", "has no subscription sub_doesnotexist"),
        ("another user's subscription", EMAIL, "professional", "sub_cy", "has no subscription sub_cy"),
        ("user without an account", "nobody@example.com", "professional", "sub_pro", "nobody@example.com has no subscription sub_pro"),
        ("deleted subscription", EMAIL, "developer", "sub_old", "is not active because it was canceled"),
        ("grace period over", EMAIL, "developer", "sub_unpaid", "is not active because a payment failed and the grace period has ended"),
        ("incomplete subscription", EMAIL, "developer", "sub_incomplete", "is not active because its status is incomplete"),
        ("higher tier", EMAIL, "professional", "sub_dev", "buys the developer plan, which does not cover tier professional"),
    ];
    for (description, user, tier, subscription_id, message) in cases {
        let rejected = post_key(&app, json!({ "user": user, "tier": tier, "subscription_id": subscription_id })).await;
        assert_eq!(rejected.status, StatusCode::BAD_REQUEST, "{description}: {}", rejected.text);
        assert_eq!(rejected.body["error"], "invalid_request", "{description}");
        let explanation = rejected.body["error_description"].as_str().unwrap_or_default();
        assert!(explanation.contains(message), "{description}: {explanation}");
        assert!(rejected.body.get("key").is_none(), "{description}: no key is shown");
    }
    assert!(key_states(&app).await.is_empty(), "no rejected request created a key");
    let nobody = app.http.get(format!("{}/ops/keys?user=nobody@example.com", app.ops)).bearer_auth(OPS_KEY).send().await.unwrap();
    assert_eq!(nobody.status(), StatusCode::NOT_FOUND, "no rejected request created a user");

    let (_, pro_key) = key_for(&app, "professional", Some("sub_pro")).await;
    assert_eq!(app.get_with_token(PATHWAY, &pro_key).await.status(), StatusCode::OK);
    let (_, lower_key) = key_for(&app, "developer", Some("sub_pro")).await;
    assert_eq!(app.get_with_token("/v1/search?q=it", &lower_key).await.status(), StatusCode::OK, "a professional subscription covers the developer tier");
    assert_eq!(key_states(&app).await.len(), 2);
    app.stop().await;
}

#[actix_web::test]
async fn webhook_and_rates_have_no_manual_door() {
    let disabled = spawn_app().await;
    let response = disabled.http.post(disabled.url("/billing/stripe/webhook")).body("{}").send().await.unwrap();
    let reply = JsonReply::read(response).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "without a secret the webhook is off");
    assert_eq!(reply.body["error"], "temporarily_unavailable");
    let description = reply.body["error_description"].as_str().unwrap_or_default();
    assert!(description.contains("UCCA_STRIPE_WEBHOOK_SECRET"), "the answer says how to switch the webhook on: {description}");
    disabled.stop().await;

    let app = billing_app().await;
    deliver(&app, &checkout("evt_1", START)).await;
    let attempts = [
        ("PUT", format!("{}/ops/billing/customers/{EMAIL}", app.ops)),
        ("POST", format!("{}/ops/billing/customers/{EMAIL}", app.ops)),
        ("POST", format!("{}/ops/billing/rates", app.ops)),
    ];
    for (method, url) in attempts {
        let request = app.http.request(method.parse().unwrap(), &url).bearer_auth(OPS_KEY).json(&json!({ "ecosystem_rate": true }));
        let status = request.send().await.unwrap().status();
        assert!(status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED, "{method} {url}: {status}");
    }
    assert_eq!(summary(&app).await["ecosystem_rate"], false);
    app.stop().await;
}

/// Returns the `<code id="...">` text of a page.
fn code_text(body: &str, id: &str) -> String {
    let marker = format!("<code id=\"{id}\">");
    let start = body.find(&marker).unwrap_or_else(|| panic!("page has no {id}: {body}")) + marker.len();
    body[start..start + body[start..].find('<').unwrap()].to_string()
}

async fn client_authenticates(app: &TestApp, client_id: &str, secret: &str) -> bool {
    let response = app
        .http
        .post(app.url("/oauth/introspect"))
        .basic_auth(client_id, Some(secret))
        .form(&[("token", "0".repeat(96))])
        .send()
        .await
        .unwrap();
    response.status() == StatusCode::OK
}

#[actix_web::test]
async fn account_page_shows_the_price_and_issues_the_client_secret() {
    let app = billing_app().await;
    deliver(&app, &checkout("evt_1", START)).await;
    deliver(&app, &subscription("evt_2", "customer.subscription.created", START + 1, "sub_corpus", "active", CORPUS_PRICE)).await;
    let client_id = summary(&app).await["provisioned_client_id"].as_str().unwrap().to_string();

    let browser = app.signed_in_browser(EMAIL).await;
    let page = browser.get(&app.url("/account")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<tr data-plan=\"developer\"><td>developer</td><td>99</td>"), "developer at the ecosystem rate: {}", page.body);
    assert!(page.body.contains("<tr data-plan=\"professional\"><td>professional</td><td>299</td>"), "professional at the ecosystem rate");
    assert!(page.body.contains(&client_id), "the provisioned client is listed");

    let csrf = page.hidden("csrf_token");
    let first = browser.post_form(&app.url("/account/systems-client/secret"), &[("csrf_token", csrf.as_str())]).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("cache-control"), "no-store");
    assert_eq!(code_text(&first.body, "client-id"), client_id);
    let first_secret = code_text(&first.body, "client-secret");
    assert_eq!(first_secret.len(), 64, "a 32-byte secret in hex");
    assert!(client_authenticates(&app, &client_id, &first_secret).await, "the generated secret authenticates the client");

    let second = browser.post_form(&app.url("/account/systems-client/secret"), &[("csrf_token", csrf.as_str())]).await;
    let second_secret = code_text(&second.body, "client-secret");
    assert!(!client_authenticates(&app, &client_id, &first_secret).await, "a replaced secret stops working");
    assert!(client_authenticates(&app, &client_id, &second_secret).await);

    let forged = Browser::new().post_form(&app.url("/account/systems-client/secret"), &[("csrf_token", csrf.as_str())]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "a form without the browser's CSRF cookie is refused");
    app.stop().await;
}

#[actix_web::test]
async fn account_page_keys_end_with_their_subscription() {
    let app = billing_app().await;
    deliver(&app, &checkout("evt_1", START)).await;
    deliver(&app, &subscription("evt_2", "customer.subscription.created", START + 1, "sub_dev", "active", DEVELOPER_PRICE)).await;
    let browser = app.signed_in_browser(EMAIL).await;

    let created = app.submit(&browser, "/account", "/account/keys", &[("tier", "developer")]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let key = code_text(&created.body, "api-key");
    assert_eq!(app.get_with_token("/v1/search?q=it", &key).await.status(), StatusCode::OK, "the new key works while the plan is paid");

    let deleted = subscription("evt_3", "customer.subscription.deleted", START + 2, "sub_dev", "canceled", DEVELOPER_PRICE);
    assert_eq!(deliver(&app, &deleted).await.status(), StatusCode::OK);
    assert_eq!(app.get_with_token("/v1/search?q=it", &key).await.status(), StatusCode::UNAUTHORIZED, "the key ends with the subscription");

    // With the plan gone, the account page offers no new key on it.
    let refused = app.submit(&browser, "/account", "/account/keys", &[("tier", "developer")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    app.stop().await;
}

#[actix_web::test]
async fn sweeper_ends_keys_when_the_grace_period_runs_out() {
    let app = spawn_app_with(|settings| {
        settings.stripe_webhook_secret = Some(Secret::from_presented(WEBHOOK_SECRET));
        settings.sweep_interval = std::time::Duration::from_millis(50);
    })
    .await;
    deliver(&app, &checkout("evt_1", START)).await;
    deliver(&app, &subscription("evt_2", "customer.subscription.created", START + 1, "sub_dev", "active", DEVELOPER_PRICE)).await;
    let (key_id, key) = key_for(&app, "developer", Some("sub_dev")).await;
    assert_eq!(deliver(&app, &payment_failed("evt_3", START + 2, "sub_dev")).await.status(), StatusCode::OK);

    // Inside the 7-day grace period the key keeps working, sweeps or not.
    app.clock.advance(7 * 86_400 - 10);
    actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(app.get_with_token("/v1/search?q=it", &key).await.status(), StatusCode::OK, "inside the grace period");

    // No webhook arrives when the grace period ends: only the sweeper can notice.
    app.clock.advance(20);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut status = StatusCode::OK;
    while std::time::Instant::now() < deadline {
        status = app.get_with_token("/v1/search?q=it", &key).await.status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a sweep after the grace period ends the key");
    assert_eq!(key_states(&app).await, vec![(key_id, false)]);
    app.stop().await;
}

#[actix_web::test]
async fn grace_period_that_ends_while_stopped_is_enforced_at_start() {
    let configure = |settings: &mut ucca_auth::settings::Settings| {
        settings.stripe_webhook_secret = Some(Secret::from_presented(WEBHOOK_SECRET));
        settings.sweep_interval = std::time::Duration::from_millis(50);
    };
    let app = spawn_app_with(configure).await;
    deliver(&app, &checkout("evt_1", START)).await;
    deliver(&app, &subscription("evt_2", "customer.subscription.created", START + 1, "sub_dev", "active", DEVELOPER_PRICE)).await;
    let (key_id, key) = key_for(&app, "developer", Some("sub_dev")).await;
    assert_eq!(deliver(&app, &payment_failed("evt_3", START + 2, "sub_dev")).await.status(), StatusCode::OK);

    // The grace period runs out while the server is stopped.
    let clock = app.clock.clone();
    let dir = app.stop().await.expect("spawn_app_with owns a temporary directory");
    clock.advance(8 * 86_400);
    let app = spawn_app_configured(dir.path(), clock, configure).await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline && key_states(&app).await == vec![(key_id.clone(), true)] {
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(key_states(&app).await, vec![(key_id, false)], "the first sweep after the start ends the key");
    assert_eq!(app.get_with_token("/v1/search?q=it", &key).await.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
    drop(dir);
}
