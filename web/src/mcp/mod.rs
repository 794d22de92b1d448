//! The MCP endpoint `/mcp`: JSON-RPC 2.0 over the Streamable HTTP transport of
//! MCP revision 2025-11-25, with tools gated by the catalog's tiers. It owns the
//! transport rules (methods, headers, `Origin`) and the per-call access decision;
//! the tools themselves live in [`tools`] and [`framework`].
//!
//! The endpoint is stateless: it issues no `Mcp-Session-Id`, returns one JSON
//! object for every request, and returns 405 for GET and DELETE, all of which
//! the transport allows. Every POST is checked on its own: a credential,
//! when present, must be valid for the resource `<issuer>/mcp`.
//!
//! NOTE: the JSON-RPC layer is written here rather than taken from the `rmcp`
//! crate (3.11 when this was written). rmcp's server transport is a tower
//! service without an actix-web binding, and the gating below must answer
//! `tools/call` with HTTP 401, 403 or 429 and rate-limit headers, which a tool
//! handler inside rmcp cannot set.

pub mod framework;
mod tools;

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, Error, HttpRequest, HttpResponse, ResponseError};
use serde_json::{json, Map, Value};
use ucca_actors::catalog::Catalog;

use crate::middleware::{consume_keyless_quota, consume_quota, credential_required, identify, record_usage, require_grant, Principal, RateLimits};
use crate::state::{client_ip, AppState};

pub use framework::Framework;
use tools::{Access, Tool, ToolError};

/// Protocol revisions this endpoint speaks, newest first.
pub const PROTOCOL_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];
/// Largest JSON-RPC message accepted, in bytes.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

// JSON-RPC 2.0 error codes (JSON-RPC 2.0 specification, section 5.1).
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

/// The tool set an instance serves on `/mcp`.
#[derive(Debug, Clone)]
pub enum McpTools {
    /// Search, lookup and the tiered tools over the training corpus.
    Corpus,
    /// The `ucco:framework` tools over a framework file.
    Framework(Arc<Framework>),
}

impl McpTools {
    /// Returns the resource name that protected resource metadata shows.
    pub fn resource_name(&self) -> &'static str {
        match self {
            McpTools::Corpus => "ucca-auth corpus MCP server",
            McpTools::Framework(_) => "ucca-auth framework MCP server",
        }
    }

    fn tools(&self) -> &'static [Tool] {
        match self {
            McpTools::Corpus => tools::CORPUS_TOOLS,
            McpTools::Framework(_) => framework::FRAMEWORK_TOOLS,
        }
    }

    /// Lists the scopes that open this tool set's tools, least powerful first and without repeats.
    pub fn scopes(&self, catalog: &Catalog) -> Vec<String> {
        let mut scopes: Vec<String> = Vec::new();
        for tool in self.tools() {
            if let Some(scope) = catalog.scope_for(tool.capability) {
                if !scopes.iter().any(|known| known == scope) {
                    scopes.push(scope.to_string());
                }
            }
        }
        scopes
    }
}

pub fn configure(config: &mut web::ServiceConfig) {
    config.service(
        web::resource("/mcp")
            .app_data(web::PayloadConfig::new(MAX_MESSAGE_BYTES))
            .wrap(from_fn(check_origin))
            .route(web::post().to(post))
            .route(web::method(Method::OPTIONS).to(preflight))
            .default_service(web::to(method_not_allowed)),
    );
}

/// Rejects requests whose `Origin` is not allowed, and adds CORS headers for those that are.
/// Requests without `Origin` come from programs rather than browsers and pass.
/// The transport requires this check against DNS rebinding.
async fn check_origin(request: ServiceRequest, next: Next<impl MessageBody + 'static>) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
        return Ok(next.call(request).await?.map_into_boxed_body());
    };
    let allowed = request
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| origin.to_str().is_ok_and(|origin| state.config.mcp_allowed_origins.iter().any(|allowed| allowed == origin)));
    if !allowed {
        tracing::warn!(target: "ucca::security", origin = ?origin, "MCP request from an origin that is not allowed");
        let body = rpc_error_body(Value::Null, INVALID_REQUEST, "requests from this Origin are not allowed; ask the operator to add it to mcp_allowed_origins");
        return Ok(request.into_response(json_response(StatusCode::FORBIDDEN, &body)));
    }

    let mut response = next.call(request).await?.map_into_boxed_body();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("WWW-Authenticate, RateLimit, RateLimit-Policy, Retry-After, X-Request-Id"),
    );
    Ok(response)
}

/// Responds to a CORS preflight from an allowed origin, because `check_origin` has already rejected the others.
async fn preflight() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "POST"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "Authorization, Content-Type, Accept, MCP-Protocol-Version"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish()
}

/// GET would open a server-to-client event stream, and DELETE would end a session; this endpoint offers neither.
async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, "POST"))
        .json(rpc_error_body(Value::Null, INVALID_REQUEST, "this MCP endpoint accepts only POST: it opens no event stream and keeps no sessions"))
}

/// One JSON-RPC request, already checked for shape.
struct Request {
    id: Value,
    method: String,
    params: Option<Value>,
}

/// The content of one POST.
enum Incoming {
    Request(Request),
    /// A notification, or a response to a request the server never sends; both are acknowledged with 202.
    Acknowledged,
}

async fn post(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    if let Err(response) = check_headers(request.headers()) {
        return response;
    }
    let incoming = match parse_message(&body) {
        Ok(incoming) => incoming,
        Err(response) => return response,
    };

    let resource = state.mcp_resource();
    let principal = match identify(&state, request.headers(), &resource).await {
        Ok(principal) => principal,
        Err(error) => return error.error_response(),
    };

    let Incoming::Request(call) = incoming else {
        return HttpResponse::Accepted().finish();
    };
    match call.method.as_str() {
        "initialize" => rpc_result(call.id, initialize_result(&state, call.params.as_ref())),
        "ping" => rpc_result(call.id, json!({})),
        "tools/list" => rpc_result(call.id, list_tools(&state)),
        "tools/call" => call_tool(&state, &request, principal.as_ref(), call).await,
        other => rpc_error(StatusCode::OK, call.id, METHOD_NOT_FOUND, &format!("method {other} is not supported by this server")),
    }
}

/// Checks the content type, `Accept` and `MCP-Protocol-Version` of a POST.
fn check_headers(headers: &HeaderMap) -> Result<(), HttpResponse> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(rpc_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, Value::Null, INVALID_REQUEST, "the body must be application/json"));
    }

    // Responses are always application/json, so a client must accept it. A missing Accept accepts anything.
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok()) {
        let accepts_json = accept.split(',').any(|item| {
            let media = item.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            matches!(media.as_str(), "application/json" | "application/*" | "*/*")
        });
        if !accepts_json {
            return Err(rpc_error(StatusCode::NOT_ACCEPTABLE, Value::Null, INVALID_REQUEST, "Accept must include application/json"));
        }
    }

    // Without the header the transport specification assumes 2025-03-26, which is supported.
    if let Some(version) = headers.get("mcp-protocol-version") {
        let version = version.to_str().unwrap_or("");
        if !PROTOCOL_VERSIONS.contains(&version) {
            let message = format!("MCP-Protocol-Version {version:?} is not supported; use one of {}", PROTOCOL_VERSIONS.join(", "));
            return Err(rpc_error(StatusCode::BAD_REQUEST, Value::Null, INVALID_REQUEST, &message));
        }
    }
    Ok(())
}

/// Parses one JSON-RPC message. Batches are not part of MCP 2025-11-25.
fn parse_message(body: &[u8]) -> Result<Incoming, HttpResponse> {
    let invalid = |message: &str| rpc_error(StatusCode::BAD_REQUEST, Value::Null, INVALID_REQUEST, message);
    let message: Value = serde_json::from_slice(body)
        .map_err(|_| rpc_error(StatusCode::BAD_REQUEST, Value::Null, PARSE_ERROR, "the body is not valid JSON"))?;
    let Value::Object(mut message) = message else {
        return Err(invalid("the body must be one JSON-RPC message object; batches are not supported"));
    };
    if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid("jsonrpc must be \"2.0\""));
    }

    let Some(method) = message.get("method") else {
        return match message.contains_key("result") || message.contains_key("error") {
            true => Ok(Incoming::Acknowledged),
            false => Err(invalid("a message needs a method, or a result or error")),
        };
    };
    let Some(method) = method.as_str().map(str::to_string) else {
        return Err(invalid("method must be a string"));
    };
    let params = message.remove("params");
    if params.as_ref().is_some_and(|params| !params.is_object()) {
        return Err(invalid("params must be an object"));
    }
    match message.remove("id") {
        None => Ok(Incoming::Acknowledged),
        // MCP request ids are strings or integers, never null.
        Some(id @ (Value::String(_) | Value::Number(_))) => Ok(Incoming::Request(Request { id, method, params })),
        Some(_) => Err(invalid("id must be a string or a number")),
    }
}

fn initialize_result(state: &AppState, params: Option<&Value>) -> Value {
    // Version negotiation: echo a supported version, otherwise offer the newest.
    let requested = params.and_then(|params| params.get("protocolVersion")).and_then(Value::as_str);
    let version = requested.filter(|version| PROTOCOL_VERSIONS.contains(version)).unwrap_or(PROTOCOL_VERSIONS[0]);
    let instructions = match &state.config.mcp_tools {
        McpTools::Corpus => {
            "Tools over a training corpus of units and qualifications. search and lookup work without signing in, \
             at the free tier: one result per call and no unit components. The other tools need OAuth sign-in with \
             the scope each tool's description names; calling one without it starts authorization."
        }
        McpTools::Framework(_) => "Tools over a competency framework. Every tool needs OAuth sign-in with the scope ucco:framework.",
    };
    json!({
        "protocolVersion": version,
        "capabilities": { "tools": { "listChanged": false } },
        "serverInfo": { "name": "ucca-auth", "title": state.config.mcp_tools.resource_name(), "version": env!("CARGO_PKG_VERSION") },
        "instructions": instructions,
    })
}

fn list_tools(state: &AppState) -> Value {
    let listed: Vec<Value> = state.config.mcp_tools.tools().iter().map(|tool| tool.describe(&state.catalog)).collect();
    json!({ "tools": listed })
}

/// Runs `tools/call`: resolves the tool, admits the call (credential, scope, quota), runs it and records usage.
async fn call_tool(state: &AppState, request: &HttpRequest, principal: Option<&Principal>, call: Request) -> HttpResponse {
    let started = Instant::now();
    let params = call.params.unwrap_or_else(|| json!({}));
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return rpc_error(StatusCode::OK, call.id, INVALID_PARAMS, "tools/call needs params.name, the name of a tool from tools/list");
    };
    let Some(tool) = state.config.mcp_tools.tools().iter().find(|tool| tool.name == name) else {
        return rpc_error(StatusCode::OK, call.id, INVALID_PARAMS, &format!("unknown tool {name}; tools/list names the tools of this server"));
    };
    let empty = Map::new();
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(arguments)) => arguments,
        Some(_) => return rpc_error(StatusCode::OK, call.id, INVALID_PARAMS, "params.arguments must be an object"),
    };

    let limits = match admit(state, request, principal, tool).await {
        Ok(limits) => limits,
        Err(response) => {
            record_usage(state, tool.name, principal, response.status(), started);
            return response;
        }
    };

    let access = Access { catalog: &state.catalog, principal, free_tier: state.catalog.free_tier() };
    let outcome = tool.check_arguments(arguments).and_then(|()| (tool.run)(state, &access, arguments));
    let (result, status) = match outcome {
        Ok(value) => (tool_result(&value, false), StatusCode::OK),
        Err(error) => (tool_result(&json!({ "error": error.message }), true), error.status()),
    };
    // The usage record keeps the HTTP status a REST call would have had, so tool errors show up as 400 or 404.
    record_usage(state, tool.name, principal, status, started);

    let mut response = rpc_result(call.id, result);
    if let Some(limits) = limits {
        limits.apply(response.headers_mut());
    }
    response
}

/// Admits one call of `tool`: a keyless caller against the free tier and its per-IP limit,
/// a credential against the tool's capability and its plan's quota.
async fn admit(state: &AppState, request: &HttpRequest, principal: Option<&Principal>, tool: &Tool) -> Result<Option<RateLimits>, HttpResponse> {
    let resource = state.mcp_resource();
    let Some(principal) = principal else {
        if !tool.keyless {
            return Err(credential_required(state, &resource, tool.capability).error_response());
        }
        let forwarded_for = request.headers().get("x-forwarded-for").and_then(|value| value.to_str().ok());
        let peer = request.peer_addr().map(|address| address.ip());
        // Without a peer address (never the case on a TCP listener) every such call shares one bucket.
        let ip = client_ip(peer, forwarded_for, &state.config.trusted_proxies).unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
        return consume_keyless_quota(state, ip).await.map_err(|refusal| refusal.into_response());
    };

    require_grant(state, principal, &resource, tool.capability).map_err(|error| error.error_response())?;
    consume_quota(state, principal).await.map_err(|refusal| refusal.into_response())
}

/// A `CallToolResult`: the value as JSON text for models, and as structured content for programs.
fn tool_result(value: &Value, is_error: bool) -> Value {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    json!({
        "content": [{ "type": "text", "text": text }],
        "structuredContent": value,
        "isError": is_error,
    })
}

fn rpc_result(id: Value, result: Value) -> HttpResponse {
    json_response(StatusCode::OK, &json!({ "jsonrpc": "2.0", "id": id, "result": result }))
}

fn rpc_error_body(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

fn rpc_error(status: StatusCode, id: Value, code: i64, message: &str) -> HttpResponse {
    json_response(status, &rpc_error_body(id, code, message))
}

fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status).insert_header((header::CACHE_CONTROL, "no-store")).json(body)
}

impl ToolError {
    /// The HTTP status a REST call with the same fault would get, for the usage record.
    fn status(&self) -> StatusCode {
        match self.kind {
            tools::ToolErrorKind::InvalidArguments => StatusCode::BAD_REQUEST,
            tools::ToolErrorKind::NotFound => StatusCode::NOT_FOUND,
        }
    }
}
