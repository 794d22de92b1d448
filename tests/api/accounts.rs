//! Accounts: abuse limits on sign-in, links bound to the browser that asked,
//! phone verification by text message (through a stand-in of Twilio's
//! Messages API on loopback, or the outbox), and the account page.

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;

const PHONE: &str = "+61412345678";
const PHONE_AS_TYPED: &str = "+61 412 345 678";
const LOOKUP: &str = "/v1/lookup?code=BSB30120";

/// Requests a sign-in link for `email` in `browser` and returns the response page.
async fn request_link(app: &TestApp, browser: &Browser, email: &str) -> Page {
    app.submit(browser, "/auth", "/auth/email", &[("email", email)]).await
}

// ---- sign-in limits ----

#[actix_web::test]
async fn link_requests_are_limited_per_address_with_the_same_answer() {
    let app = spawn_app_with(|settings| settings.link_requests_per_address = 2).await;
    let browser = Browser::new();

    let first = request_link(&app, &browser, "ada@example.com").await;
    let second = request_link(&app, &browser, "ada@example.com").await;
    let limited = request_link(&app, &browser, "ada@example.com").await;
    let unknown = request_link(&app, &browser, "nobody-yet@example.com").await;

    for (description, page) in [("second", &second), ("limited", &limited), ("unknown address", &unknown)] {
        assert_eq!(page.status, first.status, "{description}");
        assert_eq!(page.body, first.body, "{description}: the answer differs");
    }
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(app.mailed_links("ada@example.com").len(), 2, "the limited request was mailed");
    assert_eq!(app.mailed_links("nobody-yet@example.com").len(), 1);

    // An hour later the address may ask again.
    app.clock.advance(3600);
    request_link(&app, &browser, "ada@example.com").await;
    assert_eq!(app.mailed_links("ada@example.com").len(), 3);

    app.stop().await;
}

#[actix_web::test]
async fn link_requests_are_limited_per_ip_behind_a_trusted_proxy() {
    let app = spawn_app_with(|settings| {
        settings.link_requests_per_ip = 3;
        settings.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let client = Browser::forwarded_for("203.0.113.7");

    let first = request_link(&app, &client, "a1@example.com").await;
    request_link(&app, &client, "a2@example.com").await;
    request_link(&app, &client, "a3@example.com").await;
    let limited = request_link(&app, &client, "a4@example.com").await;
    assert_eq!(limited.status, first.status);
    assert_eq!(limited.body, first.body, "the limited answer differs");
    assert_eq!(app.mailed_links("a3@example.com").len(), 1);
    assert!(app.mailed_links("a4@example.com").is_empty(), "the fourth request from one IP was mailed");

    // Another client behind the same proxy has its own count.
    request_link(&app, &Browser::forwarded_for("203.0.113.8"), "b1@example.com").await;
    assert_eq!(app.mailed_links("b1@example.com").len(), 1);

    app.stop().await;
}

#[actix_web::test]
async fn forwarded_for_from_an_untrusted_peer_is_not_believed() {
    let app = spawn_app_with(|settings| settings.link_requests_per_ip = 2).await;

    // The peer is loopback and no proxy is trusted, so each forged header is
    // ignored and every request counts against 127.0.0.1. Were the headers
    // believed, each would count against its own address and all three would mail.
    let requests = [("c1@example.com", "203.0.113.9", 1), ("c2@example.com", "203.0.113.10", 1), ("c3@example.com", "203.0.113.11", 0)];
    for (email, forged, mailed) in requests {
        let answer = request_link(&app, &Browser::forwarded_for(forged), email).await;
        assert_eq!(answer.status, StatusCode::OK, "{email}: a limited request gets the same answer");
        assert_eq!(app.mailed_links(email).len(), mailed, "{email}: links mailed");
    }

    app.stop().await;
}

// ---- browser binding ----

#[actix_web::test]
async fn link_opened_in_another_browser_offers_a_new_link() {
    let app = spawn_app().await;
    let asking = Browser::new();
    let other = Browser::new();

    request_link(&app, &asking, "ada@example.com").await;
    let link = app.mailed_links("ada@example.com").pop().expect("a sign-in link was mailed");

    // Opened elsewhere, the link explains itself and offers a way on, in a frame-proof page.
    let elsewhere = other.get(&link).await;
    assert_eq!(elsewhere.status, StatusCode::OK);
    assert!(elsewhere.body.contains("requested from another browser"), "{}", elsewhere.body);
    assert!(elsewhere.body.contains("action=\"/auth/resend\""), "{}", elsewhere.body);
    assert!(elsewhere.header("content-security-policy").contains("frame-ancestors 'none'"));

    // Confirming there is rejected and starts no session.
    let token = link.split("token=").nth(1).unwrap().to_string();
    let refused = other.post_form(&app.url("/auth/verify"), &[("csrf_token", elsewhere.hidden("csrf_token")), ("token", token.clone())]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("requested from another browser"));
    assert!(refused.cookie_pair("ucca_session_").is_none());

    // Asking for a new link from this browser mails one to the same address.
    let resent = other.post_form(&app.url("/auth/resend"), &[("csrf_token", elsewhere.hidden("csrf_token")), ("token", token)]).await;
    assert_eq!(resent.status, StatusCode::OK);
    assert!(resent.body.contains("Check your email"));
    let links = app.mailed_links("ada@example.com");
    assert_eq!(links.len(), 2);
    let new_link = links[1].clone();

    let confirm = other.get(&new_link).await;
    assert!(confirm.body.contains("Confirm sign-in"), "{}", confirm.body);
    let signed_in = other
        .post_form(&app.url("/auth/verify"), &[("csrf_token", confirm.hidden("csrf_token")), ("token", confirm.hidden("token"))])
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    assert!(signed_in.cookie_pair("ucca_session_").is_some());

    // The first link still works in the browser that asked for it.
    let original = asking.get(&link).await;
    assert!(original.body.contains("Confirm sign-in"), "{}", original.body);
    let signed_in = asking
        .post_form(&app.url("/auth/verify"), &[("csrf_token", original.hidden("csrf_token")), ("token", original.hidden("token"))])
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);

    app.stop().await;
}

// ---- phone verification ----

/// Adds a number on the phone page and returns the response.
async fn add_number(app: &TestApp, browser: &Browser, number: &str) -> Page {
    app.submit(browser, "/account/phone", "/account/phone", &[("number", number)]).await
}

/// Enters a code on the phone page and returns the response.
async fn enter_code(app: &TestApp, browser: &Browser, code: &str) -> Page {
    app.submit(browser, "/account/phone", "/account/phone/verify", &[("code", code)]).await
}

/// Returns the code in the latest outbox text message to `number`.
fn code_sent_to(app: &TestApp, number: &str) -> String {
    let texts = app.outbox_texts();
    let text = texts.iter().rev().find(|text| text.starts_with(&format!("To: {number}\r\n"))).unwrap_or_else(|| panic!("no text to {number}"));
    code_in_text(text).expect("a six-digit code in the message")
}

/// Returns a six-digit code that is not `code`.
fn other_code(code: &str) -> String {
    format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000)
}

#[actix_web::test]
async fn phone_code_through_the_gateway_verifies_the_number() {
    let gateway = SmsGateway::start().await;
    let app = spawn_app_with(|settings| use_gateway(settings, &gateway)).await;
    let browser = app.signed_in_browser("ada@example.com").await;

    let sent = add_number(&app, &browser, PHONE_AS_TYPED).await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    assert_eq!(sent.location(), "/account/phone?notice=code-sent");

    // The gateway received one request in Twilio's Messages API format.
    let requests = gateway.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, format!("/2010-04-01/Accounts/{GATEWAY_SID}/Messages.json"));
    let expected_auth = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{GATEWAY_SID}:{GATEWAY_TOKEN}")));
    assert_eq!(request.authorization.as_deref(), Some(expected_auth.as_str()));
    assert_eq!(request.content_type.as_deref(), Some("application/x-www-form-urlencoded"));
    assert_eq!(request.field("To"), Some(PHONE));
    assert_eq!(request.field("From"), Some(GATEWAY_FROM));
    let text = request.field("Body").expect("a Body field");
    assert!(text.contains("expires in 10 minutes"), "{text}");
    assert!(text.contains("If you did not ask for it"), "{text}");
    let code = code_in_text(text).expect("a six-digit code in the message");

    // The page now shows the code form, and the code verifies the number.
    let pending = browser.get(&app.url("/account/phone")).await;
    assert!(pending.body.contains("Enter the code"), "{}", pending.body);
    assert!(pending.body.contains("5 attempts left"), "{}", pending.body);
    let verified = enter_code(&app, &browser, &code).await;
    assert_eq!(verified.status, StatusCode::SEE_OTHER, "{}", verified.body);
    assert_eq!(verified.location(), "/account?notice=phone-verified");

    let account = browser.get(&app.url(verified.location())).await;
    assert!(account.body.contains("Your phone number is verified."), "{}", account.body);
    assert!(account.body.contains(&format!("Phone: <strong>{PHONE}</strong>, verified")), "{}", account.body);

    app.stop().await;
    gateway.stop().await;
}

#[actix_web::test]
async fn unreachable_gateway_gets_a_page_with_the_request_id() {
    // A port that was just free: nothing listens there, so every attempt is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let app = spawn_app_with(|settings| {
        settings.sms_gateway_url = Some(format!("http://{closed}"));
        settings.sms_account_sid = Some(GATEWAY_SID.to_string());
        settings.sms_auth_token = Some(ucca_actors::secret::Secret::from_presented(GATEWAY_TOKEN));
        settings.sms_from = Some(GATEWAY_FROM.to_string());
    })
    .await;
    let browser = app.signed_in_browser("ada@example.com").await;

    let failed = add_number(&app, &browser, PHONE).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE, "{}", failed.body);
    assert!(failed.header("content-type").starts_with("text/html"), "the person sees a page: {}", failed.header("content-type"));
    assert!(failed.body.contains("Sending the text message failed"), "{}", failed.body);
    let request_id = failed.header("x-request-id");
    assert!(!request_id.is_empty() && failed.body.contains(request_id), "the page names request id {request_id:?}: {}", failed.body);

    app.stop().await;
}

#[actix_web::test]
async fn wrong_codes_are_limited_to_five_attempts() {
    let app = spawn_app().await;
    let browser = app.signed_in_browser("ada@example.com").await;

    let sent = add_number(&app, &browser, PHONE).await;
    assert_eq!(sent.status, StatusCode::SEE_OTHER, "{}", sent.body);
    // Without a gateway the text message goes to the outbox.
    let texts = app.outbox_texts();
    assert_eq!(texts.len(), 1);
    assert!(texts[0].starts_with(&format!("To: {PHONE}")), "{}", texts[0]);
    let code = code_sent_to(&app, PHONE);
    let wrong = other_code(&code);

    for attempts_left in (2..=4).rev() {
        let refused = enter_code(&app, &browser, &wrong).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(refused.body.contains(&format!("That code is not right. {attempts_left} attempts left.")), "{}", refused.body);
    }
    let one_left = enter_code(&app, &browser, &wrong).await;
    assert_eq!(one_left.status, StatusCode::BAD_REQUEST);
    assert!(one_left.body.contains("That code is not right. 1 attempt left."), "{}", one_left.body);
    assert!(!one_left.body.contains("1 attempts"), "the plural for one attempt: {}", one_left.body);
    let page = browser.get(&app.url("/account/phone")).await;
    assert!(page.body.contains("1 attempt left."), "{}", page.body);
    assert!(!page.body.contains("1 attempts"), "the plural for one attempt: {}", page.body);

    let last = enter_code(&app, &browser, &wrong).await;
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(last.body.contains("That code is not right, and it was the last attempt. Request a new code."), "{}", last.body);

    // Even the right code is refused now, without calling it wrong.
    let right = enter_code(&app, &browser, &code).await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS, "{}", right.body);
    assert!(right.body.contains("Every attempt for this code is used up"), "{}", right.body);
    assert!(right.body.contains("Request a new code."), "{}", right.body);
    assert!(!right.body.contains("not right"), "the unchecked code is called wrong: {}", right.body);
    let account = browser.get(&app.url("/account")).await;
    assert!(account.body.contains("Phone: none."), "{}", account.body);

    app.stop().await;
}

#[actix_web::test]
async fn phone_code_expires_after_ten_minutes() {
    let app = spawn_app().await;
    let ada = app.signed_in_browser("ada@example.com").await;
    let bob = app.signed_in_browser("bob@example.com").await;
    add_number(&app, &ada, "+61412345671").await;
    add_number(&app, &bob, "+61412345672").await;
    assert_eq!(app.outbox_texts().len(), 2);
    let ada_code = code_sent_to(&app, "+61412345671");
    let bob_code = code_sent_to(&app, "+61412345672");

    // One second before the end of its ten minutes a code still works.
    app.clock.advance(10 * 60 - 1);
    assert_eq!(enter_code(&app, &ada, &ada_code).await.status, StatusCode::SEE_OTHER);

    // At ten minutes it has expired, and the page no longer offers to enter it.
    app.clock.advance(1);
    let page = bob.get(&app.url("/account/phone")).await;
    assert!(!page.body.contains("Enter the code"), "{}", page.body);
    let expired = bob.post_form(&app.url("/account/phone/verify"), &[("csrf_token", page.hidden("csrf_token")), ("code", bob_code)]).await;
    assert_eq!(expired.status, StatusCode::GONE, "{}", expired.body);
    assert!(expired.body.contains("That code has expired"), "{}", expired.body);
    let account = bob.get(&app.url("/account")).await;
    assert!(account.body.contains("Phone: none."), "{}", account.body);

    app.stop().await;
}

#[actix_web::test]
async fn removing_a_phone_reports_what_was_removed() {
    let app = spawn_app().await;
    let browser = app.signed_in_browser("ada@example.com").await;

    // With no number on file nothing is removed, and the page explains why.
    let nothing = app.submit(&browser, "/account/phone", "/account/phone/remove", &[]).await;
    assert_eq!(nothing.status, StatusCode::NOT_FOUND, "{}", nothing.body);
    assert!(nothing.body.contains("You have no phone number on your account, so nothing was removed."), "{}", nothing.body);
    assert!(nothing.body.contains("<a href=\"/account\">Back to your account</a>"), "{}", nothing.body);

    // An expired code is not a number on file either.
    add_number(&app, &browser, PHONE).await;
    app.clock.advance(10 * 60);
    let expired = app.submit(&browser, "/account/phone", "/account/phone/remove", &[]).await;
    assert_eq!(expired.status, StatusCode::NOT_FOUND, "{}", expired.body);
    assert!(expired.body.contains("so nothing was removed"), "{}", expired.body);

    // A number waiting for its code is removed, and its code stops working.
    add_number(&app, &browser, "+61412345679").await;
    let pending_code = code_sent_to(&app, "+61412345679");
    let withdrawn = app.submit(&browser, "/account/phone", "/account/phone/remove", &[]).await;
    assert_eq!(withdrawn.status, StatusCode::SEE_OTHER, "{}", withdrawn.body);
    assert_eq!(withdrawn.location(), "/account?notice=phone-pending-removed");
    let account = browser.get(&app.url(withdrawn.location())).await;
    assert!(account.body.contains("The number waiting for its code was removed."), "{}", account.body);
    let late = enter_code(&app, &browser, &pending_code).await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST, "{}", late.body);
    assert!(late.body.contains("No code is waiting"), "{}", late.body);

    // A verified number is removed once, and removing it again finds nothing.
    add_number(&app, &browser, PHONE).await;
    let code = code_sent_to(&app, PHONE);
    assert_eq!(enter_code(&app, &browser, &code).await.status, StatusCode::SEE_OTHER);
    let removed = app.submit(&browser, "/account/phone", "/account/phone/remove", &[]).await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER, "{}", removed.body);
    assert_eq!(removed.location(), "/account?notice=phone-removed");
    let account = browser.get(&app.url(removed.location())).await;
    assert!(account.body.contains("Your phone number was removed."), "{}", account.body);
    assert!(account.body.contains("Phone: none."), "{}", account.body);
    let again = app.submit(&browser, "/account/phone", "/account/phone/remove", &[]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);

    app.stop().await;
}

#[actix_web::test]
async fn phone_numbers_are_checked_before_any_code_is_sent() {
    let app = spawn_app().await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let cases = [
        ("not in international form", "0412 345 678", "international form"),
        ("Australian landline", "+61 2 9876 5432", "not an Australian mobile number"),
        ("country outside the allow-list", "+1 202 555 0143", "cannot be sent to numbers in that country"),
        ("letters", "+61 4123 4567a", "international form"),
    ];
    for (description, number, expected) in cases {
        let refused = add_number(&app, &browser, number).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{description}");
        assert!(refused.body.contains(expected), "{description}: {}", refused.body);
    }
    assert!(app.outbox_texts().is_empty(), "a code was sent to a refused number");

    app.stop().await;
}

#[actix_web::test]
async fn phone_codes_are_limited_per_number() {
    let app = spawn_app_with(|settings| settings.phone_codes_per_number = 2).await;
    let ada = app.signed_in_browser("ada@example.com").await;
    let bob = app.signed_in_browser("bob@example.com").await;

    assert_eq!(add_number(&app, &ada, PHONE).await.status, StatusCode::SEE_OTHER);
    assert_eq!(add_number(&app, &bob, PHONE).await.status, StatusCode::SEE_OTHER);
    let limited = add_number(&app, &ada, PHONE).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.body.contains("Too many codes were sent to that number"), "{}", limited.body);
    assert_eq!(app.outbox_texts().len(), 2);

    // Another number is not affected.
    assert_eq!(add_number(&app, &ada, "+61412345679").await.status, StatusCode::SEE_OTHER);

    app.stop().await;
}

#[actix_web::test]
async fn phone_codes_are_limited_per_ip() {
    let app = spawn_app_with(|settings| {
        settings.phone_codes_per_ip = 2;
        settings.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let ada = Browser::forwarded_for("203.0.113.7");
    app.sign_in(&ada, "ada@example.com").await;

    assert_eq!(add_number(&app, &ada, "+61412345671").await.status, StatusCode::SEE_OTHER);
    assert_eq!(add_number(&app, &ada, "+61412345672").await.status, StatusCode::SEE_OTHER);
    let limited = add_number(&app, &ada, "+61412345673").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.body.contains("Too many codes were requested recently"), "{}", limited.body);
    assert_eq!(app.outbox_texts().len(), 2);

    app.stop().await;
}

#[actix_web::test]
async fn phone_codes_stop_at_the_daily_cap() {
    let app = spawn_app_with(|settings| settings.sms_daily_cap = 2).await;
    let ada = app.signed_in_browser("ada@example.com").await;
    let bob = app.signed_in_browser("bob@example.com").await;

    assert_eq!(add_number(&app, &ada, "+61412345671").await.status, StatusCode::SEE_OTHER);
    assert_eq!(add_number(&app, &bob, "+61412345672").await.status, StatusCode::SEE_OTHER);
    let capped = add_number(&app, &bob, "+61412345673").await;
    assert_eq!(capped.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(capped.body.contains("as many codes as it may today"), "{}", capped.body);
    assert_eq!(app.outbox_texts().len(), 2);

    // The cap counts per UTC day.
    app.clock.advance(86_400);
    assert_eq!(add_number(&app, &bob, "+61412345673").await.status, StatusCode::SEE_OTHER);

    app.stop().await;
}

// ---- the account page ----

/// Signs `email` in from the sign-in page at `sign_in_path` and returns the response that confirms the link.
async fn sign_in_from(app: &TestApp, browser: &Browser, sign_in_path: &str, email: &str) -> Page {
    let sign_in = browser.get(&app.url(sign_in_path)).await;
    browser
        .post_form(
            &app.url("/auth/email"),
            &[("csrf_token", sign_in.hidden("csrf_token")), ("return_to", sign_in.hidden("return_to")), ("email", email.into())],
        )
        .await;
    let link = app.mailed_links(email).pop().unwrap();
    let confirm = browser.get(&link).await;
    browser
        .post_form(&app.url("/auth/verify"), &[("csrf_token", confirm.hidden("csrf_token")), ("token", confirm.hidden("token"))])
        .await
}

#[actix_web::test]
async fn account_page_needs_a_session() {
    let app = spawn_app().await;

    let anonymous = Browser::new().get(&app.url("/account")).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.location(), "/auth?return_to=%2Faccount");

    // Signing in from there comes back to the account page.
    let browser = Browser::new();
    let signed_in = sign_in_from(&app, &browser, anonymous.location(), "ada@example.com").await;
    assert_eq!(signed_in.location(), "/account");

    let page = browser.get(&app.url("/account")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.header("content-security-policy").contains("frame-ancestors 'none'"));
    assert_eq!(page.header("cache-control"), "no-store");
    assert!(page.body.contains("ada@example.com"));

    app.stop().await;
}

#[actix_web::test]
async fn phone_page_returns_to_itself_after_sign_in() {
    let app = spawn_app().await;

    let anonymous = Browser::new().get(&app.url("/account/phone")).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.location(), "/auth?return_to=%2Faccount%2Fphone");

    // A phone form sent without a session, with a valid CSRF token, goes the same way and changes nothing.
    let browser = Browser::new();
    let sign_in = browser.get(&app.url("/auth")).await;
    let form = browser.post_form(&app.url("/account/phone"), &[("csrf_token", sign_in.hidden("csrf_token")), ("number", PHONE.into())]).await;
    assert_eq!(form.status, StatusCode::SEE_OTHER, "{}", form.body);
    assert_eq!(form.location(), "/auth?return_to=%2Faccount%2Fphone");
    assert!(app.outbox_texts().is_empty(), "a code was sent without a session");

    let signed_in = sign_in_from(&app, &browser, anonymous.location(), "ada@example.com").await;
    assert_eq!(signed_in.location(), "/account/phone");
    let page = browser.get(&app.url(signed_in.location())).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Add a number"), "{}", page.body);

    app.stop().await;
}

/// Asserts that an error page for a signed-in person links back to the account page and not to sign-in.
fn assert_links_to_account(page: &Page, description: &str) {
    assert!(page.body.contains("<a href=\"/account\">Back to your account</a>"), "{description}: no link to the account page: {}", page.body);
    assert!(!page.body.contains("href=\"/auth\""), "{description}: the page links to sign-in: {}", page.body);
}

#[actix_web::test]
async fn account_error_pages_link_back_to_the_account() {
    let app = spawn_app().await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let no_fields: &[(&str, &str)] = &[];
    let cases = [
        ("plan not held", "/account/keys", vec![("tier", "enterprise")], StatusCode::FORBIDDEN, "You can create keys only on plans you hold."),
        ("unknown key", "/account/keys/rotate", vec![("key_id", "nosuch")], StatusCode::NOT_FOUND, "You hold no key with that id."),
        ("missing key", "/account/keys/rotate", no_fields.to_vec(), StatusCode::BAD_REQUEST, "The key to rotate is missing."),
        ("missing session", "/account/sessions/end", no_fields.to_vec(), StatusCode::BAD_REQUEST, "The session to sign out is missing."),
        ("missing application", "/account/applications/revoke", no_fields.to_vec(), StatusCode::BAD_REQUEST, "The application to revoke is missing."),
        ("unconfirmed deletion", "/account/delete", no_fields.to_vec(), StatusCode::BAD_REQUEST, "Tick the box to confirm"),
        ("no systems client", "/account/systems-client/secret", no_fields.to_vec(), StatusCode::NOT_FOUND, "A client for your systems is provisioned"),
    ];
    for (description, action, fields, status, message) in cases {
        let page = app.submit(&browser, "/account", action, &fields).await;
        assert_eq!(page.status, status, "{description}: {}", page.body);
        assert!(page.body.contains(message), "{description}: {}", page.body);
        assert_links_to_account(&page, description);
    }

    // A form with a stale token links to the account page when the browser
    // has a session, and to sign-in when it has none.
    for action in ["/account/keys", "/account/phone/remove", "/account/systems-client/secret"] {
        let expired = browser.post_form(&app.url(action), &[("csrf_token", "0".repeat(64))]).await;
        assert_eq!(expired.status, StatusCode::FORBIDDEN, "{action}");
        assert!(expired.body.contains("Open your account page and try again."), "{action}: {}", expired.body);
        assert_links_to_account(&expired, action);

        let anonymous = Browser::new().post_form(&app.url(action), &[("csrf_token", "0".repeat(64))]).await;
        assert_eq!(anonymous.status, StatusCode::FORBIDDEN, "{action}");
        assert!(anonymous.body.contains("<a href=\"/auth\">Go to sign-in</a>"), "{action}: {}", anonymous.body);
        assert!(!anonymous.body.contains("href=\"/account\""), "{action}: {}", anonymous.body);
    }
    assert_eq!(browser.get(&app.url("/account")).await.status, StatusCode::OK, "an error page changed the account");

    app.stop().await;
}

#[actix_web::test]
async fn account_forms_need_the_csrf_token() {
    let app = spawn_app().await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let forms = [
        "/account/sessions/end-others",
        "/account/applications/revoke",
        "/account/keys",
        "/account/delete",
        "/account/phone",
        "/account/phone/remove",
    ];
    for action in forms {
        let forged = browser.post_form(&app.url(action), &[("csrf_token", "0".repeat(64)), ("confirm", "yes".into())]).await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{action}");
    }
    assert_eq!(browser.get(&app.url("/account")).await.status, StatusCode::OK, "a forged form changed the account");

    app.stop().await;
}

#[actix_web::test]
async fn account_page_lists_sessions_and_signs_out_the_others() {
    let app = spawn_app().await;
    let laptop = app.signed_in_browser("ada@example.com").await;
    let phone = app.signed_in_browser("ada@example.com").await;

    let page = laptop.get(&app.url("/account")).await;
    assert_eq!(page.body.matches("<li data-session>").count(), 2, "{}", page.body);
    assert_eq!(page.body.matches("(this browser)").count(), 1);

    let ended = app.submit(&laptop, "/account", "/account/sessions/end-others", &[]).await;
    assert_eq!(ended.status, StatusCode::SEE_OTHER);
    assert_eq!(ended.location(), "/account?notice=others-ended");

    let page = laptop.get(&app.url(ended.location())).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body.matches("<li data-session>").count(), 1, "{}", page.body);
    assert!(page.body.contains("Every other session was signed out."));
    let signed_out = phone.get(&app.url("/account")).await;
    assert_eq!(signed_out.status, StatusCode::SEE_OTHER, "the other session still works");

    // With no other session left, the notice reports that nothing changed.
    let again = app.submit(&laptop, "/account", "/account/sessions/end-others", &[]).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.location(), "/account?notice=no-other-sessions");
    let page = laptop.get(&app.url(again.location())).await;
    assert!(page.body.contains("No other session was signed in, so nothing changed."), "{}", page.body);
    assert!(!page.body.contains("Every other session was signed out."), "{}", page.body);
    assert_eq!(page.body.matches("<li data-session>").count(), 1, "{}", page.body);

    app.stop().await;
}

#[actix_web::test]
async fn ending_an_unknown_session_changes_nothing() {
    let app = spawn_app().await;
    let laptop = app.signed_in_browser("ada@example.com").await;
    let phone = app.signed_in_browser("ada@example.com").await;
    let bob = app.signed_in_browser("bob@example.com").await;
    let bob_session = bob.get(&app.url("/account")).await.hidden("session");

    // A form without the field, or with it empty, is missing the session.
    for fields in [vec![], vec![("session", "")]] {
        let missing = app.submit(&laptop, "/account", "/account/sessions/end", &fields).await;
        assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{fields:?}: {}", missing.body);
        assert!(missing.body.contains("The session to sign out is missing."), "{fields:?}: {}", missing.body);
    }

    // An id that names none of this person's sessions is unknown.
    let unknown_id = "ab".repeat(32);
    let cases = [("not a session id", "nosuch"), ("unknown id", unknown_id.as_str()), ("another person's session", bob_session.as_str())];
    for (description, session) in cases {
        let unknown = app.submit(&laptop, "/account", "/account/sessions/end", &[("session", session)]).await;
        assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{description}: {}", unknown.body);
        assert!(unknown.body.contains("No session with that id is signed in to your account."), "{description}: {}", unknown.body);
        assert!(unknown.location().is_empty(), "{description}: redirected to {}", unknown.location());
        assert_links_to_account(&unknown, description);
    }

    // Every session still works.
    let page = laptop.get(&app.url("/account")).await;
    assert_eq!(page.body.matches("<li data-session>").count(), 2, "{}", page.body);
    assert_eq!(phone.get(&app.url("/account")).await.status, StatusCode::OK, "the other session of the person ended");
    assert_eq!(bob.get(&app.url("/account")).await.status, StatusCode::OK, "another person's session ended");

    app.stop().await;
}

#[actix_web::test]
async fn revoking_an_application_stops_its_tokens() {
    let app = spawn_app().await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let client = app.client("client_secret_basic", "http://127.0.0.1:7000/cb").await;
    let tokens = app.grant_tokens(&browser, &client, &[]).await;
    let access = tokens.body["access_token"].as_str().unwrap().to_string();
    let refresh = tokens.body["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(app.get_with_token(LOOKUP, &access).await.status(), StatusCode::OK);

    let page = browser.get(&app.url("/account")).await;
    assert!(page.body.contains(&format!("data-client-id=\"{}\"", client.id)), "{}", page.body);
    assert!(page.body.contains("Test client"));
    assert!(page.body.contains("Search and read the training corpus"), "scope descriptions are missing: {}", page.body);

    let revoked = app.submit(&browser, "/account", "/account/applications/revoke", &[("client_id", &client.id)]).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    assert_eq!(revoked.location(), "/account?notice=application-revoked");

    assert_eq!(app.get_with_token(LOOKUP, &access).await.status(), StatusCode::UNAUTHORIZED);
    let refreshed = app.refresh_grant(&client, &refresh, &[]).await;
    assert_eq!(refreshed.status, StatusCode::BAD_REQUEST);
    assert_eq!(refreshed.body["error"], "invalid_grant");
    let page = browser.get(&app.url("/account")).await;
    assert!(!page.body.contains(&format!("data-client-id=\"{}\"", client.id)), "{}", page.body);

    // Revoking it again finds nothing to revoke.
    let again = app.submit(&browser, "/account", "/account/applications/revoke", &[("client_id", &client.id)]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
    assert!(again.body.contains("No such application is authorized on your account"), "{}", again.body);

    app.stop().await;
}

#[actix_web::test]
async fn revoking_an_unknown_application_changes_nothing() {
    let app = spawn_app().await;
    let ada = app.signed_in_browser("ada@example.com").await;
    let bob = app.signed_in_browser("bob@example.com").await;
    let ada_client = app.client("client_secret_basic", "http://127.0.0.1:7000/cb").await;
    let bob_client = app.client("client_secret_basic", "http://127.0.0.1:7001/cb").await;
    let ada_access = app.grant_tokens(&ada, &ada_client, &[]).await.body["access_token"].as_str().unwrap().to_string();
    let bob_access = app.grant_tokens(&bob, &bob_client, &[]).await.body["access_token"].as_str().unwrap().to_string();

    let cases = [
        ("unknown id", "nosuch"),
        ("id no client can have", "no such id"),
        ("application authorized only by another person", bob_client.id.as_str()),
    ];
    for (description, client_id) in cases {
        let refused = app.submit(&ada, "/account", "/account/applications/revoke", &[("client_id", client_id)]).await;
        assert_eq!(refused.status, StatusCode::NOT_FOUND, "{description}: {}", refused.body);
        assert!(refused.body.contains("No such application is authorized on your account"), "{description}: {}", refused.body);
        assert!(refused.location().is_empty(), "{description}: redirected to {}", refused.location());
        assert_links_to_account(&refused, description);
    }

    // Every grant still works, and the authorized application is still listed.
    assert_eq!(app.get_with_token(LOOKUP, &ada_access).await.status(), StatusCode::OK);
    assert_eq!(app.get_with_token(LOOKUP, &bob_access).await.status(), StatusCode::OK);
    let page = ada.get(&app.url("/account")).await;
    assert!(page.body.contains(&format!("data-client-id=\"{}\"", ada_client.id)), "{}", page.body);
    let page = bob.get(&app.url("/account")).await;
    assert!(page.body.contains(&format!("data-client-id=\"{}\"", bob_client.id)), "{}", page.body);

    app.stop().await;
}

/// Serves one client ID metadata document at `/client.json` on loopback and
/// returns the public client it describes, with the server's handle.
async fn serve_metadata_document() -> (TestClient, actix_web::dev::ServerHandle) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client_id = format!("http://{}/client.json", listener.local_addr().unwrap());
    let redirect_uri = "http://127.0.0.1:7000/cb";
    let document = json!({
        "client_id": client_id,
        "client_name": "Document Agent",
        "redirect_uris": [redirect_uri],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
    })
    .to_string();

    let server = actix_web::HttpServer::new(move || {
        let document = document.clone();
        actix_web::App::new().route(
            "/client.json",
            actix_web::web::get().to(move || {
                let document = document.clone();
                async move { actix_web::HttpResponse::Ok().content_type("application/json").body(document) }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (TestClient { id: client_id, secret: None, redirect_uri: redirect_uri.into() }, handle)
}

#[actix_web::test]
async fn revoking_a_url_client_id_works() {
    let (client, host) = serve_metadata_document().await;
    let app = spawn_app_with(|settings| settings.client_metadata_test_mode = true).await;
    let browser = app.signed_in_browser("ada@example.com").await;
    let access = app.grant_tokens(&browser, &client, &[]).await.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(app.get_with_token(LOOKUP, &access).await.status(), StatusCode::OK);

    // The account page's form carries the URL, and revoking by it stops the token.
    let page = browser.get(&app.url("/account")).await;
    assert!(page.body.contains(&format!("data-client-id=\"{}\"", client.id)), "{}", page.body);
    let revoked = app.submit(&browser, "/account", "/account/applications/revoke", &[("client_id", &client.id)]).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    assert_eq!(revoked.location(), "/account?notice=application-revoked");
    assert_eq!(app.get_with_token(LOOKUP, &access).await.status(), StatusCode::UNAUTHORIZED);

    app.stop().await;
    host.stop(true).await;
}

/// Returns the key shown once on a new-key page.
fn shown_key(page: &Page) -> String {
    let marker = "<code id=\"api-key\">";
    let start = page.body.find(marker).unwrap_or_else(|| panic!("no key on the page: {}", page.body)) + marker.len();
    page.body[start..start + page.body[start..].find('<').unwrap()].to_string()
}

#[actix_web::test]
async fn keys_are_created_and_rotated_within_the_tier() {
    let app = spawn_app().await;
    let created = app.ops_create_key("ada@example.com", "developer").await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let first_id = created.body["id"].as_str().unwrap().to_string();
    let browser = app.signed_in_browser("ada@example.com").await;

    let page = browser.get(&app.url("/account")).await;
    assert!(page.body.contains(&format!("data-key-id=\"{first_id}\"")), "{}", page.body);
    assert!(page.body.contains("<option value=\"developer\">"), "{}", page.body);
    assert!(!page.body.contains("<option value=\"professional\">"));

    // A key on the plan held.
    let new_key = app.submit(&browser, "/account", "/account/keys", &[("tier", "developer")]).await;
    assert_eq!(new_key.status, StatusCode::CREATED, "{}", new_key.body);
    assert_eq!(new_key.header("cache-control"), "no-store");
    let key = shown_key(&new_key);
    assert!(key.starts_with("ucca_developer_"), "{key}");
    assert_eq!(app.get_with_token(LOOKUP, &key).await.status(), StatusCode::OK);

    // No key on a plan not held.
    let refused = app.submit(&browser, "/account", "/account/keys", &[("tier", "professional")]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("Plans you hold: developer."), "{}", refused.body);

    // Rotating replaces the key at once.
    let rotated = app.submit(&browser, "/account", "/account/keys/rotate", &[("key_id", &first_id)]).await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.body);
    let replacement = shown_key(&rotated);
    assert_eq!(app.get_with_token(LOOKUP, created.body["key"].as_str().unwrap()).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.get_with_token(LOOKUP, &replacement).await.status(), StatusCode::OK);

    // Someone else's key cannot be rotated, and they hold no plan to create keys on.
    let bob = app.signed_in_browser("bob@example.com").await;
    let not_theirs = app.submit(&bob, "/account", "/account/keys/rotate", &[("key_id", &first_id)]).await;
    assert_eq!(not_theirs.status, StatusCode::NOT_FOUND);
    let no_plan = app.submit(&bob, "/account", "/account/keys", &[("tier", "developer")]).await;
    assert_eq!(no_plan.status, StatusCode::FORBIDDEN);
    assert!(no_plan.body.contains("Plans you hold: none."), "{}", no_plan.body);

    app.stop().await;
}

#[actix_web::test]
async fn entitlement_plan_allows_keys_and_shows_usage() {
    let app = spawn_app().await;
    let set = app.put_entitlements("ada@example.com", &["rtopacks:professional"]).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text);
    let browser = app.signed_in_browser("ada@example.com").await;

    let page = browser.get(&app.url("/account")).await;
    assert!(page.body.contains("<option value=\"professional\">"), "{}", page.body);
    let new_key = app.submit(&browser, "/account", "/account/keys", &[("tier", "professional")]).await;
    assert_eq!(new_key.status, StatusCode::CREATED, "{}", new_key.body);
    let key = shown_key(&new_key);
    for _ in 0..3 {
        assert_eq!(app.get_with_token(LOOKUP, &key).await.status(), StatusCode::OK);
    }

    let page = browser.get(&app.url("/account")).await;
    assert!(page.body.contains("professional: 3 calls this month, of 25000."), "{}", page.body);

    app.stop().await;
}

/// Returns the user id of `email`, from the ops usage endpoint.
async fn user_id_of(app: &TestApp, email: &str) -> Option<String> {
    let response = app.http.get(format!("{}/ops/users/{email}/usage", app.ops)).bearer_auth(OPS_KEY).send().await.unwrap();
    if response.status() == StatusCode::NOT_FOUND {
        return None;
    }
    let body: Value = response.json().await.unwrap();
    body["user_id"].as_str().map(str::to_string)
}

#[actix_web::test]
async fn deleting_the_account_revokes_everything_and_frees_the_address() {
    let app = spawn_app().await;
    let created = app.ops_create_key("ada@example.com", "developer").await;
    let key = created.body["key"].as_str().unwrap().to_string();
    let browser = app.signed_in_browser("ada@example.com").await;
    let other_session = app.signed_in_browser("ada@example.com").await;
    let client = app.client("client_secret_basic", "http://127.0.0.1:7000/cb").await;
    let access = app.grant_tokens(&browser, &client, &[]).await.body["access_token"].as_str().unwrap().to_string();
    add_number(&app, &browser, PHONE).await;
    let code = code_sent_to(&app, PHONE);
    assert_eq!(enter_code(&app, &browser, &code).await.status, StatusCode::SEE_OTHER);
    assert_eq!(app.get_with_token(LOOKUP, &key).await.status(), StatusCode::OK);
    assert_eq!(app.get_with_token(LOOKUP, &access).await.status(), StatusCode::OK);
    let old_id = user_id_of(&app, "ada@example.com").await.expect("the user exists");

    // Without the confirmation box nothing happens.
    let unconfirmed = app.submit(&browser, "/account", "/account/delete", &[]).await;
    assert_eq!(unconfirmed.status, StatusCode::BAD_REQUEST);
    assert_eq!(app.get_with_token(LOOKUP, &key).await.status(), StatusCode::OK);

    let deleted = app.submit(&browser, "/account", "/account/delete", &[("confirm", "yes")]).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert!(deleted.body.contains("Your account is deleted."));
    let cleared = deleted.cookie_pair("ucca_session_").expect("the session cookie is cleared");
    assert!(cleared.ends_with('='), "{cleared}");

    // Every credential stopped working, and the data is gone.
    assert_eq!(app.get_with_token(LOOKUP, &access).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.get_with_token(LOOKUP, &key).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(other_session.get(&app.url("/account")).await.status, StatusCode::SEE_OTHER);
    assert_eq!(user_id_of(&app, "ada@example.com").await, None);

    // Signing in again creates a fresh, empty account.
    let again = app.signed_in_browser("ada@example.com").await;
    let new_id = user_id_of(&app, "ada@example.com").await.expect("a new user");
    assert_ne!(new_id, old_id);
    let page = again.get(&app.url("/account")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Phone: none."), "{}", page.body);
    assert!(page.body.contains("You hold no API keys."), "{}", page.body);
    assert!(page.body.contains("You have not authorized any application."), "{}", page.body);

    app.stop().await;
}
