//! Forward authentication through a real nginx: `auth_request` asks
//! `/auth/check` before each request reaches a small upstream, which echoes
//! the identity headers it was given.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use reqwest::StatusCode;
use serde_json::{json, Value};
use ucca_actors::catalog::Capability;
use ucca_web::ForwardRoute;

use crate::helpers::*;

const NGINX: &str = "/usr/sbin/nginx";

/// An nginx process with its own prefix directory, stopped on drop.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_nginx(ucca: &str, upstream: u16) -> Nginx {
    assert!(Path::new(NGINX).exists(), "{NGINX} is missing: .ci/run installs it from Debian's nginx-light package");
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().display().to_string();
    let port = free_port();
    let config = format!(
        r#"
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_request /_ucca_check;
            auth_request_set $auth_subject $upstream_http_x_auth_subject;
            auth_request_set $auth_scope $upstream_http_x_auth_scope;
            auth_request_set $auth_client $upstream_http_x_auth_client;
            proxy_set_header X-Auth-Subject $auth_subject;
            proxy_set_header X-Auth-Scope $auth_scope;
            proxy_set_header X-Auth-Client $auth_client;
            proxy_pass http://127.0.0.1:{upstream};
        }}
        location = /_ucca_check {{
            internal;
            proxy_pass http://{ucca}/auth/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
        }}
    }}
}}
"#
    );
    let config_path = dir.path().join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new(NGINX)
        .args(["-p", &prefix, "-e", &format!("{prefix}/error.log"), "-c", &config_path.display().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");

    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not listen on {port}: {}", std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    Nginx { child, port, _dir: dir }
}

/// Echoes the identity headers nginx forwarded, as JSON.
async fn echo(request: HttpRequest) -> HttpResponse {
    let header = |name: &str| request.headers().get(name).and_then(|value| value.to_str().ok()).unwrap_or("").to_string();
    HttpResponse::Ok().json(json!({
        "path": request.path(),
        "subject": header("x-auth-subject"),
        "scope": header("x-auth-scope"),
        "client": header("x-auth-client"),
    }))
}

fn start_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(|| App::new().default_service(web::to(echo))).workers(1).listen(listener).unwrap().run();
    actix_web::rt::spawn(server);
    port
}

fn routes() -> Vec<ForwardRoute> {
    vec![
        ForwardRoute { prefix: "/reports/".into(), methods: vec![], capability: Capability::Search },
        ForwardRoute { prefix: "/reports/pathway/".into(), methods: vec!["GET".into()], capability: Capability::Pathway },
    ]
}

#[actix_web::test]
async fn nginx_auth_request_passes_identity_upstream() {
    let app = spawn_app_with(|settings| settings.forward_auth_routes = routes()).await;
    let (client, token) = app.token_for("grace@example.com").await;
    let introspected: Value = app
        .http
        .post(app.url("/oauth/introspect"))
        .basic_auth(&client.id, client.secret.as_ref())
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let subject = introspected["sub"].as_str().unwrap().to_string();

    let upstream = start_upstream();
    let nginx = start_nginx(app.base.trim_start_matches("http://"), upstream);
    let proxy = |path: &str| format!("http://127.0.0.1:{}{path}", nginx.port);

    // The token reaches the upstream only as the identity headers the check returned.
    let allowed = app.http.get(proxy("/reports/summary?year=2026")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    let echoed: Value = allowed.json().await.unwrap();
    assert_eq!(echoed["path"], "/reports/summary");
    assert_eq!(echoed["subject"], subject.as_str());
    assert_eq!(echoed["scope"], "read");
    assert_eq!(echoed["client"], client.id.as_str());

    let cases: [(&str, Option<&str>, &str, StatusCode, Option<&str>); 5] = [
        ("no credential", None, "/reports/summary", StatusCode::UNAUTHORIZED, Some("Bearer realm=")),
        ("unknown token", Some(&"0".repeat(96)), "/reports/summary", StatusCode::UNAUTHORIZED, Some("error=\"invalid_token\"")),
        ("malformed token", Some("not-a-token"), "/reports/summary", StatusCode::UNAUTHORIZED, Some("error=\"invalid_token\"")),
        ("scope lacks pathway", Some(&token), "/reports/pathway/x", StatusCode::FORBIDDEN, None),
        ("no route covers the path", Some(&token), "/admin", StatusCode::FORBIDDEN, None),
    ];
    for (description, bearer, path, expected, challenge) in cases {
        let mut request = app.http.get(proxy(path));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), expected, "{description}");
        if let Some(fragment) = challenge {
            let value = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
            assert!(value.contains(fragment), "{description}: challenge {value:?} lacks {fragment}");
            if description == "no credential" {
                assert!(!value.contains("error="), "{description}: a request without a credential gets no error code");
            }
        }
    }

    drop(nginx);
    app.stop().await;
}

#[actix_web::test]
async fn check_reads_forwarded_headers_and_answers_only_200_401_403() {
    let app = spawn_app_with(|settings| settings.forward_auth_routes = routes()).await;
    let (_, token) = app.token_for("hopper@example.com").await;
    let check = |headers: &[(&str, &str)]| {
        let mut request = app.http.get(app.url("/auth/check"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request
    };

    let bearer = format!("Bearer {token}");
    let cases: [(&str, Vec<(&str, &str)>, StatusCode); 10] = [
        ("Traefik-style headers", vec![("x-forwarded-method", "GET"), ("x-forwarded-uri", "/reports/a"), ("authorization", &bearer)], StatusCode::OK),
        ("nginx-style headers", vec![("x-original-method", "GET"), ("x-original-uri", "/reports/a"), ("authorization", &bearer)], StatusCode::OK),
        ("method outside the route", vec![("x-forwarded-method", "POST"), ("x-forwarded-uri", "/reports/pathway/a"), ("authorization", &bearer)], StatusCode::OK),
        ("missing original URI", vec![("authorization", &bearer)], StatusCode::FORBIDDEN),
        ("no credential", vec![("x-forwarded-uri", "/reports/a")], StatusCode::UNAUTHORIZED),
        ("capability not granted", vec![("x-forwarded-method", "GET"), ("x-forwarded-uri", "/reports/pathway/a"), ("authorization", &bearer)], StatusCode::FORBIDDEN),
        // The upstream merges slashes and decodes, so the check must match what it will serve.
        ("doubled slash before a stronger route", vec![("x-forwarded-uri", "/reports//pathway/a"), ("authorization", &bearer)], StatusCode::FORBIDDEN),
        ("encoded letters of a stronger route", vec![("x-forwarded-uri", "/reports/p%61thway/a"), ("authorization", &bearer)], StatusCode::FORBIDDEN),
        ("dot segments out of a route", vec![("x-forwarded-uri", "/reports/../admin"), ("authorization", &bearer)], StatusCode::FORBIDDEN),
        ("encoded dot segments", vec![("x-forwarded-uri", "/reports/%2E%2E/admin"), ("authorization", &bearer)], StatusCode::FORBIDDEN),
    ];
    for (description, headers, expected) in cases {
        let response = check(&headers).send().await.unwrap();
        assert_eq!(response.status(), expected, "{description}");
        if expected == StatusCode::OK {
            assert_eq!(response.headers()["x-auth-scope"], "read", "{description}");
        }
    }

    app.stop().await;
}
