//! The session cookie: reading it into a signed-in user, setting it at sign-in, clearing it at sign-out.

use actix_web::cookie::{time::Duration, Cookie, SameSite};
use actix_web::HttpRequest;
use ucca_actors::accounts::{ResolveSession, UserRecord};
use ucca_actors::secret::Secret;

use crate::errors::{ask, Internal};
use crate::state::AppState;

/// The signed-in user behind the request's session cookie, if any.
pub async fn current_user(state: &AppState, request: &HttpRequest) -> Result<Option<UserRecord>, Internal> {
    let Some(cookie) = request.cookie(&state.derived.session_cookie) else { return Ok(None) };
    let session = Secret::from_presented(cookie.value());
    ask(&state.services.accounts, ResolveSession { session: session.digest(), now: state.now() }).await
}

/// The session id from the request's cookie, if present.
pub fn presented_session(state: &AppState, request: &HttpRequest) -> Option<Secret> {
    request.cookie(&state.derived.session_cookie).map(|cookie| Secret::from_presented(cookie.value()))
}

/// The cookie that carries a new session id. HttpOnly and SameSite=Lax, so
/// scripts cannot read it and cross-site POSTs do not send it.
pub fn session_cookie(state: &AppState, session: &Secret) -> Cookie<'static> {
    Cookie::build(state.derived.session_cookie.clone(), session.expose().to_string())
        .path("/")
        .http_only(true)
        .secure(state.derived.secure_cookies)
        .same_site(SameSite::Lax)
        .max_age(Duration::days(30))
        .finish()
}

pub fn expired_session_cookie(state: &AppState) -> Cookie<'static> {
    let mut cookie = Cookie::build(state.derived.session_cookie.clone(), "")
        .path("/")
        .http_only(true)
        .secure(state.derived.secure_cookies)
        .same_site(SameSite::Lax)
        .finish();
    cookie.make_removal();
    cookie
}
