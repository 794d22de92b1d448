//! Client self-registration, for clients that have no operator: dynamic
//! registration at `POST /oauth/register` (RFC 7591), and client ID metadata
//! documents, where the client id is the https URL of the client's metadata.
//! Self-registered clients are always public (PKCE, no secret), may use only
//! https or loopback http redirect URIs, are limited per IP address, and expire
//! after 90 days without use. Operator registration through the ops API is not
//! handled here.

pub mod metadata_document;

use std::time::Instant;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use ucca_actors::clients::{
    check_client_flow, check_client_name, check_client_scopes, check_redirect_uris, AdmitSelfRegistration, ClientMetadata, MetadataError, RegisterSelfClient,
    SelfRegistrationKind, TouchClient,
};
use ucca_actors::ratelimit::Admission;

use crate::errors::{ask, ApiError};
use crate::pages::message_page;
use crate::params::json_object;
use crate::state::{client_ip, AppState};

/// Name given to a dynamically registered client that sends no `client_name`.
const UNNAMED_CLIENT: &str = "Unnamed application";

pub fn configure(config: &mut web::ServiceConfig) {
    config.service(web::resource("/oauth/register").wrap(crate::cors::for_browser_clients()).route(web::post().to(register)));
}

fn metadata_error(error: MetadataError) -> ApiError {
    ApiError::bad_request(error.code(), error.description().to_string())
}

/// Lists the scopes a self-registered client may request: every issuable scope.
/// A token still carries only the scopes its user has and approves, and step-up
/// authorization needs scopes beyond those first requested.
pub(crate) fn self_registered_scopes(state: &AppState) -> Vec<String> {
    state.catalog.issuable_scopes().map(str::to_string).collect()
}

/// `POST /oauth/register`: registers a public client (RFC 7591 section 3).
async fn register(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    if !state.config.dynamic_registration {
        return Err(ApiError::not_found("dynamic client registration is disabled on this server"));
    }
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    if !content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return Err(ApiError::bad_request("invalid_client_metadata", "the body must be application/json"));
    }
    let metadata: ClientMetadata = json_object(&body).map_err(|error| {
        ApiError::bad_request("invalid_client_metadata", format!("the body must be a JSON object of client metadata: {error}"))
    })?;

    let name = match metadata.client_name.as_deref() {
        None => UNNAMED_CLIENT.to_string(),
        Some(name) => check_client_name(Some(name)).map_err(metadata_error)?,
    };
    let redirect_uris = metadata.redirect_uris.unwrap_or_default();
    check_redirect_uris(&redirect_uris).map_err(metadata_error)?;
    // RFC 7591 section 3.2.1 lets the server replace a requested value. A secret-based
    // method is registered as `none`, which the response reports, because a client
    // with no operator cannot keep a secret safe.
    let requested_method = metadata.token_endpoint_auth_method.as_deref().unwrap_or("none");
    if !matches!(requested_method, "none" | "client_secret_basic" | "client_secret_post") {
        return Err(ApiError::bad_request(
            "invalid_client_metadata",
            format!("token_endpoint_auth_method {requested_method:?} is not supported; self-registered clients use none, with PKCE"),
        ));
    }
    check_client_scopes(metadata.scope.as_deref(), &state.catalog).map_err(metadata_error)?;
    check_client_flow(metadata.grant_types.as_deref(), metadata.response_types.as_deref()).map_err(metadata_error)?;

    let ip = caller_ip(&state, &request);
    match ask(&state.services.clients, AdmitSelfRegistration { ip, kind: SelfRegistrationKind::Dynamic, now: state.now() }).await? {
        Admission::Admitted => {}
        Admission::Limited { until } => {
            tracing::warn!(target: "ucca::security", %ip, "dynamic registration limit reached");
            let retry_after = until.saturating_sub(state.now()).max(1);
            let error = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many registrations from this address; retry later");
            let mut response = actix_web::ResponseError::error_response(&error);
            if let Ok(value) = HeaderValue::from_str(&retry_after.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return Ok(response);
        }
    }

    let registration = RegisterSelfClient { name, redirect_uris, scopes: self_registered_scopes(&state), now: state.now() };
    let client = ask(&state.services.clients, registration).await?;
    let answer = json!({
        "client_id": client.client_id,
        "client_id_issued_at": client.created_at,
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": client.scopes.join(" "),
    });
    Ok(HttpResponse::Created().insert_header((header::CACHE_CONTROL, "no-store")).json(answer))
}

fn caller_ip(state: &AppState, request: &HttpRequest) -> std::net::IpAddr {
    let forwarded_for = request.headers().get("x-forwarded-for").and_then(|value| value.to_str().ok());
    let peer = request.peer_addr().map(|address| address.ip());
    // Without a peer address (never the case on a TCP listener) every such caller shares one bucket.
    client_ip(peer, forwarded_for, &state.config.trusted_proxies).unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]))
}

/// Prepares an authorization request's client: a URL client id is stored
/// from a fresh copy of its metadata document before the client is looked up.
pub async fn prepare_client(state: &AppState, request: &HttpRequest, client_id: &str) -> Result<(), DocumentRefusal> {
    if metadata_document::is_url_client_id(client_id) {
        metadata_document::ensure_client(state, client_id, caller_ip(state, request)).await?;
    }
    Ok(())
}

/// Records a use of a client, fire and forget: a lost touch only lets the client expire sooner.
pub fn touch(state: &AppState, client_id: String) {
    state.services.clients.do_send(TouchClient { client_id, now: state.now() });
}

/// The reason an authorization request from a metadata-document client cannot go on, shown as a page.
#[derive(Debug)]
pub enum DocumentRefusal {
    Disabled,
    InvalidClientId(String),
    Unusable(String),
    RateLimited,
    Internal,
}

impl DocumentRefusal {
    pub fn page(&self) -> HttpResponse {
        let title = "Authorization request rejected";
        match self {
            DocumentRefusal::Disabled => message_page(
                StatusCode::BAD_REQUEST,
                title,
                "This server does not accept client IDs that are URLs. Ask the application's developer for a registered client.",
            ),
            DocumentRefusal::InvalidClientId(reason) => {
                message_page(StatusCode::BAD_REQUEST, title, &format!("The application's client ID is not a valid metadata document URL: {reason}."))
            }
            DocumentRefusal::Unusable(reason) => message_page(
                StatusCode::BAD_REQUEST,
                title,
                &format!("The application's client ID metadata document could not be used: {reason}."),
            ),
            DocumentRefusal::RateLimited => message_page(
                StatusCode::TOO_MANY_REQUESTS,
                title,
                "Too many applications were looked up from your address in the last hour. Try again later.",
            ),
            DocumentRefusal::Internal => HttpResponse::InternalServerError().finish(),
        }
    }
}

/// Milliseconds since `started`, for logs.
pub(crate) fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
