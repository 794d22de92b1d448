//! Client authentication at the token, revocation and introspection endpoints
//! (RFC 6749 section 2.3): HTTP Basic, form fields, or a bare client id for public clients.
//!
//! Every failure is the same `invalid_client`, so a caller cannot tell an
//! unknown client from a wrong secret or a wrong method.

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ucca_actors::clients::{AuthMethod, ClientRecord, GetClient};
use ucca_actors::secret::Secret;

use crate::errors::{ask, ApiError};
use crate::params::Params;
use crate::state::AppState;

/// What the request presented to identify its client.
enum Presented {
    Basic { client_id: String, secret: Secret },
    Post { client_id: String, secret: Secret },
    Public { client_id: String },
}

/// Identifies and authenticates the calling client.
pub async fn authenticate_client(state: &AppState, headers: &HeaderMap, form: &Params) -> Result<ClientRecord, ApiError> {
    let presented = presented_credentials(headers, form)?;
    let used_basic = matches!(presented, Presented::Basic { .. });
    let (client_id, method, secret) = match presented {
        Presented::Basic { client_id, secret } => (client_id, AuthMethod::ClientSecretBasic, Some(secret)),
        Presented::Post { client_id, secret } => (client_id, AuthMethod::ClientSecretPost, Some(secret)),
        Presented::Public { client_id } => (client_id, AuthMethod::None, None),
    };

    let client = ask(&state.services.clients, GetClient { client_id: client_id.clone() }).await?;
    let authenticated = client.filter(|client| {
        client.active
            && client.auth_method == method
            && secret.as_ref().is_none_or(|secret| client.secret_matches(secret))
    });
    match authenticated {
        Some(client) => Ok(client),
        None => {
            tracing::warn!(target: "ucca::security", client_id = %client_id, method = method.as_str(), "client authentication failed");
            Err(ApiError::invalid_client(used_basic))
        }
    }
}

fn presented_credentials(headers: &HeaderMap, form: &Params) -> Result<Presented, ApiError> {
    let form_id = form.get("client_id");
    let form_secret = form.get("client_secret");

    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let (client_id, secret) = parse_basic(value.to_str().unwrap_or_default()).ok_or_else(|| ApiError::invalid_client(true))?;
        if form_secret.is_some() {
            return Err(ApiError::bad_request("invalid_request", "use one client authentication method, not Basic and client_secret together"));
        }
        if form_id.is_some_and(|id| id != client_id) {
            return Err(ApiError::bad_request("invalid_request", "client_id in the body differs from the Basic credentials"));
        }
        return Ok(Presented::Basic { client_id, secret });
    }

    match (form_id, form_secret) {
        (Some(client_id), Some(secret)) => {
            Ok(Presented::Post { client_id: client_id.to_string(), secret: Secret::from_presented(secret) })
        }
        (Some(client_id), None) => Ok(Presented::Public { client_id: client_id.to_string() }),
        (None, Some(_)) => Err(ApiError::bad_request("invalid_request", "client_secret was sent without client_id")),
        (None, None) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication is required")),
    }
}

/// Parses `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 section 2.3.1).
fn parse_basic(value: &str) -> Option<(String, Secret)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let id = percent_decode(id)?;
    let secret = percent_decode(secret)?;
    (!id.is_empty() && !secret.is_empty()).then(|| (id, Secret::from_presented(secret)))
}

fn percent_decode(text: &str) -> Option<String> {
    // form_urlencoded also turns '+' into a space, which is what the RFC's form encoding means.
    let encoded = format!("v={text}");
    let mut pairs = url::form_urlencoded::parse(encoded.as_bytes()).into_owned();
    pairs.next().map(|(_, value)| value)
}
