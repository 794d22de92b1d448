//! The MCP surfaces. These tests cover the Streamable HTTP transport at `/mcp`,
//! tier-gated tools and their challenges, and audience binding between `/v1` and
//! `/mcp`. They also cover client self-registration (RFC 7591 and client ID
//! metadata documents), a second instance serving the framework tools, and a run
//! of the official MCP Python SDK against the real binary.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use reqwest::StatusCode;
use serde_json::{json, Value};
use ucca_auth::settings::McpToolSet;

use crate::helpers::*;

const PROTOCOL_VERSION: &str = "2025-11-25";
const CLIENT_REDIRECT: &str = "http://127.0.0.1:7000/cb";

/// Sends one JSON-RPC message to `/mcp` as an MCP client does, with an optional bearer credential.
async fn post_mcp(app: &TestApp, credential: Option<&str>, message: Value) -> JsonReply {
    let mut request = app
        .http
        .post(app.url("/mcp"))
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", PROTOCOL_VERSION)
        .json(&message);
    if let Some(credential) = credential {
        request = request.bearer_auth(credential);
    }
    JsonReply::read(request.send().await.unwrap()).await
}

async fn call_tool(app: &TestApp, credential: Option<&str>, name: &str, arguments: Value) -> JsonReply {
    post_mcp(app, credential, json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": { "name": name, "arguments": arguments } })).await
}

/// Registers an operator client that may request every rtopacks scope, entitles `email` to
/// professional, and returns an access token for `resource` carrying `scope`.
async fn token_for_resource(app: &TestApp, email: &str, scope: &str, resource: &str) -> String {
    assert_eq!(app.put_entitlements(email, &["rtopacks:professional"]).await.status, StatusCode::OK);
    let client = app.scoped_client("rtopacks:operational rtopacks:developer rtopacks:professional").await;
    let browser = app.signed_in_browser(email).await;
    let reply = app.grant_tokens(&browser, &client, &[("scope", scope), ("resource", resource)]).await;
    reply.body["access_token"].as_str().expect("token response has an access token").to_string()
}

fn mcp_resource(app: &TestApp) -> String {
    format!("{}/mcp", app.issuer)
}

#[actix_web::test]
async fn keyless_client_gets_free_tier() {
    let app = spawn_app().await;

    let initialized = post_mcp(
        &app,
        None,
        json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": { "protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": { "name": "test", "version": "1" } } }),
    )
    .await;
    assert_eq!(initialized.status, StatusCode::OK);
    assert_eq!(initialized.body["id"], 1);
    assert_eq!(initialized.body["result"]["protocolVersion"], PROTOCOL_VERSION);
    assert_eq!(initialized.body["result"]["capabilities"]["tools"]["listChanged"], false);
    assert_eq!(initialized.header("mcp-session-id"), "", "the endpoint is stateless");

    let notified = post_mcp(&app, None, json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })).await;
    assert_eq!(notified.status, StatusCode::ACCEPTED);
    assert!(notified.text.is_empty());

    let listed = post_mcp(&app, None, json!({ "jsonrpc": "2.0", "id": "list", "method": "tools/list" })).await;
    let tools = listed.body["result"]["tools"].as_array().expect("tools/list returns tools");
    let names: Vec<&str> = tools.iter().map(|tool| tool["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["search", "lookup", "ladder", "components", "employment_signals", "pathway"]);
    let components = &tools[3];
    assert!(components["description"].as_str().unwrap().contains("rtopacks:developer"), "{components}");
    assert_eq!(components["inputSchema"]["required"], json!(["code"]));

    let search = call_tool(&app, None, "search", json!({ "query": "business", "limit": 50 })).await;
    assert_eq!(search.status, StatusCode::OK);
    assert_eq!(search.body["result"]["isError"], false);
    assert_eq!(search.body["result"]["structuredContent"]["count"], 1, "free tier returns one result");
    let text = search.body["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("BSB20120"), "{text}");
    assert_eq!(search.header("ratelimit-policy"), "\"per_ip\";q=30;w=60");
    assert!(search.header("ratelimit").starts_with("\"per_ip\";r=29;"), "{}", search.header("ratelimit"));

    let lookup = call_tool(&app, None, "lookup", json!({ "code": "bsbwhs211" })).await;
    let unit = &lookup.body["result"]["structuredContent"];
    assert_eq!(unit["code"], "BSBWHS211");
    assert_eq!(unit["element_count"], 3);
    assert!(unit.get("elements").is_none(), "free tier hides components: {unit}");

    app.stop().await;
}

#[actix_web::test]
async fn gated_tool_challenge_names_scope() {
    let app = spawn_app().await;
    let metadata_url = format!("{}/.well-known/oauth-protected-resource/mcp", app.issuer);

    let cases = [
        ("ladder", json!({ "code": "BSB30120" }), "rtopacks:operational"),
        ("components", json!({ "code": "BSBWHS211" }), "rtopacks:developer"),
        ("employment_signals", json!({ "code": "ICT40120" }), "rtopacks:professional"),
        ("pathway", json!({ "from": "BSB30120", "to": "BSB40120" }), "rtopacks:professional"),
    ];
    for (tool, arguments, scope) in cases {
        let refused = call_tool(&app, None, tool, arguments).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{tool}");
        let challenge = refused.header("www-authenticate");
        assert!(challenge.starts_with("Bearer "), "{tool}: {challenge}");
        assert!(challenge.contains(&format!("scope=\"{scope}\"")), "{tool}: {challenge}");
        assert!(challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")), "{tool}: {challenge}");
        assert!(!challenge.contains("error="), "no credential, so no error code: {challenge}");
    }

    // The challenge leads to metadata that names this server and the MCP resource.
    let metadata = JsonReply::read(app.http.get(&metadata_url).send().await.unwrap()).await;
    assert_eq!(metadata.status, StatusCode::OK);
    assert_eq!(metadata.body["resource"], mcp_resource(&app));
    assert_eq!(metadata.body["authorization_servers"], json!([app.issuer]));
    assert_eq!(metadata.body["scopes_supported"], json!(["rtopacks:operational", "rtopacks:developer", "rtopacks:professional"]));

    let server = JsonReply::read(app.http.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap()).await;
    assert_eq!(server.body["registration_endpoint"], format!("{}/oauth/register", app.issuer));
    assert_eq!(server.body["client_id_metadata_document_supported"], true);

    app.stop().await;
}

#[actix_web::test]
async fn tokens_work_only_on_their_own_surface() {
    let app = spawn_app().await;
    let rest_token = token_for_resource(&app, "rosa@example.com", "rtopacks:developer", &format!("{}/v1", app.issuer)).await;
    let mcp_token = token_for_resource(&app, "rosa@example.com", "rtopacks:developer", &mcp_resource(&app)).await;

    let accepted = call_tool(&app, Some(&mcp_token), "components", json!({ "code": "BSBWHS211" })).await;
    assert_eq!(accepted.status, StatusCode::OK);
    assert_eq!(accepted.body["result"]["structuredContent"]["elements"].as_array().map(Vec::len), Some(3));

    // A REST token at /mcp is refused even for a call a keyless caller could make.
    let rest_at_mcp = call_tool(&app, Some(&rest_token), "search", json!({ "query": "business" })).await;
    assert_eq!(rest_at_mcp.status, StatusCode::UNAUTHORIZED);
    assert!(rest_at_mcp.header("www-authenticate").contains("error=\"invalid_token\""), "{}", rest_at_mcp.header("www-authenticate"));
    assert!(rest_at_mcp.text.contains("another resource"), "{}", rest_at_mcp.text);

    let mcp_at_rest = app.get_with_token("/v1/lookup?code=BSB30120", &mcp_token).await;
    assert_eq!(mcp_at_rest.status(), StatusCode::UNAUTHORIZED);
    let rest_at_rest = app.get_with_token("/v1/lookup?code=BSB30120", &rest_token).await;
    assert_eq!(rest_at_rest.status(), StatusCode::OK);

    app.stop().await;
}

#[actix_web::test]
async fn lower_tier_gets_insufficient_scope() {
    let app = spawn_app().await;
    let token = token_for_resource(&app, "omar@example.com", "rtopacks:operational", &mcp_resource(&app)).await;

    let ladder = call_tool(&app, Some(&token), "ladder", json!({ "code": "BSB30120" })).await;
    assert_eq!(ladder.status, StatusCode::OK);
    assert_eq!(ladder.body["result"]["structuredContent"]["family"], "Business");
    assert!(ladder.header("ratelimit-policy").contains("\"monthly\";q=100000"), "{}", ladder.header("ratelimit-policy"));
    assert!(ladder.header("ratelimit").contains("\"monthly\";r=99999"), "{}", ladder.header("ratelimit"));

    let lookup = call_tool(&app, Some(&token), "lookup", json!({ "code": "BSBWHS211" })).await;
    assert!(lookup.body["result"]["structuredContent"].get("elements").is_none(), "operational access hides components");

    let search = call_tool(&app, Some(&token), "search", json!({ "query": "business", "limit": 3 })).await;
    assert_eq!(search.body["result"]["structuredContent"]["count"], 3, "a token lifts the free tier's one-result cap");

    for (tool, arguments, scope) in [
        ("components", json!({ "code": "BSBWHS211" }), "rtopacks:developer"),
        ("pathway", json!({ "from": "BSB30120", "to": "BSB40120" }), "rtopacks:professional"),
    ] {
        let refused = call_tool(&app, Some(&token), tool, arguments).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{tool}");
        let challenge = refused.header("www-authenticate");
        assert!(challenge.contains("error=\"insufficient_scope\""), "{tool}: {challenge}");
        assert!(challenge.contains(&format!("scope=\"{scope}\"")), "{tool}: {challenge}");
        assert!(challenge.contains("resource_metadata="), "{tool}: {challenge}");
    }

    let usage: Value = app.http.get(format!("{}/ops/usage?group_by=tool", app.ops)).bearer_auth(OPS_KEY).send().await.unwrap().json().await.unwrap();
    let group = |name: &str| usage["groups"].as_array().unwrap().iter().find(|group| group["key"] == name).cloned().unwrap_or(Value::Null);
    assert_eq!(group("ladder")["calls"], 1);
    assert_eq!(group("lookup")["calls"], 1);
    assert_eq!(group("components")["calls"], 1);
    assert_eq!(group("components")["errors"], 1, "the 403 is recorded as an error");
    assert_eq!(group("pathway")["calls"], 1);

    app.stop().await;
}

#[actix_web::test]
async fn professional_tools_label_demo_data() {
    let app = spawn_app().await;
    let token = token_for_resource(&app, "ines@example.com", "rtopacks:professional", &mcp_resource(&app)).await;

    let signals = call_tool(&app, Some(&token), "employment_signals", json!({ "code": "ICT40120" })).await;
    let content = &signals.body["result"]["structuredContent"];
    assert_eq!(signals.body["result"]["isError"], false, "{content}");
    assert!(content["data_notice"].as_str().unwrap().starts_with("DEMO DATA"), "{content}");
    assert_eq!(content["ladder_position"], "2 of 4");
    assert_eq!(content["next_step_up"], "ICT50120");

    let pathway = call_tool(&app, Some(&token), "pathway", json!({ "from": "BSB30120", "to": "BSB40120" })).await;
    assert_eq!(pathway.body["result"]["structuredContent"]["aqf_level_change"], 1);

    app.stop().await;
}

#[actix_web::test]
async fn tool_failures_are_tool_errors() {
    let app = spawn_app().await;
    let token = token_for_resource(&app, "kai@example.com", "rtopacks:professional", &mcp_resource(&app)).await;

    // Each case: description, tool, arguments, words the message must contain.
    let cases = [
        ("unknown code", "lookup", json!({ "code": "NOSUCH123" }), "no unit or qualification has the code NOSUCH123"),
        ("missing argument", "lookup", json!({}), "the argument code is missing"),
        ("argument of the wrong type", "search", json!({ "query": 5 }), "must be a string"),
        ("limit out of range", "search", json!({ "query": "safe", "limit": 0 }), "from 1 to 100"),
        ("code with punctuation", "ladder", json!({ "code": "BSB-30120" }), "letters and digits"),
        ("ladder from a unit", "ladder", json!({ "code": "BSBWHS211" }), "is a unit"),
        ("components of a qualification", "components", json!({ "code": "BSB30120" }), "components belong to units"),
        ("pathway from a unit", "pathway", json!({ "from": "BSBWHS211", "to": "BSB40120" }), "must both be qualification codes"),
        ("argument the schema does not name", "search", json!({ "query": "safe", "bogus": 1 }), "unknown argument bogus; search takes"),
    ];
    for (description, tool, arguments, expected) in cases {
        let reply = call_tool(&app, Some(&token), tool, arguments).await;
        assert_eq!(reply.status, StatusCode::OK, "{description}");
        assert_eq!(reply.body["result"]["isError"], true, "{description}: {}", reply.text);
        let message = reply.body["result"]["structuredContent"]["error"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{description}: {message}");
    }

    // Protocol faults are JSON-RPC errors instead.
    let unknown_tool = call_tool(&app, Some(&token), "teleport", json!({})).await;
    assert_eq!(unknown_tool.body["error"]["code"], -32602);
    assert_eq!(unknown_tool.body["id"], 7);
    let unknown_method = post_mcp(&app, None, json!({ "jsonrpc": "2.0", "id": 8, "method": "resources/list" })).await;
    assert_eq!(unknown_method.body["error"]["code"], -32601);
    let arguments_not_object = post_mcp(&app, None, json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": { "name": "search", "arguments": [1] } })).await;
    assert_eq!(arguments_not_object.body["error"]["code"], -32602);

    app.stop().await;
}

#[actix_web::test]
async fn transport_rejects_forbidden_requests() {
    let app = spawn_app_with(|settings| settings.mcp_allowed_origins = vec!["https://app.example".into()]).await;
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" });
    let send = |headers: Vec<(&'static str, &'static str)>, body: String| {
        let mut request = app.http.post(app.url("/mcp")).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move { JsonReply::read(request.send().await.unwrap()).await }
    };
    let json_type = ("content-type", "application/json");

    // Each case: description, headers, body, expected status, expected JSON-RPC error code.
    let cases: Vec<(&str, Vec<(&'static str, &'static str)>, String, StatusCode, Option<i64>)> = vec![
        ("plain ping", vec![json_type], ping.to_string(), StatusCode::OK, None),
        ("allowed origin", vec![json_type, ("origin", "https://app.example")], ping.to_string(), StatusCode::OK, None),
        ("other origin", vec![json_type, ("origin", "https://evil.example")], ping.to_string(), StatusCode::FORBIDDEN, Some(-32600)),
        ("unsupported protocol version", vec![json_type, ("mcp-protocol-version", "2026-07-28")], ping.to_string(), StatusCode::BAD_REQUEST, Some(-32600)),
        ("older supported version", vec![json_type, ("mcp-protocol-version", "2025-06-18")], ping.to_string(), StatusCode::OK, None),
        ("not JSON", vec![json_type], "{nope".into(), StatusCode::BAD_REQUEST, Some(-32700)),
        ("batch", vec![json_type], json!([ping]).to_string(), StatusCode::BAD_REQUEST, Some(-32600)),
        ("wrong jsonrpc version", vec![json_type], json!({ "jsonrpc": "1.0", "id": 1, "method": "ping" }).to_string(), StatusCode::BAD_REQUEST, Some(-32600)),
        ("form body", vec![("content-type", "application/x-www-form-urlencoded")], "a=b".into(), StatusCode::UNSUPPORTED_MEDIA_TYPE, Some(-32600)),
        ("accepts no JSON", vec![json_type, ("accept", "text/html")], ping.to_string(), StatusCode::NOT_ACCEPTABLE, Some(-32600)),
        ("response from the client", vec![json_type], json!({ "jsonrpc": "2.0", "id": 3, "result": {} }).to_string(), StatusCode::ACCEPTED, None),
    ];
    for (description, headers, body, status, code) in cases {
        let reply = send(headers, body).await;
        assert_eq!(reply.status, status, "{description}: {}", reply.text);
        match code {
            Some(code) => assert_eq!(reply.body["error"]["code"], code, "{description}"),
            None if status == StatusCode::OK => assert_eq!(reply.body["result"], json!({}), "{description}"),
            None => {}
        }
    }

    let allowed = send(vec![json_type, ("origin", "https://app.example")], ping.to_string()).await;
    assert_eq!(allowed.header("access-control-allow-origin"), "https://app.example");
    assert!(allowed.header("access-control-expose-headers").contains("WWW-Authenticate"));

    let stream = app.http.get(app.url("/mcp")).header("accept", "text/event-stream").send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(stream.headers()["allow"], "POST");
    let end_session = app.http.delete(app.url("/mcp")).send().await.unwrap();
    assert_eq!(end_session.status(), StatusCode::METHOD_NOT_ALLOWED);

    app.stop().await;
}

#[actix_web::test]
async fn default_settings_reject_browser_origins() {
    let app = spawn_app().await;
    let ping = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" });
    let reply = app.http.post(app.url("/mcp")).header("origin", format!("http://{}", app.public_address())).json(&ping).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::FORBIDDEN, "even the server's own origin needs listing");
    app.stop().await;
}

#[actix_web::test]
async fn keyless_calls_limited_per_ip() {
    let app = spawn_app().await;

    for call in 1..=30 {
        let reply = call_tool(&app, None, "search", json!({ "query": "safe" })).await;
        assert_eq!(reply.status, StatusCode::OK, "call {call}");
    }
    let limited = call_tool(&app, None, "lookup", json!({ "code": "BSB30120" })).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.body["error"], "rate_limited");
    assert_eq!(limited.header("retry-after"), "60");
    assert!(limited.header("ratelimit").starts_with("\"per_ip\";r=0;"), "{}", limited.header("ratelimit"));

    // A credential is counted against its plan, not the address.
    let token = token_for_resource(&app, "lee@example.com", "rtopacks:operational", &mcp_resource(&app)).await;
    assert_eq!(call_tool(&app, Some(&token), "search", json!({ "query": "safe" })).await.status, StatusCode::OK);

    app.clock.advance(60);
    assert_eq!(call_tool(&app, None, "search", json!({ "query": "safe" })).await.status, StatusCode::OK, "the next minute admits again");

    let usage: Value = app.http.get(format!("{}/ops/usage?group_by=tool", app.ops)).bearer_auth(OPS_KEY).send().await.unwrap().json().await.unwrap();
    let search = usage["groups"].as_array().unwrap().iter().find(|group| group["key"] == "search").cloned().unwrap();
    assert_eq!(search["calls"], 32);
    assert_eq!(search["authenticated"], 1);

    app.stop().await;
}

async fn register(app: &TestApp, metadata: Value) -> JsonReply {
    JsonReply::read(app.http.post(app.url("/oauth/register")).json(&metadata).send().await.unwrap()).await
}

#[actix_web::test]
async fn dynamic_registration_creates_public_client() {
    let app = spawn_app().await;

    let registered = register(
        &app,
        json!({ "client_name": "Agent", "redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "client_secret_basic",
                "grant_types": ["authorization_code", "refresh_token"], "scope": "rtopacks:developer", "software_id": "ignored" }),
    )
    .await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.text);
    assert_eq!(registered.header("cache-control"), "no-store");
    assert_eq!(registered.body["token_endpoint_auth_method"], "none", "a secret-based request is registered as public");
    assert!(registered.body.get("client_secret").is_none());
    assert_eq!(registered.body["redirect_uris"], json!([CLIENT_REDIRECT]));
    assert!(registered.body["scope"].as_str().unwrap().split(' ').any(|scope| scope == "rtopacks:professional"), "step-up needs every scope");

    // The new client completes authorization with PKCE alone.
    assert_eq!(app.put_entitlements("noor@example.com", &["rtopacks:developer"]).await.status, StatusCode::OK);
    let client = TestClient { id: registered.body["client_id"].as_str().unwrap().to_string(), secret: None, redirect_uri: CLIENT_REDIRECT.into() };
    let browser = app.signed_in_browser("noor@example.com").await;
    let tokens = app.grant_tokens(&browser, &client, &[("scope", "rtopacks:developer"), ("resource", &mcp_resource(&app))]).await;
    let token = tokens.body["access_token"].as_str().unwrap();
    let components = call_tool(&app, Some(token), "components", json!({ "code": "BSBWHS211" })).await;
    assert_eq!(components.body["result"]["isError"], false, "{}", components.text);

    // Operators still see it, marked as a public client.
    let listed: Value = app.http.get(format!("{}/ops/clients", app.ops)).bearer_auth(OPS_KEY).send().await.unwrap().json().await.unwrap();
    let entry = listed["clients"].as_array().unwrap().iter().find(|entry| entry["client_id"] == client.id.as_str()).cloned().unwrap();
    assert_eq!(entry["token_endpoint_auth_method"], "none");

    app.stop().await;
}

#[actix_web::test]
async fn bad_registrations_are_rejected() {
    let app = spawn_app().await;
    // Each case: description, metadata, expected error code.
    let cases = [
        ("no redirect URIs", json!({ "client_name": "A" }), "invalid_redirect_uri"),
        ("http redirect off loopback", json!({ "redirect_uris": ["http://app.example/cb"] }), "invalid_redirect_uri"),
        ("custom scheme", json!({ "redirect_uris": ["com.example.app:/cb"] }), "invalid_redirect_uri"),
        ("fragment", json!({ "redirect_uris": ["https://app.example/cb#x"] }), "invalid_redirect_uri"),
        ("unsupported auth method", json!({ "redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "private_key_jwt" }), "invalid_client_metadata"),
        ("implicit grant", json!({ "redirect_uris": [CLIENT_REDIRECT], "grant_types": ["implicit"] }), "invalid_client_metadata"),
        ("token response type", json!({ "redirect_uris": [CLIENT_REDIRECT], "response_types": ["token"] }), "invalid_client_metadata"),
        ("unknown scope", json!({ "redirect_uris": [CLIENT_REDIRECT], "scope": "rtopacks:everything" }), "invalid_client_metadata"),
        ("admin scope", json!({ "redirect_uris": [CLIENT_REDIRECT], "scope": "ucca:admin" }), "invalid_client_metadata"),
        ("control character in name", json!({ "redirect_uris": [CLIENT_REDIRECT], "client_name": "A\u{7}" }), "invalid_client_metadata"),
        ("redirect URIs not a list", json!({ "redirect_uris": CLIENT_REDIRECT }), "invalid_client_metadata"),
    ];
    for (description, metadata, code) in cases {
        let reply = register(&app, metadata).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{description}: {}", reply.text);
        assert_eq!(reply.body["error"], code, "{description}");
    }

    let listed: Value = app.http.get(format!("{}/ops/clients", app.ops)).bearer_auth(OPS_KEY).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["clients"].as_array().map(Vec::len), Some(0), "nothing was stored");
    app.stop().await;
}

#[actix_web::test]
async fn registrations_are_limited_per_ip() {
    let app = spawn_app().await;
    for attempt in 1..=20 {
        let reply = register(&app, json!({ "redirect_uris": [CLIENT_REDIRECT] })).await;
        assert_eq!(reply.status, StatusCode::CREATED, "registration {attempt}");
    }
    let limited = register(&app, json!({ "redirect_uris": [CLIENT_REDIRECT] })).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.body["error"], "rate_limited");
    assert_eq!(limited.header("retry-after"), "3600", "the pinned clock starts on the hour");

    app.clock.advance(3600);
    assert_eq!(register(&app, json!({ "redirect_uris": [CLIENT_REDIRECT] })).await.status, StatusCode::CREATED);
    app.stop().await;
}

#[actix_web::test]
async fn self_registration_can_be_switched_off() {
    let app = spawn_app_with(|settings| {
        settings.dynamic_registration = false;
        settings.client_metadata_documents = false;
    })
    .await;

    let server = JsonReply::read(app.http.get(app.url("/.well-known/oauth-authorization-server")).send().await.unwrap()).await;
    assert!(server.body.get("registration_endpoint").is_none(), "{}", server.text);
    assert!(server.body.get("client_id_metadata_document_supported").is_none(), "{}", server.text);
    assert_eq!(register(&app, json!({ "redirect_uris": [CLIENT_REDIRECT] })).await.status, StatusCode::NOT_FOUND);

    let client = TestClient { id: "https://app.example/client.json".into(), secret: None, redirect_uri: CLIENT_REDIRECT.into() };
    let page = Browser::new().get(&app.authorize_url(&client, &Pkce::new(), &[])).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.body.contains("does not accept client IDs that are URLs"), "{}", page.body);
    app.stop().await;
}

/// A loopback HTTP server that serves client ID metadata documents and counts the requests for each.
struct DocumentHost {
    base: String,
    fetches: Arc<AtomicUsize>,
    handle: ServerHandle,
}

impl DocumentHost {
    async fn start() -> DocumentHost {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let fetches = Arc::new(AtomicUsize::new(0));

        let (shared_base, shared_fetches) = (base.clone(), fetches.clone());
        let server = actix_web::HttpServer::new(move || {
            let (base, fetches) = (shared_base.clone(), shared_fetches.clone());
            actix_web::App::new().default_service(actix_web::web::to(move |request: actix_web::HttpRequest| {
                let (base, fetches) = (base.clone(), fetches.clone());
                async move {
                    fetches.fetch_add(1, Ordering::SeqCst);

                    let document = |client_id: String| {
                        json!({ "client_id": client_id, "client_name": "Document Agent", "redirect_uris": [CLIENT_REDIRECT],
                                "token_endpoint_auth_method": "none", "grant_types": ["authorization_code", "refresh_token"] })
                    };
                    let ok = |body: String| actix_web::HttpResponse::Ok().insert_header(("cache-control", "max-age=600")).content_type("application/json").body(body);
                    match request.path() {
                        "/client.json" => ok(document(format!("{base}/client.json")).to_string()),
                        "/mismatch.json" => ok(document(format!("{base}/client.json")).to_string()),
                        "/secret.json" => {
                            let mut body = document(format!("{base}/secret.json"));
                            body["client_secret"] = json!("shared");
                            ok(body.to_string())
                        }
                        "/large.json" => {
                            let mut body = document(format!("{base}/large.json"));
                            body["padding"] = json!("x".repeat(20_000));
                            ok(body.to_string())
                        }
                        "/moved.json" => actix_web::HttpResponse::Found().insert_header(("location", format!("{base}/client.json"))).finish(),
                        _ => actix_web::HttpResponse::NotFound().finish(),
                    }
                }
            }))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();

        let handle = server.handle();
        actix_web::rt::spawn(server);
        DocumentHost { base, fetches, handle }
    }

    fn client(&self, path: &str) -> TestClient {
        TestClient { id: format!("{}{path}", self.base), secret: None, redirect_uri: CLIENT_REDIRECT.into() }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

#[actix_web::test]
async fn metadata_document_client_completes_flow() {
    let host = DocumentHost::start().await;
    let app = spawn_app_with(|settings| settings.client_metadata_test_mode = true).await;
    let client = host.client("/client.json");
    let browser = app.signed_in_browser("ula@example.com").await;

    let pkce = Pkce::new();
    let consent = browser.get(&app.authorize_url(&client, &pkce, &[])).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    assert!(consent.body.contains("Document Agent (127.0.0.1)"), "the consent page names the document's host: {}", consent.body);
    assert_eq!(host.fetches(), 1);

    let mut fields = consent.hidden_fields();
    fields.push(("decision".into(), "allow".into()));
    let allowed = browser.post_form(&app.url("/oauth/authorize"), &fields).await;
    let redirect = url::Url::parse(allowed.location()).unwrap();
    let code = query_value(&redirect, "code").expect("the redirect carries a code");
    let exchanged = JsonReply::read(app.exchange(&client, &code, &pkce.verifier).await).await;
    assert_eq!(exchanged.status, StatusCode::OK, "{}", exchanged.text);

    // The cached copy serves the next request; after its max-age the document is fetched again.
    assert_eq!(browser.get(&app.authorize_url(&client, &Pkce::new(), &[])).await.status, StatusCode::SEE_OTHER);
    assert_eq!(host.fetches(), 1, "max-age=600 keeps the copy");
    app.clock.advance(601);
    assert_eq!(browser.get(&app.authorize_url(&client, &Pkce::new(), &[])).await.status, StatusCode::SEE_OTHER);
    assert_eq!(host.fetches(), 2);

    app.stop().await;
    host.handle.stop(true).await;
}

#[actix_web::test]
async fn unusable_metadata_documents_are_rejected() {
    let host = DocumentHost::start().await;
    let app = spawn_app_with(|settings| settings.client_metadata_test_mode = true).await;

    // Each case: description, path on the document host, words the error page must contain.
    let cases = [
        ("client_id differs from the URL", "/mismatch.json", "not exactly the URL"),
        ("document with a secret", "/secret.json", "client_secret"),
        ("document over the size cap", "/large.json", "larger than 10240 bytes"),
        ("redirect", "/moved.json", "HTTP 302"),
        ("missing document", "/absent.json", "HTTP 404"),
    ];
    for (description, path, expected) in cases {
        let page = Browser::new().get(&app.authorize_url(&host.client(path), &Pkce::new(), &[])).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{description}");
        assert!(page.body.contains(expected), "{description}: {}", page.body);
        assert!(page.location().is_empty(), "{description}: nothing is redirected before the client is known");
    }
    assert_eq!(host.fetches(), cases.len(), "each was fetched once, with no redirect followed");
    app.stop().await;
    host.handle.stop(true).await;
}

#[actix_web::test]
async fn loopback_documents_rejected_outside_test_mode() {
    let host = DocumentHost::start().await;
    let app = spawn_app().await;
    let https_loopback = TestClient { id: host.client("/client.json").id.replacen("http://", "https://", 1), secret: None, redirect_uri: CLIENT_REDIRECT.into() };

    for (description, client, expected) in [
        ("plain http", host.client("/client.json"), "must use https"),
        ("https to a loopback address", https_loopback, "loopback"),
    ] {
        let page = Browser::new().get(&app.authorize_url(&client, &Pkce::new(), &[])).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{description}");
        assert!(page.body.contains(expected), "{description}: {}", page.body);
    }
    assert_eq!(host.fetches(), 0, "nothing was fetched");
    app.stop().await;
    host.handle.stop(true).await;
}

#[actix_web::test]
async fn instances_reject_each_others_credentials() {
    let corpus = spawn_app().await;
    let framework = spawn_app_with(|settings| settings.mcp_tools = McpToolSet::Framework).await;
    assert_ne!(corpus.issuer, framework.issuer);

    let listed = post_mcp(&framework, None, json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" })).await;
    let names: Vec<&str> = listed.body["result"]["tools"].as_array().unwrap().iter().map(|tool| tool["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["framework_search", "framework_lookup"]);
    let keyless = call_tool(&framework, None, "framework_search", json!({ "query": "data" })).await;
    assert_eq!(keyless.status, StatusCode::UNAUTHORIZED);
    assert!(keyless.header("www-authenticate").contains("scope=\"ucco:framework\""), "{}", keyless.header("www-authenticate"));
    let metadata = JsonReply::read(framework.http.get(framework.url("/.well-known/oauth-protected-resource/mcp")).send().await.unwrap()).await;
    assert_eq!(metadata.body["scopes_supported"], json!(["ucco:framework"]));

    // A framework token opens the framework tools, and their results carry the demo-data notice.
    assert_eq!(framework.put_entitlements("vic@example.com", &["ucco:framework"]).await.status, StatusCode::OK);
    let client = framework.scoped_client("ucco:framework").await;
    let framework_browser = framework.signed_in_browser("vic@example.com").await;
    let tokens = framework.grant_tokens(&framework_browser, &client, &[("scope", "ucco:framework"), ("resource", &mcp_resource(&framework))]).await;
    let framework_token = tokens.body["access_token"].as_str().unwrap().to_string();
    let found = call_tool(&framework, Some(&framework_token), "framework_search", json!({ "query": "data" })).await;
    assert_eq!(found.body["result"]["structuredContent"]["count"], 3, "{}", found.text);
    assert!(found.body["result"]["structuredContent"]["notice"].as_str().unwrap().starts_with("Demo data"));
    let entry = call_tool(&framework, Some(&framework_token), "framework_lookup", json!({ "id": "d2.3" })).await;
    assert_eq!(entry.body["result"]["structuredContent"]["competency"]["levels"].as_array().map(Vec::len), Some(3));
    let missing = call_tool(&framework, Some(&framework_token), "framework_lookup", json!({ "id": "D9" })).await;
    assert_eq!(missing.body["result"]["isError"], true);

    // Credentials of one instance mean nothing to the other, in both directions.
    let corpus_token = token_for_resource(&corpus, "vic@example.com", "rtopacks:developer", &mcp_resource(&corpus)).await;
    let key_response = corpus.http.post(format!("{}/ops/keys", corpus.ops)).bearer_auth(OPS_KEY).json(&json!({ "user": "vic@example.com", "tier": "professional" })).send().await.unwrap();
    let corpus_key = JsonReply::read(key_response).await.body["key"].as_str().unwrap().to_string();
    assert_eq!(call_tool(&corpus, Some(&corpus_key), "components", json!({ "code": "BSBWHS211" })).await.status, StatusCode::OK);
    for (description, credential) in [("corpus token", &corpus_token), ("corpus API key", &corpus_key)] {
        let refused = call_tool(&framework, Some(credential), "framework_search", json!({ "query": "data" })).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{description}");
        assert!(refused.header("www-authenticate").contains("error=\"invalid_token\""), "{description}");
    }
    let refused = call_tool(&corpus, Some(&framework_token), "search", json!({ "query": "data" })).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "framework token at the corpus instance");

    // The sign-in session of one instance is not a session at the other.
    let session = framework.sign_in(&Browser::new(), "vic@example.com").await;
    let (name, value) = session.split_once('=').unwrap();
    let elsewhere = corpus.http.get(corpus.url("/auth")).header("cookie", format!("{name}={value}")).send().await.unwrap().text().await.unwrap();
    assert!(!elsewhere.contains("You are signed in as"), "the corpus instance saw a framework session");
    let at_home = framework.http.get(framework.url("/auth")).header("cookie", format!("{name}={value}")).send().await.unwrap().text().await.unwrap();
    assert!(at_home.contains("You are signed in as"), "the session works where it was made");

    corpus.stop().await;
    framework.stop().await;
}

/// The interpreter of the virtual environment that `.ci/run` installs the MCP Python SDK into.
fn sdk_python() -> PathBuf {
    match std::env::var_os("UCCA_MCP_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/mcp-client-venv/bin/python"),
    }
}

/// The real binary, started with extra flags, and the addresses it logs when listening.
struct Binary {
    child: Child,
    public: SocketAddr,
    ops: SocketAddr,
}

impl Binary {
    fn start(data_dir: &std::path::Path, flags: &[&str]) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ucca-auth"))
            .args(["serve", "--bind", "127.0.0.1:0", "--ops-bind", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            // All sign-ins come from 127.0.0.1, which per-IP limits count like any address.
            .args(["--link-requests-per-ip", "1000000"])
            .args(flags)
            .env_clear()
            .env("OPS_API_KEY", OPS_KEY)
            .env("UCCA_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the ucca-auth binary");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // After start-up the receiver is gone; the rest of the log is drained and dropped.
                let _ = sender.send(line);
            }
        });
        loop {
            let line = receiver.recv_timeout(Duration::from_secs(30)).expect("the binary logs that it listens within 30 s");
            if !line.contains("ucca-auth listening") {
                continue;
            }
            let field = |name: &str| -> SocketAddr {
                let start = line.find(&format!(" {name}=")).expect("listening line names the address") + name.len() + 2;
                line[start..].split_whitespace().next().unwrap().trim_matches('"').parse().unwrap()
            };
            return Binary { public: field("public"), ops: field("ops"), child };
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[actix_web::test]
async fn python_sdk_signs_in_and_refreshes() {
    let python = sdk_python();
    assert!(
        python.exists(),
        "{} is missing: run .ci/run, which installs the pinned MCP Python SDK there, or point UCCA_MCP_PYTHON at an interpreter that has it",
        python.display()
    );
    let data_dir = tempfile::tempdir().unwrap();
    let access_ttl = "2";
    let server = Binary::start(data_dir.path(), &["--access-ttl", access_ttl]);
    let base = format!("http://{}", server.public);

    let email = "sdk@example.com";
    let entitled = reqwest::Client::new()
        .put(format!("http://{}/ops/users/{email}/entitlements", server.ops))
        .bearer_auth(OPS_KEY)
        .json(&json!({ "scopes": ["rtopacks:professional"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(entitled.status(), StatusCode::OK);

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/mcp_client.py");
    let data_path = data_dir.path().to_path_buf();
    let output = actix_web::rt::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .args(["--base", &base, "--email", email, "--access-ttl", access_ttl, "--data-dir"])
            .arg(&data_path)
            .output()
            .expect("run the MCP SDK script")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(output.status.success(), "the SDK script failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("mcp interop: 18 passed, 0 failed"), "{stdout}");
    assert!(stdout.contains("ok the token was refreshed"), "{stdout}");
    drop(server);
}

#[actix_web::test]
async fn unused_self_registered_client_is_removed_after_90_days() {
    let app = spawn_app_with(|settings| settings.sweep_interval = std::time::Duration::from_millis(50)).await;
    let registered = register(&app, json!({ "client_name": "Idle agent", "redirect_uris": [CLIENT_REDIRECT] })).await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.text);
    let client_id = registered.body["client_id"].as_str().unwrap().to_string();
    let listed = |app: &TestApp| {
        let request = app.http.get(format!("{}/ops/clients", app.ops)).bearer_auth(OPS_KEY);
        async move {
            let body: Value = request.send().await.unwrap().json().await.unwrap();
            body["clients"].as_array().cloned().unwrap_or_default().iter().filter_map(|client| client["client_id"].as_str().map(str::to_string)).collect::<Vec<_>>()
        }
    };

    // A day short of 90 days, sweeps keep the client.
    app.clock.advance(89 * 86_400);
    actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(listed(&app).await.contains(&client_id), "the client was removed before 90 days without use");

    app.clock.advance(86_400);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline && listed(&app).await.contains(&client_id) {
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!listed(&app).await.contains(&client_id), "a sweep removes the client after 90 days without use");
    app.stop().await;
}
