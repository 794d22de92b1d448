//! Forward authentication for reverse proxies (nginx `auth_request`, Traefik
//! ForwardAuth, Caddy `forward_auth`): `GET /auth/check` decides whether the
//! proxy may pass on the original request.
//!
//! The answer is always 200, 401 or 403, because nginx turns any other status
//! of an auth subrequest into a 500 for the client.

use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};

use crate::errors::ApiError;
use crate::middleware::authenticate;
use crate::state::{AppState, ForwardRoute};

pub fn configure(config: &mut web::ServiceConfig) {
    config.route("/auth/check", web::get().to(check)).route("/auth/check", web::head().to(check));
}

/// The original method and URI, from Traefik/Caddy-style headers or nginx's conventional ones.
fn original_request(headers: &HeaderMap) -> Option<(String, String)> {
    let read = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_string);
    let method = read("x-forwarded-method").or_else(|| read("x-original-method")).unwrap_or_else(|| "GET".into());
    let uri = read("x-forwarded-uri").or_else(|| read("x-original-uri"))?;
    Some((method, uri))
}

/// Finds the route with the longest prefix that matches the path and method.
fn route_for<'a>(routes: &'a [ForwardRoute], method: &str, uri: &str) -> Option<&'a ForwardRoute> {
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    routes
        .iter()
        .filter(|route| path.starts_with(&route.prefix))
        .filter(|route| route.methods.is_empty() || route.methods.iter().any(|allowed| allowed.eq_ignore_ascii_case(method)))
        .max_by_key(|route| route.prefix.len())
}

fn forbidden(description: &str) -> HttpResponse {
    ApiError::new(StatusCode::FORBIDDEN, "access_denied", description).error_response()
}

async fn check(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let Some((method, uri)) = original_request(request.headers()) else {
        tracing::warn!("forward-auth request without X-Forwarded-Uri or X-Original-URI; check the proxy configuration");
        return forbidden("the proxy did not send X-Forwarded-Uri or X-Original-URI");
    };
    let Some(route) = route_for(&state.config.forward_auth_routes, &method, &uri) else {
        return forbidden("no forward-auth route covers this request");
    };

    match authenticate(&state, request.headers(), &state.derived.rest_resource, route.capability).await {
        Ok(principal) => HttpResponse::Ok()
            .insert_header(("X-Auth-Subject", principal.customer.as_str()))
            .insert_header(("X-Auth-Scope", principal.scopes.join(" ")))
            .insert_header(("X-Auth-Client", principal.credential_id.as_str()))
            .finish(),
        // A failure inside the server must not become a 5xx here: deny instead, and the log has the cause.
        Err(error) if error.status.is_server_error() => forbidden("the credential could not be checked"),
        Err(error) => error.error_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ucca_actors::catalog::Capability;

    fn route(prefix: &str, methods: &[&str], capability: Capability) -> ForwardRoute {
        ForwardRoute { prefix: prefix.into(), methods: methods.iter().map(|m| m.to_string()).collect(), capability }
    }

    #[test]
    fn longest_matching_prefix_wins() {
        let routes = vec![
            route("/", &[], Capability::Search),
            route("/reports/", &[], Capability::Pathway),
            route("/reports/", &["POST"], Capability::CustomCorpus),
        ];
        assert_eq!(route_for(&routes, "GET", "/reports/x?y=1").map(|r| r.capability), Some(Capability::Pathway));
        assert_eq!(route_for(&routes, "GET", "/other").map(|r| r.capability), Some(Capability::Search));
        assert!(route_for(&routes[1..], "GET", "/other").is_none());
    }
}
