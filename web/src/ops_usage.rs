//! Ops endpoints for usage: a user's calls this month per plan, and aggregates of usage events as JSON or CSV.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use ucca_actors::accounts::{normalize_email, FindUser};
use ucca_actors::quotas::{next_month_start, MonthlyUsage};
use ucca_actors::usage::{AggregateUsage, GroupBy, UsageGroup};

use crate::errors::{ask, ApiError};
use crate::params::Params;
use crate::state::AppState;

pub fn configure(scope: actix_web::Scope) -> actix_web::Scope {
    scope.service(web::resource("/users/{email}/usage").get(user_usage)).service(web::resource("/usage").get(aggregate))
}

async fn user_usage(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let email = normalize_email(&raw).ok_or_else(|| ApiError::bad_request("invalid_request", format!("{raw:?} is not a valid email address")))?;
    let Some(user) = ask(&state.services.accounts, FindUser { email: email.clone() }).await? else {
        return Err(ApiError::not_found(format!("no user has email {email}")));
    };

    let now = state.now();
    let resets_at = next_month_start(now);
    let mut plans = Vec::new();
    for (name, plan) in state.catalog.plans() {
        let usage = MonthlyUsage { customer: user.user_id.clone(), plan: name.to_string(), now };
        let calls = ask(&state.services.quotas, usage).await?;
        plans.push(json!({
            "plan": name,
            "calls_this_month": calls,
            "limit": plan.call_limit_monthly,
            "remaining": plan.call_limit_monthly.map(|limit| limit.saturating_sub(calls)),
            "resets_at": resets_at,
        }));
    }
    Ok(HttpResponse::Ok().json(json!({ "user": email, "user_id": user.user_id, "plans": plans })))
}

fn time_param(params: &Params, name: &str, default: u64) -> Result<u64, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse()
            .map_err(|_| ApiError::bad_request("invalid_request", format!("{name} must be a Unix time in whole seconds"))),
    }
}

async fn aggregate(state: web::Data<AppState>, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(request.query_string().as_bytes());
    let now = state.now();
    // Defaults cover the last 30 days up to now.
    let to = time_param(&params, "to", now + 1)?;
    let from = time_param(&params, "from", to.saturating_sub(30 * 86_400))?;
    if from >= to {
        return Err(ApiError::bad_request("invalid_request", "from must be earlier than to"));
    }
    let group_by = match params.get("group_by").unwrap_or("day") {
        "day" => GroupBy::Day,
        "tool" => GroupBy::Tool,
        "client" => GroupBy::Client,
        "customer" => GroupBy::Customer,
        other => return Err(ApiError::bad_request("invalid_request", format!("group_by {other:?} must be day, tool, client or customer"))),
    };

    // Events still buffered by handlers count too.
    state.services.hand_over_usage();
    let groups = ask(&state.services.usage, AggregateUsage { from, to, group_by }).await?;
    let wants_csv = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.split(',').any(|item| item.trim().starts_with("text/csv")));
    if wants_csv {
        return Ok(HttpResponse::Ok().content_type("text/csv; charset=utf-8").body(to_csv(&groups)));
    }
    Ok(HttpResponse::Ok().json(json!({ "from": from, "to": to, "group_by": group_by, "groups": groups })))
}

/// Renders groups as RFC 4180 CSV with a header row.
fn to_csv(groups: &[UsageGroup]) -> String {
    let mut csv = String::from("key,calls,errors,authenticated,average_latency_ms\r\n");
    for group in groups {
        let key = if group.key.contains([',', '"', '\r', '\n']) {
            format!("\"{}\"", group.key.replace('"', "\"\""))
        } else {
            group.key.clone()
        };
        csv.push_str(&format!(
            "{key},{},{},{},{:.1}\r\n",
            group.calls, group.errors, group.authenticated, group.average_latency_ms
        ));
    }
    csv
}
