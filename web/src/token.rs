//! The token endpoint: exchanges an authorization code (RFC 6749 section 4.1.3,
//! with PKCE, RFC 7636) or a refresh token (section 6) for an access token and
//! a new refresh token.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use ucca_actors::codes::{RedeemCode, Redemption};
use ucca_actors::accounts::GetConsent;
use ucca_actors::clients::ClientRecord;
use ucca_actors::oauth::{is_valid_verifier, parse_scope};
use ucca_actors::secret::Secret;
use ucca_actors::tokens::{Issue, IssueTokens, Refresh, RefreshTokens, RevokeGrant};

use crate::client_auth::authenticate_client;
use crate::errors::{ask, ApiError};
use crate::params::Params;
use crate::state::AppState;

pub fn configure(config: &mut web::ServiceConfig) {
    config.service(web::resource("/oauth/token").wrap(crate::cors::for_browser_clients()).route(web::post().to(token)));
}

#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    refresh_token: &'a str,
    scope: String,
}

fn token_response(state: &AppState, access_token: &Secret, refresh_token: &Secret, scopes: &[String]) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(TokenResponse {
            access_token: access_token.expose(),
            token_type: "Bearer",
            expires_in: state.config.access_ttl,
            refresh_token: refresh_token.expose(),
            scope: scopes.join(" "),
        })
}

/// Reads a form body, rejecting other content types and repeated defined parameters (RFC 6749 section 3.2).
pub fn read_form(request: &HttpRequest, body: &[u8]) -> Result<Params, ApiError> {
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(ApiError::bad_request("invalid_request", "the body must be application/x-www-form-urlencoded"));
    }
    let form = Params::parse(body);
    if let Some(name) = form.repeated(FORM_PARAMETERS) {
        return Err(ApiError::bad_request("invalid_request", format!("parameter {name} is repeated")));
    }
    if form.distinct("resource").len() > 1 {
        // RFC 8707 section 2 allows several; this server binds a grant to one.
        return Err(ApiError::bad_request("invalid_target", "a grant here serves one resource: send a single resource parameter"));
    }
    Ok(form)
}

/// The parameters that RFC 6749, 7009, 7636 and 7662 define for the token,
/// revocation and introspection endpoints, each of which may appear once.
/// `resource` may repeat (RFC 8707) and is checked on its own.
const FORM_PARAMETERS: &[&str] = &[
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "scope",
    "client_id",
    "client_secret",
    "token",
    "token_type_hint",
];

async fn token(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let form = read_form(&request, &body)?;
    let client = authenticate_client(&state, request.headers(), &form).await?;
    // Use keeps a self-registered client from expiring.
    crate::registration::touch(&state, client.client_id.clone());

    match form.get("grant_type") {
        None => Err(ApiError::bad_request("invalid_request", "grant_type is missing")),
        Some("authorization_code") => exchange_code(&state, &form, client).await,
        Some("refresh_token") => refresh(&state, &form, client).await,
        Some(_) => Err(ApiError::bad_request("unsupported_grant_type", "only authorization_code and refresh_token are supported")),
    }
}

async fn exchange_code(state: &AppState, form: &Params, client: ClientRecord) -> Result<HttpResponse, ApiError> {
    let Some(code) = form.get("code") else { return Err(ApiError::bad_request("invalid_request", "code is missing")) };
    let Some(verifier) = form.get("code_verifier") else {
        return Err(ApiError::bad_request("invalid_request", "code_verifier is missing: PKCE is required"));
    };
    if !is_valid_verifier(verifier) {
        return Err(ApiError::bad_request("invalid_request", "code_verifier must be 43 to 128 unreserved characters"));
    }
    let resource = form.get("resource").map(str::to_string);
    if resource.as_deref().is_some_and(|resource| !state.is_known_resource(resource)) {
        return Err(ApiError::bad_request("invalid_target", "resource is not a resource served by this server"));
    }

    let now = state.now();
    let redemption = RedeemCode {
        code: Secret::from_presented(code).digest(),
        client_id: client.client_id.clone(),
        redirect_uri: form.get("redirect_uri").map(str::to_string),
        code_verifier: verifier.to_string(),
        resource,
        now,
    };
    let (grant, grant_id) = match ask(&state.services.codes, redemption).await? {
        Redemption::Redeemed { grant, grant_id } => (grant, grant_id),
        Redemption::AlreadyUsed { grant_id } => {
            // RFC 6749 section 4.1.2: a reused code revokes what it produced.
            tracing::warn!(target: "ucca::security", client_id = %client.client_id, grant_id = %grant_id, "authorization code reused; revoking its grant");
            ask(&state.services.tokens, RevokeGrant { grant_id, now }).await?;
            return Err(ApiError::bad_request("invalid_grant", "the code was already used; tokens issued from it are revoked"));
        }
        Redemption::Expired => {
            let description = format!("the code expired: a code must be exchanged within {} seconds of its issue", ucca_actors::codes::CODE_TTL);
            return Err(ApiError::bad_request("invalid_grant", description));
        }
        Redemption::Unknown => return Err(ApiError::bad_request("invalid_grant", "the code is not valid")),
        Redemption::Mismatch(reason) => return Err(ApiError::bad_request("invalid_grant", reason)),
        Redemption::WrongResource => {
            return Err(ApiError::bad_request("invalid_target", "resource differs from the authorization request"))
        }
    };

    // Consent withdrawn after the code was issued voids the code too.
    let consent = GetConsent { user_id: grant.user_id.clone(), client_id: grant.client_id.clone() };
    let approved = ask(&state.services.accounts, consent).await?.unwrap_or_default();
    if !grant.scopes.iter().all(|scope| approved.contains(scope)) {
        return Err(ApiError::bad_request("invalid_grant", "the user withdrew consent for this application"));
    }

    let issue = IssueTokens {
        grant_id,
        client_id: grant.client_id,
        user_id: grant.user_id,
        scopes: grant.scopes.clone(),
        resource: grant.resource,
        access_ttl: state.config.access_ttl,
        refresh_ttl: state.config.refresh_ttl,
        now,
    };
    match ask(&state.services.tokens, issue).await? {
        Issue::Issued { access_token, refresh_token } => Ok(token_response(state, &access_token, &refresh_token, &grant.scopes)),
        Issue::GrantRevoked => Err(ApiError::bad_request("invalid_grant", "the code was already used")),
    }
}

async fn refresh(state: &AppState, form: &Params, client: ClientRecord) -> Result<HttpResponse, ApiError> {
    let Some(token) = form.get("refresh_token") else {
        return Err(ApiError::bad_request("invalid_request", "refresh_token is missing"));
    };
    let scopes = match form.get("scope") {
        None => None,
        Some(raw) => Some(parse_scope(raw).ok_or_else(|| ApiError::bad_request("invalid_scope", "scope is malformed"))?),
    };
    // The audience cannot change on refresh; a resource other than the grant's is refused by the comparison below.
    let resource = form.get("resource");
    if resource.is_some_and(|resource| !state.is_known_resource(resource)) {
        return Err(ApiError::bad_request("invalid_target", "resource is not a resource served by this server"));
    }

    let refresh = RefreshTokens {
        token: Secret::from_presented(token).digest(),
        client_id: client.client_id.clone(),
        scopes,
        resource: resource.map(str::to_string),
        access_ttl: state.config.access_ttl,
        refresh_ttl: state.config.refresh_ttl,
        now: state.now(),
    };
    match ask(&state.services.tokens, refresh).await? {
        Refresh::Refreshed { access_token, refresh_token, scopes } => Ok(token_response(state, &access_token, &refresh_token, &scopes)),
        Refresh::Refused(reason) => Err(ApiError::bad_request("invalid_grant", reason)),
        Refresh::ScopeExceeded => Err(ApiError::bad_request("invalid_scope", "scope exceeds what the original grant allowed")),
        Refresh::WrongResource => Err(ApiError::bad_request("invalid_target", "resource differs from the one the grant was issued for")),
        Refresh::ReuseDetected => Err(ApiError::bad_request(
            "invalid_grant",
            "the refresh token was already exchanged and its successor used; every token of this grant is now revoked",
        )),
    }
}
