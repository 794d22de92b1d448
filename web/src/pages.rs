//! HTML pages: the shared layout, escaping, security headers, and CSRF tokens for forms.
//!
//! CSRF uses a per-browser random cookie. A form carries the SHA-256 of that
//! cookie's value, which another site can neither read nor compute, and a POST
//! is accepted only when the two agree.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use ucca_actors::secret::{Secret, SECRET_BYTES};

use crate::state::AppState;

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Wraps page content in the shared layout. `body` must already be escaped.
pub fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} - ucca-auth</title><style>{STYLE}</style></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>\n",
        title = escape(title),
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}\
main{max-width:32rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 3px #0002}\
input[type=email]{width:100%;padding:.6rem;font-size:1rem;box-sizing:border-box;margin:.5rem 0 1rem}\
button{padding:.6rem 1.2rem;font-size:1rem;border-radius:4px;border:1px solid #2b59c3;background:#2b59c3;color:#fff;cursor:pointer}\
button.secondary{background:#fff;color:#2b59c3}.error{color:#a01010}ul.scopes li{margin:.3rem 0}";

/// Starts an HTML response with the headers every page needs: no caching, no framing, no referrer.
pub fn html(status: StatusCode) -> HttpResponseBuilder {
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    response
}

/// Builds a page that reports a problem to a person without a session, with a link to sign-in.
pub fn message_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    message_page_linking(status, title, message, "/auth", "Go to sign-in")
}

/// Builds a page that reports a problem to a signed-in person, with a link back to their account page.
pub fn account_message_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    message_page_linking(status, title, message, "/account", "Back to your account")
}

fn message_page_linking(status: StatusCode, title: &str, message: &str, href: &str, link_text: &str) -> HttpResponse {
    let body = format!("<p class=\"error\">{}</p><p><a href=\"{}\">{}</a></p>", escape(message), escape(href), escape(link_text));
    html(status).body(layout(title, &body))
}

/// The browser's CSRF cookie value and, if it had none, the cookie to set.
pub struct CsrfSeed {
    value: String,
    new_cookie: Option<Cookie<'static>>,
}

impl CsrfSeed {
    /// The token to put in this browser's forms.
    pub fn form_token(&self) -> String {
        form_token_for(&self.value)
    }

    /// Adds the cookie to the response if the browser did not have one yet.
    pub fn apply(self, response: &mut HttpResponseBuilder) {
        if let Some(cookie) = self.new_cookie {
            response.cookie(cookie);
        }
    }
}

/// Reads the browser's CSRF cookie or makes a new one.
pub fn csrf_seed(state: &AppState, request: &HttpRequest) -> CsrfSeed {
    if let Some(cookie) = request.cookie(&state.derived.csrf_cookie) {
        if !cookie.value().is_empty() {
            return CsrfSeed { value: cookie.value().to_string(), new_cookie: None };
        }
    }
    let value = Secret::generate(SECRET_BYTES).expose().to_string();
    let cookie = Cookie::build(state.derived.csrf_cookie.clone(), value.clone())
        .path("/")
        .http_only(true)
        .secure(state.derived.secure_cookies)
        .same_site(SameSite::Lax)
        .finish();
    CsrfSeed { value, new_cookie: Some(cookie) }
}

/// Checks a submitted form token against the browser's CSRF cookie, in constant time.
pub fn csrf_valid(state: &AppState, request: &HttpRequest, submitted: Option<&str>) -> bool {
    let (Some(cookie), Some(submitted)) = (request.cookie(&state.derived.csrf_cookie), submitted) else {
        return false;
    };
    let expected = form_token_for(cookie.value());
    expected.as_bytes().ct_eq(submitted.as_bytes()).into()
}

fn form_token_for(cookie_value: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"ucca-auth form token\0");
    hasher.update(cookie_value.as_bytes());
    hex::encode(hasher.finalize())
}

/// A hidden form field.
pub fn hidden(name: &str, value: &str) -> String {
    format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(name), escape(value))
}
