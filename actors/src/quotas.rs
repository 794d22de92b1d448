//! The Quotas actor: owns call counters per customer and plan, and per-IP rate windows for keyless callers.
//!
//! A customer and plan share one record holding the calendar month's count
//! and the current second's burst count. One compare-and-swap updates both, so
//! under any concurrency no call is granted past either limit, and a refused
//! call changes nothing. Counters are not committed per call: the periodic
//! flush makes them durable, so a power loss can lose about a second of counts.

use std::sync::Arc;

use actix::{Actor, Handler, Message, SyncContext};
use serde::{Deserialize, Serialize};

use crate::apikeys::ApiKeyRecord;
use crate::catalog::{Capability, Catalog};
use crate::clock::UnixTime;
use crate::codec::Record;
use crate::secret::Digest32;
use crate::store::{Change, Store, StoreError, Table};
use crate::tokens::{token_status, GrantRecord, TokenKind, TokenRecord, TokenStatus};

/// One customer's counters on one plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuotaRecord {
    /// The month counted, as year * 12 + month index (0-based).
    pub month: u32,
    pub used: u64,
    /// The second counted for the burst limit.
    pub second: UnixTime,
    pub in_second: u64,
}

impl Record for QuotaRecord {
    const KIND: &'static str = "quota counter";
    const VERSION: u16 = 1;
}

/// Keyless calls from one IP address in the current minute.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IpWindow {
    /// Start of the minute counted.
    pub minute: UnixTime,
    pub calls: u64,
}

impl Record for IpWindow {
    const KIND: &'static str = "IP rate window";
    const VERSION: u16 = 1;
}

/// The civil (year, month 1-12) of a Unix time, UTC.
pub fn year_month(time: UnixTime) -> (i64, u32) {
    // Howard Hinnant's days-to-civil algorithm, for the proleptic Gregorian calendar.
    let days = (time / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month)
}

/// Unix time of the first second of a civil month, UTC.
pub fn month_start(year: i64, month: u32) -> UnixTime {
    // Hinnant's days-from-civil, the inverse of `year_month`.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = i64::from(if month > 2 { month - 3 } else { month + 9 });
    let day_of_year = (153 * shifted_month + 2) / 5;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    (days * 86_400).max(0) as UnixTime
}

/// When the month containing `time` ends and its counters reset.
pub fn next_month_start(time: UnixTime) -> UnixTime {
    let (year, month) = year_month(time);
    if month == 12 {
        month_start(year + 1, 1)
    } else {
        month_start(year, month + 1)
    }
}

fn month_number(time: UnixTime) -> u32 {
    let (year, month) = year_month(time);
    (year * 12 + i64::from(month) - 1) as u32
}

pub struct Quotas {
    counters: Table<QuotaRecord>,
    ip_windows: Table<IpWindow>,
    /// The Tokens actor's tables, only read here, by [`ConsumeForToken`].
    tokens: Table<TokenRecord>,
    grants: Table<GrantRecord>,
    /// The ApiKeys actor's table, only read here, by [`ConsumeForKey`].
    api_keys: Table<ApiKeyRecord>,
}

impl Quotas {
    pub fn new(store: Store) -> Result<Quotas, StoreError> {
        Ok(Quotas {
            counters: store.table("quota_counters")?,
            ip_windows: store.table("ip_windows")?,
            tokens: store.table("tokens")?,
            grants: store.table("grants")?,
            api_keys: store.table("api_keys")?,
        })
    }
}

impl Actor for Quotas {
    type Context = SyncContext<Self>;
}

fn counter_key(customer: &str, plan: &str) -> Vec<u8> {
    format!("{customer}/{plan}").into_bytes()
}

/// Consumes `cost` calls of a customer's plan if both limits allow it.
#[derive(Debug, Message)]
#[rtype(result = "Result<QuotaDecision, StoreError>")]
pub struct Consume {
    pub customer: String,
    pub plan: String,
    /// Calls per calendar month; `None` is unlimited.
    pub monthly_limit: Option<u64>,
    /// Calls per second; `None` is unlimited.
    pub burst_limit: Option<u64>,
    pub cost: u64,
    pub now: UnixTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaDecision {
    Allowed { used: u64, burst_used: u64, resets_at: UnixTime },
    MonthlyExhausted { used: u64, resets_at: UnixTime },
    BurstExceeded,
}

impl Handler<Consume> for Quotas {
    type Result = Result<QuotaDecision, StoreError>;

    fn handle(&mut self, message: Consume, _: &mut Self::Context) -> Self::Result {
        self.consume(&message)
    }
}

impl Quotas {
    fn consume(&self, message: &Consume) -> Result<QuotaDecision, StoreError> {
        let month = month_number(message.now);
        let resets_at = next_month_start(message.now);
        self.counters.modify(&counter_key(&message.customer, &message.plan), |current| {
            let mut record = current.unwrap_or(QuotaRecord { month, used: 0, second: message.now, in_second: 0 });
            if record.month != month {
                record.month = month;
                record.used = 0;
            }
            if record.second != message.now {
                record.second = message.now;
                record.in_second = 0;
            }

            if message.burst_limit.is_some_and(|limit| record.in_second + message.cost > limit) {
                return (Change::Keep, QuotaDecision::BurstExceeded);
            }
            if message.monthly_limit.is_some_and(|limit| record.used + message.cost > limit) {
                return (Change::Keep, QuotaDecision::MonthlyExhausted { used: record.used, resets_at });
            }
            record.used += message.cost;
            record.in_second += message.cost;
            let decision = QuotaDecision::Allowed { used: record.used, burst_used: record.in_second, resets_at };
            (Change::Put(record), decision)
        })
    }
}

/// Validates an access token and, when it may make the call, consumes one call
/// of its plan: [`crate::tokens::ValidateToken`] and [`Consume`] in one round
/// trip, for the REST middleware's hot path.
///
/// A call is counted only when the token is an active access token for
/// `resource` whose scopes grant `capability` and map to a catalog plan, which
/// are exactly the calls the middleware would have sent `Consume` for. The
/// token tables are only read here; the Tokens actor remains their only writer.
#[derive(Message)]
#[rtype(result = "Result<TokenCall, StoreError>")]
pub struct ConsumeForToken {
    pub token: Digest32,
    /// The resource (RFC 8707) the call is made at.
    pub resource: String,
    pub capability: Capability,
    pub catalog: Arc<Catalog>,
    pub now: UnixTime,
}

/// The outcome of [`ConsumeForToken`]: the token's status and the counter's decision.
#[derive(Debug, Clone)]
pub struct TokenCall {
    /// The token's status, as [`crate::tokens::ValidateToken`] returns it.
    pub status: TokenStatus,
    /// The counter's decision, when a call was counted; `None` when the token may not make the call or has no plan.
    pub decision: Option<QuotaDecision>,
}

impl Handler<ConsumeForToken> for Quotas {
    type Result = Result<TokenCall, StoreError>;

    fn handle(&mut self, message: ConsumeForToken, _: &mut Self::Context) -> Self::Result {
        let status = token_status(&self.tokens, &self.grants, &message.token, message.now)?;
        let consume = match &status {
            TokenStatus::Active(record)
                if record.kind == TokenKind::Access
                    && record.resource == message.resource
                    && message.catalog.grants(&record.scopes, message.capability) =>
            {
                message.catalog.plan_for(&record.scopes).and_then(|name| {
                    let plan = message.catalog.plan(name)?;
                    Some(Consume {
                        customer: record.user_id.clone(),
                        plan: name.to_string(),
                        monthly_limit: plan.call_limit_monthly,
                        burst_limit: plan.burst_per_second,
                        cost: 1,
                        now: message.now,
                    })
                })
            }
            _ => None,
        };
        let decision = consume.map(|consume| self.consume(&consume)).transpose()?;
        Ok(TokenCall { status, decision })
    }
}

/// Checks an API key and, when its plan grants `capability`, counts the call
/// against that plan, in one message. The handler only reads the key, so the
/// caller sends [`crate::apikeys::TouchKey`] to ApiKeys when the key's last use
/// is due for a refresh (at most once a minute per key).
#[derive(Debug, Message)]
#[rtype(result = "Result<KeyCall, StoreError>")]
pub struct ConsumeForKey {
    pub key: Digest32,
    pub capability: Capability,
    pub catalog: Arc<Catalog>,
    pub now: UnixTime,
}

/// The outcome of [`ConsumeForKey`]: the key's record and the counter's decision.
#[derive(Debug, Clone)]
pub struct KeyCall {
    /// The key's record; `None` when the key is unknown or deactivated.
    pub record: Option<ApiKeyRecord>,
    /// The counter's decision, when a call was counted; `None` when the key may not make the call or its plan is unknown.
    pub decision: Option<QuotaDecision>,
}

impl Handler<ConsumeForKey> for Quotas {
    type Result = Result<KeyCall, StoreError>;

    fn handle(&mut self, message: ConsumeForKey, _: &mut Self::Context) -> Self::Result {
        let record = self.api_keys.get(message.key.as_bytes())?.filter(|record| record.active);
        let consume = record.as_ref().and_then(|record| {
            let plan = message.catalog.plan(&record.tier)?;
            if !message.catalog.grants(std::slice::from_ref(&plan.scope), message.capability) {
                return None;
            }
            Some(Consume {
                customer: record.user_id.clone(),
                plan: record.tier.clone(),
                monthly_limit: plan.call_limit_monthly,
                burst_limit: plan.burst_per_second,
                cost: 1,
                now: message.now,
            })
        });
        let decision = consume.map(|consume| self.consume(&consume)).transpose()?;
        Ok(KeyCall { record, decision })
    }
}

/// Reports a customer's calls this month on a plan.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, StoreError>")]
pub struct MonthlyUsage {
    pub customer: String,
    pub plan: String,
    pub now: UnixTime,
}

impl Handler<MonthlyUsage> for Quotas {
    type Result = Result<u64, StoreError>;

    fn handle(&mut self, message: MonthlyUsage, _: &mut Self::Context) -> Self::Result {
        let record = self.counters.get(&counter_key(&message.customer, &message.plan))?;
        Ok(record.filter(|record| record.month == month_number(message.now)).map_or(0, |record| record.used))
    }
}

/// Counts a keyless call from an IP address against a per-minute limit.
#[derive(Debug, Message)]
#[rtype(result = "Result<IpDecision, StoreError>")]
pub struct ConsumeForIp {
    pub ip: std::net::IpAddr,
    pub per_minute: u64,
    pub now: UnixTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpDecision {
    Allowed { used: u64, resets_at: UnixTime },
    Exceeded { resets_at: UnixTime },
}

impl Handler<ConsumeForIp> for Quotas {
    type Result = Result<IpDecision, StoreError>;

    fn handle(&mut self, message: ConsumeForIp, _: &mut Self::Context) -> Self::Result {
        let minute = message.now - message.now % 60;
        let resets_at = minute + 60;
        self.ip_windows.modify(message.ip.to_string().as_bytes(), |current| {
            let calls = current.filter(|window| window.minute == minute).map_or(0, |window| window.calls);
            if calls >= message.per_minute {
                return (Change::Keep, IpDecision::Exceeded { resets_at });
            }
            (Change::Put(IpWindow { minute, calls: calls + 1 }), IpDecision::Allowed { used: calls + 1, resets_at })
        })
    }
}

/// Deletes per-IP windows that have closed; returns how many went.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct SweepQuotas {
    pub now: UnixTime,
}

impl Handler<SweepQuotas> for Quotas {
    type Result = Result<usize, StoreError>;

    fn handle(&mut self, message: SweepQuotas, _: &mut Self::Context) -> Self::Result {
        self.ip_windows.remove_where(|window| window.minute + 60 <= message.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikeys::{ApiKeys, CreateKey, CreatedKey, DeactivateKey};
    use crate::tokens::{Issue, IssueTokens, Tokens};
    use actix::{Addr, SyncArbiter};

    const NOW: UnixTime = 1_767_225_600;
    const RESOURCE: &str = "https://auth.example/v1";

    /// The shipped catalog: "read" maps to the operational plan, "ucco:framework" to none.
    fn catalog() -> Arc<Catalog> {
        Arc::new(Catalog::from_toml("catalog", include_str!("../../data/catalog.toml")).unwrap())
    }

    async fn issue(tokens: &Addr<Tokens>, grant_id: &str, scopes: &[&str]) -> (Digest32, Digest32) {
        let message = IssueTokens {
            grant_id: grant_id.into(),
            client_id: "client".into(),
            user_id: "user".into(),
            scopes: scopes.iter().map(|scope| scope.to_string()).collect(),
            resource: RESOURCE.into(),
            access_ttl: 60,
            refresh_ttl: 600,
            now: NOW,
        };
        match tokens.send(message).await.unwrap().unwrap() {
            Issue::Issued { access_token, refresh_token } => (access_token.digest(), refresh_token.digest()),
            Issue::GrantRevoked => panic!("grant {grant_id} was reported revoked"),
        }
    }

    #[test]
    fn consume_for_token_counts_allowed_calls() {
        actix::System::new().block_on(async {
            let store = Store::temporary().unwrap();
            let (for_tokens, for_quotas) = (store.clone(), store.clone());
            let tokens = SyncArbiter::start(1, move || Tokens::new(for_tokens.clone()).unwrap());
            let quotas = SyncArbiter::start(1, move || Quotas::new(for_quotas.clone()).unwrap());
            let (access, refresh) = issue(&tokens, "operational", &["read"]).await;
            let (framework_access, _) = issue(&tokens, "framework", &["ucco:framework"]).await;
            let call = |token, resource: &str, capability, now| ConsumeForToken {
                token,
                resource: resource.into(),
                capability,
                catalog: catalog(),
                now,
            };

            let counted = quotas.send(call(access, RESOURCE, Capability::Lookup, NOW)).await.unwrap().unwrap();
            assert!(matches!(counted.status, TokenStatus::Active(_)));
            assert!(matches!(counted.decision, Some(QuotaDecision::Allowed { used: 1, .. })), "{:?}", counted.decision);

            let uncounted = [
                ("refresh token", call(refresh, RESOURCE, Capability::Lookup, NOW)),
                ("other resource", call(access, "https://auth.example/mcp", Capability::Lookup, NOW)),
                ("capability not granted", call(access, RESOURCE, Capability::Pathway, NOW)),
                ("expired token", call(access, RESOURCE, Capability::Lookup, NOW + 60)),
                ("unknown token", call(Digest32::of(b"unknown"), RESOURCE, Capability::Lookup, NOW)),
                ("scope without a plan", call(framework_access, RESOURCE, Capability::UccoTools, NOW)),
            ];
            for (case, message) in uncounted {
                let outcome = quotas.send(message).await.unwrap().unwrap();
                assert!(outcome.decision.is_none(), "{case}: counted {:?}", outcome.decision);
            }

            let usage = MonthlyUsage { customer: "user".into(), plan: "operational".into(), now: NOW };
            assert_eq!(quotas.send(usage).await.unwrap().unwrap(), 1, "only the first call counts");
        });
    }

    #[test]
    fn consume_for_key_counts_allowed_calls() {
        actix::System::new().block_on(async {
            let store = Store::temporary().unwrap();
            let (for_keys, for_quotas) = (store.clone(), store.clone());
            let keys = SyncArbiter::start(1, move || ApiKeys::new(for_keys.clone()).unwrap());
            let quotas = SyncArbiter::start(1, move || Quotas::new(for_quotas.clone()).unwrap());
            let create = |tier: &str| CreateKey { user_id: "user".into(), tier: tier.into(), subscription_id: None, now: NOW };
            let developer = keys.send(create("developer")).await.unwrap().unwrap();
            let retired = keys.send(create("developer")).await.unwrap().unwrap();
            keys.send(DeactivateKey { id: retired.record.id.clone() }).await.unwrap().unwrap();
            let call = |key: &CreatedKey, capability| ConsumeForKey { key: key.key.digest(), capability, catalog: catalog(), now: NOW };

            let counted = quotas.send(call(&developer, Capability::Components)).await.unwrap().unwrap();
            assert_eq!(counted.record.map(|record| record.id), Some(developer.record.id.clone()));
            assert!(matches!(counted.decision, Some(QuotaDecision::Allowed { used: 1, .. })), "{:?}", counted.decision);

            let beyond_plan = quotas.send(call(&developer, Capability::Pathway)).await.unwrap().unwrap();
            assert!(beyond_plan.record.is_some(), "the key itself is valid");
            assert!(beyond_plan.decision.is_none(), "a capability beyond the plan is not counted");

            let deactivated = quotas.send(call(&retired, Capability::Search)).await.unwrap().unwrap();
            assert!(deactivated.record.is_none(), "a deactivated key is not found");
            assert!(deactivated.decision.is_none(), "a deactivated key's call is not counted");

            let unknown = ConsumeForKey { key: Digest32::of(b"unknown"), capability: Capability::Search, catalog: catalog(), now: NOW };
            let unknown = quotas.send(unknown).await.unwrap().unwrap();
            assert!(unknown.record.is_none(), "an unknown key is not found");
            assert!(unknown.decision.is_none(), "an unknown key's call is not counted");

            let usage = MonthlyUsage { customer: "user".into(), plan: "developer".into(), now: NOW };
            assert_eq!(quotas.send(usage).await.unwrap().unwrap(), 1, "only the first call counts");
        });
    }

    #[test]
    fn calendar_months_are_computed_in_utc() {
        // 2026-01-31T23:59:59Z and the next second.
        assert_eq!(year_month(1_769_903_999), (2026, 1));
        assert_eq!(year_month(1_769_904_000), (2026, 2));
        assert_eq!(month_start(2026, 2), 1_769_904_000);
        assert_eq!(next_month_start(1_769_903_999), 1_769_904_000);
        // December rolls into January of the next year; 2024 is a leap year.
        assert_eq!(next_month_start(month_start(2026, 12) + 5), month_start(2027, 1));
        assert_eq!(month_start(2024, 3) - month_start(2024, 2), 29 * 86_400);
        assert_eq!(month_start(1970, 1), 0);
    }

    #[test]
    fn months_round_trip_for_every_month_of_a_century() {
        for year in 2000..2100 {
            for month in 1..=12 {
                let start = month_start(year, month);
                assert_eq!(year_month(start), (year, month));
                assert_eq!(year_month(start - 1).1, if month == 1 { 12 } else { month - 1 });
            }
        }
    }
}
