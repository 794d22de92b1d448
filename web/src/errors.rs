//! Error types of the web layer and the one place that maps them to HTTP status, headers and body.

use std::fmt::Display;

use actix::dev::ToEnvelope;
use actix::{Actor, Addr, Handler, MailboxError, Message};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// The JSON error body used everywhere: `{"error", "error_description"}` (RFC 6749 section 5.2).
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub error_description: &'a str,
}

/// A JSON error answer with a code from the relevant RFC.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
    /// Extra header, such as a `WWW-Authenticate` challenge.
    pub challenge: Option<(header::HeaderName, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> ApiError {
        ApiError { status, code, description: description.into(), challenge: None }
    }

    pub fn bad_request(code: &'static str, description: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, description)
    }

    pub fn not_found(description: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", description)
    }

    /// `invalid_client` (RFC 6749 section 5.2): always 401, with a Basic challenge when the client tried Basic.
    pub fn invalid_client(used_basic: bool) -> ApiError {
        let mut error = ApiError::new(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
        if used_basic {
            error.challenge = Some((header::WWW_AUTHENTICATE, "Basic realm=\"ucca-auth\"".into()));
        }
        error
    }

    pub fn internal() -> ApiError {
        // The request-id middleware replaces this body with one that names the request id.
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal error")
    }

    pub fn with_challenge(mut self, value: String) -> ApiError {
        self.challenge = Some((header::WWW_AUTHENTICATE, value));
        self
    }
}

impl Display for ApiError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} ({}): {}", self.code, self.status.as_u16(), self.description)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if let Some((name, value)) = &self.challenge {
            response.insert_header((name.clone(), value.as_str()));
        }
        response.json(ErrorBody { error: self.code, error_description: &self.description })
    }
}

/// A failure inside the server: logged where it happens, shown to the client only as a request id.
#[derive(Debug)]
pub struct Internal;

impl From<Internal> for ApiError {
    fn from(_: Internal) -> ApiError {
        ApiError::internal()
    }
}

/// Sends a message to an actor and flattens mailbox and actor errors into [`Internal`], logging the cause.
pub async fn ask<A, M, T, E>(address: &Addr<A>, message: M) -> Result<T, Internal>
where
    A: Actor + Handler<M>,
    A::Context: ToEnvelope<A, M>,
    M: Message<Result = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Display + Send + 'static,
{
    match address.send(message).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(error)) => {
            tracing::error!(%error, message = std::any::type_name::<M>(), "actor reported an error");
            Err(Internal)
        }
        Err(error) => {
            log_mailbox_error::<M>(error);
            Err(Internal)
        }
    }
}

fn log_mailbox_error<M>(error: MailboxError) {
    tracing::error!(%error, message = std::any::type_name::<M>(), "actor mailbox failed");
}
