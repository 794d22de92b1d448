//! Operating the real binary: export and import of the store, offline client
//! registration, `--help` of every command, and shutdown on SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::Pkce;
use crate::process::{run_command, Agent, Launch, RemoteClient, ServerProcess, REDIRECT_URI};

/// How long the server waits for in-flight requests after SIGTERM, in seconds (`SHUTDOWN_TIMEOUT` in start-up).
const SHUTDOWN_TIMEOUT_SECS: u64 = 10;
/// Time allowed beyond the shutdown timeout for flushing the store and exiting.
const EXIT_MARGIN: Duration = Duration::from_secs(5);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Runs an offline command and asserts that it succeeded.
fn run_ok(args: &[&str]) -> Output {
    let output = run_command(args, None);
    assert!(output.status.success(), "ucca-auth {} failed with {}:\n{}", args.join(" "), output.status, text(&output.stderr));
    output
}

/// Stops a server with SIGTERM and asserts that it exits 0 in time.
fn stop(mut server: ServerProcess) {
    server.terminate();
    let limit = Duration::from_secs(SHUTDOWN_TIMEOUT_SECS) + EXIT_MARGIN;
    let status = server.wait_for_exit(limit).unwrap_or_else(|| panic!("the server still runs {limit:?} after SIGTERM"));
    assert!(status.success(), "the server exited with {status} after SIGTERM; its log:\n{}", server.log());
}

/// Exports the store in `data_dir` to standard output and returns the lines.
fn export_lines(data_dir: &Path) -> Vec<String> {
    let output = run_ok(&["export", "--data-dir", path_arg(data_dir)]);
    text(&output.stdout).lines().map(str::to_string).collect()
}

/// Parses export lines and drops the header's time, which differs between two exports of the same records.
fn without_export_time(lines: &[String]) -> Vec<Value> {
    let mut values: Vec<Value> = lines.iter().map(|line| serde_json::from_str(line).expect("export lines are JSON")).collect();
    if let Some(header) = values.first_mut().and_then(Value::as_object_mut) {
        header.remove("exported_at");
    }
    values
}

/// Registers a client offline and returns it as `client add` printed it.
fn add_client_offline(data_dir: &Path, method: &str) -> RemoteClient {
    let output = run_ok(&[
        "client", "add", "--data-dir", path_arg(data_dir), "--name", "Offline app", "--redirect-uri", REDIRECT_URI, "--auth-method", method,
    ]);
    let stdout = text(&output.stdout);
    let value = |name: &str| stdout.lines().find_map(|line| line.strip_prefix(&format!("{name}: "))).map(str::to_string);
    RemoteClient {
        id: value("client_id").expect("client add prints the client_id"),
        secret: value("client_secret"),
        method: method.to_string(),
    }
}

/// What `export_import_round_trip_keeps_state` builds through HTTP and checks after the restore.
struct Built {
    basic: RemoteClient,
    public: RemoteClient,
    browser: Agent,
    session: String,
    consumed_link: String,
    waiting_link: String,
    redeemed_code: (String, String),
    active_token: String,
    revoked_token: String,
}

async fn build_state(server: &ServerProcess) -> Built {
    let remote = server.endpoint();
    let basic = remote.register_client("client_secret_basic").await.unwrap();
    let public = remote.register_client("none").await.unwrap();

    let browser = Agent::new();
    let consumed_link = remote.request_link(&browser, "ada@example.com").await.unwrap();
    remote.confirm_link(&browser, &consumed_link).await.unwrap();
    let session = browser.cookie(&remote.base, "ucca_session_").expect("sign-in sets a session cookie");
    let waiting_link = remote.request_link(&Agent::new(), "grace@example.com").await.unwrap();

    let pkce = Pkce::new();
    let code = remote.authorize(&browser, &basic, &pkce).await.unwrap();
    let (status, body) = remote.exchange(&basic, &code, &pkce.verifier).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{}", body["error"]);
    let active_token = body["access_token"].as_str().unwrap().to_string();

    let other = Pkce::new();
    let other_code = remote.authorize(&browser, &public, &other).await.unwrap();
    let (status, body) = remote.exchange(&public, &other_code, &other.verifier).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{}", body["error"]);
    let revoked_token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(remote.revoke(&public, &revoked_token).await.unwrap(), StatusCode::OK);

    Built {
        basic,
        public,
        browser,
        session,
        consumed_link,
        waiting_link,
        redeemed_code: (code, pkce.verifier),
        active_token,
        revoked_token,
    }
}

#[tokio::test]
async fn export_import_round_trip_keeps_state() {
    let source = tempfile::tempdir().unwrap();
    let target = tempfile::tempdir().unwrap();
    let backup = source.path().join("backup.jsonl");
    let server = ServerProcess::start(Launch::new(source.path()));
    let public_address = server.public;
    let built = build_state(&server).await;
    stop(server);

    // Export to a file: a header, the records, and a trailer that counts them.
    run_ok(&["export", "--data-dir", path_arg(source.path()), "--output", path_arg(&backup)]);
    let exported = std::fs::read_to_string(&backup).unwrap();
    let lines: Vec<String> = exported.lines().map(str::to_string).collect();
    let header: Value = serde_json::from_str(&lines[0]).unwrap();
    let trailer: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(header["format"], "ucca-auth-export");
    assert_eq!(header["version"], 1);
    assert_eq!(trailer["records"].as_u64(), Some(lines.len() as u64 - 2));
    let trees: Vec<String> = lines[1..lines.len() - 1]
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["tree"].as_str().unwrap_or_default().to_string())
        .collect();
    for tree in ["clients", "codes", "tokens", "grants", "users", "links", "sessions"] {
        assert!(trees.iter().any(|name| name == tree), "the export has no {tree} records");
    }

    // Secrets stay hashed: no line contains one in clear text.
    let secrets = [
        ("client secret", built.basic.secret.clone().unwrap()),
        ("session cookie", built.session.clone()),
        ("consumed link token", built.consumed_link.clone()),
        ("waiting link token", built.waiting_link.clone()),
        ("authorization code", built.redeemed_code.0.clone()),
        ("active token", built.active_token.clone()),
        ("revoked token", built.revoked_token.clone()),
    ];
    for (name, value) in &secrets {
        assert!(!exported.contains(value.as_str()), "the export contains the {name}");
    }

    // Import into a new directory, and export again: the same records come out.
    let imported = run_ok(&["import", "--data-dir", path_arg(target.path()), "--input", path_arg(&backup)]);
    let report = text(&imported.stderr);
    assert!(report.contains(&format!("records={}", lines.len() - 2)), "import reports no record count: {report}");
    assert_eq!(without_export_time(&export_lines(target.path())), without_export_time(&lines));

    // A server on the restored store, at the same address so the issuer matches, keeps every fact.
    let restored = ServerProcess::start(Launch { public: public_address, ..Launch::new(target.path()) });
    let remote = restored.endpoint();
    assert!(remote.client_authenticates(&built.basic).await.unwrap(), "the confidential client no longer authenticates");
    assert!(remote.client_authenticates(&built.public).await.unwrap(), "the public client is gone");
    assert_eq!(remote.lookup(&built.active_token).await.unwrap(), StatusCode::OK, "active token");
    assert_eq!(remote.lookup(&built.revoked_token).await.unwrap(), StatusCode::UNAUTHORIZED, "revoked token");
    assert!(remote.is_signed_in(&built.browser).await.unwrap(), "the session did not survive the restore");
    assert_eq!(remote.confirm_status(&built.consumed_link).await.unwrap(), StatusCode::GONE, "consumed link");
    assert_eq!(remote.link_page_status(&built.waiting_link).await.unwrap(), StatusCode::OK, "waiting link");
    let (code, verifier) = &built.redeemed_code;
    let (status, body) = remote.exchange(&built.basic, code, verifier).await.unwrap();
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "redeemed code");
}

#[tokio::test]
async fn import_into_nonempty_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup.jsonl");
    add_client_offline(dir.path(), "client_secret_basic");
    let before = export_lines(dir.path());
    std::fs::write(&backup, before.join("\n") + "\n").unwrap();

    let output = run_command(&["import", "--data-dir", path_arg(dir.path()), "--input", path_arg(&backup)], None);

    assert!(!output.status.success(), "import into a non-empty store succeeded");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert_eq!(without_export_time(&export_lines(dir.path())), without_export_time(&before));
}

#[tokio::test]
async fn malformed_import_names_line_and_writes_nothing() {
    let source = tempfile::tempdir().unwrap();
    add_client_offline(source.path(), "client_secret_basic");
    add_client_offline(source.path(), "none");
    let lines = export_lines(source.path());
    assert_eq!(lines.len(), 4, "expected a header, two clients and a trailer");
    let join = |lines: &[String]| lines.join("\n") + "\n";

    let mut broken_json = lines.clone();
    broken_json[2] = broken_json[2][..broken_json[2].len() / 2].to_string();
    let mut unknown_field = lines.clone();
    unknown_field[1] = unknown_field[1].replacen("\"active\":", "\"colour\":\"red\",\"active\":", 1);
    let cases = [
        ("a record cut in half", join(&broken_json), "line 3"),
        ("a record with an unknown field", join(&unknown_field), "line 2"),
        ("no trailer", join(&lines[..3]), "truncated"),
    ];

    for (description, input, expected) in cases {
        let target = tempfile::tempdir().unwrap();
        let output = run_command(&["import", "--data-dir", path_arg(target.path())], Some(input.as_bytes()));

        assert!(!output.status.success(), "{description}: the import succeeded");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{description}: the error does not say {expected:?}: {stderr}");
        assert!(!target.path().join("store").exists(), "{description}: a store was created");
    }
}

#[tokio::test]
async fn client_add_registers_working_clients() {
    let dir = tempfile::tempdir().unwrap();
    let confidential = add_client_offline(dir.path(), "client_secret_basic");
    let public = add_client_offline(dir.path(), "none");
    assert_eq!(confidential.id.len(), 32, "client_id {:?}", confidential.id);
    assert_eq!(confidential.secret.as_ref().map(String::len), Some(64), "a confidential client gets a 64-character secret");
    assert_eq!(public.secret, None, "a public client was given a secret");

    let server = ServerProcess::start(Launch::new(dir.path()));
    let remote = server.endpoint();
    let browser = Agent::new();
    let link = remote.request_link(&browser, "ada@example.com").await.unwrap();
    remote.confirm_link(&browser, &link).await.unwrap();

    for client in [&confidential, &public] {
        assert!(remote.client_authenticates(client).await.unwrap(), "{} client does not authenticate", client.method);
        let pkce = Pkce::new();
        let code = remote.authorize(&browser, client, &pkce).await.unwrap();
        let (status, body) = remote.exchange(client, &code, &pkce.verifier).await.unwrap();
        assert_eq!(status, StatusCode::OK, "{} exchange: {}", client.method, body["error"]);
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(remote.lookup(token).await.unwrap(), StatusCode::OK, "{} token on the API", client.method);
    }
    let wrong = RemoteClient { secret: Some("0".repeat(64)), ..confidential.clone() };
    assert!(!remote.client_authenticates(&wrong).await.unwrap(), "a wrong secret authenticates");
}

#[tokio::test]
async fn client_add_rejects_invalid_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = path_arg(dir.path());
    let many_uris: Vec<String> = (0..21).map(|port| format!("http://127.0.0.1:{}/cb", 9000 + port)).collect();
    let mut too_many = vec!["--name", "App"];
    for uri in &many_uris {
        too_many.extend(["--redirect-uri", uri.as_str()]);
    }
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("plain http on a public host", vec!["--name", "App", "--redirect-uri", "http://app.example/cb"], "not loopback"),
        ("redirect URI with a fragment", vec!["--name", "App", "--redirect-uri", "https://app.example/cb#x"], "fragment"),
        ("no redirect URI", vec!["--name", "App"], "--redirect-uri"),
        ("unsupported auth method", vec!["--name", "App", "--redirect-uri", REDIRECT_URI, "--auth-method", "private_key_jwt"], "not supported"),
        ("unknown scope", vec!["--name", "App", "--redirect-uri", REDIRECT_URI, "--scope", "no:such"], "not issued"),
        ("the ops key's scope", vec!["--name", "App", "--redirect-uri", REDIRECT_URI, "--scope", "ucca:admin"], "not issued"),
        ("blank name", vec!["--name", "  ", "--redirect-uri", REDIRECT_URI], "--name must be"),
        ("21 redirect URIs", too_many, "at most 20"),
    ];

    for (description, flags, expected) in cases {
        let mut args = vec!["client", "add", "--data-dir", data_dir];
        args.extend(flags);
        let output = run_command(&args, None);

        assert!(!output.status.success(), "{description}: client add succeeded");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{description}: the error does not say {expected:?}: {stderr}");
        assert!(!dir.path().join("store").exists(), "{description}: a store was created");
    }
}

#[tokio::test]
async fn offline_commands_refuse_a_running_servers_store() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = path_arg(dir.path());
    let mut server = ServerProcess::start(Launch::new(dir.path()));
    let cases: [(&str, Vec<&str>); 2] = [
        ("export", vec!["export", "--data-dir", data_dir]),
        ("client add", vec!["client", "add", "--data-dir", data_dir, "--name", "App", "--redirect-uri", REDIRECT_URI]),
    ];

    for (description, args) in cases {
        let output = run_command(&args, None);

        assert!(!output.status.success(), "{description} succeeded while the server ran");
        let stderr = text(&output.stderr);
        assert!(stderr.contains("in use by a running server"), "{description}: {stderr}");
    }
    assert!(server.is_running(), "the server stopped while offline commands were refused");
}

/// Parses the options of a `--help` text into each flag and its whole description on one line.
fn documented_options(help: &str) -> Vec<(String, String)> {
    let mut options: Vec<(String, String)> = Vec::new();
    let mut in_options = false;
    for line in help.lines() {
        if line.trim_end() == "Options:" {
            in_options = true;
            continue;
        }
        if !in_options || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            in_options = false;
            continue;
        }
        let trimmed = line.trim_start();
        // clap indents a flag by at most six spaces and its wrapped description further.
        if trimmed.starts_with('-') && line.len() - trimmed.len() <= 6 {
            let flag = trimmed.split([' ', ',']).find(|word| word.starts_with("--")).unwrap_or(trimmed).to_string();
            options.push((flag, trimmed.to_string()));
        } else if let Some((_, description)) = options.last_mut() {
            description.push(' ');
            description.push_str(trimmed);
        }
    }
    options
}

#[tokio::test]
async fn help_documents_default_and_unit_of_every_option() {
    let units = ["second", "minute", "hour", "day", "byte", "call", "request", "thread", "worker"];
    let commands: [&[&str]; 6] = [&[], &["serve"], &["export"], &["import"], &["client"], &["client", "add"]];
    let mut gaps = Vec::new();

    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let output = run_ok(&args);
        let help = text(&output.stdout);
        let name = ["ucca-auth"].iter().chain(command).copied().collect::<Vec<_>>().join(" ");
        let usage = help.lines().find(|line| line.starts_with("Usage:")).unwrap_or_default().to_string();
        if command.is_empty() || command == ["serve"] {
            for variable in ["OPS_API_KEY", "UCCA_STRIPE_WEBHOOK_SECRET", "UCCA_SMTP_PASSWORD", "UCCA_SMS_AUTH_TOKEN", "UCCA_LOG"] {
                let line = help.lines().find(|line| line.trim_start().starts_with(variable));
                match line {
                    Some(line) if line.contains("[default: ") => {}
                    Some(line) => gaps.push(format!("{name} --help: {variable} states no default: {line}")),
                    None => gaps.push(format!("{name} --help: the environment-only variable {variable} is not listed")),
                }
            }
        }

        for (flag, description) in documented_options(&help) {
            if flag == "--help" || flag == "--version" {
                continue;
            }
            let required = usage.contains(&format!("{flag} "));
            let default = description.split("[default: ").nth(1).and_then(|rest| rest.split(']').next());
            if !required && default.is_none() {
                gaps.push(format!("{name} --help: {flag} states no default: {description}"));
            }
            let numeric = default.filter(|value| value.split([' ', ',']).next().is_some_and(|first| first.parse::<f64>().is_ok()));
            if numeric.is_some() && !units.iter().any(|unit| description.to_lowercase().contains(unit)) {
                gaps.push(format!("{name} --help: {flag} has a numeric default but names no unit: {description}"));
            }
        }
    }
    assert!(gaps.is_empty(), "{} options are not fully documented:\n{}", gaps.len(), gaps.join("\n"));
}

#[test]
fn invalid_log_filter_stops_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(crate::process::BINARY)
        .args(["export", "--data-dir", path_arg(dir.path())])
        .env_clear()
        .env("UCCA_LOG", "bogus===")
        .output()
        .expect("run ucca-auth");
    assert_eq!(output.status.code(), Some(2), "stderr: {}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("UCCA_LOG=\"bogus===\" is not a valid log filter"), "{stderr}");
    assert!(output.stdout.is_empty(), "nothing was exported: {}", text(&output.stdout));
    assert!(!dir.path().join("store").exists(), "no store was created");
}

/// Builds the head of a token request whose body is `length` bytes long.
fn token_request_head(server: &ServerProcess, length: usize) -> String {
    format!(
        "POST /oauth/token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n",
        server.public
    )
}

#[tokio::test]
async fn sigterm_lets_inflight_exchange_finish() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(Launch::new(dir.path()));
    let remote = server.endpoint();
    let client = remote.register_client("none").await.unwrap();
    let browser = Agent::new();
    let link = remote.request_link(&browser, "ada@example.com").await.unwrap();
    remote.confirm_link(&browser, &link).await.unwrap();
    let pkce = Pkce::new();
    let code = remote.authorize(&browser, &client, &pkce).await.unwrap();

    // A token request whose body is half sent is in flight when SIGTERM arrives.
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", &code)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("code_verifier", &pkce.verifier)
        .append_pair("client_id", &client.id)
        .finish();
    let (first_half, second_half) = body.split_at(body.len() / 2);
    let mut stream = TcpStream::connect(server.public).unwrap();
    stream.write_all(token_request_head(&server, body.len()).as_bytes()).unwrap();
    stream.write_all(first_half.as_bytes()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The server drains: it stops accepting but still runs for the request it has.
    assert!(server.is_running(), "the server exited with a request in flight");
    assert!(TcpStream::connect(server.public).is_err(), "the server still accepts connections after SIGTERM");

    let finished = Instant::now();
    stream.write_all(second_half.as_bytes()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS) + EXIT_MARGIN)).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status_line = response.lines().next().unwrap_or_default();
    assert!(status_line.starts_with("HTTP/1.1 200"), "the in-flight exchange answered {status_line:?}");
    let json = response.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    let issued: Value = serde_json::from_str(json).expect("the token response is JSON");
    let token = issued["access_token"].as_str().expect("the token response has an access_token").to_string();

    let status = server
        .wait_for_exit(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS) + EXIT_MARGIN)
        .expect("the server exits once the request is answered");
    assert!(status.success(), "the server exited with {status}");
    eprintln!("exited {:?} after the in-flight request was answered", finished.elapsed());

    // What the drained request did is on disk.
    let server = server.restart();
    let remote = server.endpoint();
    assert_eq!(remote.lookup(&token).await.unwrap(), StatusCode::OK, "the token issued while draining");
    let (status, body) = remote.exchange(&client, &code, &pkce.verifier).await.unwrap();
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "the code redeemed while draining");
}

#[tokio::test]
async fn sigterm_exit_is_bounded_with_stalled_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(Launch::new(dir.path()));
    let client = server.endpoint().register_client("client_secret_basic").await.unwrap();

    // A client that sends half a request and then nothing.
    let mut stream = TcpStream::connect(server.public).unwrap();
    stream.write_all(token_request_head(&server, 100).as_bytes()).unwrap();
    stream.write_all(b"grant_type=authorization_code").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    server.terminate();

    let limit = Duration::from_secs(SHUTDOWN_TIMEOUT_SECS) + EXIT_MARGIN;
    let status = server.wait_for_exit(limit).unwrap_or_else(|| panic!("the server still runs {limit:?} after SIGTERM"));
    let elapsed = signalled.elapsed();
    assert!(status.success(), "the server exited with {status}; its log:\n{}", server.log());
    eprintln!("exited {elapsed:?} after SIGTERM with a stalled request");
    drop(stream);

    let server = server.restart();
    assert!(server.endpoint().client_authenticates(&client).await.unwrap(), "the client registered before SIGTERM is gone");
}
