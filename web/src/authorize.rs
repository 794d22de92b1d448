//! The authorization endpoint (RFC 6749 section 4.1.1 with PKCE, RFC 7636, and `iss`, RFC 9207).
//!
//! The client and redirect URI are checked first. Until both are known good,
//! errors are shown as a page and never redirected, so the endpoint cannot be
//! used as an open redirector. Every later error is redirected to the client
//! with `state` and `iss`.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use ucca_actors::accounts::{GetConsent, RecordConsent, UserRecord};
use ucca_actors::entitlements::held_scopes;
use ucca_actors::clients::{ClientRecord, GetClient};
use ucca_actors::codes::{CodeGrant, IssueCode};
use ucca_actors::oauth::{is_s256_challenge, is_valid_state, match_redirect_uri, parse_scope};
use url::Url;

use crate::errors::{ask, Internal};
use crate::pages::{csrf_seed, csrf_valid, escape, hidden, html, layout, message_page};
use crate::params::Params;
use crate::registration::{prepare_client, touch};
use crate::session::current_user;
use crate::state::AppState;

pub fn configure(config: &mut web::ServiceConfig) {
    config.service(web::resource("/oauth/authorize").get(authorize_page).post(authorize_decision));
}

/// Form fields the consent page adds to the request's own parameters.
const CONSENT_FIELDS: [&str; 2] = ["csrf_token", "decision"];

/// An authorization request whose every parameter has been checked.
struct AuthorizeRequest {
    client: ClientRecord,
    redirect_uri: String,
    redirect_uri_in_request: bool,
    state: Option<String>,
    scopes: Vec<String>,
    resource: String,
    code_challenge: String,
    prompt: Prompt,
}

enum Rejection {
    /// The client or redirect URI cannot be trusted: show the error here.
    Page(StatusCode, String),
    /// Anything else: tell the client at its redirect URI.
    Redirect { redirect_uri: String, error: &'static str, description: String, state: Option<String> },
    /// A finished response, such as a page for a client metadata document that could not be used.
    Response(HttpResponse),
    Internal,
}

impl From<Internal> for Rejection {
    fn from(_: Internal) -> Rejection {
        Rejection::Internal
    }
}

async fn check_request(state: &AppState, request: &HttpRequest, params: &Params) -> Result<AuthorizeRequest, Rejection> {
    let page = |message: &str| Rejection::Page(StatusCode::BAD_REQUEST, message.to_string());

    if params.is_repeated("client_id") {
        return Err(page("The request names client_id more than once."));
    }
    let Some(client_id) = params.get("client_id") else { return Err(page("The request has no client_id.")) };
    if let Err(refusal) = prepare_client(state, request, client_id).await {
        return Err(Rejection::Response(refusal.page()));
    }
    let client = ask(&state.services.clients, GetClient { client_id: client_id.to_string() }).await?;
    let Some(client) = client.filter(|client| client.active) else {
        return Err(page("The application that sent you here is not registered with this server, or it was deactivated. Tell its makers; nothing was shared with it."));
    };

    if params.is_repeated("redirect_uri") {
        return Err(page("The request names redirect_uri more than once."));
    }
    let (redirect_uri, redirect_uri_in_request) = match params.get("redirect_uri") {
        Some(requested) => match match_redirect_uri(&client.redirect_uris, requested) {
            // The requested form is used, so a loopback client gets its own port back.
            Some(_) => (requested.to_string(), true),
            None => return Err(page("The redirect_uri is not registered for this application.")),
        },
        None if client.redirect_uris.len() == 1 => (client.redirect_uris[0].clone(), false),
        None => return Err(page("The request has no redirect_uri, and this application registered several.")),
    };

    // From here on errors go back to the client; `state` is echoed only when it is sound.
    let state_param = params.get("state").filter(|_| !params.is_repeated("state"));
    let echo_state = state_param.filter(|value| is_valid_state(value)).map(str::to_string);
    let redirect = |error: &'static str, description: &str| Rejection::Redirect {
        redirect_uri: redirect_uri.clone(),
        error,
        description: description.to_string(),
        state: echo_state.clone(),
    };

    if let Some(name) = params.repeated(AUTHORIZATION_PARAMETERS) {
        return Err(redirect("invalid_request", &format!("parameter {name} is repeated")));
    }
    if state_param.is_some() && echo_state.is_none() {
        return Err(redirect("invalid_request", "state must be 1 to 1024 printable ASCII characters"));
    }
    match params.get("response_type") {
        None => return Err(redirect("invalid_request", "response_type is missing")),
        Some("code") => {}
        Some(_) => return Err(redirect("unsupported_response_type", "only response_type=code is supported")),
    }

    let Some(code_challenge) = params.get("code_challenge") else {
        return Err(redirect("invalid_request", "code_challenge is required: use PKCE with S256"));
    };
    match params.get("code_challenge_method") {
        Some("S256") => {}
        None => return Err(redirect("invalid_request", "code_challenge_method is required and must be S256")),
        Some(_) => return Err(redirect("invalid_request", "code_challenge_method must be S256; plain is not supported")),
    }
    if !is_s256_challenge(code_challenge) {
        return Err(redirect("invalid_request", "code_challenge must be 43 base64url characters, the S256 hash of the verifier"));
    }

    let resource = match params.distinct("resource")[..] {
        [] => state.derived.rest_resource.clone(),
        [resource] if state.is_known_resource(resource) => resource.to_string(),
        [_] => return Err(redirect("invalid_target", "resource is not a resource served by this server")),
        // RFC 8707 section 2 allows several; this server binds a grant to one.
        _ => return Err(redirect("invalid_target", "a grant here serves one resource: send a single resource parameter")),
    };

    let scopes = match params.get("scope") {
        None => client.scopes.clone(),
        Some(raw) => parse_scope(raw).ok_or_else(|| redirect("invalid_scope", "scope is malformed"))?,
    };
    if scopes.is_empty() {
        return Err(redirect("invalid_scope", "the request names no scope and the application has no default"));
    }
    if let Some(unknown) = scopes.iter().find(|scope| !state.catalog.is_issuable(scope)) {
        return Err(redirect("invalid_scope", &format!("scope {} is not issued by this server", shortened(unknown))));
    }
    if let Some(refused) = scopes.iter().find(|scope| !client.scopes.contains(scope)) {
        return Err(redirect("invalid_scope", &format!("this application may not request scope {refused}")));
    }

    let prompt = match params.get("prompt") {
        None | Some("login") => Prompt::Default,
        Some("consent") => Prompt::Consent,
        Some("none") => Prompt::None,
        Some(_) => return Err(redirect("invalid_request", "prompt must be none, login or consent")),
    };

    Ok(AuthorizeRequest {
        client,
        redirect_uri,
        redirect_uri_in_request,
        state: echo_state,
        scopes,
        resource,
        code_challenge: code_challenge.to_string(),
        prompt,
    })
}

/// The OpenID Connect `prompt` values this endpoint honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prompt {
    Default,
    /// Ask for consent even if it was given before.
    Consent,
    /// Never show a page: fail with `login_required` or `consent_required` instead.
    None,
}

/// What the signed-in user can grant this request, and whether they already approved it.
struct Decision {
    granted: Vec<String>,
    already_approved: bool,
}

/// Grants the requested scopes the user holds (through entitlements, active
/// subscriptions or implied scopes) and drops the others; then checks the
/// remembered consent.
async fn decide(state: &AppState, request: &AuthorizeRequest, user: &UserRecord) -> Result<Decision, Internal> {
    let held = held_scopes(&state.services, &state.catalog, &user.user_id, state.now()).await.map_err(|error| {
        tracing::error!(%error, user_id = %user.user_id, "held scopes could not be read");
        Internal
    })?;
    let granted: Vec<String> = request.scopes.iter().filter(|scope| held.contains(*scope)).cloned().collect();

    let consent = GetConsent { user_id: user.user_id.clone(), client_id: request.client.client_id.clone() };
    let approved = ask(&state.services.accounts, consent).await?.unwrap_or_default();
    let already_approved = !granted.is_empty() && granted.iter().all(|scope| approved.contains(scope));
    Ok(Decision { granted, already_approved })
}

/// Builds the redirect back to the client, keeping the redirect URI's own query (RFC 6749 section 3.1.2).
fn redirect_to_client(state: &AppState, redirect_uri: &str, pairs: &[(&str, &str)]) -> HttpResponse {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        // Registered redirect URIs are validated, so this means the store holds something unexpected.
        tracing::error!("registered redirect URI no longer parses");
        return HttpResponse::InternalServerError().finish();
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in pairs {
            query.append_pair(name, value);
        }
        query.append_pair("iss", state.issuer());
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, url.as_str()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn reject(state: &AppState, rejection: Rejection) -> HttpResponse {
    match rejection {
        Rejection::Page(status, message) => message_page(status, "Authorization request rejected", &message),
        Rejection::Redirect { redirect_uri, error, description, state: client_state } => {
            let mut pairs = vec![("error", error), ("error_description", description.as_str())];
            if let Some(value) = client_state.as_deref() {
                pairs.push(("state", value));
            }
            redirect_to_client(state, &redirect_uri, &pairs)
        }
        Rejection::Response(response) => response,
        Rejection::Internal => HttpResponse::InternalServerError().finish(),
    }
}

fn redirect_error(state: &AppState, request: &AuthorizeRequest, error: &'static str, description: &str) -> HttpResponse {
    reject(
        state,
        Rejection::Redirect {
            redirect_uri: request.redirect_uri.clone(),
            error,
            description: description.to_string(),
            state: request.state.clone(),
        },
    )
}

/// Sends the browser to sign in, returning to this authorization request afterwards.
fn sign_in_first(params: &Params) -> HttpResponse {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.pairs().iter().filter(|(name, _)| !CONSENT_FIELDS.contains(&name.as_str())))
        .finish();
    let return_to = format!("/oauth/authorize?{query}");
    let location = format!("/auth?{}", url::form_urlencoded::Serializer::new(String::new()).append_pair("return_to", &return_to).finish());
    HttpResponse::SeeOther().insert_header((header::LOCATION, location)).finish()
}

async fn authorize_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let params = Params::parse(request.query_string().as_bytes());
    let authorize = match check_request(&state, &request, &params).await {
        Ok(authorize) => authorize,
        Err(rejection) => return reject(&state, rejection),
    };
    // Use keeps a self-registered client from expiring.
    touch(&state, authorize.client.client_id.clone());

    let user = match current_user(&state, &request).await {
        Ok(user) => user,
        Err(Internal) => return HttpResponse::InternalServerError().finish(),
    };
    let Some(user) = user else {
        if authorize.prompt == Prompt::None {
            return redirect_error(&state, &authorize, "login_required", "the user is not signed in");
        }
        return sign_in_first(&params);
    };

    let decision = match decide(&state, &authorize, &user).await {
        Ok(decision) => decision,
        Err(Internal) => return HttpResponse::InternalServerError().finish(),
    };
    if decision.granted.is_empty() {
        return redirect_error(&state, &authorize, "access_denied", "the account holds none of the requested scopes");
    }
    if decision.already_approved && authorize.prompt != Prompt::Consent {
        return issue_code(&state, &authorize, &user, decision.granted).await;
    }
    if authorize.prompt == Prompt::None {
        return redirect_error(&state, &authorize, "consent_required", "the user must approve this application");
    }

    let csrf = csrf_seed(&state, &request);
    let carried: String = params
        .pairs()
        .iter()
        .filter(|(name, value)| !value.is_empty() && !CONSENT_FIELDS.contains(&name.as_str()))
        .map(|(name, value)| hidden(name, value))
        .collect();
    let scope_items: String = decision
        .granted
        .iter()
        .map(|scope| {
            let description = state.catalog.scope(scope).map_or(scope.as_str(), |definition| definition.description.as_str());
            format!("<li data-scope=\"{}\">{}</li>", escape(scope), escape(description))
        })
        .collect();
    let body = format!(
        "<p><strong>{client}</strong> wants to use your account.</p>\
         <p>It asks for permission to:</p><ul class=\"scopes\">{scope_items}</ul>\
         <p>After you decide, you return to <strong>{return_host}</strong>.</p>\
         <p>You are signed in as {email}. You can revoke this access later.</p>\
         <form method=\"post\" action=\"/oauth/authorize\">{carried}{csrf_field}\
         <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button> \
         <button class=\"secondary\" type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
        client = escape(&authorize.client.name),
        // The host the code goes to, so a person can spot an application posing as another.
        return_host = escape(&Url::parse(&authorize.redirect_uri).ok().and_then(|url| url.host_str().map(str::to_string)).unwrap_or_default()),
        email = escape(&user.email),
        csrf_field = hidden("csrf_token", &csrf.form_token()),
    );
    let mut response = html(StatusCode::OK);
    csrf.apply(&mut response);
    response.body(layout("Allow access?", &body))
}

/// Issues a code for the granted scopes and redirects back to the client with it.
async fn issue_code(state: &AppState, authorize: &AuthorizeRequest, user: &UserRecord, granted: Vec<String>) -> HttpResponse {
    let grant = CodeGrant {
        client_id: authorize.client.client_id.clone(),
        user_id: user.user_id.clone(),
        redirect_uri: authorize.redirect_uri.clone(),
        redirect_uri_in_request: authorize.redirect_uri_in_request,
        code_challenge: authorize.code_challenge.clone(),
        scopes: granted,
        resource: authorize.resource.clone(),
    };
    let code = match ask(&state.services.codes, IssueCode { grant, now: state.now() }).await {
        Ok(code) => code,
        Err(Internal) => return HttpResponse::InternalServerError().finish(),
    };
    tracing::info!(target: "ucca::security", client_id = %authorize.client.client_id, user_id = %user.user_id, "authorization code issued");

    let mut pairs = vec![("code", code.expose())];
    if let Some(value) = authorize.state.as_deref() {
        pairs.push(("state", value));
    }
    redirect_to_client(state, &authorize.redirect_uri, &pairs)
}

/// Returns at most the first 64 characters of a value quoted in an error, so a
/// long unknown value does not swell the redirect that carries the error.
fn shortened(value: &str) -> String {
    const QUOTED_CHARS: usize = 64;
    match value.char_indices().nth(QUOTED_CHARS) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_string(),
    }
}

/// The parameters of an authorization request that RFC 6749, RFC 7636 and
/// OAuth 2.1 define, each of which may appear once. `resource` may repeat
/// (RFC 8707) and is checked on its own.
const AUTHORIZATION_PARAMETERS: &[&str] =
    &["response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"];

async fn authorize_decision(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let params = Params::parse(&body);
    if !csrf_valid(&state, &request, params.get("csrf_token")) {
        return message_page(StatusCode::FORBIDDEN, "Form expired", "This form has expired or was sent from another site. Start again from the application.");
    }
    let authorize = match check_request(&state, &request, &params).await {
        Ok(authorize) => authorize,
        Err(rejection) => return reject(&state, rejection),
    };

    let user = match current_user(&state, &request).await {
        Ok(user) => user,
        Err(Internal) => return HttpResponse::InternalServerError().finish(),
    };
    let Some(user) = user else { return sign_in_first(&params) };

    if params.is_repeated("decision") {
        return message_page(StatusCode::BAD_REQUEST, "Authorization request rejected", "Choose either Allow or Deny, not both.");
    }
    match params.get("decision") {
        Some("allow") => {}
        Some("deny") => {
            tracing::info!(target: "ucca::security", client_id = %authorize.client.client_id, user_id = %user.user_id, "authorization denied by user");
            return redirect_error(&state, &authorize, "access_denied", "the user denied the request");
        }
        _ => return message_page(StatusCode::BAD_REQUEST, "Authorization request rejected", "Choose Allow or Deny."),
    }

    // Recomputed rather than read from the form, so an edited form cannot widen the grant.
    let decision = match decide(&state, &authorize, &user).await {
        Ok(decision) => decision,
        Err(Internal) => return HttpResponse::InternalServerError().finish(),
    };
    if decision.granted.is_empty() {
        return redirect_error(&state, &authorize, "access_denied", "the account holds none of the requested scopes");
    }
    let consent = RecordConsent {
        user_id: user.user_id.clone(),
        client_id: authorize.client.client_id.clone(),
        scopes: decision.granted.clone(),
        now: state.now(),
    };
    if ask(&state.services.accounts, consent).await.is_err() {
        return HttpResponse::InternalServerError().finish();
    }
    issue_code(&state, &authorize, &user, decision.granted).await
}
