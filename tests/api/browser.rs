//! The sign-in and consent pages in a real browser: Debian's Chromium, driven
//! headless through its ChromeDriver over the WebDriver protocol. The pages use
//! no script. This test checks what a browser adds to the HTTP client tests:
//! it fills and submits the forms, keeps the cookies under its own cookie
//! rules, and follows every redirect back to the client.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::StatusCode;
use serde_json::{json, Map};

use crate::helpers::*;

/// Where `.ci/run` installs ChromeDriver and Chromium (Debian packages chromium-driver and chromium).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long a page may take to show an expected element or URL.
const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// A ChromeDriver process on a loopback port and the browser profile its
/// sessions use, both removed when dropped.
struct Driver {
    process: Child,
    url: String,
    profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        assert!(
            std::path::Path::new(CHROMEDRIVER).exists(),
            "{CHROMEDRIVER} is missing: install the Debian packages chromium and chromium-driver, as .ci/run does"
        );
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let process = Command::new(CHROMEDRIVER)
            .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {CHROMEDRIVER}: {error}"));
        let deadline = Instant::now() + PAGE_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "ChromeDriver did not listen on port {port} within {PAGE_TIMEOUT:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { process, url: format!("http://127.0.0.1:{port}"), profile: tempfile::tempdir().unwrap() }
    }

    /// Opens a headless Chromium session with the driver's fresh profile.
    async fn session(&self) -> Client {
        let profile = self.profile.path();
        let arguments = [
            "--headless=new".to_string(),
            "--no-sandbox".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--disable-gpu".to_string(),
            "--no-first-run".to_string(),
            format!("--user-data-dir={}", profile.display()),
        ];
        let mut capabilities = Map::new();
        capabilities.insert("goog:chromeOptions".into(), json!({ "binary": CHROMIUM, "args": arguments }));
        // ChromeDriver listens on plain http on loopback, so the client needs no TLS.
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .unwrap_or_else(|error| panic!("cannot open a Chromium session through ChromeDriver: {error}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // A failed test never closes its session, and Chromium outlives the
        // driver that started it, so its processes are found by their profile.
        let profile = format!("--user-data-dir={}", self.profile.path().display());
        let _ = Command::new("pkill").args(["-KILL", "-f", "--", &profile]).status();
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Clicks the submit button whose text is `label`.
async fn click_button(browser: &Client, label: &str) {
    let found = browser.wait().at_most(PAGE_TIMEOUT).for_element(Locator::XPath(&format!("//button[normalize-space()='{label}']"))).await;
    let button = match found {
        Ok(button) => button,
        Err(error) => panic!("no button {label:?} on {:?}: {error}", browser.current_url().await.ok()),
    };
    button.click().await.unwrap_or_else(|error| panic!("clicking {label:?} failed: {error}"));
}

/// Waits until the page's `h1` reads `expected`. Right after a click the old
/// page may still be showing, and its heading goes stale once the new one loads,
/// so a failed read is retried until the timeout.
async fn wait_for_heading(browser: &Client, expected: &str) {
    let deadline = Instant::now() + PAGE_TIMEOUT;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(heading) = browser.find(Locator::Css("h1")).await {
            if let Ok(text) = heading.text().await {
                if text == expected {
                    return;
                }
                last = text;
            }
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the page heading stayed {last:?} instead of {expected:?}");
}

/// Waits until the browser's address starts with `prefix` and returns it.
async fn wait_for_url(browser: &Client, prefix: &str) -> url::Url {
    let deadline = Instant::now() + PAGE_TIMEOUT;
    loop {
        let current = browser.current_url().await.expect("read the browser's address");
        if current.as_str().starts_with(prefix) {
            return current;
        }
        assert!(Instant::now() < deadline, "the browser stayed at {current} instead of reaching {prefix}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn chromium_signs_in_and_authorizes_a_client() {
    let app = spawn_app().await;
    // Nothing listens at the client's redirect URI, so the browser stops there with the code in its address.
    let closed_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let client = app.client("client_secret_basic", &format!("http://127.0.0.1:{closed_port}/cb")).await;
    let pkce = Pkce::new();
    let driver = Driver::start();
    let browser = driver.session().await;

    // The authorization request sends a browser without a session to the sign-in page.
    browser.goto(&app.authorize_url(&client, &pkce, &[("scope", "read")])).await.unwrap();
    wait_for_url(&browser, &app.url("/auth")).await;
    let email = browser.wait().at_most(PAGE_TIMEOUT).for_element(Locator::Css("input[name=email]")).await.unwrap();
    email.send_keys("chromium@example.com").await.unwrap();
    click_button(&browser, "Email me a sign-in link").await;
    wait_for_heading(&browser, "Check your email").await;

    // The mailed link opens a confirmation page; only its button signs in.
    let links = app.mailed_links("chromium@example.com");
    assert_eq!(links.len(), 1, "one sign-in link was mailed");
    browser.goto(&links[0]).await.unwrap();
    click_button(&browser, "Sign in").await;

    // Back at the request, the consent page names the client's scope in plain words.
    let consent = browser.wait().at_most(PAGE_TIMEOUT).for_element(Locator::XPath("//button[normalize-space()='Allow']")).await;
    assert!(consent.is_ok(), "no consent page at {:?}", browser.current_url().await.ok());
    let page = browser.source().await.unwrap();
    assert!(page.contains("Search and read the training corpus"), "the consent page describes the read scope");

    // The session cookie the browser keeps is out of the page's scripts' reach.
    let cookies = browser.get_all_cookies().await.unwrap();
    let session = cookies.iter().find(|cookie| cookie.name().starts_with("ucca_session")).expect("a session cookie");
    assert_eq!(session.http_only(), Some(true), "the session cookie is HttpOnly");
    click_button(&browser, "Allow").await;

    let back = wait_for_url(&browser, &client.redirect_uri).await;
    assert_eq!(query_value(&back, "state").as_deref(), Some("xyz-state"));
    assert_eq!(query_value(&back, "iss").as_deref(), Some(app.issuer.as_str()));
    let code = query_value(&back, "code").expect("the redirect carries a code");

    let exchanged = JsonReply::read(app.exchange(&client, &code, &pkce.verifier).await).await;
    assert_eq!(exchanged.status, StatusCode::OK, "{}", exchanged.text);
    let token = exchanged.body["access_token"].as_str().unwrap_or_default();
    assert_eq!(app.get_with_token("/v1/search?q=business", token).await.status(), StatusCode::OK);

    browser.close().await.unwrap();
    app.stop().await;
}
