//! The ops API, served only on the ops listener and guarded by `OPS_API_KEY`:
//! client registration and management, user entitlements and consents.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, Error, HttpResponse, ResponseError};
use serde::Deserialize;
use serde_json::json;
use ucca_actors::accounts::{normalize_email, FindUser, GetEntitlements, SetEntitlements, WithdrawConsent};
use ucca_actors::clients::{
    check_client_flow, check_client_name, check_client_scopes, check_redirect_uris, AuthMethod, ClientMetadata, ClientRecord, DeactivateClient, Deactivation,
    ListClients, MetadataError, RegisterClient,
};
use ucca_actors::secret::Secret;
use ucca_actors::entitlements::revoke_grants_beyond_held;
use ucca_actors::tokens::{RevokeClientTokens, RevokeUserGrants};

use crate::errors::{ask, ApiError};
use crate::middleware::bearer_token;
use crate::params::json_object;
use crate::state::AppState;

pub fn configure(config: &mut web::ServiceConfig) {
    let scope = web::scope("/ops");
    let scope = crate::ops_keys::configure(scope);
    let scope = crate::ops_usage::configure(scope);
    let scope = crate::billing::configure_ops(scope);
    config.service(
        scope
            .wrap(from_fn(require_ops_key))
            // One resource per path, so a known path with another method gets a 405 rather than a 404.
            .service(web::resource("/clients").post(register_client).get(list_clients))
            .service(web::resource("/clients/{client_id}").delete(deactivate_client))
            .service(web::resource("/users/{email}/entitlements").put(set_entitlements).get(get_entitlements))
            .service(web::resource("/users/{email}/consents/{client_id}").delete(withdraw_consent)),
    );
}

/// Admits a request only with `Authorization: Bearer $OPS_API_KEY`, compared in constant time.
async fn require_ops_key(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return Ok(request.error_response(ApiError::internal()));
    };
    let Some(expected) = state.config.ops_api_key.as_ref() else {
        let error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the ops API is disabled: set the OPS_API_KEY environment variable and restart the server",
        );
        return Ok(request.error_response(error));
    };

    // Comparing digests keeps the comparison constant-time even when the lengths differ.
    let presented = bearer_token(request.headers().get(header::AUTHORIZATION));
    if presented.as_ref().is_some_and(|key| key.digest().matches(&expected.digest())) {
        return Ok(next.call(request).await?.map_into_boxed_body());
    }
    tracing::warn!(target: "ucca::security", path = %request.path(), "ops request without a valid OPS_API_KEY");
    let description = match presented {
        None => "the ops API needs Authorization: Bearer <OPS_API_KEY>",
        Some(_) => "the presented key is not the server's OPS_API_KEY",
    };
    let error = ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", description).with_challenge("Bearer realm=\"ucca-auth ops\"".into());
    Ok(request.into_response(error.error_response()))
}

fn invalid_metadata(description: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_client_metadata", description)
}

fn client_json(client: &ClientRecord) -> serde_json::Value {
    json!({
        "client_id": client.client_id,
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "token_endpoint_auth_method": client.auth_method.as_str(),
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": client.scopes.join(" "),
        "client_id_issued_at": client.created_at,
        "active": client.active,
    })
}

async fn register_client(state: web::Data<AppState>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let metadata: ClientMetadata =
        json_object(&body).map_err(|error| invalid_metadata(format!("the body must be a JSON object of client metadata: {error}")))?;

    let rejected = |error: MetadataError| ApiError::bad_request(error.code(), error.description());
    let name = check_client_name(metadata.client_name.as_deref()).map_err(rejected)?;
    let redirect_uris = metadata.redirect_uris.unwrap_or_default();
    check_redirect_uris(&redirect_uris).map_err(rejected)?;
    // RFC 7591 section 2: the default method is client_secret_basic.
    let method_name = metadata.token_endpoint_auth_method.as_deref().unwrap_or("client_secret_basic");
    let auth_method = AuthMethod::parse(method_name).ok_or_else(|| {
        invalid_metadata(format!("token_endpoint_auth_method {method_name:?} is not supported; use client_secret_basic, client_secret_post or none"))
    })?;
    let scopes = check_client_scopes(metadata.scope.as_deref(), &state.catalog).map_err(rejected)?;
    check_client_flow(metadata.grant_types.as_deref(), metadata.response_types.as_deref()).map_err(rejected)?;

    let registration = RegisterClient { name, redirect_uris, auth_method, scopes, now: state.now() };
    let registered = ask(&state.services.clients, registration).await?;
    let mut answer = client_json(&registered.client);
    if let Some(secret) = registered.secret.as_ref().map(Secret::expose) {
        // Shown this once; only its SHA-256 is stored.
        answer["client_secret"] = json!(secret);
        answer["client_secret_expires_at"] = json!(0);
    }
    Ok(HttpResponse::Created().insert_header((header::CACHE_CONTROL, "no-store")).json(answer))
}

async fn list_clients(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let clients = ask(&state.services.clients, ListClients).await?;
    let listed: Vec<_> = clients.iter().map(client_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "clients": listed })))
}

async fn deactivate_client(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let client_id = path.into_inner();
    match ask(&state.services.clients, DeactivateClient { client_id: client_id.clone() }).await? {
        Deactivation::NotFound => Err(ApiError::not_found(format!("no client has id {client_id}"))),
        Deactivation::Deactivated | Deactivation::AlreadyInactive => {
            // Repeated on an inactive client too, so a crash between the two steps is healed by retrying.
            let revoked = ask(&state.services.tokens, RevokeClientTokens { client_id: client_id.clone() }).await?;
            tracing::info!(target: "ucca::security", client_id = %client_id, revoked, "client tokens revoked");
            Ok(HttpResponse::NoContent().finish())
        }
    }
}

fn email_from_path(raw: &str) -> Result<String, ApiError> {
    normalize_email(raw).ok_or_else(|| ApiError::bad_request("invalid_request", format!("{raw:?} is not a valid email address")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntitlementsBody {
    scopes: Vec<String>,
}

/// Replaces the scopes a user holds, creating the user if needed.
async fn set_entitlements(state: web::Data<AppState>, path: web::Path<String>, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let email = email_from_path(&path)?;
    let request: EntitlementsBody = json_object(&body).map_err(|error| {
        ApiError::bad_request("invalid_request", format!("the body must be {{\"scopes\": [..]}}: {error}"))
    })?;
    let mut scopes: Vec<String> = Vec::new();
    for scope in request.scopes {
        if !state.catalog.is_issuable(&scope) {
            return Err(ApiError::bad_request("invalid_scope", format!("scope {scope} cannot be granted to a user")));
        }
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }

    let user = ask(&state.services.accounts, SetEntitlements { email, scopes: scopes.clone(), now: state.now() }).await?;
    // Grants that carry a scope the user no longer holds end now, rather than living on through refreshes.
    revoke_grants_beyond_held(&state.services, &state.catalog, &user.user_id, state.now()).await.map_err(|error| {
        tracing::error!(%error, user_id = %user.user_id, "grants beyond the new entitlements could not be revoked");
        ApiError::internal()
    })?;
    Ok(HttpResponse::Ok().json(json!({ "user_id": user.user_id, "email": user.email, "scopes": scopes })))
}

async fn get_entitlements(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let email = email_from_path(&path)?;
    let Some(user) = ask(&state.services.accounts, FindUser { email: email.clone() }).await? else {
        return Err(ApiError::not_found(format!("no user has email {email}")));
    };
    let scopes = ask(&state.services.accounts, GetEntitlements { user_id: user.user_id.clone() }).await?;
    Ok(HttpResponse::Ok().json(json!({ "user_id": user.user_id, "email": user.email, "scopes": scopes })))
}

/// Withdraws a user's consent for a client and revokes what the client holds for that user.
async fn withdraw_consent(state: web::Data<AppState>, path: web::Path<(String, String)>) -> Result<HttpResponse, ApiError> {
    let (raw_email, client_id) = path.into_inner();
    let email = email_from_path(&raw_email)?;
    let Some(user) = ask(&state.services.accounts, FindUser { email: email.clone() }).await? else {
        return Err(ApiError::not_found(format!("no user has email {email}")));
    };
    let withdrawn = WithdrawConsent { user_id: user.user_id.clone(), client_id: client_id.clone() };
    let existed = ask(&state.services.accounts, withdrawn).await?;
    // Revoked even when no consent was stored, so a retry after a crash between the steps completes the work.
    let revoked = RevokeUserGrants { user_id: user.user_id.clone(), client_id: Some(client_id.clone()) };
    let grants_revoked = ask(&state.services.tokens, revoked).await?;
    if !existed && grants_revoked == 0 {
        return Err(ApiError::not_found(format!("{email} has no consent for client {client_id}")));
    }
    Ok(HttpResponse::NoContent().finish())
}
