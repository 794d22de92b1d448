//! The ucca-auth actix-web application: one module per surface, plus pages and middleware.
//!
//! Handlers validate input, send a message to an actor from `ucca-actors`, and
//! turn the typed reply into a response. Nothing here touches the store.
#![forbid(unsafe_code)]

pub mod account;
pub mod account_billing;
pub mod authorize;
pub mod billing;
pub mod client_auth;
pub mod corpus_api;
pub mod cors;
pub mod discovery;
pub mod errors;
pub mod forward_auth;
pub mod introspection;
pub mod mcp;
pub mod middleware;
pub mod ops;
pub mod ops_keys;
pub mod ops_usage;
pub mod pages;
pub mod params;
pub mod registration;
pub mod phone;
pub mod session;
pub mod signin;
pub mod state;
pub mod token;

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};

pub use state::{AppState, ForwardRoute, WebConfig};

use crate::errors::ApiError;

/// Builds the public server (sign-in, OAuth endpoints, discovery, protected APIs) on a bound listener.
pub fn public_server(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    let (workers, shutdown_timeout) = (state.config.http_workers, state.config.shutdown_timeout);
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap(from_fn(middleware::request_context))
            .configure(discovery::configure)
            .configure(authorize::configure)
            .configure(token::configure)
            .configure(introspection::configure)
            .configure(signin::configure)
            .configure(account::configure)
            .configure(phone::configure)
            .configure(forward_auth::configure)
            .configure(billing::configure)
            .configure(account_billing::configure)
            .configure(corpus_api::configure)
            .configure(registration::configure)
            .configure(mcp::configure)
            .service(web::resource("/healthz").get(health))
            .default_service(web::to(not_found))
    })
    .workers(workers)
    .shutdown_timeout(shutdown_timeout)
    // Start-up owns signal handling, so both servers drain together.
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

/// Builds the ops server on a bound listener, which start-up keeps on loopback by default.
pub fn ops_server(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    let shutdown_timeout = state.config.shutdown_timeout;
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap(from_fn(middleware::request_context))
            .configure(ops::configure)
            .service(web::resource("/healthz").get(health))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .shutdown_timeout(shutdown_timeout)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn not_found(request: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    // Some paths serve other methods, so the message names both.
    Err(ApiError::not_found(format!("no resource at {} accepts {}", request.path(), request.method())))
}
