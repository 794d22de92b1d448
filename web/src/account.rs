//! The account page at `/account` and its forms: email and phone status,
//! sessions, authorized applications, API keys, plan usage, sign-out and
//! account deletion. Phone verification has its own pages in [`crate::phone`];
//! the billing section comes from [`crate::account_billing`].
//!
//! Every form carries a CSRF token, every page is built with [`html`] (no
//! framing, no caching), and a request without a session is sent to sign in
//! and back. After a change the browser is redirected to the page (POST,
//! redirect, GET), with a `notice` naming what happened. A form that names
//! something the person does not have (an unknown session, application or
//! key) changes nothing and gets an error page that links back to the account page.

use std::collections::BTreeSet;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use ucca_actors::accounts::{
    AccountDeletion, ConsentSummary, DeleteUser, EndOtherSessions, EndUserSession, GetEntitlements, ListConsents, ListSessions,
    SessionSummary, UserRecord, WithdrawConsent,
};
use ucca_actors::apikeys::{ApiKeyRecord, CreateKey, CreatedKey, DeactivateKey, GetKey, ListKeys, RotateKey, Rotation};
use ucca_actors::billing::GetCustomerBilling;
use ucca_actors::clients::GetClient;
use ucca_actors::entitlements::{active_plans, subscription_covers};
use ucca_actors::phone::{GetPhone, PhoneStatus};
use ucca_actors::quotas::{next_month_start, MonthlyUsage};
use ucca_actors::secret::Digest32;
use ucca_actors::tokens::RevokeUserGrants;
use ucca_actors::UnixTime;

use crate::errors::{ask, Internal};
use crate::pages::{account_message_page, csrf_seed, csrf_valid, escape, hidden, html, layout, message_page};
use crate::params::Params;
use crate::session::{current_user, expired_session_cookie, presented_session};
use crate::state::AppState;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/account").get(account_page))
        .service(web::resource("/account/sessions/end").post(end_session))
        .service(web::resource("/account/sessions/end-others").post(end_other_sessions))
        .service(web::resource("/account/applications/revoke").post(revoke_application))
        .service(web::resource("/account/keys").post(create_key))
        .service(web::resource("/account/keys/rotate").post(rotate_key))
        .service(web::resource("/account/delete").post(delete_account_form));
}

/// Path of the account page, where sign-in returns after a request to it or to one of its forms.
pub(crate) const ACCOUNT_PAGE: &str = "/account";

/// Active API keys one person may hold at once.
const MAX_ACTIVE_KEYS: usize = 10;

/// Formats a Unix time as `2026-01-31 23:59 UTC`.
pub fn format_utc(time: UnixTime) -> String {
    // Howard Hinnant's days-to-civil algorithm, for the proleptic Gregorian calendar.
    let days = (time / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let seconds_of_day = time % 86_400;
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", seconds_of_day / 3600, seconds_of_day % 3600 / 60)
}

pub(crate) fn internal_page() -> HttpResponse {
    // The request-id middleware replaces this body, so the person sees an id to quote.
    HttpResponse::InternalServerError().finish()
}

/// A person signed in through the request's session cookie.
pub(crate) struct SignedIn {
    pub user: UserRecord,
    pub session: Digest32,
}

/// Sends the browser to sign in and come back to `return_to`, a path on this site.
pub(crate) fn sign_in_first(return_to: &str) -> HttpResponse {
    let query = url::form_urlencoded::Serializer::new(String::new()).append_pair("return_to", return_to).finish();
    HttpResponse::SeeOther().insert_header((header::LOCATION, format!("/auth?{query}"))).finish()
}

/// Looks up the person signed in through the request's session cookie, if any.
async fn find_signed_in(state: &AppState, request: &HttpRequest) -> Result<Option<SignedIn>, Internal> {
    let Some(session) = presented_session(state, request) else { return Ok(None) };
    let user = current_user(state, request).await?;
    Ok(user.map(|user| SignedIn { user, session: session.digest() }))
}

/// Returns the signed-in person, or the response to send instead: a redirect
/// to sign in and come back to `return_to`, or an error page.
pub(crate) async fn signed_in(state: &AppState, request: &HttpRequest, return_to: &str) -> Result<SignedIn, HttpResponse> {
    match find_signed_in(state, request).await {
        Ok(Some(person)) => Ok(person),
        Ok(None) => Err(sign_in_first(return_to)),
        Err(Internal) => Err(internal_page()),
    }
}

/// Checks a form's CSRF token, then the session; returns the form and the person.
/// Without a session the browser is sent to sign in and come back to `return_to`,
/// the page the form is on.
pub(crate) async fn signed_in_form(state: &AppState, request: &HttpRequest, body: &[u8], return_to: &str) -> Result<(Params, SignedIn), HttpResponse> {
    let form = Params::parse(body);
    if !csrf_valid(state, request, form.get("csrf_token")) {
        return Err(form_expired(state, request).await);
    }
    let person = signed_in(state, request, return_to).await?;
    Ok((form, person))
}

/// Builds the page for a form whose CSRF token does not match the browser's
/// cookie. It links to the account page when the browser has a session, and
/// to sign-in when it has none.
pub(crate) async fn form_expired(state: &AppState, request: &HttpRequest) -> HttpResponse {
    let title = "Form expired";
    match find_signed_in(state, request).await {
        Ok(Some(_)) => account_message_page(
            StatusCode::FORBIDDEN,
            title,
            "This form has expired or was sent from another site. Open your account page and try again.",
        ),
        Ok(None) => message_page(
            StatusCode::FORBIDDEN,
            title,
            "This form has expired or was sent from another site. Sign in, then try again from your account page.",
        ),
        Err(Internal) => internal_page(),
    }
}

/// Redirects to the account page with a notice.
pub(crate) fn back_to_account(notice: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, format!("/account?notice={notice}"))).finish()
}

/// Returns the text the account page shows after a change; unknown notices show nothing.
fn notice_text(notice: &str) -> Option<&'static str> {
    Some(match notice {
        "session-ended" => "The session was signed out.",
        "others-ended" => "Every other session was signed out.",
        "no-other-sessions" => "No other session was signed in, so nothing changed.",
        "application-revoked" => "The application's access was revoked. Its tokens no longer work.",
        "phone-verified" => "Your phone number is verified.",
        "phone-removed" => "Your phone number was removed.",
        "phone-pending-removed" => "The number waiting for its code was removed. Its code no longer works.",
        "phone-already-verified" => "That number is already your verified number.",
        _ => return None,
    })
}

/// Everything the account page shows, gathered from the actors.
struct AccountView {
    phone: PhoneStatus,
    sessions: Vec<SessionSummary>,
    applications: Vec<(ConsentSummary, String)>,
    keys: Vec<ApiKeyRecord>,
    tiers: BTreeSet<String>,
    usage: Vec<(String, u64, Option<u64>)>,
}

async fn gather(state: &AppState, user: &UserRecord) -> Result<AccountView, Internal> {
    let now = state.now();
    let user_id = user.user_id.clone();
    let phone = ask(&state.services.accounts, GetPhone { user_id: user_id.clone(), now }).await?;
    let sessions = ask(&state.services.accounts, ListSessions { user_id: user_id.clone(), now }).await?;

    let consents = ask(&state.services.accounts, ListConsents { user_id: user_id.clone() }).await?;
    let mut applications = Vec::with_capacity(consents.len());
    for consent in consents {
        let client = ask(&state.services.clients, GetClient { client_id: consent.client_id.clone() }).await?;
        let name = client.map_or_else(|| "Removed application".to_string(), |client| client.name);
        applications.push((consent, name));
    }

    let keys = ask(&state.services.api_keys, ListKeys { user_id: user_id.clone() }).await?;
    let tiers = held_tiers(state, &user_id, &keys).await?;
    let mut usage = Vec::new();
    for (name, plan) in state.catalog.plans() {
        let calls = ask(&state.services.quotas, MonthlyUsage { customer: user_id.clone(), plan: name.to_string(), now }).await?;
        if calls > 0 || tiers.contains(name) {
            usage.push((name.to_string(), calls, plan.call_limit_monthly));
        }
    }
    Ok(AccountView { phone, sessions, applications, keys, tiers, usage })
}

/// Collects the plans a person may create API keys on: those of their active
/// keys, of the scopes an operator granted them, and of their active subscriptions.
async fn held_tiers(state: &AppState, user_id: &str, keys: &[ApiKeyRecord]) -> Result<BTreeSet<String>, Internal> {
    let mut tiers: BTreeSet<String> = keys
        .iter()
        .filter(|key| key.active && state.catalog.plan(&key.tier).is_some())
        .map(|key| key.tier.clone())
        .collect();
    let entitlements = ask(&state.services.accounts, GetEntitlements { user_id: user_id.to_string() }).await?;
    if let Some(plan) = state.catalog.plan_for(&entitlements) {
        tiers.insert(plan.to_string());
    }
    let billing = ask(&state.services.billing, GetCustomerBilling { user_id: user_id.to_string() }).await?;
    tiers.extend(active_plans(&state.catalog, &billing, state.now(), state.services.billing_grace));
    Ok(tiers)
}

async fn account_page(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let person = match signed_in(&state, &request, ACCOUNT_PAGE).await {
        Ok(person) => person,
        Err(response) => return response,
    };
    let view = match gather(&state, &person.user).await {
        Ok(view) => view,
        Err(Internal) => return internal_page(),
    };
    let csrf = csrf_seed(&state, &request);
    let token = csrf.form_token();
    let billing = match crate::account_billing::billing_section(&state, &person.user.user_id, &token).await {
        Ok(section) => section,
        Err(_) => return internal_page(),
    };

    let params = Params::parse(request.query_string().as_bytes());
    let notice = params
        .get("notice")
        .and_then(notice_text)
        .map(|text| format!("<p class=\"notice\" role=\"status\">{}</p>", escape(text)))
        .unwrap_or_default();
    let body = [
        notice,
        identity_section(&person.user, &view.phone),
        sessions_section(&view.sessions, &person.session, &token),
        applications_section(&state, &view.applications, &token),
        keys_section(&view.keys, &view.tiers, &token),
        usage_section(&view.usage, state.now()),
        billing,
        sign_out_section(&token),
        delete_section(&token),
    ]
    .concat();

    let mut response = html(StatusCode::OK);
    csrf.apply(&mut response);
    response.body(layout("Your account", &body))
}

fn identity_section(user: &UserRecord, phone: &PhoneStatus) -> String {
    let phone_text = match (&phone.verified, &phone.pending) {
        (Some(verified), _) => format!(
            "<p>Phone: <strong>{}</strong>, verified {}. <a href=\"/account/phone\">Change or remove it</a></p>",
            escape(verified.number.as_str()),
            escape(&format_utc(verified.verified_at)),
        ),
        (None, Some(pending)) => format!(
            "<p>Phone: <strong>{}</strong>, waiting for its code. <a href=\"/account/phone\">Enter the code</a></p>",
            escape(pending.number.as_str()),
        ),
        (None, None) => "<p>Phone: none. <a href=\"/account/phone\">Add a phone number</a></p>".to_string(),
    };
    format!(
        "<section id=\"identity\"><h2>Email and phone</h2>\
         <p>Email: <strong>{}</strong>, confirmed each time you sign in by link. Account created {}.</p>{phone_text}</section>",
        escape(&user.email),
        escape(&format_utc(user.created_at)),
    )
}

fn sessions_section(sessions: &[SessionSummary], current: &Digest32, csrf_token: &str) -> String {
    let items: String = sessions
        .iter()
        .map(|session| {
            let device = if session.device.is_empty() { "Unknown browser" } else { session.device.as_str() };
            let this = if session.session.matches(current) { " <strong>(this browser)</strong>" } else { "" };
            format!(
                "<li data-session>{}{this}<br>Signed in {}, last active {}.\
                 <form method=\"post\" action=\"/account/sessions/end\">{}{}<button class=\"secondary\" type=\"submit\">Sign out this session</button></form></li>",
                escape(device),
                escape(&format_utc(session.created_at)),
                escape(&format_utc(session.last_seen)),
                hidden("csrf_token", csrf_token),
                hidden("session", &hex::encode(session.session.0)),
            )
        })
        .collect();
    format!(
        "<section id=\"sessions\"><h2>Sessions</h2><ul>{items}</ul>\
         <form method=\"post\" action=\"/account/sessions/end-others\">{}\
         <button type=\"submit\">Sign out everywhere else</button></form></section>",
        hidden("csrf_token", csrf_token),
    )
}

fn applications_section(state: &AppState, applications: &[(ConsentSummary, String)], csrf_token: &str) -> String {
    if applications.is_empty() {
        return "<section id=\"applications\"><h2>Authorized applications</h2><p>You have not authorized any application.</p></section>".to_string();
    }
    let items: String = applications
        .iter()
        .map(|(consent, name)| {
            let scopes: String = consent
                .scopes
                .iter()
                .map(|scope| {
                    let description = state.catalog.scope(scope).map_or(scope.as_str(), |definition| definition.description.as_str());
                    format!("<li>{}</li>", escape(description))
                })
                .collect();
            format!(
                "<li data-client-id=\"{id}\"><strong>{name}</strong>, approved {approved}. It may:<ul class=\"scopes\">{scopes}</ul>\
                 <form method=\"post\" action=\"/account/applications/revoke\">{csrf}{client}\
                 <button class=\"secondary\" type=\"submit\">Revoke access</button></form></li>",
                id = escape(&consent.client_id),
                name = escape(name),
                approved = escape(&format_utc(consent.granted_at)),
                csrf = hidden("csrf_token", csrf_token),
                client = hidden("client_id", &consent.client_id),
            )
        })
        .collect();
    format!("<section id=\"applications\"><h2>Authorized applications</h2><ul>{items}</ul></section>")
}

fn keys_section(keys: &[ApiKeyRecord], tiers: &BTreeSet<String>, csrf_token: &str) -> String {
    let items: String = keys
        .iter()
        .map(|key| {
            let last_used = key.last_used_at.map_or_else(|| "never used".to_string(), |time| format!("last used {}", format_utc(time)));
            let control = if key.active {
                format!(
                    "<form method=\"post\" action=\"/account/keys/rotate\">{}{}\
                     <button class=\"secondary\" type=\"submit\">Rotate: replace with a new key</button></form>",
                    hidden("csrf_token", csrf_token),
                    hidden("key_id", &key.id),
                )
            } else {
                " Deactivated.".to_string()
            };
            format!(
                "<li data-key-id=\"{id}\">Key <code>{id}</code> on the {tier} plan, created {created}, {last_used}.{control}</li>",
                id = escape(&key.id),
                tier = escape(&key.tier),
                created = escape(&format_utc(key.created_at)),
                last_used = escape(&last_used),
            )
        })
        .collect();
    let list = if keys.is_empty() { "<p>You hold no API keys.</p>".to_string() } else { format!("<ul>{items}</ul>") };

    let create = if tiers.is_empty() {
        "<p>API keys come with a plan. Once you hold one, you can create keys for it here.</p>".to_string()
    } else {
        let options: String = tiers.iter().map(|tier| format!("<option value=\"{0}\">{0}</option>", escape(tier))).collect();
        format!(
            "<form method=\"post\" action=\"/account/keys\">{}<label for=\"tier\">Plan</label> \
             <select id=\"tier\" name=\"tier\">{options}</select> <button type=\"submit\">Create a key</button></form>",
            hidden("csrf_token", csrf_token),
        )
    };
    format!("<section id=\"keys\"><h2>API keys</h2>{list}{create}</section>")
}

fn usage_section(usage: &[(String, u64, Option<u64>)], now: UnixTime) -> String {
    let resets = format_utc(next_month_start(now));
    if usage.is_empty() {
        return "<section id=\"usage\"><h2>Plan and usage</h2><p>You hold no plan and made no calls this month.</p></section>".to_string();
    }
    let items: String = usage
        .iter()
        .map(|(plan, calls, limit)| {
            let of = limit.map_or_else(|| "no monthly limit".to_string(), |limit| format!("of {limit}"));
            format!("<li data-plan=\"{plan}\">{plan}: {calls} calls this month, {of}.</li>", plan = escape(plan), of = escape(&of))
        })
        .collect();
    format!(
        "<section id=\"usage\"><h2>Plan and usage</h2><ul>{items}</ul><p>Counts start again on {}.</p></section>",
        escape(&resets)
    )
}

fn sign_out_section(csrf_token: &str) -> String {
    format!(
        "<section id=\"sign-out\"><h2>Sign out</h2><form method=\"post\" action=\"/auth/logout\">{}\
         <button class=\"secondary\" type=\"submit\">Sign out of this browser</button></form></section>",
        hidden("csrf_token", csrf_token),
    )
}

fn delete_section(csrf_token: &str) -> String {
    format!(
        "<section id=\"delete\"><h2>Delete your account</h2>\
         <p>Deleting your account signs out every session, revokes every application's access and deactivates your API keys at once. \
         Your email address, phone number, consents and entitlements are removed. Usage counts and billing records are kept, as billing requires.</p>\
         <form method=\"post\" action=\"/account/delete\">{}\
         <label><input type=\"checkbox\" name=\"confirm\" value=\"yes\" required> I understand this cannot be undone.</label> \
         <button type=\"submit\">Delete my account</button></form></section>",
        hidden("csrf_token", csrf_token),
    )
}

async fn end_session(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let (form, person) = match signed_in_form(&state, &request, &body, ACCOUNT_PAGE).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(session_id) = form.get("session").filter(|id| !id.is_empty()) else {
        return account_message_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The session to sign out is missing. Open your account page and try again.",
        );
    };
    let not_found = || {
        account_message_page(
            StatusCode::NOT_FOUND,
            "Session not found",
            "No session with that id is signed in to your account. It may have been signed out already. Open your account page to see your sessions.",
        )
    };
    // An id that is not 64 hex digits cannot name a session, so it gets the same response as an unknown one.
    let Some(session) = parse_digest(session_id) else { return not_found() };

    let ended = EndUserSession { user_id: person.user.user_id.clone(), session };
    match ask(&state.services.accounts, ended).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(target: "ucca::security", user_id = %person.user.user_id, session = %session.label(), "session end rejected: no such session of the user");
            return not_found();
        }
        Err(Internal) => return internal_page(),
    }
    if session.matches(&person.session) {
        return HttpResponse::SeeOther().insert_header((header::LOCATION, "/auth")).cookie(expired_session_cookie(&state)).finish();
    }
    back_to_account("session-ended")
}

fn parse_digest(hex_text: &str) -> Option<Digest32> {
    let bytes = hex::decode(hex_text).ok()?;
    Some(Digest32(bytes.try_into().ok()?))
}

async fn end_other_sessions(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let (_, person) = match signed_in_form(&state, &request, &body, ACCOUNT_PAGE).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let message = EndOtherSessions { user_id: person.user.user_id.clone(), keep: person.session };
    match ask(&state.services.accounts, message).await {
        Ok(0) => back_to_account("no-other-sessions"),
        Ok(_) => back_to_account("others-ended"),
        Err(Internal) => internal_page(),
    }
}

/// Maximum length of a client id accepted from the form. The longest client
/// ids are metadata-document URLs, which registration limits to 2000 bytes.
const MAX_CLIENT_ID_LEN: usize = 2000;

async fn revoke_application(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let (form, person) = match signed_in_form(&state, &request, &body, ACCOUNT_PAGE).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(client_id) = form.get("client_id").filter(|id| !id.is_empty()).map(str::to_string) else {
        return account_message_page(
            StatusCode::BAD_REQUEST,
            "Invalid request",
            "The application to revoke is missing. Open your account page and try again.",
        );
    };
    let not_found = || {
        account_message_page(
            StatusCode::NOT_FOUND,
            "Application not found",
            "No such application is authorized on your account, so nothing was revoked. Open your account page to see your applications.",
        )
    };
    // No client has such an id, so nothing can be revoked for it. URL client ids
    // contain ':', '/' and '.', so only control characters are ruled out here.
    if client_id.len() > MAX_CLIENT_ID_LEN || client_id.chars().any(char::is_control) {
        return not_found();
    }

    let user_id = person.user.user_id.clone();
    let withdrawn = WithdrawConsent { user_id: user_id.clone(), client_id: client_id.clone() };
    let consent_existed = match ask(&state.services.accounts, withdrawn).await {
        Ok(existed) => existed,
        Err(Internal) => return internal_page(),
    };
    // Revoked even when no consent was stored, so a retry after a failure between the two steps finishes the work.
    let revoked = RevokeUserGrants { user_id: user_id.clone(), client_id: Some(client_id.clone()) };
    let grants = match ask(&state.services.tokens, revoked).await {
        Ok(grants) => grants,
        Err(Internal) => return internal_page(),
    };
    if !consent_existed && grants == 0 {
        tracing::info!(target: "ucca::security", user_id = %user_id, client_id = %client_id, "application revocation rejected: the user has not authorized it");
        return not_found();
    }
    tracing::info!(target: "ucca::security", user_id = %user_id, client_id = %client_id, consent_existed, grants, "application revoked by its user");
    back_to_account("application-revoked")
}

async fn create_key(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let (form, person) = match signed_in_form(&state, &request, &body, ACCOUNT_PAGE).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let user_id = person.user.user_id.clone();
    let keys = match ask(&state.services.api_keys, ListKeys { user_id: user_id.clone() }).await {
        Ok(keys) => keys,
        Err(Internal) => return internal_page(),
    };
    let tiers = match held_tiers(&state, &user_id, &keys).await {
        Ok(tiers) => tiers,
        Err(Internal) => return internal_page(),
    };

    let Some(tier) = form.get("tier").filter(|tier| tiers.contains(*tier)).map(str::to_string) else {
        tracing::info!(target: "ucca::security", user_id = %user_id, "API key rejected: the user does not hold the plan");
        let held = if tiers.is_empty() { "none".to_string() } else { tiers.iter().cloned().collect::<Vec<_>>().join(", ") };
        return account_message_page(
            StatusCode::FORBIDDEN,
            "Plan not available",
            &format!("You can create keys only on plans you hold. Plans you hold: {held}."),
        );
    };
    if keys.iter().filter(|key| key.active).count() >= MAX_ACTIVE_KEYS {
        return account_message_page(
            StatusCode::CONFLICT,
            "Too many keys",
            &format!("You hold {MAX_ACTIVE_KEYS} active keys, the most allowed. Rotate a key instead of creating another."),
        );
    }

    // A key on a plan bought by subscription carries that subscription, so the key ends with it.
    let billing = match ask(&state.services.billing, GetCustomerBilling { user_id: user_id.clone() }).await {
        Ok(billing) => billing,
        Err(Internal) => return internal_page(),
    };
    let now = state.now();
    let subscription_id = billing
        .subscriptions
        .iter()
        .find(|subscription| subscription.is_active(now, state.services.billing_grace) && subscription_covers(&state.catalog, subscription, &tier))
        .map(|subscription| subscription.id.clone())
        .or_else(|| keys.iter().find(|key| key.active && key.tier == tier).and_then(|key| key.subscription_id.clone()));
    let created = CreateKey { user_id, tier, subscription_id, now };
    match ask(&state.services.api_keys, created).await {
        Ok(key) => new_key_page(&key, "New API key"),
        Err(Internal) => internal_page(),
    }
}

async fn rotate_key(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let (form, person) = match signed_in_form(&state, &request, &body, ACCOUNT_PAGE).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(key_id) = form.get("key_id").filter(|id| !id.is_empty()).map(str::to_string) else {
        return account_message_page(StatusCode::BAD_REQUEST, "Invalid request", "The key to rotate is missing. Open your account page and try again.");
    };
    let not_found = || {
        account_message_page(StatusCode::NOT_FOUND, "Key not found", "You hold no key with that id. Open your account page and try again.")
    };

    // Another person's key gets the same response as a missing one.
    match ask(&state.services.api_keys, GetKey { id: key_id.clone() }).await {
        Ok(Some(key)) if key.user_id == person.user.user_id => {}
        Ok(_) => return not_found(),
        Err(Internal) => return internal_page(),
    }
    match ask(&state.services.api_keys, RotateKey { id: key_id, now: state.now() }).await {
        Ok(Rotation::Rotated(key)) => new_key_page(&key, "Rotated API key"),
        Ok(Rotation::Inactive) => account_message_page(StatusCode::CONFLICT, "Key deactivated", "That key is deactivated and cannot be rotated."),
        Ok(Rotation::NotFound) => not_found(),
        Err(Internal) => internal_page(),
    }
}

/// Shows a new key once; only its SHA-256 is kept.
fn new_key_page(created: &CreatedKey, title: &str) -> HttpResponse {
    let body = format!(
        "<p>Copy the key now. It is shown only this once; this server keeps only its SHA-256.</p>\
         <p>Key id <code>{id}</code> on the {tier} plan:</p><p><code id=\"api-key\">{key}</code></p>\
         <p><a href=\"/account\">Back to your account</a></p>",
        id = escape(&created.record.id),
        tier = escape(&created.record.tier),
        key = escape(created.key.expose()),
    );
    html(StatusCode::CREATED).body(layout(title, &body))
}

async fn delete_account_form(state: web::Data<AppState>, request: HttpRequest, body: web::Bytes) -> HttpResponse {
    let (form, person) = match signed_in_form(&state, &request, &body, ACCOUNT_PAGE).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    if form.get("confirm") != Some("yes") {
        return account_message_page(StatusCode::BAD_REQUEST, "Not deleted", "Tick the box to confirm that you want to delete your account.");
    }

    if delete_account(&state, &person.user).await.is_err() {
        return internal_page();
    }
    let body = "<p>Your account is deleted. Every session, application grant and API key of it has stopped working.</p>\
                <p>Signing in again with the same address creates a new, empty account.</p>";
    html(StatusCode::OK).cookie(expired_session_cookie(&state)).body(layout("Account deleted", body))
}

/// Deletes an account: revokes every OAuth grant, deactivates every API key,
/// then removes the person's data held by the Accounts actor (sessions,
/// consents, entitlements, phone, sign-in links, email index and user record).
/// Each step can be repeated, so a failed deletion can simply be run again.
pub async fn delete_account(state: &AppState, user: &UserRecord) -> Result<AccountDeletion, Internal> {
    retain_billing_records(state, user).await?;

    let user_id = user.user_id.clone();
    let grants = ask(&state.services.tokens, RevokeUserGrants { user_id: user_id.clone(), client_id: None }).await?;
    let keys = ask(&state.services.api_keys, ListKeys { user_id: user_id.clone() }).await?;
    let mut deactivated = 0;
    for key in keys.iter().filter(|key| key.active) {
        ask(&state.services.api_keys, DeactivateKey { id: key.id.clone() }).await?;
        deactivated += 1;
    }
    // Last, so the person stays signed in to retry if an earlier step failed.
    let deletion = ask(&state.services.accounts, DeleteUser { user_id: user_id.clone() }).await?;

    tracing::info!(target: "ucca::security", user_id = %user_id, grants, keys = deactivated, sessions = deletion.sessions, "account deleted by its user");
    Ok(deletion)
}

/// Billing's hook into account deletion. It runs first, before any credential
/// is revoked or any data removed, and an error stops the deletion unchanged.
///
/// What billing needs survives the deletion unchanged. API key records are
/// deactivated, not removed, and keep their subscription ids. Quota counters
/// and usage events are keyed by the opaque user id, not the email. The
/// billing trees are not touched. The email address is removed, so an
/// extension that must keep it for invoices copies it into billing's own
/// records here, and one that cancels subscriptions does so here too.
pub async fn retain_billing_records(_state: &AppState, _user: &UserRecord) -> Result<(), Internal> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_in_utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(1_767_225_600), "2026-01-01 00:00 UTC");
        assert_eq!(format_utc(1_769_903_999), "2026-01-31 23:59 UTC");
        // 2024 is a leap year.
        assert_eq!(format_utc(1_709_164_800), "2024-02-29 00:00 UTC");
    }

    #[test]
    fn digests_parse_from_64_hex_characters_only() {
        assert_eq!(parse_digest(&"ab".repeat(32)).map(|digest| digest.0[0]), Some(0xab));
        assert!(parse_digest("ab").is_none());
        assert!(parse_digest(&"zz".repeat(32)).is_none());
    }
}
