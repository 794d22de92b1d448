//! Middleware: request ids and access logs for every response; and for the
//! protected API, the credential check, quotas with their rate-limit fields,
//! and usage records.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, HttpResponse, ResponseError};
use ucca_actors::apikeys::{last_use_due, looks_like_key, ApiKeyRecord, TouchKey, VerifyKey};
use ucca_actors::catalog::Capability;
use ucca_actors::quotas::{self, Consume, ConsumeForIp, ConsumeForKey, ConsumeForToken, IpDecision, QuotaDecision};
use ucca_actors::secret::{random_id, Secret};
use ucca_actors::tokens::{InactiveReason, TokenKind, TokenStatus, ValidateToken};
use ucca_actors::usage::{CredentialKind, UsageEvent};
use ucca_actors::UnixTime;

use crate::errors::{ask, ApiError, ErrorBody, Internal};
use crate::state::AppState;

/// The id of the current request, as sent in `X-Request-Id`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Assigns a request id, logs the request without its query string (which may
/// carry codes or link tokens), and replaces the body of every 500 with one that
/// names only the request id. Other 5xx responses (503 while a feature is
/// disabled, for example) are deliberate and explain themselves, so they pass unchanged.
pub async fn request_context(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = random_id(8);
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().clone();
    let path = request.path().to_owned();
    // RFC 9110 section 9.3.2: HEAD is GET without the body. Routes are declared
    // for GET only, and the HTTP layer drops the body of a response to a HEAD.
    if request.method() == Method::HEAD {
        request.head_mut().method = Method::GET;
    }
    let started = Instant::now();

    let span = tracing::info_span!("request", request_id = %id);
    let mut response = tracing::Instrument::instrument(next.call(request), span).await?.map_into_boxed_body();

    let status = response.status();
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        let description = format!("internal error; quote request id {id} when reporting it");
        let body = serde_json::to_string(&ErrorBody { error: "server_error", error_description: &description })
            .unwrap_or_default();
        let replacement = HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(body);
        response = response.into_response(replacement);
    } else if status.is_server_error() {
        response = name_request_id(response, &id).await;
    } else if status.is_client_error() && is_plain_text(response.headers()) {
        // actix-web's own rejections (an oversized or unreadable body, say) are plain text.
        response = plain_text_as_json(response).await;
    } else if status == StatusCode::METHOD_NOT_ALLOWED && !response.headers().contains_key(header::CONTENT_TYPE) {
        // actix-web returns an empty 405 for a known path with an unrouted method.
        let allowed = response.headers().get(header::ALLOW).and_then(|value| value.to_str().ok()).unwrap_or("").to_string();
        let replacement = method_not_allowed(&allowed);
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

fn is_plain_text(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).is_some_and(|value| value.starts_with("text/plain"))
}

/// Rewrites a plain-text 4xx into the JSON error body every other error has,
/// with `invalid_request` and the text as its description.
async fn plain_text_as_json(response: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    let status = response.status();
    let (request, answer) = response.into_parts();
    let (head, body) = answer.into_parts();
    let text = actix_web::body::to_bytes(body).await.map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string()).unwrap_or_default();
    let description = if text.is_empty() { status.canonical_reason().unwrap_or("bad request").to_lowercase() } else { text };
    let mut replacement = ApiError::new(status, "invalid_request", description).error_response();
    for (name, value) in head.headers().iter().filter(|(name, _)| *name != header::CONTENT_TYPE && *name != header::CONTENT_LENGTH) {
        replacement.headers_mut().insert(name.clone(), value.clone());
    }
    ServiceResponse::new(request, replacement)
}

/// The 405 for a path that exists but does not serve the request's method (RFC 9110 section 15.5.6).
pub fn method_not_allowed(allowed: &str) -> HttpResponse {
    let description = format!("this path accepts only {allowed}");
    let mut response = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", description).error_response();
    if let Ok(value) = HeaderValue::from_str(allowed) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// Appends the request id to the `error_description` of a deliberate JSON 5xx
/// response (such as a 503 for a disabled feature), so that every 5xx body names
/// the id while keeping its own explanation.
async fn name_request_id(response: ServiceResponse<BoxBody>, id: &str) -> ServiceResponse<BoxBody> {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !is_json {
        return response;
    }
    let (request, answer) = response.into_parts();
    let (head, body) = answer.into_parts();
    let Ok(bytes) = actix_web::body::to_bytes(body).await else {
        return ServiceResponse::new(request, head.set_body(BoxBody::new(())));
    };
    let rewritten = serde_json::from_slice::<serde_json::Value>(&bytes).ok().and_then(|mut value| {
        let description = value.get("error_description")?.as_str()?;
        let description = format!("{description}; quote request id {id} when reporting it");
        value["error_description"] = serde_json::Value::String(description);
        serde_json::to_vec(&value).ok()
    });
    let body = rewritten.map_or_else(|| BoxBody::new(bytes), BoxBody::new);
    ServiceResponse::new(request, head.set_body(body))
}

/// The credential behind a request to a protected API.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user the call belongs to and counts against.
    pub customer: String,
    pub scopes: Vec<String>,
    /// The catalog plan whose quota the call consumes; `None` for credentials outside every plan.
    pub plan: Option<String>,
    pub kind: CredentialKind,
    /// Client id of a token, or key id of an API key.
    pub credential_id: String,
}

/// Checks the request's credential for the REST surface and that it grants
/// `capability`, consumes quota, then calls the handler and records usage.
/// Every REST route passes through here with the capability it declares.
pub async fn require_capability(
    request: ServiceRequest,
    next: Next<BoxBody>,
    capability: Capability,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        tracing::error!("application state missing in the credential middleware");
        return Ok(request.error_response(ApiError::internal()));
    };
    let started = Instant::now();

    let resource = state.derived.rest_resource.clone();
    let (principal, quota) = match authenticate_and_consume(&state, request.headers(), &resource, capability).await {
        Ok(checked) => checked,
        Err(RejectedCall { error, principal }) => {
            record_usage(&state, capability.as_str(), principal.as_deref(), error.status, started);
            return Ok(request.into_response(error.error_response()));
        }
    };

    let limits = match quota {
        Ok(limits) => limits,
        Err(refusal) => {
            record_usage(&state, capability.as_str(), Some(&principal), refusal.status(), started);
            return Ok(request.into_response(refusal.into_response()));
        }
    };

    request.extensions_mut().insert(principal.clone());
    let mut response = next.call(request).await?;
    if let Some(limits) = limits {
        limits.apply(response.headers_mut());
    }
    record_usage(&state, capability.as_str(), Some(&principal), response.status(), started);
    Ok(response)
}

/// Records one call of `tool` (a capability or an MCP tool name) with its outcome; `None` is a keyless call.
pub fn record_usage(state: &AppState, tool: &str, principal: Option<&Principal>, status: StatusCode, started: Instant) {
    let event = UsageEvent {
        at: state.now(),
        tool: tool.to_string(),
        credential: principal.map_or(CredentialKind::None, |principal| principal.kind),
        credential_id: principal.map(|principal| principal.credential_id.clone()),
        customer: principal.map(|principal| principal.customer.clone()),
        status: status.as_u16(),
        latency_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
    };
    state.services.record_usage(event);
}

/// A call rejected before its handler ran, with the credential that made it when
/// one was identified (a valid token with too low a scope, for example), so that
/// the usage record names the caller.
struct RejectedCall {
    error: ApiError,
    principal: Option<Box<Principal>>,
}

impl From<ApiError> for RejectedCall {
    fn from(error: ApiError) -> RejectedCall {
        RejectedCall { error, principal: None }
    }
}

impl From<Internal> for RejectedCall {
    fn from(internal: Internal) -> RejectedCall {
        RejectedCall::from(ApiError::from(internal))
    }
}

/// Rejects `principal` unless it grants `capability`, keeping the principal for the usage record.
fn check_grant(state: &AppState, principal: Principal, resource: &str, capability: Capability) -> Result<Principal, RejectedCall> {
    match require_grant(state, &principal, resource, capability) {
        Ok(()) => Ok(principal),
        Err(error) => Err(RejectedCall { error, principal: Some(Box::new(principal)) }),
    }
}

/// Runs `authenticate` and then `consume_quota`, with the same responses, in
/// one actor round trip for a well-formed credential. An access token goes to
/// the Quotas pool as `ConsumeForToken` and an API key as `ConsumeForKey`, and
/// the pool checks it and counts the call. Malformed and missing credentials
/// take the separate path, which rejects them without a count.
async fn authenticate_and_consume(
    state: &AppState,
    headers: &HeaderMap,
    resource: &str,
    capability: Capability,
) -> Result<(Principal, Result<Option<RateLimits>, RateLimited>), RejectedCall> {
    let challenge = BearerChallenge { metadata_url: state.resource_metadata_url(resource) };
    let now = state.now();
    let credential = presented_credential(headers);
    let (principal, decision) = match credential {
        Some(key) if looks_like_key(key.expose()) => {
            let call = ConsumeForKey { key: key.digest(), capability, catalog: state.catalog.clone(), now };
            let call = ask(&state.services.quotas, call).await?;
            let Some(record) = call.record else {
                return Err(challenge.invalid("the API key is not valid or was deactivated").into());
            };
            if last_use_due(&record, now) {
                // At most once a minute per key, so waiting costs little and a listing right after includes the use.
                if ask(&state.services.api_keys, TouchKey { key: key.digest(), now }).await.is_err() {
                    tracing::warn!(key_id = %record.id, "the key's last use was not recorded");
                }
            }
            (key_principal(state, record, &challenge)?, call.decision)
        }
        Some(token) if is_token_shaped(&token) => {
            let call = ConsumeForToken { token: token.digest(), resource: resource.to_string(), capability, catalog: state.catalog.clone(), now };
            let call = ask(&state.services.quotas, call).await?;
            (token_principal(state, call.status, resource, &challenge)?, call.decision)
        }
        _ => {
            let Some(principal) = identify(state, headers, resource).await? else {
                return Err(challenge.missing().into());
            };
            let principal = check_grant(state, principal, resource, capability)?;
            let quota = consume_quota(state, &principal).await;
            return Ok((principal, quota));
        }
    };

    let principal = check_grant(state, principal, resource, capability)?;
    let quota = match (principal.plan.as_deref().and_then(|name| state.catalog.plan(name)), decision) {
        (Some(_), Some(decision)) => quota_limits(state, &principal, decision, now),
        // The Quotas actor counts exactly the calls that have a plan, so no call is counted twice or missed.
        (Some(_), None) => {
            tracing::error!(customer = %principal.customer, "the combined credential check counted no call for a credential with a plan");
            Err(RateLimited::Internal)
        }
        (None, _) => Ok(None),
    };
    Ok((principal, quota))
}

/// Consumes one call of the principal's plan; returns the limits to advertise, or the 429 to send.
pub async fn consume_quota(state: &AppState, principal: &Principal) -> Result<Option<RateLimits>, RateLimited> {
    let Some(plan_name) = principal.plan.as_deref() else { return Ok(None) };
    let Some(plan) = state.catalog.plan(plan_name) else { return Ok(None) };
    let now = state.now();

    let consume = Consume {
        customer: principal.customer.clone(),
        plan: plan_name.to_string(),
        monthly_limit: plan.call_limit_monthly,
        burst_limit: plan.burst_per_second,
        cost: 1,
        now,
    };
    let decision = ask(&state.services.quotas, consume).await.map_err(|_| RateLimited::Internal)?;
    quota_limits(state, principal, decision, now)
}

/// Turns a counter's decision on the principal's plan into the limits to advertise, or the 429 to send.
fn quota_limits(state: &AppState, principal: &Principal, decision: QuotaDecision, now: UnixTime) -> Result<Option<RateLimits>, RateLimited> {
    let Some(plan_name) = principal.plan.as_deref() else { return Ok(None) };
    let Some(plan) = state.catalog.plan(plan_name) else { return Ok(None) };
    let limits = |used: u64, burst_used: u64, resets_at: UnixTime| RateLimits {
        monthly: plan.call_limit_monthly.map(|limit| (limit, limit.saturating_sub(used), resets_at.saturating_sub(now), resets_at.saturating_sub(month_start_of(now)))),
        burst: plan.burst_per_second.map(|limit| (limit, limit.saturating_sub(burst_used))),
        per_ip: None,
    };
    match decision {
        QuotaDecision::Allowed { used, burst_used, resets_at } => Ok(Some(limits(used, burst_used, resets_at))),
        QuotaDecision::MonthlyExhausted { used, resets_at } => {
            tracing::info!(target: "ucca::security", customer = %principal.customer, plan = plan_name, "monthly quota exhausted");
            Err(RateLimited::Monthly { limits: limits(used, 0, resets_at), retry_after: resets_at.saturating_sub(now) })
        }
        QuotaDecision::BurstExceeded => {
            // The monthly count is not read on this path, so only the burst window is advertised.
            let limits = RateLimits { monthly: None, burst: plan.burst_per_second.map(|limit| (limit, 0)), per_ip: None };
            Err(RateLimited::Burst { limits })
        }
    }
}

fn month_start_of(now: UnixTime) -> UnixTime {
    let (year, month) = quotas::year_month(now);
    quotas::month_start(year, month)
}

/// Consumes one keyless call from `ip` against the free tier's per-minute limit;
/// returns the limits to advertise, or the 429 to send.
pub async fn consume_keyless_quota(state: &AppState, ip: std::net::IpAddr) -> Result<Option<RateLimits>, RateLimited> {
    let per_minute = state.catalog.free_tier().calls_per_minute_per_ip;
    let now = state.now();
    let decision = ask(&state.services.quotas, ConsumeForIp { ip, per_minute, now }).await.map_err(|_| RateLimited::Internal)?;
    match decision {
        IpDecision::Allowed { used, resets_at } => {
            Ok(Some(RateLimits { monthly: None, burst: None, per_ip: Some((per_minute, per_minute.saturating_sub(used), resets_at.saturating_sub(now))) }))
        }
        IpDecision::Exceeded { resets_at } => {
            tracing::info!(target: "ucca::security", %ip, "keyless per-IP limit reached");
            let limits = RateLimits { monthly: None, burst: None, per_ip: Some((per_minute, 0, resets_at.saturating_sub(now))) };
            Err(RateLimited::PerIp { limits, retry_after: resets_at.saturating_sub(now) })
        }
    }
}

/// Limits to advertise in the `RateLimit-Policy` and `RateLimit` fields
/// (draft-ietf-httpapi-ratelimit-headers).
pub struct RateLimits {
    /// (quota, remaining, seconds until reset, window length in seconds)
    monthly: Option<(u64, u64, u64, u64)>,
    /// (quota, remaining) in a one-second window
    burst: Option<(u64, u64)>,
    /// (quota, remaining, seconds until reset) in the one-minute window of a keyless caller's IP address
    per_ip: Option<(u64, u64, u64)>,
}

impl RateLimits {
    pub fn apply(&self, headers: &mut HeaderMap) {
        let mut policies = Vec::new();
        let mut states = Vec::new();
        if let Some((quota, remaining, reset, window)) = self.monthly {
            policies.push(format!("\"monthly\";q={quota};w={window}"));
            states.push(format!("\"monthly\";r={remaining};t={reset}"));
        }
        if let Some((quota, remaining)) = self.burst {
            policies.push(format!("\"burst\";q={quota};w=1"));
            states.push(format!("\"burst\";r={remaining};t=1"));
        }
        if let Some((quota, remaining, reset)) = self.per_ip {
            policies.push(format!("\"per_ip\";q={quota};w=60"));
            states.push(format!("\"per_ip\";r={remaining};t={reset}"));
        }
        if policies.is_empty() {
            return;
        }
        for (name, value) in [("ratelimit-policy", policies.join(", ")), ("ratelimit", states.join(", "))] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(header::HeaderName::from_static(name), value);
            }
        }
    }
}

/// The reason a call was not admitted.
pub enum RateLimited {
    Monthly { limits: RateLimits, retry_after: u64 },
    Burst { limits: RateLimits },
    /// A keyless caller used up its IP address's calls for this minute.
    PerIp { limits: RateLimits, retry_after: u64 },
    Internal,
}

impl RateLimited {
    pub fn status(&self) -> StatusCode {
        match self {
            RateLimited::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    pub fn into_response(self) -> HttpResponse {
        let (limits, retry_after, description) = match self {
            RateLimited::Internal => return ApiError::internal().error_response(),
            RateLimited::Monthly { limits, retry_after } => {
                (limits, retry_after, "the monthly call quota of this plan is used up; it resets at the start of next month (UTC)")
            }
            RateLimited::Burst { limits } => (limits, 1, "too many calls in this second; retry after one second"),
            RateLimited::PerIp { limits, retry_after } => (
                limits,
                retry_after,
                "too many keyless calls from this address in this minute; retry later, or sign in for a plan's allowance",
            ),
        };
        let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", description).error_response();
        limits.apply(response.headers_mut());
        if let Ok(value) = HeaderValue::from_str(&retry_after.max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// Returns the credential a request presents: `Authorization: Bearer`, or `X-RTOpacks-Key` for older integrations.
fn presented_credential(headers: &HeaderMap) -> Option<Secret> {
    bearer_token(headers.get(header::AUTHORIZATION)).or_else(|| {
        let value = headers.get("x-rtopacks-key")?.to_str().ok()?.trim();
        (!value.is_empty()).then(|| Secret::from_presented(value))
    })
}

/// Validates the credential in `headers` (an access token for `resource`, or an
/// API key, which is valid on every surface) and checks that it grants `capability`.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    resource: &str,
    capability: Capability,
) -> Result<Principal, ApiError> {
    let Some(principal) = identify(state, headers, resource).await? else {
        let challenge = BearerChallenge { metadata_url: state.resource_metadata_url(resource) };
        return Err(challenge.missing());
    };
    require_grant(state, &principal, resource, capability)?;
    Ok(principal)
}

/// Validates the credential in `headers`, if the request carries one: an access
/// token for `resource`, or an API key, which is valid on every surface.
/// `Ok(None)` means the request carries no credential at all.
pub async fn identify(state: &AppState, headers: &HeaderMap, resource: &str) -> Result<Option<Principal>, ApiError> {
    let challenge = BearerChallenge { metadata_url: state.resource_metadata_url(resource) };
    // Tokens in the query string are not accepted (OAuth 2.1 section 5.2), so only headers count.
    let Some(credential) = presented_credential(headers) else {
        return Ok(None);
    };

    let principal = if looks_like_key(credential.expose()) {
        authenticate_key(state, &credential, &challenge).await?
    } else {
        authenticate_token(state, &credential, resource, &challenge).await?
    };
    Ok(Some(principal))
}

/// Checks that `principal` grants `capability`, and returns 403 `insufficient_scope` with the needed scope otherwise.
pub fn require_grant(state: &AppState, principal: &Principal, resource: &str, capability: Capability) -> Result<(), ApiError> {
    if state.catalog.grants(&principal.scopes, capability) {
        return Ok(());
    }
    tracing::info!(target: "ucca::security", customer = %principal.customer, credential_id = %principal.credential_id, capability = capability.as_str(), "call denied: insufficient scope");
    let challenge = BearerChallenge { metadata_url: state.resource_metadata_url(resource) };
    let needed = state.catalog.scope_for(capability).unwrap_or("");
    let mut description = format!("this call needs {}, which the scope {needed} grants", capability.as_str());
    if principal.kind == CredentialKind::ApiKey {
        // A key carries only its plan's scope and cannot request another, so the message names the plans that include the capability.
        let plan = principal.plan.as_deref().unwrap_or("unknown");
        let including: Vec<&str> = state
            .catalog
            .plans()
            .filter(|(_, candidate)| state.catalog.grants(std::slice::from_ref(&candidate.scope), capability))
            .map(|(name, _)| name)
            .collect();
        description = format!(
            "this call needs {}, which this key's {plan} plan does not include; plans that include it: {}",
            capability.as_str(),
            if including.is_empty() { "none".to_string() } else { including.join(", ") }
        );
    }
    Err(challenge.insufficient_scope(needed, &description))
}

/// Builds the 401 for a call that carried no credential but needs `capability`.
/// The challenge names the scope to request, so that a client can start
/// authorization for exactly that (RFC 6750 section 3).
pub fn credential_required(state: &AppState, resource: &str, capability: Capability) -> ApiError {
    let challenge = BearerChallenge { metadata_url: state.resource_metadata_url(resource) };
    challenge.missing_for(state.catalog.scope_for(capability).unwrap_or(""), capability)
}

async fn authenticate_key(state: &AppState, key: &Secret, challenge: &BearerChallenge) -> Result<Principal, ApiError> {
    let Some(record) = ask(&state.services.api_keys, VerifyKey { key: key.digest(), now: state.now() }).await? else {
        return Err(challenge.invalid("the API key is not valid or was deactivated"));
    };
    key_principal(state, record, challenge)
}

/// Turns an active key's record into the principal it stands for, or the 401 when its plan is gone.
fn key_principal(state: &AppState, record: ApiKeyRecord, challenge: &BearerChallenge) -> Result<Principal, ApiError> {
    let Some(plan) = state.catalog.plan(&record.tier) else {
        tracing::error!(key_id = %record.id, tier = %record.tier, "API key names a plan the catalog does not define");
        return Err(challenge.invalid("the API key's plan no longer exists"));
    };
    Ok(Principal {
        customer: record.user_id,
        scopes: vec![plan.scope.clone()],
        plan: Some(record.tier),
        kind: CredentialKind::ApiKey,
        credential_id: record.id,
    })
}

async fn authenticate_token(
    state: &AppState,
    token: &Secret,
    resource: &str,
    challenge: &BearerChallenge,
) -> Result<Principal, ApiError> {
    if !is_token_shaped(token) {
        return Err(challenge.invalid("the credential is neither an access token nor an API key"));
    }
    let status = ask(&state.services.tokens, ValidateToken { token: token.digest(), now: state.now() }).await?;
    token_principal(state, status, resource, challenge)
}

/// Turns a token's status into the principal it stands for, or the 401 to send.
fn token_principal(state: &AppState, status: TokenStatus, resource: &str, challenge: &BearerChallenge) -> Result<Principal, ApiError> {
    let record = match status {
        TokenStatus::Active(record) if record.kind == TokenKind::Access => record,
        TokenStatus::Active(_) => return Err(challenge.invalid("a refresh token is not an access token")),
        TokenStatus::Inactive(InactiveReason::Expired) => return Err(challenge.invalid("the access token expired")),
        TokenStatus::Inactive(InactiveReason::Revoked) => return Err(challenge.invalid("the access token was revoked")),
        TokenStatus::Inactive(InactiveReason::Unknown) => return Err(challenge.invalid("the access token is not recognised")),
    };
    // RFC 8707: a token is good only at the resource it was issued for.
    if record.resource != resource {
        return Err(challenge.invalid("the access token was issued for another resource"));
    }
    Ok(Principal {
        plan: state.catalog.plan_for(&record.scopes).map(str::to_string),
        customer: record.user_id,
        scopes: record.scopes,
        kind: CredentialKind::Token,
        credential_id: record.client_id,
    })
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
struct BearerChallenge {
    metadata_url: String,
}

impl BearerChallenge {
    /// No credential was sent, so the challenge carries no error code (RFC 6750 section 3.1).
    fn missing(&self) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "this API needs an access token: send Authorization: Bearer <token>")
            .with_challenge(format!("Bearer realm=\"ucca-auth\", resource_metadata=\"{}\"", self.metadata_url))
    }

    /// Like [`BearerChallenge::missing`], naming the scope that grants `capability`.
    fn missing_for(&self, scope: &str, capability: Capability) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("this call needs {}: send Authorization: Bearer <token> with the scope {scope}", capability.as_str()),
        )
        .with_challenge(format!("Bearer realm=\"ucca-auth\", scope=\"{scope}\", resource_metadata=\"{}\"", self.metadata_url))
    }

    fn invalid(&self, description: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", description).with_challenge(format!(
            "Bearer realm=\"ucca-auth\", error=\"invalid_token\", error_description=\"{description}\", resource_metadata=\"{}\"",
            self.metadata_url
        ))
    }

    fn insufficient_scope(&self, scope: &str, description: &str) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "insufficient_scope", description).with_challenge(format!(
            "Bearer realm=\"ucca-auth\", error=\"insufficient_scope\", scope=\"{scope}\", resource_metadata=\"{}\"",
            self.metadata_url
        ))
    }
}
