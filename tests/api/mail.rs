//! Sign-in mail over real SMTP: a Python aiosmtpd server on loopback receives
//! the messages, and can refuse the first attempts to exercise retries.

use std::time::Duration;

use reqwest::StatusCode;
use ucca_actors::mailer::RetryPolicy;
use ucca_actors::secret::Secret;

use crate::helpers::*;

/// Retries quick enough for a test: 50 ms, then 100 ms, up to five attempts.
fn quick_retry() -> RetryPolicy {
    RetryPolicy { max_attempts: 5, first_delay: Duration::from_millis(50), max_delay: Duration::from_millis(100) }
}

/// How long a test waits for the server to deliver over SMTP.
const DELIVERY_WAIT: Duration = Duration::from_secs(20);

/// Requests a sign-in link for `email` in `browser` and returns the response page.
async fn request_link(app: &TestApp, browser: &Browser, email: &str) -> Page {
    let form = browser.get(&app.url("/auth")).await;
    assert_eq!(form.status, StatusCode::OK);
    browser
        .post_form(&app.url("/auth/email"), &[("csrf_token", form.hidden("csrf_token")), ("email", email.to_string())])
        .await
}

/// Confirms a link in `browser` and returns the response to the confirmation.
async fn confirm_link(app: &TestApp, browser: &Browser, link: &str) -> Page {
    let confirm = browser.get(link).await;
    assert_eq!(confirm.status, StatusCode::OK, "confirmation page: {}", confirm.body);
    browser
        .post_form(&app.url("/auth/verify"), &[("csrf_token", confirm.hidden("csrf_token")), ("token", confirm.hidden("token"))])
        .await
}

/// Returns one MIME part, from its Content-Type line to the next boundary.
fn part<'a>(message: &'a str, content_type: &str) -> &'a str {
    let start = message.find(&format!("Content-Type: {content_type}")).unwrap_or_else(|| panic!("no {content_type} part: {message}"));
    let rest = &message[start..];
    let end = rest[2..].find("\r\n--").map_or(rest.len(), |end| end + 2);
    &rest[..end]
}

#[actix_web::test]
async fn smtp_link_arrives_and_signs_in() {
    let sink = SmtpSink::start(&[]);
    let app = spawn_app_with(|settings| {
        settings.smtp_url = Some(sink.url());
        settings.mail_retry = quick_retry();
    })
    .await;
    let browser = Browser::new();

    let sent = request_link(&app, &browser, "ada@example.com").await;
    assert_eq!(sent.status, StatusCode::OK);
    assert!(sent.body.contains("Check your email"), "{}", sent.body);

    let messages = sink.wait_for_messages(1, DELIVERY_WAIT).await;
    assert_eq!(messages.len(), 1, "attempts: {:?}", sink.attempts());
    let message = &messages[0];
    assert!(message.lines().any(|line| line == "To: ada@example.com"), "{message}");
    assert!(message.lines().any(|line| line.starts_with("Subject: Sign in to 127.0.0.1")), "{message}");
    assert!(message.lines().any(|line| line.starts_with("Message-ID: <") && line.ends_with("@localhost>")), "{message}");
    assert!(message.contains("multipart/alternative"), "{message}");

    // The plain part is 7bit with the link whole on one line; the HTML part names the same things.
    let plain = part(message, "text/plain");
    assert!(plain.contains("Content-Transfer-Encoding: 7bit"), "{plain}");
    let link = link_in_message(plain, &app.issuer).expect("link in the plain part");
    assert!(plain.lines().any(|line| line == link), "link is not alone on its line: {plain}");
    for expected in ["sign in to 127.0.0.1", "expires in 15 minutes, at 2026-01-01 00:15 UTC", "If you did not ask to sign in, ignore this message"] {
        assert!(plain.contains(expected), "plain part lacks {expected:?}: {plain}");
    }
    let html = part(message, "text/html");
    assert!(html.contains(&format!("href=\"{link}\"")), "{html}");
    assert!(html.contains("expires in 15 minutes"), "{html}");
    assert!(html.contains("If you did not ask to sign in"), "{html}");

    // Nothing went to the outbox: the mail travelled over SMTP.
    assert!(app.mailed_links("ada@example.com").is_empty());

    let signed_in = confirm_link(&app, &browser, &link).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER, "{}", signed_in.body);
    assert!(signed_in.cookie_pair("ucca_session_").is_some());
    assert_eq!(sink.attempts(), ["250"]);

    app.stop().await;
}

#[actix_web::test]
async fn temporary_failures_are_retried_until_delivered() {
    let sink = SmtpSink::start(&["--fail-first", "2"]);
    let app = spawn_app_with(|settings| {
        settings.smtp_url = Some(sink.url());
        // A second between attempts: long enough to see that the page did not wait for delivery.
        settings.mail_retry = RetryPolicy { max_attempts: 5, first_delay: Duration::from_secs(1), max_delay: Duration::from_secs(1) };
    })
    .await;
    let browser = Browser::new();

    let sent = request_link(&app, &browser, "ada@example.com").await;
    assert_eq!(sent.status, StatusCode::OK);
    assert!(sent.body.contains("Check your email"));
    assert!(sink.messages().is_empty(), "the page waited for delivery");

    let messages = sink.wait_for_messages(1, DELIVERY_WAIT).await;
    assert_eq!(messages.len(), 1, "attempts: {:?}", sink.attempts());
    let attempts = sink.attempts();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(attempts[0].starts_with("451"), "{attempts:?}");
    assert!(attempts[1].starts_with("451"), "{attempts:?}");
    assert_eq!(attempts[2], "250");

    let link = link_in_message(&messages[0], &app.issuer).expect("link in the retried message");
    let signed_in = confirm_link(&app, &browser, &link).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);

    app.stop().await;
}

#[actix_web::test]
async fn permanent_failure_is_not_retried() {
    let sink = SmtpSink::start(&["--fail-first", "5", "--fail-reply", "550 5.1.1 Mailbox unavailable"]);
    let app = spawn_app_with(|settings| {
        settings.smtp_url = Some(sink.url());
        settings.mail_retry = quick_retry();
    })
    .await;
    let browser = Browser::new();

    let sent = request_link(&app, &browser, "ada@example.com").await;
    assert_eq!(sent.status, StatusCode::OK);
    let attempts = sink.wait_for_attempts(1, DELIVERY_WAIT).await;
    assert_eq!(attempts.len(), 1);
    assert!(attempts[0].starts_with("550"), "{attempts:?}");

    // Several retry delays later there is still only the one attempt.
    actix_web::rt::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sink.attempts().len(), 1, "{:?}", sink.attempts());
    assert!(sink.messages().is_empty());

    app.stop().await;
}

#[actix_web::test]
async fn relay_credentials_come_from_url_or_password_setting() {
    let sink = SmtpSink::start(&["--auth", "mailer:s3cret pass"]);
    let cases = [
        ("password in the URL", format!("smtp://mailer:s3cret%20pass@127.0.0.1:{}", sink.port), None, true),
        ("password from UCCA_SMTP_PASSWORD", format!("smtp://mailer@127.0.0.1:{}", sink.port), Some("s3cret pass"), true),
        ("wrong password", format!("smtp://mailer@127.0.0.1:{}", sink.port), Some("wrong"), false),
    ];

    for (index, (description, url, password, delivered)) in cases.into_iter().enumerate() {
        let app = spawn_app_with(|settings| {
            settings.smtp_url = Some(url);
            settings.smtp_password = password.map(Secret::from_presented);
            settings.mail_retry = quick_retry();
        })
        .await;
        let email = format!("user{index}@example.com");
        let sent = request_link(&app, &Browser::new(), &email).await;
        assert_eq!(sent.status, StatusCode::OK, "{description}");

        let arrived = |messages: &[String]| messages.iter().any(|message| message.contains(&format!("To: {email}")));
        if delivered {
            let messages = sink.wait_for_messages(index + 1, DELIVERY_WAIT).await;
            assert!(arrived(&messages), "{description}: no message for {email}");
        } else {
            // A refused login is a 5xx reply, so there is no retry; give it time to have been tried.
            actix_web::rt::time::sleep(Duration::from_millis(600)).await;
            assert!(!arrived(&sink.messages()), "{description}: mail was accepted");
        }
        app.stop().await;
    }
}

#[actix_web::test]
async fn outbox_mail_keeps_a_plain_seven_bit_link_line() {
    let app = spawn_app().await;
    let browser = Browser::new();

    let sent = request_link(&app, &browser, "ada@example.com").await;
    assert_eq!(sent.status, StatusCode::OK);

    // The outbox is written before the response, so the file exists at once.
    let files: Vec<String> = std::fs::read_dir(app.data_dir.join("outbox"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "eml"))
        .map(|entry| std::fs::read_to_string(entry.path()).unwrap())
        .collect();
    assert_eq!(files.len(), 1);
    let message = &files[0];
    assert!(message.contains("multipart/alternative"), "{message}");
    let plain = part(message, "text/plain");
    assert!(plain.contains("Content-Transfer-Encoding: 7bit"), "{plain}");

    let links = app.mailed_links("ada@example.com");
    assert_eq!(links.len(), 1);
    assert!(plain.lines().any(|line| line == links[0]), "{plain}");
    let signed_in = confirm_link(&app, &browser, &links[0]).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);

    app.stop().await;
}
