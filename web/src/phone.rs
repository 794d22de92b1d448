//! Phone verification pages under `/account/phone`: add a number, receive a
//! code by text message, enter it, or remove the number.
//!
//! The Accounts actor decides everything that needs state: the allow-list of
//! countries, the toll-fraud limits, the code and its attempts. This module
//! reads the form, sends the code through the Sms actor and shows the outcome.

use actix_web::http::StatusCode;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use ucca_actors::phone::{
    CodeCheck, CodeIssue, GetPhone, IssuePhoneCode, NumberProblem, PhoneLimit, PhoneNumber, PhoneRemoval, PhoneStatus, RemovePhone,
    VerifyPhoneCode, CODE_DIGITS, CODE_TTL,
};
use ucca_actors::secret::Secret;
use ucca_actors::sms::{SendSms, SmsError};
use ucca_actors::UnixTime;

use crate::account::{back_to_account, format_utc, internal_page, signed_in, signed_in_form};
use crate::errors::{ask, Internal};
use crate::middleware::RequestId;
use crate::pages::{csrf_seed, escape, hidden, html, layout, CsrfSeed};
use crate::signin::{limited_ip, service_name};
use crate::state::AppState;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/account/phone").get(phone_page).post(send_code))
        .service(web::resource("/account/phone/verify").post(verify_code))
        .service(web::resource("/account/phone/remove").post(remove_number));
}

/// Path of the phone page, where sign-in returns after a request to it or to one of its forms.
const PHONE_PAGE: &str = "/account/phone";

/// Minutes a code lives.
fn code_minutes() -> u64 {
    CODE_TTL / 60
}

async fn phone_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let person = match signed_in(&state, &request, PHONE_PAGE).await {
        Ok(person) => person,
        Err(response) => return response,
    };
    let status = match ask(&state.services.accounts, GetPhone { user_id: person.user.user_id.clone(), now: state.now() }).await {
        Ok(status) => status,
        Err(Internal) => return internal_page(),
    };
    let notice = match request.query_string() {
        "notice=code-sent" => Some("We sent a code by text message. It may take a minute to arrive."),
        _ => None,
    };
    render(&state, &request, StatusCode::OK, &status, notice.map(Ok))
}

/// A line of the page: good news (`Ok`) or a problem to fix (`Err`).
type Line<'a> = Result<&'a str, &'a str>;

fn render(state: &AppState, request: &HttpRequest, status_code: StatusCode, status: &PhoneStatus, line: Option<Line<'_>>) -> HttpResponse {
    let csrf = csrf_seed(state, request);
    let body = page_body(&csrf, status, line);
    let mut response = html(status_code);
    csrf.apply(&mut response);
    response.body(layout("Phone number", &body))
}

fn page_body(csrf: &CsrfSeed, status: &PhoneStatus, line: Option<Line<'_>>) -> String {
    let token = csrf.form_token();
    let line = match line {
        Some(Ok(text)) => format!("<p class=\"notice\" role=\"status\">{}</p>", escape(text)),
        Some(Err(text)) => format!("<p class=\"error\" role=\"alert\">{}</p>", escape(text)),
        None => String::new(),
    };

    let current = match &status.verified {
        Some(verified) => format!(
            "<p>Your verified number is <strong>{}</strong>, since {}.</p>\
             <form method=\"post\" action=\"/account/phone/remove\">{}<button class=\"secondary\" type=\"submit\">Remove this number</button></form>",
            escape(verified.number.as_str()),
            escape(&format_utc(verified.verified_at)),
            hidden("csrf_token", &token),
        ),
        None => "<p>You have no verified phone number.</p>".to_string(),
    };
    let pending = match &status.pending {
        Some(pending) => format!(
            "<h2>Enter the code</h2><p>We sent a {CODE_DIGITS}-digit code to <strong>{}</strong>. It works until {}. {}</p>\
             <form method=\"post\" action=\"/account/phone/verify\">{}\
             <label for=\"code\">Code</label>\
             <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9 ]*\" maxlength=\"12\" required>\
             <button type=\"submit\">Verify</button></form>",
            escape(pending.number.as_str()),
            escape(&format_utc(pending.expires_at)),
            attempts_left_text(pending.attempts_left),
            hidden("csrf_token", &token),
        ),
        None => String::new(),
    };
    let add_title = if status.verified.is_some() { "Change your number" } else { "Add a number" };
    format!(
        "{line}{current}{pending}<h2>{add_title}</h2>\
         <p>Enter a mobile number in international form, starting with + and the country code, such as +61 412 345 678. \
         We text it a code that works for {minutes} minutes.</p>\
         <form method=\"post\" action=\"/account/phone\">{csrf}\
         <label for=\"number\">Mobile number</label>\
         <input id=\"number\" name=\"number\" type=\"tel\" autocomplete=\"tel\" required>\
         <button type=\"submit\">Text me a code</button></form>\
         <p><a href=\"/account\">Back to your account</a></p>",
        minutes = code_minutes(),
        csrf = hidden("csrf_token", &token),
    )
}

/// Returns `"1 attempt left."` or `"<n> attempts left."`.
fn attempts_left_text(attempts_left: u32) -> String {
    match attempts_left {
        1 => "1 attempt left.".to_string(),
        n => format!("{n} attempts left."),
    }
}

/// Re-reads the phone status and shows the page with a problem line.
async fn problem(state: &AppState, request: &HttpRequest, status_code: StatusCode, user_id: &str, text: &str) -> HttpResponse {
    match ask(&state.services.accounts, GetPhone { user_id: user_id.to_string(), now: state.now() }).await {
        Ok(status) => render(state, request, status_code, &status, Some(Err(text))),
        Err(Internal) => internal_page(),
    }
}

async fn send_code(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let (form, person) = match signed_in_form(&state, &request, &body, PHONE_PAGE).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let user_id = person.user.user_id.clone();
    let number = match PhoneNumber::parse(form.get("number").unwrap_or("")) {
        Ok(number) => number,
        Err(NumberProblem::NotE164) => {
            let text = "That is not a phone number in international form. Start with + and the country code, such as +61 412 345 678.";
            return problem(&state, &request, StatusCode::BAD_REQUEST, &user_id, text).await;
        }
        Err(NumberProblem::NotAustralianMobile) => {
            let text = "That is not an Australian mobile number. Mobile numbers read +61 4 and eight more digits.";
            return problem(&state, &request, StatusCode::BAD_REQUEST, &user_id, text).await;
        }
    };

    let now = state.now();
    let issue = IssuePhoneCode { user_id: user_id.clone(), number: number.clone(), ip: limited_ip(&state, &request), now };
    let code = match ask(&state.services.accounts, issue).await {
        Ok(CodeIssue::Issued { code, .. }) => code,
        Ok(CodeIssue::AlreadyVerified) => return back_to_account("phone-already-verified"),
        Ok(CodeIssue::CountryNotAllowed) => {
            let text = "Codes cannot be sent to numbers in that country from this service. Use a number with an accepted country code.";
            return problem(&state, &request, StatusCode::BAD_REQUEST, &user_id, text).await;
        }
        Ok(CodeIssue::Limited(limit)) => {
            return problem(&state, &request, StatusCode::TOO_MANY_REQUESTS, &user_id, limit_text(limit)).await;
        }
        Err(Internal) => return internal_page(),
    };

    let message = SendSms { to: number, body: code_message(&state, &code, now) };
    match state.services.sms.send(message).await {
        Ok(Ok(_)) => HttpResponse::SeeOther().insert_header(("location", "/account/phone?notice=code-sent")).finish(),
        Ok(Err(SmsError::Rejected { .. })) => {
            let text = "The text message service could not deliver to that number. Check the number and try again.";
            problem(&state, &request, StatusCode::BAD_REQUEST, &user_id, text).await
        }
        Ok(Err(_)) => {
            let request_id = request.extensions().get::<RequestId>().map(|id| id.0.clone()).unwrap_or_default();
            let text = format!("Sending the text message failed. Try again in a few minutes; if it keeps failing, quote request id {request_id}.");
            problem(&state, &request, StatusCode::SERVICE_UNAVAILABLE, &user_id, &text).await
        }
        Err(error) => {
            tracing::error!(%error, "SMS actor mailbox failed");
            internal_page()
        }
    }
}

/// Returns the message shown when a toll-fraud limit rejects a code.
fn limit_text(limit: PhoneLimit) -> &'static str {
    match limit {
        PhoneLimit::Number => "Too many codes were sent to that number recently. Try again in an hour.",
        PhoneLimit::Ip | PhoneLimit::Account => "Too many codes were requested recently. Try again in an hour.",
        PhoneLimit::DailyCap => "This service has sent as many codes as it may today. Try again tomorrow.",
    }
}

/// Builds the text message: the code first, for phones that offer to fill it in,
/// then the service, the expiry and what to do if the person did not ask. The last
/// line is the origin-bound form that browsers' one-time-code autofill reads.
fn code_message(state: &AppState, code: &Secret, now: UnixTime) -> Secret {
    let service = service_name(state);
    Secret::from_presented(format!(
        "{code} is your {service} verification code. It expires in {minutes} minutes, at {expires}. \
         If you did not ask for it, ignore this message.\n\n@{service} #{code}",
        code = code.expose(),
        minutes = code_minutes(),
        expires = format_utc(now + code_minutes() * 60),
    ))
}

async fn verify_code(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let (form, person) = match signed_in_form(&state, &request, &body, PHONE_PAGE).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let user_id = person.user.user_id.clone();
    let typed: String = form.get("code").unwrap_or("").chars().filter(|c| !c.is_whitespace()).collect();
    if typed.len() != CODE_DIGITS || !typed.bytes().all(|b| b.is_ascii_digit()) {
        let text = format!("The code is the {CODE_DIGITS} digits in the text message.");
        return problem(&state, &request, StatusCode::BAD_REQUEST, &user_id, &text).await;
    }

    let check = VerifyPhoneCode { user_id: user_id.clone(), code: Secret::from_presented(typed), now: state.now() };
    let (status_code, text) = match ask(&state.services.accounts, check).await {
        Ok(CodeCheck::Verified { .. }) => return back_to_account("phone-verified"),
        Ok(CodeCheck::Wrong { attempts_left: 0 }) => {
            (StatusCode::TOO_MANY_REQUESTS, "That code is not right, and it was the last attempt. Request a new code.".to_string())
        }
        // The code was not checked, so the message must not say whether it was right.
        Ok(CodeCheck::NoAttemptsLeft) => {
            (StatusCode::TOO_MANY_REQUESTS, "Every attempt for this code is used up, so it can no longer be checked. Request a new code.".to_string())
        }
        Ok(CodeCheck::Wrong { attempts_left }) => {
            (StatusCode::BAD_REQUEST, format!("That code is not right. {}", attempts_left_text(attempts_left)))
        }
        Ok(CodeCheck::Expired) => (StatusCode::GONE, "That code has expired. Request a new code.".to_string()),
        Ok(CodeCheck::NothingPending) => (StatusCode::BAD_REQUEST, "No code is waiting. Request a code first.".to_string()),
        Err(Internal) => return internal_page(),
    };
    problem(&state, &request, status_code, &user_id, &text).await
}

async fn remove_number(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let (_, person) = match signed_in_form(&state, &request, &body, PHONE_PAGE).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let user_id = person.user.user_id.clone();
    match ask(&state.services.accounts, RemovePhone { user_id: user_id.clone(), now: state.now() }).await {
        Ok(PhoneRemoval::Verified) => back_to_account("phone-removed"),
        Ok(PhoneRemoval::Pending) => back_to_account("phone-pending-removed"),
        Ok(PhoneRemoval::Nothing) => {
            let text = "You have no phone number on your account, so nothing was removed.";
            problem(&state, &request, StatusCode::NOT_FOUND, &user_id, text).await
        }
        Err(Internal) => internal_page(),
    }
}
