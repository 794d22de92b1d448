//! Magic-link sign-in pages under `/auth`: request a link, confirm it, sign out.
//!
//! The emailed link opens a confirmation page and only that page's POST
//! consumes the link, so mail scanners that prefetch links consume nothing.
//!
//! A link works only in the browser that requested it: the request sets a
//! random browser cookie, the link is stored with that cookie's SHA-256, and
//! confirming checks it. A link opened elsewhere offers to mail a new link
//! bound to that browser instead. Requests are limited per address and per IP
//! address, and a rejected request gets the same response as any other, so the
//! page reveals neither which addresses have accounts nor which hit a limit.

use std::net::{IpAddr, Ipv6Addr};

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};
use ucca_actors::accounts::{
    normalize_email, BoundSignIn, ConsumeBoundLink, EndSession, InspectBoundLink, LinkCheck, LinkRequest, LinkState, Reissue,
    ReissueLink, RequestBoundLink, LINK_TTL,
};
use ucca_actors::mailer::SendMail;
use ucca_actors::secret::{Digest32, Secret, SECRET_BYTES};
use ucca_actors::UnixTime;

use crate::account::format_utc;
use crate::errors::{ask, Internal};
use crate::pages::{csrf_seed, csrf_valid, escape, hidden, html, layout, message_page, CsrfSeed};
use crate::params::Params;
use crate::session::{current_user, expired_session_cookie, presented_session, session_cookie};
use crate::state::{client_ip, AppState};

pub fn configure(config: &mut web::ServiceConfig) {
    // One resource per path, so a known path with another method gets a 405 rather than a 404.
    config
        .service(web::resource("/auth").get(sign_in_page))
        .service(web::resource("/auth/email").post(request_link))
        .service(web::resource("/auth/verify").get(confirm_page).post(confirm))
        .service(web::resource("/auth/resend").post(resend_link))
        .service(web::resource("/auth/logout").post(sign_out));
}

/// Longest return path accepted, in bytes. The largest authorization request the
/// authorize endpoint accepts (a 2000-byte redirect URI and a 1024-byte state, each
/// percent-encoded up to threefold) is about 10 KiB; encoded once more in the
/// sign-in URL it stays well inside actix-http's 128 KiB request-head buffer.
const MAX_RETURN_PATH_LEN: usize = 16 * 1024;

/// Accepts only same-origin absolute paths, so a sign-in can never be turned into an open redirect.
pub fn safe_return_path(raw: &str) -> Option<String> {
    let acceptable = raw.starts_with('/')
        && !raw.starts_with("//")
        && raw.len() <= MAX_RETURN_PATH_LEN
        && !raw.contains('\\')
        && !raw.chars().any(char::is_control);
    acceptable.then(|| raw.to_string())
}

fn internal_page() -> HttpResponse {
    // The request-id middleware replaces this body, so the person sees an id to quote.
    HttpResponse::InternalServerError().finish()
}

/// Returns the caller's IP address to count against per-IP limits, believing
/// `X-Forwarded-For` only from the configured trusted proxies.
///
/// Loopback callers count like any other. Behind a proxy on this host that is
/// missing from the trusted proxies, every person then shares one limit, which
/// fails safe: exempting loopback would instead switch per-IP limits off for
/// that common deployment.
///
/// IPv6 addresses count per /64 prefix, because one subscriber usually holds a
/// whole /64 and could otherwise change address for every request.
pub fn limited_ip(state: &AppState, request: &HttpRequest) -> Option<IpAddr> {
    let forwarded_for = request.headers().get("x-forwarded-for").and_then(|value| value.to_str().ok());
    let ip = client_ip(request.peer_addr().map(|address| address.ip()), forwarded_for, &state.config.trusted_proxies)?;
    Some(limit_key_address(ip))
}

/// Maps an address to the one its limits count under: IPv4 as is, IPv6 as its /64 prefix.
fn limit_key_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
        v4 => v4,
    }
}

/// Name of the cookie that binds sign-in links to a browser. Like the session
/// cookie's, it carries a short hash of the issuer, so two instances on one host keep apart.
fn browser_cookie_name(state: &AppState) -> String {
    format!("ucca_browser_{}", hex::encode(&Sha256::digest(state.issuer().as_bytes())[..4]))
}

/// Returns the digest of the browser's binding cookie, if it sent one.
fn presented_browser(state: &AppState, request: &HttpRequest) -> Option<Digest32> {
    let cookie = request.cookie(&browser_cookie_name(state))?;
    (!cookie.value().is_empty()).then(|| Secret::from_presented(cookie.value()).digest())
}

/// Returns the browser's binding digest, and the cookie to set when the browser had none.
fn browser_binding(state: &AppState, request: &HttpRequest) -> (Digest32, Option<Cookie<'static>>) {
    if let Some(browser) = presented_browser(state, request) {
        return (browser, None);
    }
    let value = Secret::generate(SECRET_BYTES);
    // Long-lived, so a link requested now still matches when the mail is read later today.
    let cookie = Cookie::build(browser_cookie_name(state), value.expose().to_string())
        .path("/auth")
        .http_only(true)
        .secure(state.derived.secure_cookies)
        .same_site(SameSite::Lax)
        .max_age(CookieDuration::days(30))
        .finish();
    (value.digest(), Some(cookie))
}

/// Most characters of a User-Agent kept to describe a session.
const MAX_DEVICE_LEN: usize = 120;

/// Returns the browser's User-Agent, shortened and stripped of control characters, to tell sessions apart on the account page.
fn device_label(request: &HttpRequest) -> String {
    let agent = request.headers().get(header::USER_AGENT).and_then(|value| value.to_str().ok()).unwrap_or("");
    agent.chars().filter(|c| !c.is_control()).take(MAX_DEVICE_LEN).collect()
}

async fn sign_in_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let params = Params::parse(request.query_string().as_bytes());
    let return_to = match params.get("return_to") {
        Some(raw) => match safe_return_path(raw) {
            Some(path) => Some(path),
            None => return message_page(StatusCode::BAD_REQUEST, "Invalid sign-in request", "The return address must be a path on this site."),
        },
        None => None,
    };

    let user = match current_user(&state, &request).await {
        Ok(user) => user,
        Err(Internal) => return internal_page(),
    };
    let csrf = csrf_seed(&state, &request);

    let body = match (user, &return_to) {
        (Some(_), Some(path)) => {
            return HttpResponse::SeeOther().insert_header((header::LOCATION, path.as_str())).finish();
        }
        (Some(user), None) => format!(
            "<p>You are signed in as <strong>{}</strong>.</p>\
             <p><a href=\"/account\">Manage your account</a></p>\
             <form method=\"post\" action=\"/auth/logout\">{}<button class=\"secondary\" type=\"submit\">Sign out</button></form>",
            escape(&user.email),
            hidden("csrf_token", &csrf.form_token()),
        ),
        (None, _) => email_form(&csrf.form_token(), return_to.as_deref(), None),
    };

    let mut response = html(StatusCode::OK);
    csrf.apply(&mut response);
    response.body(layout("Sign in", &body))
}

fn email_form(csrf_token: &str, return_to: Option<&str>, problem: Option<&str>) -> String {
    let problem = problem.map(|text| format!("<p class=\"error\">{}</p>", escape(text))).unwrap_or_default();
    let return_field = return_to.map(|path| hidden("return_to", path)).unwrap_or_default();
    format!(
        "{problem}<p>Enter your email address and we will send you a link to sign in.</p>\
         <form method=\"post\" action=\"/auth/email\">{}{return_field}\
         <label for=\"email\">Email address</label>\
         <input id=\"email\" type=\"email\" name=\"email\" required autocomplete=\"email\">\
         <button type=\"submit\">Email me a sign-in link</button></form>",
        hidden("csrf_token", csrf_token),
    )
}

async fn request_link(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let form = Params::parse(&body);
    if !csrf_valid(&state, &request, form.get("csrf_token")) {
        return message_page(StatusCode::FORBIDDEN, "Form expired", "This form has expired or was sent from another site. Open the sign-in page and try again.");
    }
    let return_to = match form.get("return_to") {
        Some(raw) => match safe_return_path(raw) {
            Some(path) => Some(path),
            None => return message_page(StatusCode::BAD_REQUEST, "Invalid sign-in request", "The return address must be a path on this site."),
        },
        None => None,
    };
    let Some(email) = form.get("email").and_then(normalize_email) else {
        let csrf = csrf_seed(&state, &request);
        let body = email_form(&csrf.form_token(), return_to.as_deref(), Some("That does not look like an email address. Check it and try again."));
        return html(StatusCode::BAD_REQUEST).body(layout("Sign in", &body));
    };

    let now = state.now();
    let (browser, new_cookie) = browser_binding(&state, &request);
    let ip = limited_ip(&state, &request);
    let requested = RequestBoundLink { email: email.clone(), return_to, browser, ip, now };
    match ask(&state.services.accounts, requested).await {
        Ok(LinkRequest::Issued(link)) => {
            if ask(&state.services.mailer, sign_in_mail(&state, &email, &link, now)).await.is_err() {
                return internal_page();
            }
        }
        // Rejected by a limit: the actor logged it, and the response below does not reveal it.
        Ok(LinkRequest::Limited(_)) => {}
        Err(Internal) => return internal_page(),
    }
    link_sent_page(new_cookie)
}

/// Builds the response to every well-formed link request: mailed, limited, or for an unused address.
fn link_sent_page(new_cookie: Option<Cookie<'static>>) -> HttpResponse {
    let body = format!(
        "<p>If that address can receive mail, a sign-in link is on its way. \
         The link works once, in this browser only, and expires in {} minutes.</p>\
         <p>You can close this page; the link opens a new one.</p>",
        LINK_TTL / 60,
    );
    let mut response = html(StatusCode::OK);
    if let Some(cookie) = new_cookie {
        response.cookie(cookie);
    }
    response.body(layout("Check your email", &body))
}

/// Returns the service's name for mail and text messages: the issuer's host.
pub(crate) fn service_name(state: &AppState) -> String {
    url::Url::parse(state.issuer()).ok().and_then(|url| url.host_str().map(str::to_string)).unwrap_or_else(|| state.issuer().to_string())
}

fn sign_in_mail(state: &AppState, email: &str, link: &Secret, now: UnixTime) -> SendMail {
    let url = format!("{}/auth/verify?token={}", state.issuer(), link.expose());
    let service = service_name(state);
    let minutes = LINK_TTL / 60;
    let expires = format_utc(now + LINK_TTL);

    // The link is alone on its line in the 7bit plain part, so it survives copying and line wrapping.
    let text = format!(
        "Hello,\r\n\r\n\
         Someone asked to sign in to {service} ({issuer}) with this email address.\r\n\r\n\
         To sign in, open this link in the browser where you asked for it. It works once \
         and expires in {minutes} minutes, at {expires}:\r\n\r\n\
         {url}\r\n\r\n\
         If you did not ask to sign in, ignore this message. Nobody can sign in without \
         this link, and nothing about your account changes.\r\n",
        issuer = state.issuer(),
    );
    let html = format!(
        "<!doctype html>\r\n<html><body style=\"font-family:sans-serif;color:#1d2330\">\r\n\
         <p>Hello,</p>\r\n\
         <p>Someone asked to sign in to <strong>{service}</strong> with this email address.</p>\r\n\
         <p><a href=\"{url}\" style=\"display:inline-block;padding:.6rem 1.2rem;background:#2b59c3;color:#fff;text-decoration:none;border-radius:4px\">Sign in to {service}</a></p>\r\n\
         <p>Open the link in the browser where you asked for it. It works once and expires in {minutes} minutes, at {expires}.</p>\r\n\
         <p>If the button does not work, copy this address into that browser:<br>\r\n{url}</p>\r\n\
         <p>If you did not ask to sign in, ignore this message. Nobody can sign in without this link, \
         and nothing about your account changes.</p>\r\n\
         </body></html>\r\n",
        service = escape(&service),
        url = escape(&url),
        expires = escape(&expires),
    );
    SendMail { to: email.to_string(), subject: format!("Sign in to {service}"), text, html: Some(html) }
}

fn link_problem(state: LinkState) -> HttpResponse {
    let minutes = LINK_TTL / 60;
    let (status, message) = match state {
        LinkState::Expired => (StatusCode::GONE, format!("This sign-in link has expired. Links work for {minutes} minutes; request a new one.")),
        LinkState::AlreadyUsed => (StatusCode::GONE, "This sign-in link was already used. Each link works once; request a new one.".to_string()),
        LinkState::Unknown | LinkState::Usable => (StatusCode::NOT_FOUND, "This sign-in link is not valid. Check that you opened the whole link, or request a new one.".to_string()),
    };
    message_page(status, "Sign-in link not usable", &message)
}

/// Builds the page for a usable link opened in a browser other than the one that requested it.
fn other_browser_page(status: StatusCode, link: &Secret, csrf: CsrfSeed) -> HttpResponse {
    let body = format!(
        "<p class=\"error\">This sign-in link was requested from another browser. \
         For your safety, a link works only in the browser where it was requested.</p>\
         <p>If you asked for it on another device or in another browser, open the link there.</p>\
         <p>To sign in here instead, we can email a new link for this browser to the same address.</p>\
         <form method=\"post\" action=\"/auth/resend\">{}{}\
         <button type=\"submit\">Email me a new link for this browser</button></form>",
        hidden("csrf_token", &csrf.form_token()),
        hidden("token", link.expose()),
    );
    let mut response = html(status);
    csrf.apply(&mut response);
    response.body(layout("Open the link in the browser that asked for it", &body))
}

fn presented_link(params: &Params) -> Option<Secret> {
    let token = params.get("token")?;
    let well_formed = token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then(|| Secret::from_presented(token))
}

async fn confirm_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let params = Params::parse(request.query_string().as_bytes());
    let Some(link) = presented_link(&params) else { return link_problem(LinkState::Unknown) };

    let inspected = InspectBoundLink { link: link.digest(), browser: presented_browser(&state, &request), now: state.now() };
    let csrf = csrf_seed(&state, &request);
    match ask(&state.services.accounts, inspected).await {
        Ok(LinkCheck::Usable) => {}
        // 200, not 403: a mail scanner or a second device opening the link did nothing wrong.
        Ok(LinkCheck::OtherBrowser) => return other_browser_page(StatusCode::OK, &link, csrf),
        Ok(LinkCheck::Unusable(state)) => return link_problem(state),
        Err(Internal) => return internal_page(),
    }

    let body = format!(
        "<p>Confirm that you want to sign in on this device.</p>\
         <form method=\"post\" action=\"/auth/verify\">{}{}<button type=\"submit\">Sign in</button></form>",
        hidden("csrf_token", &csrf.form_token()),
        hidden("token", link.expose()),
    );
    let mut response = html(StatusCode::OK);
    csrf.apply(&mut response);
    response.body(layout("Confirm sign-in", &body))
}

async fn confirm(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let form = Params::parse(&body);
    if !csrf_valid(&state, &request, form.get("csrf_token")) {
        return message_page(StatusCode::FORBIDDEN, "Form expired", "This form has expired or was sent from another site. Open the link from your email again.");
    }
    let Some(link) = presented_link(&form) else { return link_problem(LinkState::Unknown) };

    let consume = ConsumeBoundLink {
        link: link.digest(),
        browser: presented_browser(&state, &request),
        device: device_label(&request),
        now: state.now(),
    };
    let outcome = match ask(&state.services.accounts, consume).await {
        Ok(outcome) => outcome,
        Err(Internal) => return internal_page(),
    };
    let (session, return_to) = match outcome {
        BoundSignIn::SignedIn { session, return_to, .. } => (session, return_to),
        BoundSignIn::OtherBrowser => return other_browser_page(StatusCode::FORBIDDEN, &link, csrf_seed(&state, &request)),
        BoundSignIn::Refused(state) => return link_problem(state),
    };

    // A new session id at every sign-in; the old session, if any, ends (session fixation).
    if let Some(previous) = presented_session(&state, &request) {
        let _ = ask(&state.services.accounts, EndSession { session: previous.digest() }).await;
    }
    let target = return_to.unwrap_or_else(|| "/auth".to_string());
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, target))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(session_cookie(&state, &session))
        .finish()
}

/// Mails a new link bound to this browser for a usable link that was requested elsewhere.
async fn resend_link(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let form = Params::parse(&body);
    if !csrf_valid(&state, &request, form.get("csrf_token")) {
        return message_page(StatusCode::FORBIDDEN, "Form expired", "This form has expired or was sent from another site. Open the link from your email again.");
    }
    let Some(link) = presented_link(&form) else { return link_problem(LinkState::Unknown) };

    let now = state.now();
    let (browser, new_cookie) = browser_binding(&state, &request);
    let reissue = ReissueLink { link: link.digest(), browser, ip: limited_ip(&state, &request), now };
    match ask(&state.services.accounts, reissue).await {
        Ok(Reissue::Issued { token, email }) => {
            if ask(&state.services.mailer, sign_in_mail(&state, &email, &token, now)).await.is_err() {
                return internal_page();
            }
            link_sent_page(new_cookie)
        }
        Ok(Reissue::Limited(_)) => link_sent_page(new_cookie),
        Ok(Reissue::Unusable(state)) => link_problem(state),
        Err(Internal) => internal_page(),
    }
}

async fn sign_out(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let form = Params::parse(&body);
    if !csrf_valid(&state, &request, form.get("csrf_token")) {
        return message_page(StatusCode::FORBIDDEN, "Form expired", "This form has expired or was sent from another site. Open the sign-in page and try again.");
    }
    if let Some(session) = presented_session(&state, &request) {
        if ask(&state.services.accounts, EndSession { session: session.digest() }).await.is_err() {
            return internal_page();
        }
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/auth"))
        .cookie(expired_session_cookie(&state))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_addresses_group_ipv6_by_prefix() {
        let cases = [
            ("IPv4 stays", "203.0.113.7", "203.0.113.7"),
            ("IPv6 keeps its /64", "2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
            ("IPv4-mapped IPv6 becomes IPv4", "::ffff:203.0.113.7", "203.0.113.7"),
        ];
        for (description, raw, expected) in cases {
            let address: IpAddr = raw.parse().unwrap();
            assert_eq!(limit_key_address(address).to_string(), expected, "{description}");
        }
    }
}
