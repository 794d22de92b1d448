//! Token revocation (RFC 7009) and introspection (RFC 7662).

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use ucca_actors::secret::Secret;
use ucca_actors::tokens::{Revocation, RevokeToken, TokenKind, TokenStatus, ValidateToken};

use crate::client_auth::authenticate_client;
use crate::errors::{ask, ApiError};
use crate::state::AppState;
use crate::token::read_form;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/oauth/revoke").wrap(crate::cors::for_browser_clients()).route(web::post().to(revoke)))
        .service(web::resource("/oauth/introspect").wrap(crate::cors::for_browser_clients()).route(web::post().to(introspect)));
}

async fn revoke(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let form = read_form(&request, &body)?;
    let client = authenticate_client(&state, request.headers(), &form).await?;
    let Some(token) = form.get("token") else { return Err(ApiError::bad_request("invalid_request", "token is missing")) };
    // `token_type_hint` only speeds up the search (RFC 7009 section 2.1). Access and
    // refresh tokens share one table, so the hint is not needed and is ignored.

    let revocation =
        RevokeToken { token: Secret::from_presented(token).digest(), client_id: client.client_id.clone(), now: state.now() };
    match ask(&state.services.tokens, revocation).await? {
        // An unknown or already revoked token is a success (RFC 7009 section 2.2).
        Revocation::Revoked | Revocation::NothingToRevoke => Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).finish()),
        Revocation::NotOwner => {
            tracing::warn!(target: "ucca::security", client_id = %client.client_id, "client tried to revoke another client's token");
            Err(ApiError::bad_request("unauthorized_client", "the token was not issued to this client"))
        }
    }
}

#[derive(Serialize, Default)]
struct Introspection {
    active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'static str>,
}

async fn introspect(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let form = read_form(&request, &body)?;
    let client = authenticate_client(&state, request.headers(), &form).await?;
    if !client.auth_method.is_confidential() {
        // A public client proves nothing about itself, so it may not read token metadata.
        return Err(ApiError::invalid_client(false));
    }
    let Some(token) = form.get("token") else { return Err(ApiError::bad_request("invalid_request", "token is missing")) };

    let status = ask(&state.services.tokens, ValidateToken { token: Secret::from_presented(token).digest(), now: state.now() }).await?;
    let answer = match status {
        TokenStatus::Active(record) => Introspection {
            token_type: Some(match record.kind {
                TokenKind::Access => "Bearer",
                TokenKind::Refresh => "refresh_token",
            }),
            active: true,
            scope: Some(record.scopes.join(" ")),
            client_id: Some(record.client_id),
            sub: Some(record.user_id),
            aud: Some(record.resource),
            iss: Some(state.issuer().to_string()),
            exp: Some(record.expires_at),
            iat: Some(record.issued_at),
        },
        // Nothing else is disclosed about an inactive token (RFC 7662 section 2.2).
        TokenStatus::Inactive(_) => Introspection::default(),
    };
    Ok(HttpResponse::Ok().insert_header((header::CACHE_CONTROL, "no-store")).json(answer))
}
