//! Ops endpoints for API keys: create, list, rotate, deactivate.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use ucca_actors::accounts::{normalize_email, EnsureUser, FindUser};
use ucca_actors::apikeys::{ApiKeyRecord, CreateKey, CreatedKey, DeactivateKey, KeyChange, ListKeys, RotateKey, Rotation};

use crate::errors::{ask, ApiError};
use crate::params::Params;
use crate::state::AppState;

pub fn configure(scope: actix_web::Scope) -> actix_web::Scope {
    scope
        .route("/keys", web::post().to(create_key))
        .route("/keys", web::get().to(list_keys))
        .route("/keys/{id}/rotate", web::post().to(rotate_key))
        .route("/keys/{id}", web::delete().to(deactivate_key))
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

    // A key for an address nobody has signed in with yet creates the user.
    let user = ask(&state.services.accounts, EnsureUser { email, now: state.now() }).await?;
    let key = CreateKey { user_id: user.user_id, tier: request.tier, subscription_id: request.subscription_id, now: state.now() };
    Ok(created(&ask(&state.services.api_keys, key).await?))
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
