//! Ops endpoints for API keys: create, list, rotate, deactivate.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use ucca_actors::accounts::{normalize_email, EnsureUser, FindUser};
use ucca_actors::apikeys::{ApiKeyRecord, CreateKey, CreatedKey, DeactivateKey, KeyChange, ListKeys, RotateKey, Rotation};
use ucca_actors::billing::{GetCustomerBilling, SubscriptionRecord};
use ucca_actors::entitlements::subscription_covers;

use crate::errors::{ask, ApiError};
use crate::params::Params;
use crate::state::AppState;

pub fn configure(scope: actix_web::Scope) -> actix_web::Scope {
    scope
        .service(web::resource("/keys").post(create_key).get(list_keys))
        .service(web::resource("/keys/{id}/rotate").post(rotate_key))
        .service(web::resource("/keys/{id}").delete(deactivate_key))
}

pub fn key_json(record: &ApiKeyRecord) -> serde_json::Value {
    json!({
        "id": record.id,
        "tier": record.tier,
        "subscription_id": record.subscription_id,
        "created_at": record.created_at,
        "last_used_at": record.last_used_at,
        "active": record.active,
    })
}

fn created(created: &CreatedKey) -> HttpResponse {
    let mut body = key_json(&created.record);
    // Shown this once; only its SHA-256 is stored.
    body["key"] = json!(created.key.expose());
    HttpResponse::Created().insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    user: String,
    tier: String,
    subscription_id: Option<String>,
}

async fn create_key(state: web::Data<AppState>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let request: NewKey = serde_json::from_slice(&body).map_err(|error| {
        ApiError::bad_request("invalid_request", format!("the body must be {{\"user\": email, \"tier\": plan, \"subscription_id\": optional}}: {error}"))
    })?;
    let email = normalize_email(&request.user)
        .ok_or_else(|| ApiError::bad_request("invalid_request", format!("user {:?} is not a valid email address", request.user)))?;
    if state.catalog.plan(&request.tier).is_none() {
        let plans: Vec<&str> = state.catalog.plans().map(|(name, _)| name).collect();
        return Err(ApiError::bad_request("invalid_request", format!("tier {:?} is not a plan; use one of {}", request.tier, plans.join(", "))));
    }
    if request.subscription_id.as_ref().is_some_and(|id| id.is_empty() || id.len() > 255) {
        return Err(ApiError::bad_request("invalid_request", "subscription_id must be 1 to 255 characters"));
    }

    if let Some(subscription_id) = &request.subscription_id {
        check_subscription(&state, &email, &request.tier, subscription_id).await?;
    }

    // A key for an address nobody has signed in with yet creates the user.
    let user = ask(&state.services.accounts, EnsureUser { email: email.clone(), now: state.now() }).await?;
    let key = CreateKey { user_id: user.user_id, tier: request.tier, subscription_id: request.subscription_id, now: state.now() };
    let new_key = ask(&state.services.api_keys, key).await?;

    // The subscription may have ended between the check and the creation, after
    // the webhook had deactivated its keys, so the new key is checked again.
    if let Some(subscription_id) = &new_key.record.subscription_id {
        if let Err(rejection) = check_subscription(&state, &email, &new_key.record.tier, subscription_id).await {
            ask(&state.services.api_keys, DeactivateKey { id: new_key.record.id.clone() }).await?;
            return Err(rejection);
        }
    }
    Ok(created(&new_key))
}

/// Checks that `subscription_id` names an active subscription of the user with
/// `email` that covers plan `tier`, so that the key can be tied to it.
async fn check_subscription(state: &AppState, email: &str, tier: &str, subscription_id: &str) -> Result<(), ApiError> {
    let rejected = |description: String| ApiError::bad_request("invalid_request", description);
    let not_theirs = || {
        rejected(format!(
            "{email} has no subscription {subscription_id}. GET /ops/billing/customers/{email} lists their subscriptions."
        ))
    };
    let Some(user) = ask(&state.services.accounts, FindUser { email: email.to_string() }).await? else { return Err(not_theirs()) };
    let billing = ask(&state.services.billing, GetCustomerBilling { user_id: user.user_id }).await?;
    let Some(subscription) = billing.subscriptions.iter().find(|subscription| subscription.id == subscription_id) else {
        return Err(not_theirs());
    };

    if !subscription.is_active(state.now(), state.services.billing_grace) {
        let reason = inactive_reason(subscription);
        return Err(rejected(format!("subscription {subscription_id} is not active because {reason}, so no new key can be tied to it")));
    }
    if !subscription_covers(&state.catalog, subscription, tier) {
        let plans: Vec<&str> = subscription.price_ids.iter().filter_map(|price| state.catalog.plan_for_price(price)).collect();
        let bought = if plans.is_empty() { "no plan of the catalog".to_string() } else { format!("the {} plan", plans.join(" and ")) };
        return Err(rejected(format!(
            "subscription {subscription_id} buys {bought}, which does not cover tier {tier}. Use a tier that the subscription covers."
        )));
    }
    Ok(())
}

/// Explains why a subscription that is not active grants nothing.
fn inactive_reason(subscription: &SubscriptionRecord) -> String {
    if subscription.canceled {
        "it was canceled".to_string()
    } else if !matches!(subscription.status.as_str(), "active" | "trialing" | "past_due") {
        format!("its status is {}", subscription.status)
    } else {
        "a payment failed and the grace period has ended".to_string()
    }
}

async fn list_keys(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(request.query_string().as_bytes());
    let raw = params.get("user").ok_or_else(|| ApiError::bad_request("invalid_request", "user is missing, as in ?user=ada@example.com"))?;
    let email = normalize_email(raw).ok_or_else(|| ApiError::bad_request("invalid_request", format!("user {raw:?} is not a valid email address")))?;
    let Some(user) = ask(&state.services.accounts, FindUser { email: email.clone() }).await? else {
        return Err(ApiError::not_found(format!("no user has email {email}")));
    };
    let keys = ask(&state.services.api_keys, ListKeys { user_id: user.user_id }).await?;
    Ok(HttpResponse::Ok().json(json!({ "user": email, "keys": keys.iter().map(key_json).collect::<Vec<_>>() })))
}

async fn rotate_key(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    match ask(&state.services.api_keys, RotateKey { id: id.clone(), now: state.now() }).await? {
        Rotation::Rotated(key) => Ok(created(&key)),
        Rotation::Inactive => Err(ApiError::new(actix_web::http::StatusCode::CONFLICT, "key_inactive", format!("key {id} is deactivated and cannot be rotated"))),
        Rotation::NotFound => Err(ApiError::not_found(format!("no key has id {id}"))),
    }
}

async fn deactivate_key(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    match ask(&state.services.api_keys, DeactivateKey { id: id.clone() }).await? {
        KeyChange::Done | KeyChange::AlreadyInactive => Ok(HttpResponse::NoContent().finish()),
        KeyChange::NotFound => Err(ApiError::not_found(format!("no key has id {id}"))),
    }
}
