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
    // HEAD reaches this as GET: the request middleware maps one to the other.
    config.service(web::resource("/auth/check").get(check));
}

/// The original method and URI, from Traefik/Caddy-style headers or nginx's conventional ones.
fn original_request(headers: &HeaderMap) -> Option<(String, String)> {
    let read = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_string);
    let method = read("x-forwarded-method").or_else(|| read("x-original-method")).unwrap_or_else(|| "GET".into());
    let uri = read("x-forwarded-uri").or_else(|| read("x-original-uri"))?;
    Some((method, uri))
}

/// Finds the route with the longest prefix that matches the path and method.
/// `path` must come from [`normal_path`].
fn route_for<'a>(routes: &'a [ForwardRoute], method: &str, path: &str) -> Option<&'a ForwardRoute> {
    routes
        .iter()
        .filter(|route| path.starts_with(&route.prefix))
        .filter(|route| route.methods.is_empty() || route.methods.iter().any(|allowed| allowed.eq_ignore_ascii_case(method)))
        .max_by_key(|route| route.prefix.len())
}

/// Returns the path of a forwarded URI as the upstream will resolve it:
/// percent-decoded and with repeated slashes merged, so that the prefix match
/// applies to the resource the upstream serves. A path whose meaning depends on the
/// upstream is rejected instead: dot segments (`/reports/../admin`), encoded
/// slashes, backslashes, double encoding and control characters.
fn normal_path(uri: &str) -> Result<String, &'static str> {
    let raw = uri.split(['?', '#']).next().unwrap_or(uri);
    if !raw.starts_with('/') {
        return Err("the forwarded URI does not start with /");
    }

    let mut decoded = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(byte) = bytes.next() {
        let byte = if byte == b'%' {
            let high = bytes.next().and_then(|digit| (digit as char).to_digit(16));
            let low = bytes.next().and_then(|digit| (digit as char).to_digit(16));
            let (Some(high), Some(low)) = (high, low) else { return Err("the forwarded path has an invalid percent-encoding") };
            let byte = (high * 16 + low) as u8;
            if matches!(byte, b'/' | b'%') {
                return Err("the forwarded path has an encoded slash or percent sign");
            }
            byte
        } else {
            byte
        };
        if byte == b'\\' || byte.is_ascii_control() {
            return Err("the forwarded path has a backslash or control character");
        }
        if byte == b'/' && decoded.last() == Some(&b'/') {
            continue;
        }
        decoded.push(byte);
    }

    let path = String::from_utf8(decoded).map_err(|_| "the forwarded path is not UTF-8")?;
    if path.split('/').any(|segment| segment == "." || segment == "..") {
        return Err("the forwarded path has a . or .. segment");
    }
    Ok(path)
}

fn forbidden(description: &str) -> HttpResponse {
    ApiError::new(StatusCode::FORBIDDEN, "access_denied", description).error_response()
}

async fn check(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let Some((method, uri)) = original_request(request.headers()) else {
        tracing::warn!("forward-auth request without X-Forwarded-Uri or X-Original-URI; check the proxy configuration");
        return forbidden("the proxy did not send X-Forwarded-Uri or X-Original-URI");
    };
    let path = match normal_path(&uri) {
        Ok(path) => path,
        Err(reason) => {
            tracing::warn!(target: "ucca::security", reason, "forward-auth request for a path not in normal form");
            return forbidden(reason);
        }
    };
    let Some(route) = route_for(&state.config.forward_auth_routes, &method, &path) else {
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
        assert_eq!(route_for(&routes, "GET", "/reports/x").map(|r| r.capability), Some(Capability::Pathway));
        assert_eq!(route_for(&routes, "GET", "/other").map(|r| r.capability), Some(Capability::Search));
        assert!(route_for(&routes[1..], "GET", "/other").is_none());
    }

    #[test]
    fn paths_are_decoded_and_slashes_merged() {
        assert_eq!(normal_path("/reports/x?y=1#z"), Ok("/reports/x".to_string()));
        assert_eq!(normal_path("//reports///x"), Ok("/reports/x".to_string()));
        assert_eq!(normal_path("/r%65ports/caf%C3%A9"), Ok("/reports/café".to_string()));
        assert_eq!(normal_path("/reports/a.b/..c"), Ok("/reports/a.b/..c".to_string()));
    }

    #[test]
    fn ambiguous_paths_are_rejected() {
        let ambiguous = [
            "/reports/../admin",
            "/reports/%2e%2e/admin",
            "/reports/./x",
            "/reports/..",
            "/reports%2Fadmin",
            "/reports/%252e%252e/admin",
            "/reports\\..\\admin",
            "/reports/%5c../admin",
            "/reports/%00",
            "/reports/%zz",
            "/reports/%4",
            "reports/x",
            "http://host/reports/x",
            "/reports/%ff",
        ];
        for uri in ambiguous {
            assert!(normal_path(uri).is_err(), "{uri} was accepted as {:?}", normal_path(uri));
        }
    }
}
