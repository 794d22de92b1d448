//! The CORS policy for browser-based clients. They may call discovery, the
//! token endpoints and the APIs from any origin. They authenticate with tokens,
//! never cookies, so credentials mode is not allowed.

use actix_cors::Cors;
use actix_web::http::{header, Method};

pub fn for_browser_clients() -> Cors {
    Cors::default()
        .allow_any_origin()
        .allowed_methods([Method::GET, Method::POST])
        .allowed_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
        // Lets a browser client read the challenge of a 401 or 403 and start authorization.
        .expose_headers([header::WWW_AUTHENTICATE])
        .max_age(600)
}
