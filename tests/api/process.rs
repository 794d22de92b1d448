//! Runs the real `ucca-auth` binary as a child process on loopback and drives it
//! over HTTP. Unlike the in-process harness, every call here returns a
//! [`Failure`] instead of panicking, because the crash tests kill the server
//! while requests are in flight.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::RngCore;
use reqwest::cookie::{CookieStore, Jar};
use reqwest::redirect::Policy;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{query_value, Page, Pkce};

/// The ops key every child server gets through `OPS_API_KEY`.
pub const OPS_KEY: &str = "process-test-ops-key-5d1c2b7e9f04a3";
/// The binary under test, as Cargo built it for this test run.
pub const BINARY: &str = env!("CARGO_BIN_EXE_ucca-auth");
/// The redirect URI of every client the process tests register.
pub const REDIRECT_URI: &str = "http://127.0.0.1:7000/cb";

/// How long a child may take to log that it is listening; generous, because other builds may share the machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound on one HTTP request, so a wedged server fails a test instead of hanging it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// How to start a child server.
#[derive(Debug, Clone)]
pub struct Launch {
    pub data_dir: PathBuf,
    /// Public listener address; port 0 picks a free port.
    pub public: SocketAddr,
    /// The `UCCA_LOG` filter.
    pub log_filter: String,
}

impl Launch {
    pub fn new(data_dir: &Path) -> Launch {
        Launch { data_dir: data_dir.to_path_buf(), public: loopback_any_port(), log_filter: "info".into() }
    }
}

fn loopback_any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A running `ucca-auth serve` child process and the stderr it has written so far.
pub struct ServerProcess {
    launch: Launch,
    child: Child,
    exit: Option<ExitStatus>,
    pub public: SocketAddr,
    pub ops: SocketAddr,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    outbox: Arc<Outbox>,
}

impl ServerProcess {
    /// Starts the binary and waits for its start-up log line, which names the bound addresses.
    pub fn start(launch: Launch) -> ServerProcess {
        let mut command = Command::new(BINARY);
        command
            .arg("serve")
            .arg("--bind")
            .arg(launch.public.to_string())
            .arg("--ops-bind")
            .arg(loopback_any_port().to_string())
            .arg("--data-dir")
            .arg(&launch.data_dir)
            // All load comes from 127.0.0.1, which per-IP sign-in limits count like any address.
            .args(["--link-requests-per-ip", "1000000"])
            // A clean environment, so UCCA_* variables of the developer's shell cannot change the server.
            .env_clear()
            .env("OPS_API_KEY", OPS_KEY)
            .env("UCCA_LOG", &launch.log_filter)
            .env("NO_COLOR", "1")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(backtrace) = std::env::var_os("RUST_BACKTRACE") {
            command.env("RUST_BACKTRACE", backtrace);
        }
        let mut child = command.spawn().unwrap_or_else(|error| panic!("cannot start {BINARY}: {error}"));

        let log = Arc::new(Mutex::new(String::new()));
        let (lines, received) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let line = strip_ansi(&line);
                    {
                        let mut log = log.lock().unwrap();
                        log.push_str(&line);
                        log.push('\n');
                    }
                    // The receiver goes away once start-up is seen; later lines only go to the log.
                    let _ = lines.send(line);
                }
            })
        };

        let deadline = Instant::now() + START_TIMEOUT;
        let (public, ops) = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(remaining) {
                Ok(line) => {
                    if let Some(addresses) = listening_addresses(&line) {
                        break addresses;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().map(|status| status.to_string()).unwrap_or_default();
                    panic!("ucca-auth exited before listening ({status}); its log:\n{}", log.lock().unwrap());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("ucca-auth did not listen within {START_TIMEOUT:?}; its log:\n{}", log.lock().unwrap());
                }
            }
        };

        let outbox = Arc::new(Outbox::new(launch.data_dir.join("outbox")));
        ServerProcess { launch, child, exit: None, public, ops, log, reader: Some(reader), outbox }
    }

    /// Starts the binary again on the same data directory and public address, so
    /// the issuer, the tokens' resource and the cookie names stay the same.
    pub fn restart(mut self) -> ServerProcess {
        assert!(self.exit.is_some() || self.wait_for_exit(Duration::ZERO).is_some(), "restart of a server that is still running");
        let launch = Launch { public: self.public, ..self.launch.clone() };
        ServerProcess::start(launch)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(format!("http://{}", self.public), format!("http://{}", self.ops), self.outbox.clone())
    }

    /// Kills the process with SIGKILL, as a power cut or the OOM killer would, and reaps it.
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            // std's kill sends SIGKILL on Unix.
            let _ = self.child.kill();
            self.exit = self.child.wait().ok();
        }
    }

    /// Sends SIGTERM, the signal a service manager stops a server with.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -TERM {} failed: {status}", self.pid());
    }

    /// Waits up to `limit` for the process to exit and returns its status, or `None` if it still runs.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exit {
                return Some(status);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.wait_for_exit(Duration::ZERO).is_none()
    }

    /// Returns the stderr written so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Returns the whole stderr of a process that has exited, read to its end.
    pub fn complete_log(&mut self) -> String {
        assert!(self.exit.is_some(), "the log is complete only once the process has exited");
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stderr reader panicked");
        }
        self.log()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `public=` and `ops=` from the `ucca-auth listening` log line.
fn listening_addresses(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    if !line.contains("ucca-auth listening") {
        return None;
    }
    let field = |name: &str| -> Option<String> {
        let start = line.find(&format!(" {name}="))? + name.len() + 2;
        Some(line[start..].split_whitespace().next()?.trim_matches('"').to_string())
    };
    Some((field("public")?.parse().ok()?, field("ops")?.parse().ok()?))
}

/// Removes ANSI escape sequences, in case colour is on despite `NO_COLOR`.
fn strip_ansi(line: &str) -> String {
    let mut text = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end with a letter, such as the `m` of a colour change.
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            text.push(c);
        }
    }
    text
}

/// Runs the binary with `args` to completion, as an operator runs an offline command.
pub fn run_command(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .env_clear()
        .env("NO_COLOR", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().unwrap_or_else(|error| panic!("cannot start {BINARY}: {error}"));
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input).expect("write the command's standard input");
    }
    child.wait_with_output().expect("wait for the command")
}

/// Random lowercase hex, for presented values that must look real but match nothing.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buffer);
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Why a call did not give the expected result.
#[derive(Debug, Clone)]
pub enum Failure {
    /// No complete response arrived: the server was stopped, or the connection failed.
    Transport(String),
    /// A response arrived but was not the one the step expects.
    Unexpected(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transport(message) => write!(formatter, "no response: {message}"),
            Failure::Unexpected(message) => write!(formatter, "unexpected response: {message}"),
        }
    }
}

impl From<reqwest::Error> for Failure {
    fn from(error: reqwest::Error) -> Failure {
        // The URL can carry a link token in its query, so it stays out of the message.
        Failure::Transport(error.without_url().to_string())
    }
}

fn unexpected(step: &str, status: StatusCode) -> Failure {
    Failure::Unexpected(format!("{step} answered {status}"))
}

/// A browser: keeps cookies, follows no redirects, and lets the test read its cookie values.
#[derive(Clone)]
pub struct Agent {
    client: reqwest::Client,
    jar: Arc<Jar>,
}

impl Agent {
    pub fn new() -> Agent {
        let jar = Arc::new(Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(Policy::none())
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("build HTTP client");
        Agent { client, jar }
    }

    pub async fn get(&self, url: &str) -> Result<Page, Failure> {
        read_page(self.client.get(url)).await
    }

    pub async fn post_form(&self, url: &str, fields: &[(String, String)]) -> Result<Page, Failure> {
        read_page(self.client.post(url).form(fields)).await
    }

    /// Returns the value of the first cookie whose name starts with `prefix` that this browser would send to `url`.
    pub fn cookie(&self, url: &str, prefix: &str) -> Option<String> {
        let url = url::Url::parse(url).ok()?;
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split("; ")
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| name.starts_with(prefix))
            .map(|(_, value)| value.to_string())
    }
}

async fn read_page(request: RequestBuilder) -> Result<Page, Failure> {
    let response = request.send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await?;
    Ok(Page { status, headers, body })
}

/// The sign-in mail written to `<data-dir>/outbox`, indexed by recipient as files appear.
pub struct Outbox {
    dir: PathBuf,
    /// Recipient and link token of every file read so far, by file name.
    read: Mutex<HashMap<OsString, (String, String)>>,
}

impl Outbox {
    fn new(dir: PathBuf) -> Outbox {
        Outbox { dir, read: Mutex::new(HashMap::new()) }
    }

    /// Returns the link token of the mail to `email`; each test address gets one mail.
    pub fn link_token(&self, email: &str) -> Option<String> {
        let mut read = self.read.lock().unwrap();
        for entry in std::fs::read_dir(&self.dir).ok()?.filter_map(Result::ok) {
            let name = entry.file_name();
            if read.contains_key(&name) || !name.to_string_lossy().ends_with(".eml") {
                continue;
            }
            // A file still being written parses as nothing and is read again next time.
            let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
            if let Some(parsed) = parse_mail(&text) {
                read.insert(name, parsed);
            }
        }
        read.values().find(|(to, _)| to == email).map(|(_, token)| token.clone())
    }
}

fn parse_mail(text: &str) -> Option<(String, String)> {
    let to = text.lines().find_map(|line| line.strip_prefix("To: "))?.trim().to_string();
    let start = text.find("/auth/verify?token=")? + "/auth/verify?token=".len();
    let token: String = text[start..].chars().take_while(char::is_ascii_hexdigit).collect();
    (token.len() == 64).then_some((to, token))
}

/// A client registered through the ops API, with its secret when it is confidential.
#[derive(Debug, Clone)]
pub struct RemoteClient {
    pub id: String,
    pub secret: Option<String>,
    /// The `token_endpoint_auth_method`.
    pub method: String,
}

/// The HTTP surface of one child server. Cheap to clone into tasks.
#[derive(Clone)]
pub struct Endpoint {
    pub base: String,
    pub ops: String,
    http: reqwest::Client,
    outbox: Arc<Outbox>,
}

impl Endpoint {
    fn new(base: String, ops: String, outbox: Arc<Outbox>) -> Endpoint {
        let http = reqwest::Client::builder().redirect(Policy::none()).timeout(REQUEST_TIMEOUT).build().expect("build HTTP client");
        Endpoint { base, ops, http, outbox }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `GET /ops/clients` with `key` as the bearer credential, or none, and returns the status.
    pub async fn list_clients_with(&self, key: Option<&str>) -> Result<StatusCode, Failure> {
        let mut request = self.http.get(format!("{}/ops/clients", self.ops));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        Ok(request.send().await?.status())
    }

    /// Registers a client through the ops API.
    pub async fn register_client(&self, method: &str) -> Result<RemoteClient, Failure> {
        let metadata = json!({
            "client_name": "Process test client",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": method,
        });
        let response = self.http.post(format!("{}/ops/clients", self.ops)).bearer_auth(OPS_KEY).json(&metadata).send().await?;
        if response.status() != StatusCode::CREATED {
            return Err(unexpected("POST /ops/clients", response.status()));
        }
        let body: Value = response.json().await?;
        let id = body["client_id"].as_str().ok_or_else(|| Failure::Unexpected("registration has no client_id".into()))?;
        Ok(RemoteClient { id: id.to_string(), secret: body["client_secret"].as_str().map(str::to_string), method: method.to_string() })
    }

    /// Deactivates a client through the ops API and returns the status.
    pub async fn deactivate_client(&self, client_id: &str) -> Result<StatusCode, Failure> {
        let response = self.http.delete(format!("{}/ops/clients/{client_id}", self.ops)).bearer_auth(OPS_KEY).send().await?;
        Ok(response.status())
    }

    /// Opens the sign-in page, which gives `agent` its CSRF cookie, and returns the page's form token.
    pub async fn csrf_token(&self, agent: &Agent) -> Result<String, Failure> {
        let page = agent.get(&self.url("/auth")).await?;
        if page.status != StatusCode::OK {
            return Err(unexpected("GET /auth", page.status));
        }
        form_field(&page, "csrf_token")
    }

    /// Asks for a sign-in link for `email` and returns the link token read from the outbox.
    pub async fn request_link(&self, agent: &Agent, email: &str) -> Result<String, Failure> {
        let csrf = self.csrf_token(agent).await?;
        let sent = agent.post_form(&self.url("/auth/email"), &fields(&[("csrf_token", &csrf), ("email", email)])).await?;
        if sent.status != StatusCode::OK {
            return Err(unexpected("POST /auth/email", sent.status));
        }
        self.outbox
            .link_token(email)
            .ok_or_else(|| Failure::Unexpected(format!("no sign-in mail to {email} in the outbox after POST /auth/email answered 200")))
    }

    /// Opens the emailed link and confirms it, which signs `agent` in.
    pub async fn confirm_link(&self, agent: &Agent, token: &str) -> Result<(), Failure> {
        let confirm = agent.get(&self.url(&format!("/auth/verify?token={token}"))).await?;
        if confirm.status != StatusCode::OK {
            return Err(unexpected("GET /auth/verify", confirm.status));
        }
        let csrf = form_field(&confirm, "csrf_token")?;
        let signed_in = agent.post_form(&self.url("/auth/verify"), &fields(&[("csrf_token", &csrf), ("token", token)])).await?;
        if signed_in.status != StatusCode::SEE_OTHER {
            return Err(unexpected("POST /auth/verify", signed_in.status));
        }
        Ok(())
    }

    /// Opens the emailed link in a fresh browser and returns the status: 200 while the link is usable.
    pub async fn link_page_status(&self, token: &str) -> Result<StatusCode, Failure> {
        Ok(Agent::new().get(&self.url(&format!("/auth/verify?token={token}"))).await?.status)
    }

    /// Confirms a link from a fresh browser and returns the status: 410 once the link was consumed.
    pub async fn confirm_status(&self, token: &str) -> Result<StatusCode, Failure> {
        let agent = Agent::new();
        let csrf = self.csrf_token(&agent).await?;
        let page = agent.post_form(&self.url("/auth/verify"), &fields(&[("csrf_token", &csrf), ("token", token)])).await?;
        Ok(page.status)
    }

    /// Checks whether the sign-in page greets `agent` as signed in.
    pub async fn is_signed_in(&self, agent: &Agent) -> Result<bool, Failure> {
        let page = agent.get(&self.url("/auth")).await?;
        if page.status != StatusCode::OK {
            return Err(unexpected("GET /auth", page.status));
        }
        Ok(page.body.contains("You are signed in as"))
    }

    /// Signs out with the sign-in page's form token and returns the status.
    pub async fn sign_out(&self, agent: &Agent, csrf: &str) -> Result<StatusCode, Failure> {
        Ok(agent.post_form(&self.url("/auth/logout"), &fields(&[("csrf_token", csrf)])).await?.status)
    }

    /// Runs authorize and consent in a signed-in browser with `decision`, and returns the redirect to the client.
    pub async fn decide(&self, agent: &Agent, client: &RemoteClient, pkce: &Pkce, decision: &str) -> Result<url::Url, Failure> {
        let mut url = url::Url::parse(&self.url("/oauth/authorize")).expect("authorize URL parses");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.id)
            .append_pair("redirect_uri", REDIRECT_URI)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "process-test-state");
        if decision != "allow" {
            // A remembered consent skips the page, and only the page can deny.
            url.query_pairs_mut().append_pair("prompt", "consent");
        }
        let consent = agent.get(url.as_str()).await?;

        let redirect = match consent.status {
            // A remembered consent may skip the page and redirect at once.
            StatusCode::SEE_OTHER => consent,
            StatusCode::OK => {
                let mut form = consent.hidden_fields();
                form.push(("decision".into(), decision.into()));
                let decided = agent.post_form(&self.url("/oauth/authorize"), &form).await?;
                if decided.status != StatusCode::SEE_OTHER {
                    return Err(unexpected("POST /oauth/authorize", decided.status));
                }
                decided
            }
            other => return Err(unexpected("GET /oauth/authorize", other)),
        };
        let location = url::Url::parse(redirect.location())
            .map_err(|_| Failure::Unexpected("the authorize redirect has no absolute Location".into()))?;
        if !location.as_str().starts_with(REDIRECT_URI) {
            return Err(Failure::Unexpected("the authorize redirect leads away from the client".into()));
        }
        Ok(location)
    }

    /// Runs authorize and consent, allowing, and returns the code.
    pub async fn authorize(&self, agent: &Agent, client: &RemoteClient, pkce: &Pkce) -> Result<String, Failure> {
        let redirect = self.decide(agent, client, pkce, "allow").await?;
        query_value(&redirect, "code").ok_or_else(|| {
            let error = query_value(&redirect, "error").unwrap_or_default();
            Failure::Unexpected(format!("the authorize redirect carries no code (error {error:?})"))
        })
    }

    /// Adds the client's credentials to a token-endpoint request in the way its method requires.
    fn authenticated(&self, path: &str, client: &RemoteClient, secret: Option<&str>, mut form: Vec<(String, String)>) -> RequestBuilder {
        let mut request = self.http.post(self.url(path));
        match (client.method.as_str(), secret) {
            ("client_secret_basic", Some(secret)) => request = request.basic_auth(&client.id, Some(secret)),
            ("client_secret_post", Some(secret)) => {
                form.push(("client_id".into(), client.id.clone()));
                form.push(("client_secret".into(), secret.to_string()));
            }
            _ => form.push(("client_id".into(), client.id.clone())),
        }
        request.form(&form)
    }

    /// Exchanges a code at the token endpoint and returns the status and JSON body.
    pub async fn exchange(&self, client: &RemoteClient, code: &str, verifier: &str) -> Result<(StatusCode, Value), Failure> {
        self.exchange_as(client, client.secret.as_deref(), code, verifier).await
    }

    /// Like [`Endpoint::exchange`], presenting `secret` in place of the client's own.
    pub async fn exchange_as(&self, client: &RemoteClient, secret: Option<&str>, code: &str, verifier: &str) -> Result<(StatusCode, Value), Failure> {
        let form = fields(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ]);
        read_json(self.authenticated("/oauth/token", client, secret, form)).await
    }

    /// Revokes a token as `client` (RFC 7009) and returns the status.
    pub async fn revoke(&self, client: &RemoteClient, token: &str) -> Result<StatusCode, Failure> {
        let form = fields(&[("token", token)]);
        Ok(self.authenticated("/oauth/revoke", client, client.secret.as_deref(), form).send().await?.status())
    }

    /// Introspects a token as `client` (RFC 7662) and returns the status and JSON body.
    pub async fn introspect(&self, client: &RemoteClient, token: &str) -> Result<(StatusCode, Value), Failure> {
        let form = fields(&[("token", token)]);
        read_json(self.authenticated("/oauth/introspect", client, client.secret.as_deref(), form)).await
    }

    /// Checks whether the client still authenticates. Revoking a token that matches nothing returns
    /// 200 to an authenticated client (RFC 7009 section 2.2) and 401 to anyone else.
    pub async fn client_authenticates(&self, client: &RemoteClient) -> Result<bool, Failure> {
        match self.revoke(client, &random_hex(48)).await? {
            StatusCode::OK => Ok(true),
            StatusCode::UNAUTHORIZED => Ok(false),
            other => Err(unexpected("POST /oauth/revoke", other)),
        }
    }

    /// Calls the operational API with a bearer token and returns the status.
    pub async fn lookup(&self, token: &str) -> Result<StatusCode, Failure> {
        Ok(self.http.get(self.url("/v1/lookup?code=BSB30120")).bearer_auth(token).send().await?.status())
    }
}

async fn read_json(request: RequestBuilder) -> Result<(StatusCode, Value), Failure> {
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
}

fn form_field(page: &Page, name: &str) -> Result<String, Failure> {
    page.hidden_fields()
        .into_iter()
        .find(|(field, _)| field == name)
        .map(|(_, value)| value)
        .ok_or_else(|| Failure::Unexpected(format!("the page has no {name} field")))
}
