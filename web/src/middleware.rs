//! Middleware: request ids and access logs for every response, and the bearer check for the protected API.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, HttpResponse, ResponseError};
use ucca_actors::secret::{random_id, Secret};
use ucca_actors::tokens::{InactiveReason, TokenRecord, TokenStatus, ValidateToken};

use crate::errors::{ask, ApiError, ErrorBody};
use crate::state::AppState;

/// The id of the current request, as sent in `X-Request-Id`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Assigns a request id, logs the request without its query string (which may
/// carry codes or link tokens), and replaces any 5xx body with one that names
/// only the request id.
pub async fn request_context(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = random_id(8);
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().clone();
    let path = request.path().to_owned();
    let started = Instant::now();

    let span = tracing::info_span!("request", request_id = %id);
    let mut response = tracing::Instrument::instrument(next.call(request), span).await?.map_into_boxed_body();

    let status = response.status();
    if status.is_server_error() {
        let description = format!("internal error; quote request id {id} when reporting it");
        let body = serde_json::to_string(&ErrorBody { error: "server_error", error_description: &description })
            .unwrap_or_default();
        let replacement = HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body);
        response = response.into_response(replacement);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(header::HeaderName::from_static("x-request-id"), value);
    }

    tracing::info!(
        target: "ucca::access",
        request_id = %id,
        %method,
        path = %path,
        status = status.as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request served"
    );
    Ok(response)
}

/// The credential behind a request to a protected API.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token: TokenRecord,
}

/// The scope every operational API route needs for now.
pub const OPERATIONAL_SCOPE: &str = "read";

/// Validates the bearer token for the REST surface, checks its resource and
/// scope, and stores the [`Principal`] for handlers. This is the one place where
/// the operational API checks credentials.
pub async fn require_bearer(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        tracing::error!("application state missing in bearer middleware");
        return Ok(request.error_response(ApiError::internal()));
    };

    match authenticate(&state, &request).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            Ok(next.call(request).await?.map_into_boxed_body())
        }
        Err(error) => Ok(request.into_response(error.error_response())),
    }
}

async fn authenticate(state: &AppState, request: &ServiceRequest) -> Result<Principal, ApiError> {
    let challenge = BearerChallenge { state };

    // Tokens in the query string are not accepted (OAuth 2.1 section 5.2), so only the header counts.
    let Some(token) = bearer_token(request.headers().get(header::AUTHORIZATION)) else {
        return Err(challenge.missing());
    };
    if !is_token_shaped(&token) {
        return Err(challenge.invalid("the access token is malformed"));
    }

    let status = ask(&state.services.tokens, ValidateToken { token: token.digest(), now: state.now() }).await?;
    let record = match status {
        TokenStatus::Active(record) => record,
        TokenStatus::Inactive(InactiveReason::Expired) => return Err(challenge.invalid("the access token expired")),
        TokenStatus::Inactive(InactiveReason::Revoked) => return Err(challenge.invalid("the access token was revoked")),
        TokenStatus::Inactive(InactiveReason::Unknown) => return Err(challenge.invalid("the access token is not recognised")),
    };
    if record.resource != state.derived.rest_resource {
        return Err(challenge.invalid("the access token was issued for another resource"));
    }
    if !record.scopes.iter().any(|scope| scope == OPERATIONAL_SCOPE) {
        return Err(challenge.insufficient_scope(OPERATIONAL_SCOPE));
    }
    Ok(Principal { token: record })
}

/// Extracts the token from `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 7235 section 2.1).
pub fn bearer_token(value: Option<&HeaderValue>) -> Option<Secret> {
    let value = value?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then(|| Secret::from_presented(token))
}

/// Access tokens are 96 lowercase hex characters; anything else cannot be one, so it is rejected without a lookup.
fn is_token_shaped(token: &Secret) -> bool {
    let text = token.expose();
    text.len() == 96 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Builds RFC 6750 section 3 challenges that point at the resource metadata (RFC 9728 section 5.1).
struct BearerChallenge<'a> {
    state: &'a AppState,
}

impl BearerChallenge<'_> {
    fn metadata(&self) -> String {
        format!("resource_metadata=\"{}\"", self.state.rest_resource_metadata_url())
    }

    /// No credential was sent, so the challenge carries no error code (RFC 6750 section 3.1).
    fn missing(&self) -> ApiError {
        ApiError::new(actix_web::http::StatusCode::UNAUTHORIZED, "unauthorized", "this API needs an access token: send Authorization: Bearer <token>")
            .with_challenge(format!("Bearer realm=\"ucca-auth\", {}", self.metadata()))
    }

    fn invalid(&self, description: &str) -> ApiError {
        ApiError::new(actix_web::http::StatusCode::UNAUTHORIZED, "invalid_token", description).with_challenge(format!(
            "Bearer realm=\"ucca-auth\", error=\"invalid_token\", error_description=\"{description}\", {}",
            self.metadata()
        ))
    }

    fn insufficient_scope(&self, scope: &str) -> ApiError {
        ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("this call needs the scope {scope}"),
        )
        .with_challenge(format!(
            "Bearer realm=\"ucca-auth\", error=\"insufficient_scope\", scope=\"{scope}\", {}",
            self.metadata()
        ))
    }
}
