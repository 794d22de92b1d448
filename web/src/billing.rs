//! The payment-provider webhook (`POST /billing/stripe/webhook`, Stripe's format)
//! and what follows from a subscription change: entitlements, the provisioned
//! client for a corpus customer's systems, revoked grants, and deactivated
//! API keys of ended subscriptions.
//!
//! A bad, missing or expired signature is 400 and changes nothing. A storage
//! failure is 5xx so that the provider retries. No endpoint sets a price or a
//! rate: the ecosystem rate follows from an active corpus subscription alone.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use ucca_actors::accounts::{normalize_email, EnsureUser, GetUser};
use ucca_actors::billing::{Applied, ApplyEvent, BillingEvent, EventKind, GetCustomerBilling, RecordProvisionedClient};
use ucca_actors::clients::{AuthMethod, DeactivateClient, RegisterClient};
use ucca_actors::entitlements::{active_plans, revoke_grants_beyond_held};

use crate::errors::{ask, ApiError};
use crate::state::AppState;

/// How far a signature's timestamp may be from now, in seconds (Stripe's default tolerance).
const SIGNATURE_TOLERANCE: u64 = 300;
/// Redirect URI of a provisioned client: a loopback callback, so a customer's tool can run the code flow on any port.
const PROVISIONED_REDIRECT_URI: &str = "http://127.0.0.1/callback";

pub fn configure(config: &mut web::ServiceConfig) {
    config.service(web::resource("/billing/stripe/webhook").post(stripe_webhook));
}

/// Ops routes: what a customer pays. Read-only by design.
pub fn configure_ops(scope: actix_web::Scope) -> actix_web::Scope {
    scope.service(web::resource("/billing/customers/{email}").get(customer_billing))
}

/// Summarises a customer's subscriptions, active plans and the price of each plan for them.
pub async fn billing_summary(state: &AppState, user_id: &str) -> Result<Value, ApiError> {
    let now = state.now();
    let billing = ask(&state.services.billing, GetCustomerBilling { user_id: user_id.to_string() }).await?;
    let grace = state.services.billing_grace;
    let plans = active_plans(&state.catalog, &billing, now, grace);
    let ecosystem = state.catalog.corpus_plan().is_some_and(|corpus| plans.contains(corpus));

    let prices: Vec<Value> = state
        .catalog
        .plans()
        .filter_map(|(name, plan)| {
            let standard = plan.price_aud_monthly?;
            let pays = state.catalog.price(name, ecosystem)?;
            Some(json!({ "plan": name, "standard_aud_monthly": standard, "ecosystem_aud_monthly": plan.ecosystem_price_aud_monthly, "pays_aud_monthly": pays, "subscribed": plans.contains(name) }))
        })
        .collect();
    let subscriptions: Vec<Value> = billing
        .subscriptions
        .iter()
        .map(|subscription| {
            let plan = subscription.price_ids.iter().find_map(|price| state.catalog.plan_for_price(price));
            json!({
                "id": subscription.id,
                "plan": plan,
                "status": subscription.status,
                "active": subscription.is_active(now, grace),
                "payment_failed_at": subscription.payment_failed_at,
            })
        })
        .collect();
    Ok(json!({
        "ecosystem_rate": ecosystem,
        "active_plans": plans,
        "subscriptions": subscriptions,
        "prices": prices,
        "provisioned_client_id": billing.provisioned_client,
    }))
}

async fn customer_billing(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let email = normalize_email(&raw).ok_or_else(|| bad_request(format!("{raw:?} is not a valid email address")))?;
    let Some(user) = ask(&state.services.accounts, ucca_actors::accounts::FindUser { email: email.clone() }).await? else {
        return Err(ApiError::not_found(format!("no user has email {email}")));
    };
    let mut summary = billing_summary(&state, &user.user_id).await?;
    summary["user"] = json!(email);
    summary["user_id"] = json!(user.user_id);
    Ok(HttpResponse::Ok().json(summary))
}

/// Checks a `Stripe-Signature` header: `t=<unix time>` and one or more
/// `v1=<hex HMAC-SHA256 of "t.payload">`, any of which may match (several
/// appear while a secret is being rolled).
pub fn verify_signature(header: &str, payload: &[u8], secret: &[u8], now: u64) -> Result<(), &'static str> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        match item.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<u64>().ok(),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or("the Stripe-Signature header has no valid timestamp")?;
    if signatures.is_empty() {
        return Err("the Stripe-Signature header has no v1 signature");
    }
    if now.abs_diff(timestamp) > SIGNATURE_TOLERANCE {
        return Err("the signature's timestamp is more than 5 minutes from now");
    }

    for signature in signatures {
        let Ok(expected) = hex::decode(signature) else { continue };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return Err("the webhook secret is unusable") };
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(payload);
        // verify_slice compares in constant time.
        if mac.verify_slice(&expected).is_ok() {
            return Ok(());
        }
    }
    Err("no signature matches the payload")
}

fn bad_request(description: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_request", description)
}

fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str).filter(|value| !value.is_empty())
}

async fn stripe_webhook(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let Some(secret) = state.config.stripe_webhook_secret.as_ref() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the webhook is disabled: set UCCA_STRIPE_WEBHOOK_SECRET and restart the server",
        ));
    };
    let header = request.headers().get("stripe-signature").and_then(|value| value.to_str().ok());
    let Some(header) = header else { return Err(ApiError::bad_request("invalid_signature", "the Stripe-Signature header is missing")) };
    if let Err(reason) = verify_signature(header, &body, secret.expose().as_bytes(), state.now()) {
        tracing::warn!(target: "ucca::security", reason, "webhook signature rejected");
        return Err(ApiError::bad_request("invalid_signature", reason));
    }

    let event: Value = serde_json::from_slice(&body).map_err(|error| bad_request(format!("the event is not JSON: {error}")))?;
    let id = text(&event, "/id").ok_or_else(|| bad_request("the event has no id"))?.to_string();
    let created = event.pointer("/created").and_then(Value::as_u64).ok_or_else(|| bad_request("the event has no created time"))?;
    let event_type = text(&event, "/type").ok_or_else(|| bad_request("the event has no type"))?;
    let object = event.pointer("/data/object").ok_or_else(|| bad_request("the event has no data.object"))?;

    let Some(kind) = event_kind(&state, event_type, object).await? else {
        tracing::debug!(event_id = %id, event_type, "webhook event type not handled");
        return Ok(HttpResponse::Ok().json(json!({ "received": true, "handled": false, "pending": false })));
    };
    let applied = ask(&state.services.billing, ApplyEvent { event: BillingEvent { id: id.clone(), created, kind }, now: state.now() }).await?;
    tracing::info!(event_id = %id, event_type, outcome = ?applied, "webhook event received");

    // A redelivered event is reconciled again, because Stripe redelivers after
    // a 5xx and the first reconciliation may have failed partway.
    if let Applied::Applied { users } | Applied::Duplicate { users } = &applied {
        for user_id in users {
            reconcile(&state, user_id).await?;
        }
    }
    // A held event gets a 2xx response too, because a retry by Stripe would only hold it again.
    let pending = applied == Applied::Pending;
    Ok(HttpResponse::Ok().json(json!({
        "received": true,
        "handled": !pending,
        "pending": pending,
        "duplicate": matches!(applied, Applied::Duplicate { .. }),
    })))
}

/// Translates the event types this server acts on; `None` for any other type.
async fn event_kind(state: &AppState, event_type: &str, object: &Value) -> Result<Option<EventKind>, ApiError> {
    let customer = || text(object, "/customer").map(str::to_string).ok_or_else(|| bad_request("the event object has no customer"));
    let kind = match event_type {
        "checkout.session.completed" => {
            let customer = customer()?;
            let user_id = checkout_user(state, object).await?;
            EventKind::CheckoutCompleted { customer, user_id }
        }
        "customer.subscription.created" | "customer.subscription.updated" | "customer.subscription.deleted" => {
            let subscription = text(object, "/id").ok_or_else(|| bad_request("the subscription has no id"))?.to_string();
            let status = text(object, "/status").ok_or_else(|| bad_request("the subscription has no status"))?.to_string();
            let price_ids = object
                .pointer("/items/data")
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(|item| text(item, "/price/id")).map(str::to_string).collect())
                .unwrap_or_default();
            EventKind::SubscriptionChanged {
                subscription,
                customer: customer()?,
                status,
                price_ids,
                deleted: event_type == "customer.subscription.deleted",
            }
        }
        "invoice.payment_failed" => {
            // Older API versions put the subscription on the invoice, newer ones under parent.subscription_details.
            let subscription = text(object, "/subscription")
                .or_else(|| text(object, "/parent/subscription_details/subscription"))
                .ok_or_else(|| bad_request("the invoice names no subscription"))?
                .to_string();
            EventKind::PaymentFailed { subscription, customer: customer()? }
        }
        _ => return Ok(None),
    };
    Ok(Some(kind))
}

/// Finds the user a checkout belongs to: `client_reference_id` when it names a user, else the customer's email.
async fn checkout_user(state: &AppState, object: &Value) -> Result<String, ApiError> {
    if let Some(reference) = text(object, "/client_reference_id") {
        if let Some(user) = ask(&state.services.accounts, GetUser { user_id: reference.to_string() }).await? {
            return Ok(user.user_id);
        }
    }
    let email = text(object, "/customer_details/email")
        .or_else(|| text(object, "/customer_email"))
        .and_then(normalize_email)
        .ok_or_else(|| bad_request("the checkout names no known client_reference_id and no valid customer email"))?;
    // A paying customer who never signed in gets an account; the first magic link reaches it.
    Ok(ask(&state.services.accounts, EnsureUser { email, now: state.now() }).await?.user_id)
}

/// Brings a user's derived state in line with their subscriptions: a
/// provisioned client while the corpus subscription is active, no grant
/// beyond what they now hold, and no active API key of an ended subscription.
async fn reconcile(state: &AppState, user_id: &str) -> Result<(), ApiError> {
    let now = state.now();
    let billing = ask(&state.services.billing, GetCustomerBilling { user_id: user_id.to_string() }).await?;
    let plans = active_plans(&state.catalog, &billing, now, state.services.billing_grace);
    let corpus_active = state.catalog.corpus_plan().is_some_and(|corpus| plans.contains(corpus));

    if corpus_active && billing.provisioned_client.is_none() {
        provision_client(state, user_id).await?;
    }
    revoke_grants_beyond_held(&state.services, &state.catalog, user_id, now).await.map_err(|error| {
        tracing::error!(%error, user_id, "revoking grants beyond the user's plans or deactivating keys of ended subscriptions failed");
        ApiError::internal()
    })?;
    Ok(())
}

async fn provision_client(state: &AppState, user_id: &str) -> Result<(), ApiError> {
    let user = ask(&state.services.accounts, GetUser { user_id: user_id.to_string() }).await?;
    let name = format!("Systems of {}", user.map_or_else(|| user_id.to_string(), |user| user.email));
    let scope = state.catalog.corpus_plan().and_then(|plan| state.catalog.plan(plan)).map(|plan| plan.scope.clone());
    let registration = RegisterClient {
        name,
        redirect_uris: vec![PROVISIONED_REDIRECT_URI.to_string()],
        auth_method: AuthMethod::ClientSecretBasic,
        scopes: scope.into_iter().collect(),
        now: state.now(),
    };
    // The generated secret is dropped unseen; the customer generates the one they use on the account page.
    let registered = ask(&state.services.clients, registration).await?;
    let client_id = registered.client.client_id;
    let recorded = RecordProvisionedClient { user_id: user_id.to_string(), client_id: client_id.clone() };
    if !ask(&state.services.billing, recorded).await? {
        // A concurrent event provisioned one first; this one is not needed.
        ask(&state.services.clients, DeactivateClient { client_id }).await?;
        return Ok(());
    }
    tracing::info!(target: "ucca::security", user_id, client_id = %client_id, "client provisioned for a corpus subscription");
    Ok(())
}

