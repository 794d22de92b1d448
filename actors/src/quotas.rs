//! The Quotas actor: owns call counters per customer and plan, and per-IP rate windows for keyless callers.
//!
//! A customer and plan share one record holding the calendar month's count
//! and the current second's burst count. One compare-and-swap updates both, so
//! under any concurrency no call is granted past either limit, and a refused
//! call changes nothing. Counters are not committed per call: the periodic
//! flush makes them durable, so a power loss can lose about a second of counts.

use actix::{Actor, Handler, Message, SyncContext};
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::codec::Record;
use crate::store::{Change, Store, StoreError, Table};

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
}

impl Quotas {
    pub fn new(store: Store) -> Result<Quotas, StoreError> {
        Ok(Quotas { counters: store.table("quota_counters")?, ip_windows: store.table("ip_windows")? })
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
