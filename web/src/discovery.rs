//! Discovery documents: authorization server metadata (RFC 8414) and protected resource metadata (RFC 9728).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::cors::for_browser_clients;
use crate::state::AppState;

pub fn configure(config: &mut web::ServiceConfig) {
    config.service(
        web::scope("/.well-known")
            .wrap(for_browser_clients())
            .service(web::resource("/oauth-authorization-server").get(authorization_server))
            // The REST surface is the default resource, so its metadata is also at the bare URL.
            .service(web::resource("/oauth-protected-resource").get(rest_resource))
            .service(web::resource("/oauth-protected-resource/v1").get(rest_resource))
            .service(web::resource("/oauth-protected-resource/mcp").get(mcp_resource)),
    );
}

async fn authorization_server(state: web::Data<AppState>) -> HttpResponse {
    let issuer = state.issuer();
    let scopes: Vec<&str> = state.catalog.issuable_scopes().collect();
    let mut metadata = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": scopes,
        "authorization_response_iss_parameter_supported": true,
    });
    if state.config.dynamic_registration {
        metadata["registration_endpoint"] = json!(format!("{issuer}/oauth/register"));
    }
    if state.config.client_metadata_documents {
        metadata["client_id_metadata_document_supported"] = json!(true);
    }
    HttpResponse::Ok().json(metadata)
}

async fn rest_resource(state: web::Data<AppState>) -> HttpResponse {
    let scopes: Vec<&str> = state.catalog.issuable_scopes().filter(|scope| scope.starts_with("rtopacks:") || *scope == "read").collect();
    HttpResponse::Ok().json(json!({
        "resource": state.derived.rest_resource,
        "resource_name": "ucca-auth corpus API",
        "authorization_servers": [state.issuer()],
        "bearer_methods_supported": ["header"],
        "scopes_supported": scopes,
    }))
}

async fn mcp_resource(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "resource": state.mcp_resource(),
        "resource_name": state.config.mcp_tools.resource_name(),
        "authorization_servers": [state.issuer()],
        "bearer_methods_supported": ["header"],
        "scopes_supported": state.config.mcp_tools.scopes(&state.catalog),
    }))
}
