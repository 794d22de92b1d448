//! Magic-link sign-in pages under `/auth`: request a link, confirm it, sign out.
//!
//! The emailed link opens a confirmation page and only that page's POST
//! consumes the link, so mail scanners that prefetch links consume nothing.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use ucca_actors::accounts::{normalize_email, ConsumeLink, EndSession, InspectLink, LinkState, RequestLink, SignIn};
use ucca_actors::mailer::SendMail;
use ucca_actors::secret::Secret;

use crate::errors::{ask, Internal};
use crate::pages::{csrf_seed, csrf_valid, escape, hidden, html, layout, message_page};
use crate::params::Params;
use crate::session::{current_user, expired_session_cookie, presented_session, session_cookie};
use crate::state::AppState;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/auth", web::get().to(sign_in_page))
        .route("/auth/email", web::post().to(request_link))
        .route("/auth/verify", web::get().to(confirm_page))
        .route("/auth/verify", web::post().to(confirm))
        .route("/auth/logout", web::post().to(sign_out));
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
    let link = match ask(&state.services.accounts, RequestLink { email: email.clone(), return_to, now }).await {
        Ok(link) => link,
        Err(Internal) => return internal_page(),
    };
    let mail = sign_in_mail(&state, &email, &link);
    if ask(&state.services.mailer, mail).await.is_err() {
        return internal_page();
    }

    // The answer is the same for every valid address, known or not.
    let body = "<p>If that address can receive mail, a sign-in link is on its way. \
                The link works once and expires in 15 minutes.</p>\
                <p>You can close this page; the link opens a new one.</p>";
    html(StatusCode::OK).body(layout("Check your email", body))
}

fn sign_in_mail(state: &AppState, email: &str, link: &Secret) -> SendMail {
    let url = format!("{}/auth/verify?token={}", state.issuer(), link.expose());
    let text = format!(
        "Hello,\r\n\r\nSomeone asked to sign in to {issuer} with this email address.\r\n\r\n\
         To sign in, open this link within 15 minutes. It works once:\r\n\r\n{url}\r\n\r\n\
         If you did not ask to sign in, ignore this message. Nothing happens without the link.\r\n",
        issuer = state.issuer(),
    );
    SendMail { to: email.to_string(), subject: "Your sign-in link".into(), text }
}

fn link_problem(state: LinkState) -> HttpResponse {
    let (status, message) = match state {
        LinkState::Expired => (StatusCode::GONE, "This sign-in link has expired. Links work for 15 minutes; request a new one."),
        LinkState::AlreadyUsed => (StatusCode::GONE, "This sign-in link was already used. Each link works once; request a new one."),
        LinkState::Unknown | LinkState::Usable => (StatusCode::NOT_FOUND, "This sign-in link is not valid. Check that you opened the whole link, or request a new one."),
    };
    message_page(status, "Sign-in link not usable", message)
}

fn presented_link(params: &Params) -> Option<Secret> {
    let token = params.get("token")?;
    let well_formed = token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then(|| Secret::from_presented(token))
}

async fn confirm_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let params = Params::parse(request.query_string().as_bytes());
    let Some(link) = presented_link(&params) else { return link_problem(LinkState::Unknown) };

    match ask(&state.services.accounts, InspectLink { link: link.digest(), now: state.now() }).await {
        Ok(LinkState::Usable) => {}
        Ok(other) => return link_problem(other),
        Err(Internal) => return internal_page(),
    }

    let csrf = csrf_seed(&state, &request);
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

    let outcome = match ask(&state.services.accounts, ConsumeLink { link: link.digest(), now: state.now() }).await {
        Ok(outcome) => outcome,
        Err(Internal) => return internal_page(),
    };
    let (session, return_to) = match outcome {
        SignIn::SignedIn { session, return_to, .. } => (session, return_to),
        SignIn::Refused(state) => return link_problem(state),
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
