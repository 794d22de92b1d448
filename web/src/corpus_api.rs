//! The REST API over the training corpus: search, lookup and ladder for
//! operational callers, and pathway analysis for professional ones. Each route
//! declares the capability it needs; the credential middleware checks it
//! before any handler here runs.

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{from_fn, Next};
use actix_web::http::Method;
use actix_web::{web, HttpMessage, HttpResponse};
use serde_json::{json, Value};
use ucca_actors::catalog::{Capability, Catalog};
use ucca_actors::corpus::{Entry, Unit};

use crate::errors::ApiError;
use crate::middleware::{method_not_allowed, require_capability, Principal};
use crate::params::Params;
use crate::state::AppState;

/// Search results per page when the caller names no limit, and the most it may ask for.
const DEFAULT_SEARCH_LIMIT: usize = 20;
const MAX_SEARCH_LIMIT: usize = 100;
/// Longest search query accepted, in bytes.
const MAX_QUERY_LEN: usize = 200;

pub fn configure(config: &mut web::ServiceConfig) {
    config.service(
        web::scope("/v1")
            .wrap(crate::cors::for_browser_clients())
            .service(guarded("/search", Capability::Search).route(web::get().to(search)))
            .service(guarded("/lookup", Capability::Lookup).route(web::get().to(lookup)))
            .service(guarded("/ladder", Capability::Ladder).route(web::get().to(ladder)))
            .service(guarded("/analytics/pathway", Capability::Pathway).route(web::get().to(pathway)))
            .service(web::resource("/pathway").get(pathway_moved)),
    );
}

/// A resource whose every request must carry a token granting `capability`.
fn guarded(
    path: &str,
    capability: Capability,
) -> actix_web::Resource<
    impl ServiceFactory<ServiceRequest, Config = (), Response = ServiceResponse<BoxBody>, Error = actix_web::Error, InitError = ()>,
> {
    web::resource(path).wrap(from_fn(move |request: ServiceRequest, next: Next<BoxBody>| async move {
        // Every route here reads, so another method gets a 405 before any credential check or count.
        if request.method() != Method::GET {
            return Ok(request.into_response(method_not_allowed("GET")));
        }
        require_capability(request, next, capability).await
    }))
}

fn query(request: &actix_web::HttpRequest) -> Params {
    Params::parse(request.query_string().as_bytes())
}

fn required_code(params: &Params) -> Result<String, ApiError> {
    let code = params.get("code").ok_or_else(|| ApiError::bad_request("invalid_request", "code is missing, as in ?code=BSB30120"))?;
    if code.len() > 12 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::bad_request("invalid_request", "code must be 1 to 12 letters and digits"));
    }
    Ok(code.to_string())
}

async fn search(state: web::Data<AppState>, request: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let params = query(&request);
    let q = params.get("q").map(str::trim).unwrap_or("");
    if q.is_empty() {
        return Err(ApiError::bad_request("invalid_request", "q is missing, as in ?q=business"));
    }
    if q.len() > MAX_QUERY_LEN {
        return Err(ApiError::bad_request("invalid_request", format!("q is longer than {MAX_QUERY_LEN} bytes")));
    }
    let limit = match params.get("limit") {
        None => DEFAULT_SEARCH_LIMIT,
        Some(raw) => match raw.parse::<usize>() {
            Ok(limit) if (1..=MAX_SEARCH_LIMIT).contains(&limit) => limit,
            _ => return Err(ApiError::bad_request("invalid_request", format!("limit must be a whole number from 1 to {MAX_SEARCH_LIMIT}"))),
        },
    };

    let results = state.corpus.search(q, limit);
    Ok(HttpResponse::Ok().json(json!({ "query": q, "count": results.len(), "results": results })))
}

async fn lookup(state: web::Data<AppState>, request: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let code = required_code(&query(&request))?;
    let components = request
        .extensions()
        .get::<Principal>()
        .is_some_and(|principal| state.catalog.grants(&principal.scopes, Capability::Components));
    match state.corpus.lookup(&code) {
        Some(Entry::Unit(unit)) if !components => {
            Ok(HttpResponse::Ok().json(unit_summary(&unit, &state.catalog, "a token or key with it gets them from this route")))
        }
        Some(entry) => Ok(HttpResponse::Ok().json(entry)),
        None => Err(ApiError::not_found(format!("no unit or qualification has code {code}"))),
    }
}

/// A unit without its elements and performance criteria, for callers whose
/// scopes do not grant `components`; `where_to_get` is where a credential
/// with that scope gets them.
pub(crate) fn unit_summary(unit: &Unit, catalog: &Catalog, where_to_get: &str) -> Value {
    let scope = catalog.scope_for(Capability::Components).unwrap_or("(none issued)");
    json!({
        "kind": "unit",
        "code": unit.code,
        "title": unit.title,
        "status": unit.status,
        "element_count": unit.elements.len(),
        "components_withheld": format!("The elements and performance criteria of units need the scope {scope}; {where_to_get}."),
    })
}

async fn ladder(state: web::Data<AppState>, request: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let code = required_code(&query(&request))?;
    match state.corpus.ladder(&code) {
        Some(qualifications) => {
            let family = qualifications.first().map(|qualification| qualification.family.clone());
            Ok(HttpResponse::Ok().json(json!({ "code": code, "family": family, "qualifications": qualifications })))
        }
        None => Err(ApiError::not_found(format!("no qualification has code {code}; a ladder starts from a qualification"))),
    }
}

async fn pathway(state: web::Data<AppState>, request: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let params = query(&request);
    let code = |name: &str| {
        let value = params.get(name).ok_or_else(|| {
            ApiError::bad_request("invalid_request", format!("{name} is missing, as in ?from=BSB30120&to=BSB40120"))
        })?;
        if value.len() > 12 || !value.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ApiError::bad_request("invalid_request", format!("{name} must be 1 to 12 letters and digits")));
        }
        Ok(value.to_string())
    };
    let (from, to) = (code("from")?, code("to")?);
    match state.corpus.pathway(&from, &to) {
        Some(pathway) => Ok(HttpResponse::Ok().json(pathway)),
        None => Err(ApiError::not_found(format!("{from} and {to} must both be qualification codes"))),
    }
}

/// Pathway analysis is analytical and lives under /v1/analytics, not on the operational API.
async fn pathway_moved() -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(
        "pathway analysis is not part of the operational API; use GET /v1/analytics/pathway?from=&to= with a professional or enterprise token",
    ))
}
