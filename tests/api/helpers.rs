//! Test harness: runs the real application on 127.0.0.1 port 0 with a temporary
//! store and a pinned clock, plus a cookie-keeping browser and outbox reading.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use reqwest::redirect::Policy;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use ucca_actors::ManualClock;
use ucca_auth::settings::Settings;
use ucca_auth::startup::{Application, StartupError};

pub const OPS_KEY: &str = "test-ops-key-0123456789";
/// A fixed start time for the pinned clock: 2026-01-01T00:00:00Z.
pub const START: u64 = 1_767_225_600;

pub struct TestApp {
    pub base: String,
    pub ops: String,
    pub issuer: String,
    pub clock: Arc<ManualClock>,
    pub data_dir: PathBuf,
    /// A plain HTTP client that follows no redirects.
    pub http: reqwest::Client,
    handles: (ServerHandle, ServerHandle),
    task: actix_web::rt::task::JoinHandle<Result<(), StartupError>>,
    _temp: Option<tempfile::TempDir>,
}

/// Starts the application on a fresh temporary store.
pub async fn spawn_app() -> TestApp {
    let temp = tempfile::tempdir().expect("create temporary directory");
    let dir = temp.path().to_path_buf();
    let mut app = spawn_app_in(&dir, Arc::new(ManualClock::new(START))).await;
    app._temp = Some(temp);
    app
}

/// Starts the application on an existing data directory, as after a restart.
pub async fn spawn_app_in(data_dir: &Path, clock: Arc<ManualClock>) -> TestApp {
    spawn_app_configured(data_dir, clock, |_| {}).await
}

/// Starts the application on a fresh temporary store after `configure` adjusts the settings.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let temp = tempfile::tempdir().expect("create temporary directory");
    let dir = temp.path().to_path_buf();
    let mut app = spawn_app_configured(&dir, Arc::new(ManualClock::new(START)), configure).await;
    app._temp = Some(temp);
    app
}

/// Starts the application on `data_dir` after `configure` adjusts the settings, as after a restart with other settings.
pub async fn spawn_app_configured(data_dir: &Path, clock: Arc<ManualClock>, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = Settings::defaults();
    settings.bind = "127.0.0.1:0".parse().unwrap();
    settings.ops_bind = "127.0.0.1:0".parse().unwrap();
    settings.data_dir = data_dir.to_path_buf();
    settings.ops_api_key = Some(ucca_actors::secret::Secret::from_presented(OPS_KEY));
    settings.http_workers = 2;
    // Every test request comes from 127.0.0.1, so per-IP limits are raised out
    // of the way; the tests of those limits set their own values.
    settings.link_requests_per_ip = 10_000;
    settings.phone_codes_per_ip = 10_000;
    configure(&mut settings);

    // The previous instance's actor threads may still be closing the store after a restart.
    let mut attempts = 0;
    let application = loop {
        match Application::build(settings.clone(), clock.clone()).await {
            Ok(application) => break application,
            Err(StartupError::Store(ucca_actors::StoreError::Locked(_))) if attempts < 100 => {
                attempts += 1;
                actix_web::rt::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("application failed to start: {error}"),
        }
    };

    let base = format!("http://{}", application.public_address());
    let ops = format!("http://{}", application.ops_address());
    let issuer = application.issuer().to_string();
    let handles = application.handles();
    let task = actix_web::rt::spawn(application.run_until_stopped());
    TestApp {
        base,
        ops,
        issuer,
        clock,
        data_dir: data_dir.to_path_buf(),
        http: reqwest::Client::builder().redirect(Policy::none()).build().unwrap(),
        handles,
        task,
        _temp: None,
    }
}

impl TestApp {
    /// Stops both servers, waits for the store to be flushed, and hands back the temporary directory.
    pub async fn stop(self) -> Option<tempfile::TempDir> {
        self.handles.0.stop(true).await;
        self.handles.1.stop(true).await;
        self.task.await.expect("server task panicked").expect("server stopped with an error");
        self._temp
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn register_client(&self, metadata: Value) -> Response {
        self.http
            .post(format!("{}/ops/clients", self.ops))
            .bearer_auth(OPS_KEY)
            .json(&metadata)
            .send()
            .await
            .unwrap()
    }

    /// Registers a client and returns its id and, for confidential clients, its secret.
    pub async fn client(&self, method: &str, redirect_uri: &str) -> TestClient {
        let response = self
            .register_client(json!({
                "client_name": "Test client",
                "redirect_uris": [redirect_uri],
                "token_endpoint_auth_method": method,
            }))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        TestClient {
            id: body["client_id"].as_str().unwrap().to_string(),
            secret: body["client_secret"].as_str().map(str::to_string),
            redirect_uri: redirect_uri.to_string(),
        }
    }

    /// The sign-in links mailed so far to `email`, oldest first, read from the outbox files.
    pub fn mailed_links(&self, email: &str) -> Vec<String> {
        let outbox = self.data_dir.join("outbox");
        let mut messages: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(&outbox)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "eml"))
                    .map(|entry| {
                        let modified = entry.metadata().and_then(|meta| meta.modified()).unwrap();
                        (modified, std::fs::read_to_string(entry.path()).unwrap())
                    })
                    .collect()
            })
            .unwrap_or_default();
        messages.sort_by_key(|(modified, _)| *modified);
        messages
            .into_iter()
            .filter(|(_, text)| text.lines().any(|line| line.eq_ignore_ascii_case(&format!("To: {email}"))))
            .filter_map(|(_, text)| {
                let start = text.find(&format!("{}/auth/verify?token=", self.issuer))?;
                let link: String = text[start..].chars().take_while(|c| !c.is_whitespace()).collect();
                Some(link)
            })
            .collect()
    }

    /// Signs `email` in through the whole magic-link flow and returns the browser holding the session.
    pub async fn signed_in_browser(&self, email: &str) -> Browser {
        let browser = Browser::new();
        let form = browser.get(&self.url("/auth")).await;
        assert_eq!(form.status, StatusCode::OK);
        let sent = browser
            .post_form(&self.url("/auth/email"), &[("csrf_token", form.hidden("csrf_token")), ("email", email.to_string())])
            .await;
        assert_eq!(sent.status, StatusCode::OK);
        let link = self.mailed_links(email).pop().expect("a sign-in link was mailed");
        let confirm = browser.get(&link).await;
        assert_eq!(confirm.status, StatusCode::OK);
        let signed_in = browser
            .post_form(&self.url("/auth/verify"), &[("csrf_token", confirm.hidden("csrf_token")), ("token", confirm.hidden("token"))])
            .await;
        assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
        browser
    }

    /// Runs authorize and consent in a signed-in browser and returns the redirect URL with the code.
    pub async fn authorize(&self, browser: &Browser, client: &TestClient, pkce: &Pkce, extra: &[(&str, &str)]) -> url::Url {
        let mut url = url::Url::parse(&self.url("/oauth/authorize")).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.id)
            .append_pair("redirect_uri", &client.redirect_uri)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "xyz-state");
        for (name, value) in extra {
            url.query_pairs_mut().append_pair(name, value);
        }
        let consent = browser.get(url.as_str()).await;
        assert_eq!(consent.status, StatusCode::OK, "consent page: {}", consent.body);
        let mut fields = consent.hidden_fields();
        fields.push(("decision".into(), "allow".into()));
        let decided = browser.post_form(&self.url("/oauth/authorize"), &fields).await;
        assert_eq!(decided.status, StatusCode::SEE_OTHER, "{}", decided.body);
        url::Url::parse(decided.location()).unwrap()
    }

    /// Exchanges a code at the token endpoint with the client's own authentication method.
    pub async fn exchange(&self, client: &TestClient, code: &str, verifier: &str) -> Response {
        let mut form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", client.redirect_uri.clone()),
            ("code_verifier", verifier.to_string()),
        ];
        let mut request = self.http.post(self.url("/oauth/token"));
        match &client.secret {
            Some(secret) => request = request.basic_auth(&client.id, Some(secret)),
            None => form.push(("client_id", client.id.clone())),
        }
        request.form(&form).send().await.unwrap()
    }

    /// Runs the whole flow for a new confidential client and returns the client and an access token.
    pub async fn token_for(&self, email: &str) -> (TestClient, String) {
        let client = self.client("client_secret_basic", "http://127.0.0.1:7000/cb").await;
        let browser = self.signed_in_browser(email).await;
        let pkce = Pkce::new();
        let redirect = self.authorize(&browser, &client, &pkce, &[]).await;
        let code = query_value(&redirect, "code").expect("redirect carries a code");
        let response = self.exchange(&client, &code, &pkce.verifier).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        (client, body["access_token"].as_str().unwrap().to_string())
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> Response {
        self.http.get(self.url(path)).bearer_auth(token).send().await.unwrap()
    }
}

pub struct TestClient {
    pub id: String,
    pub secret: Option<String>,
    pub redirect_uri: String,
}

/// A PKCE verifier and its S256 challenge.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Pkce {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let verifier = URL_SAFE_NO_PAD.encode(bytes);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Pkce { verifier, challenge }
    }
}

pub fn query_value(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// A browser: keeps cookies, follows no redirects, and reads forms out of pages.
pub struct Browser {
    client: reqwest::Client,
}

pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Browser {
    pub fn new() -> Browser {
        Browser { client: reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap() }
    }

    pub async fn get(&self, url: &str) -> Page {
        Page::from(self.client.get(url).send().await.unwrap()).await
    }

    pub async fn post_form(&self, url: &str, fields: &[(impl AsRef<str>, impl AsRef<str>)]) -> Page {
        let encoded: Vec<(&str, &str)> = fields.iter().map(|(name, value)| (name.as_ref(), value.as_ref())).collect();
        Page::from(self.client.post(url).form(&encoded).send().await.unwrap()).await
    }
}

impl Page {
    async fn from(response: Response) -> Page {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        Page { status, headers, body }
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or("")
    }

    pub fn location(&self) -> &str {
        self.header("location")
    }

    /// Every hidden input of the page as (name, value), unescaped.
    pub fn hidden_fields(&self) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        let mut rest = self.body.as_str();
        while let Some(start) = rest.find("<input type=\"hidden\" name=\"") {
            rest = &rest[start + 27..];
            let name_end = rest.find('"').unwrap();
            let name = unescape(&rest[..name_end]);
            let value_start = rest.find("value=\"").unwrap() + 7;
            let value_end = value_start + rest[value_start..].find('"').unwrap();
            fields.push((name, unescape(&rest[value_start..value_end])));
            rest = &rest[value_end..];
        }
        fields
    }

    pub fn hidden(&self, name: &str) -> String {
        self.hidden_fields()
            .into_iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value)
            .unwrap_or_else(|| panic!("page has no hidden field {name}: {}", self.body))
    }
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// Starts the application on an existing data directory and a fixed public address.
/// The issuer comes from the public address, and tokens are bound to `<issuer>/v1`,
/// so a restart must reuse the address for the earlier tokens to stay valid.
pub async fn spawn_app_at(data_dir: &Path, clock: Arc<ManualClock>, public_address: std::net::SocketAddr) -> TestApp {
    spawn_app_configured(data_dir, clock, |settings| settings.bind = public_address).await
}

impl TestApp {
    /// Returns the address the public listener is bound to.
    pub fn public_address(&self) -> std::net::SocketAddr {
        self.base.trim_start_matches("http://").parse().expect("base URL is http://<ip>:<port>")
    }

    /// Runs authorize, and consent when the user has not approved the client yet, and returns the code.
    pub async fn code_for(&self, browser: &Browser, client: &TestClient, pkce: &Pkce) -> String {
        let mut url = url::Url::parse(&self.url("/oauth/authorize")).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.id)
            .append_pair("redirect_uri", &client.redirect_uri)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "xyz-state");
        let first = browser.get(url.as_str()).await;
        let redirect = match first.status {
            // A remembered consent sends the browser straight back with a code.
            StatusCode::SEE_OTHER => first.location().to_string(),
            StatusCode::OK => {
                let mut fields = first.hidden_fields();
                fields.push(("decision".into(), "allow".into()));
                let decided = browser.post_form(&self.url("/oauth/authorize"), &fields).await;
                assert_eq!(decided.status, StatusCode::SEE_OTHER, "consent: {}", decided.body);
                decided.location().to_string()
            }
            status => panic!("authorize returned {status}: {}", first.body),
        };
        let redirect = url::Url::parse(&redirect).unwrap_or_else(|_| panic!("authorize redirected to {redirect:?}"));
        query_value(&redirect, "code").unwrap_or_else(|| panic!("redirect carries no code: {redirect}"))
    }

    /// Signs `email` in within `browser` and returns the new session cookie as `name=value`.
    pub async fn sign_in(&self, browser: &Browser, email: &str) -> String {
        let form = browser.get(&self.url("/auth")).await;
        assert_eq!(form.status, StatusCode::OK);
        let sent = browser
            .post_form(&self.url("/auth/email"), &[("csrf_token", form.hidden("csrf_token")), ("email", email.to_string())])
            .await;
        assert_eq!(sent.status, StatusCode::OK);
        let link = self.mailed_links(email).pop().expect("a sign-in link was mailed");
        let confirm = browser.get(&link).await;
        assert_eq!(confirm.status, StatusCode::OK);
        let signed_in = browser
            .post_form(&self.url("/auth/verify"), &[("csrf_token", confirm.hidden("csrf_token")), ("token", confirm.hidden("token"))])
            .await;
        assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
        signed_in.cookie_pair("ucca_session_").expect("sign-in sets a session cookie")
    }

    /// Deactivates a client through the ops API.
    pub async fn deactivate_client(&self, client_id: &str) -> Response {
        self.http.delete(format!("{}/ops/clients/{client_id}", self.ops)).bearer_auth(OPS_KEY).send().await.unwrap()
    }
}

impl Page {
    /// Returns the `name=value` of the first cookie this response sets whose name starts with `prefix`.
    pub fn cookie_pair(&self, prefix: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or("").trim().to_string())
            .find(|pair| pair.starts_with(prefix))
    }
}

/// A response read whole, with its body parsed as JSON (`Value::Null` when it is not JSON).
pub struct JsonReply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub body: Value,
}

impl JsonReply {
    pub async fn read(response: Response) -> JsonReply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        JsonReply { status, headers, text, body }
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or("")
    }

    /// The names of the body's fields, sorted; empty when the body is not a JSON object.
    pub fn field_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.body.as_object().map(|object| object.keys().cloned().collect()).unwrap_or_default();
        names.sort();
        names
    }
}

/// An `Authorization: Basic` value for a client id and secret.
pub fn basic_authorization(client_id: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{secret}")))
}

/// Query or form parameters in request order, so a table row can drop, replace or repeat one.
#[derive(Clone, Debug)]
pub struct Pairs(pub Vec<(String, String)>);

impl Pairs {
    pub fn new(pairs: &[(&str, &str)]) -> Pairs {
        Pairs(pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect())
    }

    pub fn without(mut self, name: &str) -> Pairs {
        self.0.retain(|(key, _)| key != name);
        self
    }

    /// Replaces every value of `name`, or adds `name` when it is absent.
    pub fn with(self, name: &str, value: &str) -> Pairs {
        self.without(name).plus(name, value)
    }

    /// Adds another `name` after the existing parameters.
    pub fn plus(mut self, name: &str, value: &str) -> Pairs {
        self.0.push((name.to_string(), value.to_string()));
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The parameters as `application/x-www-form-urlencoded` text.
    pub fn encode(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&self.0).finish()
    }
}

/// The redirect URI of clients registered by [`TestApp::scoped_client`].
pub const SCOPED_REDIRECT: &str = "http://127.0.0.1:7000/cb";

impl TestApp {
    /// Registers a `client_secret_basic` client that may request the space-separated `scope`.
    pub async fn scoped_client(&self, scope: &str) -> TestClient {
        let response = self
            .register_client(json!({
                "client_name": "Scoped client",
                "redirect_uris": [SCOPED_REDIRECT],
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": scope,
            }))
            .await;
        let reply = JsonReply::read(response).await;
        assert_eq!(reply.status, StatusCode::CREATED, "register a client with scope {scope:?}: {}", reply.text);
        TestClient {
            id: reply.body["client_id"].as_str().unwrap().to_string(),
            secret: reply.body["client_secret"].as_str().map(str::to_string),
            redirect_uri: SCOPED_REDIRECT.to_string(),
        }
    }

    /// Replaces the scopes `email` holds through `PUT /ops/users/{email}/entitlements`.
    pub async fn put_entitlements(&self, email: &str, scopes: &[&str]) -> JsonReply {
        let response = self
            .http
            .put(format!("{}/ops/users/{email}/entitlements", self.ops))
            .bearer_auth(OPS_KEY)
            .json(&json!({ "scopes": scopes }))
            .send()
            .await
            .unwrap();
        JsonReply::read(response).await
    }

    /// Reads the scopes `email` holds through `GET /ops/users/{email}/entitlements`.
    pub async fn get_entitlements(&self, email: &str) -> JsonReply {
        let response =
            self.http.get(format!("{}/ops/users/{email}/entitlements", self.ops)).bearer_auth(OPS_KEY).send().await.unwrap();
        JsonReply::read(response).await
    }

    /// Withdraws the consent `email` gave `client_id` through the ops API.
    pub async fn withdraw_consent(&self, email: &str, client_id: &str) -> JsonReply {
        let response = self
            .http
            .delete(format!("{}/ops/users/{email}/consents/{client_id}", self.ops))
            .bearer_auth(OPS_KEY)
            .send()
            .await
            .unwrap();
        JsonReply::read(response).await
    }

    /// Builds the authorization request URL for `client` with a PKCE challenge, `state=xyz-state` and `extra` parameters.
    pub fn authorize_url(&self, client: &TestClient, pkce: &Pkce, extra: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse(&self.url("/oauth/authorize")).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.id)
            .append_pair("redirect_uri", &client.redirect_uri)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "xyz-state");
        for (name, value) in extra {
            url.query_pairs_mut().append_pair(name, value);
        }
        url.to_string()
    }

    /// Runs an authorization request in `browser`, allowing on the consent page when one is shown,
    /// and returns the URL the browser is sent back to (with a code or an error).
    pub async fn authorize_allowing(&self, browser: &Browser, client: &TestClient, pkce: &Pkce, extra: &[(&str, &str)]) -> url::Url {
        let first = browser.get(&self.authorize_url(client, pkce, extra)).await;
        let back = if first.status == StatusCode::OK {
            let mut fields = first.hidden_fields();
            fields.push(("decision".into(), "allow".into()));
            browser.post_form(&self.url("/oauth/authorize"), &fields).await
        } else {
            first
        };
        assert_eq!(back.status, StatusCode::SEE_OTHER, "authorization did not redirect: {}", back.body);
        url::Url::parse(back.location()).unwrap_or_else(|_| panic!("redirect to {:?} is not an absolute URL", back.location()))
    }

    /// Authorizes (allowing consent if asked), exchanges the code, and returns the token response, which must be 200.
    pub async fn grant_tokens(&self, browser: &Browser, client: &TestClient, extra: &[(&str, &str)]) -> JsonReply {
        let pkce = Pkce::new();
        let redirect = self.authorize_allowing(browser, client, &pkce, extra).await;
        let code = query_value(&redirect, "code").unwrap_or_else(|| panic!("redirect has no code: {redirect}"));
        let reply = JsonReply::read(self.exchange(client, &code, &pkce.verifier).await).await;
        assert_eq!(reply.status, StatusCode::OK, "token exchange: {}", reply.text);
        reply
    }

    /// Sends `grant_type=refresh_token` with `refresh_token` and `extra` parameters, authenticated as `client` with Basic.
    pub async fn refresh_grant(&self, client: &TestClient, refresh_token: &str, extra: &[(&str, &str)]) -> JsonReply {
        let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
        form.extend_from_slice(extra);
        let response = self
            .http
            .post(self.url("/oauth/token"))
            .basic_auth(&client.id, client.secret.as_ref())
            .form(&form)
            .send()
            .await
            .unwrap();
        JsonReply::read(response).await
    }

    /// Introspects `token` (RFC 7662) as `client`, with an optional `token_type_hint`.
    pub async fn introspect_token(&self, client: &TestClient, token: &str, hint: Option<&str>) -> JsonReply {
        let mut form = vec![("token", token)];
        if let Some(hint) = hint {
            form.push(("token_type_hint", hint));
        }
        let response = self
            .http
            .post(self.url("/oauth/introspect"))
            .basic_auth(&client.id, client.secret.as_ref())
            .form(&form)
            .send()
            .await
            .unwrap();
        JsonReply::read(response).await
    }

    /// Revokes `token` (RFC 7009) as `client`, with an optional `token_type_hint`.
    pub async fn revoke_token(&self, client: &TestClient, token: &str, hint: Option<&str>) -> JsonReply {
        let mut form = vec![("token", token)];
        if let Some(hint) = hint {
            form.push(("token_type_hint", hint));
        }
        let response = self
            .http
            .post(self.url("/oauth/revoke"))
            .basic_auth(&client.id, client.secret.as_ref())
            .form(&form)
            .send()
            .await
            .unwrap();
        JsonReply::read(response).await
    }
}

/// The interpreter that runs `tests/support/smtp_sink.py`: Debian's Python, which
/// `.ci/run` gives the `python3-aiosmtpd` package.
pub const SINK_PYTHON: &str = "/usr/bin/python3";

/// An SMTP server on a free loopback port, run by `tests/support/smtp_sink.py`.
/// It writes each accepted message to its directory and logs every delivery attempt.
pub struct SmtpSink {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: std::process::Child,
}

impl SmtpSink {
    /// Starts the server with extra arguments, such as `["--fail-first", "2"]`, and waits until it listens.
    pub fn start(arguments: &[&str]) -> SmtpSink {
        use std::io::BufRead;

        let dir = tempfile::tempdir().expect("create directory for received mail");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut child = std::process::Command::new(SINK_PYTHON)
            .args(["-W", "ignore"])
            .arg(&script)
            .arg("--directory")
            .arg(dir.path())
            .args(arguments)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {SINK_PYTHON} for the SMTP sink ({error}); .ci/run installs python3-aiosmtpd"));

        // Read the port on a thread, so a server that never starts fails the test instead of hanging it.
        let stdout = child.stdout.take().expect("sink stdout is piped");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let line = receiver.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let Some(port) = line.trim().strip_prefix("listening on ").and_then(|port| port.parse().ok()) else {
            let _ = child.kill();
            panic!("SMTP sink did not start (is python3-aiosmtpd installed for {SINK_PYTHON}?); it printed {line:?}");
        };
        SmtpSink { port, dir, child }
    }

    /// Returns an unencrypted SMTP URL for this server, for `--smtp-url`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Returns the messages received so far, oldest first.
    pub fn messages(&self) -> Vec<String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .collect();
        names.sort();
        names.iter().map(|path| std::fs::read_to_string(path).unwrap()).collect()
    }

    /// Returns the reply to each delivery attempt so far, such as `451 4.3.0 Try again later` or `250`.
    pub fn attempts(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("attempts.log"))
            .map(|text| text.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Waits until at least `count` messages have arrived, for up to `timeout`, and returns them all.
    pub async fn wait_for_messages(&self, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count || std::time::Instant::now() >= deadline {
                return messages;
            }
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until at least `count` delivery attempts were made, for up to `timeout`, and returns them all.
    pub async fn wait_for_attempts(&self, count: usize, timeout: Duration) -> Vec<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let attempts = self.attempts();
            if attempts.len() >= count || std::time::Instant::now() >= deadline {
                return attempts;
            }
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns the sign-in link in a raw message, read from the line that contains it.
pub fn link_in_message(message: &str, issuer: &str) -> Option<String> {
    let start = message.find(&format!("{issuer}/auth/verify?token="))?;
    Some(message[start..].chars().take_while(|c| !c.is_whitespace() && *c != '<' && *c != '"').collect())
}

/// One request the SMS gateway stand-in received.
#[derive(Debug, Clone)]
pub struct GatewayRequest {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub form: Vec<(String, String)>,
}

impl GatewayRequest {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// Account SID and auth token the stand-in gateway is configured with.
pub const GATEWAY_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const GATEWAY_TOKEN: &str = "test-gateway-token";
pub const GATEWAY_FROM: &str = "+61400000000";

/// A stand-in for a Twilio-compatible SMS gateway on loopback: records every
/// request and responds as Twilio does for a queued message.
pub struct SmsGateway {
    pub base: String,
    requests: Arc<std::sync::Mutex<Vec<GatewayRequest>>>,
    handle: ServerHandle,
}

impl SmsGateway {
    pub async fn start() -> SmsGateway {
        let requests: Arc<std::sync::Mutex<Vec<GatewayRequest>>> = Arc::default();
        let recorded = requests.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the gateway stand-in");
        let base = format!("http://{}", listener.local_addr().unwrap());

        let server = actix_web::HttpServer::new(move || {
            let recorded = recorded.clone();
            actix_web::App::new().default_service(actix_web::web::to(move |request: actix_web::HttpRequest, body: actix_web::web::Bytes| {
                let recorded = recorded.clone();
                async move {
                    let header = |name: &str| request.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_string);
                    let entry = GatewayRequest {
                        method: request.method().to_string(),
                        path: request.path().to_string(),
                        authorization: header("authorization"),
                        content_type: header("content-type"),
                        form: url::form_urlencoded::parse(&body).into_owned().collect(),
                    };
                    let count = {
                        let mut requests = recorded.lock().unwrap();
                        requests.push(entry);
                        requests.len()
                    };
                    actix_web::HttpResponse::Created().json(json!({ "sid": format!("SM{count:032}"), "status": "queued" }))
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen for the gateway stand-in")
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        SmsGateway { base, requests, handle }
    }

    pub fn requests(&self) -> Vec<GatewayRequest> {
        self.requests.lock().unwrap().clone()
    }

    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// Points the application's SMS sending at the stand-in gateway.
pub fn use_gateway(settings: &mut Settings, gateway: &SmsGateway) {
    settings.sms_gateway_url = Some(gateway.base.clone());
    settings.sms_account_sid = Some(GATEWAY_SID.to_string());
    settings.sms_auth_token = Some(ucca_actors::secret::Secret::from_presented(GATEWAY_TOKEN));
    settings.sms_from = Some(GATEWAY_FROM.to_string());
}

/// Returns the six-digit code in a text message body.
pub fn code_in_text(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit()).find(|word| word.len() == 6).map(str::to_string)
}

impl TestApp {
    /// Returns the text messages written to the outbox so far, oldest first.
    pub fn outbox_texts(&self) -> Vec<String> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(self.data_dir.join("outbox"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
                    .map(|path| (std::fs::metadata(&path).and_then(|meta| meta.modified()).unwrap(), path))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.into_iter().map(|(_, path)| std::fs::read_to_string(path).unwrap()).collect()
    }

    /// Submits a form from `page_path` (which must carry a CSRF token) to `action` with `fields`.
    pub async fn submit(&self, browser: &Browser, page_path: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let page = browser.get(&self.url(page_path)).await;
        assert_eq!(page.status, StatusCode::OK, "GET {page_path}: {}", page.body);
        let mut form = vec![("csrf_token".to_string(), page.hidden("csrf_token"))];
        form.extend(fields.iter().map(|(name, value)| (name.to_string(), value.to_string())));
        browser.post_form(&self.url(action), &form).await
    }

    /// Creates an API key for `email` on `tier` through the ops API and returns the reply.
    pub async fn ops_create_key(&self, email: &str, tier: &str) -> JsonReply {
        let response = self
            .http
            .post(format!("{}/ops/keys", self.ops))
            .bearer_auth(OPS_KEY)
            .json(&json!({ "user": email, "tier": tier }))
            .send()
            .await
            .unwrap();
        JsonReply::read(response).await
    }
}

impl Browser {
    /// Creates a browser behind a proxy: every request carries `X-Forwarded-For: <client_ip>`.
    pub fn forwarded_for(client_ip: &str) -> Browser {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-forwarded-for", client_ip.parse().expect("a valid header value"));
        let client = reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).default_headers(headers).build().unwrap();
        Browser { client }
    }
}
