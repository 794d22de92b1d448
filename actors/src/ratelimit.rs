//! Fixed-window request counters for abuse limits. Each counter lives in a
//! tree owned by the actor that enforces the limit; this module owns no tree.
//!
//! A window starts at a multiple of its length in Unix time (an hour starts on
//! the hour, a day at 00:00 UTC). One compare-and-swap reads and bumps a
//! counter, so concurrent requests never pass a limit together.

use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::codec::Record;
use crate::store::{Change, StoreError, Table};

/// Requests counted in one window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitWindow {
    /// Start of the window counted.
    pub start: UnixTime,
    /// Length of the window, in seconds; the sweeper removes the record after it.
    pub length: u64,
    pub count: u64,
}

impl Record for LimitWindow {
    const KIND: &'static str = "limit window";
    const VERSION: u16 = 1;
}

/// At most `max` requests in each window of `window` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u64,
    /// Seconds; must be at least 1.
    pub window: u64,
}

impl Limit {
    pub const fn per_hour(max: u64) -> Limit {
        Limit { max, window: 3600 }
    }

    pub const fn per_day(max: u64) -> Limit {
        Limit { max, window: 86_400 }
    }
}

/// Whether a request fits its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// The limit is reached; nothing was counted. The window ends at `until`.
    Limited { until: UnixTime },
}

/// Counts one request under `key` unless the current window already contains `limit.max`.
pub fn admit(table: &Table<LimitWindow>, key: &[u8], limit: Limit, now: UnixTime) -> Result<Admission, StoreError> {
    let length = limit.window.max(1);
    let start = now - now % length;
    table.modify(key, |current| {
        let count = current.filter(|window| window.start == start && window.length == length).map_or(0, |window| window.count);
        if count >= limit.max {
            return (Change::Keep, Admission::Limited { until: start + length });
        }
        (Change::Put(LimitWindow { start, length, count: count + 1 }), Admission::Admitted)
    })
}

/// Deletes windows that have ended; returns how many went.
pub fn sweep(table: &Table<LimitWindow>, now: UnixTime) -> Result<usize, StoreError> {
    table.remove_where(|window| window.start + window.length <= now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn window_admits_up_to_its_maximum_then_resets() {
        let store = Store::temporary().unwrap();
        let table: Table<LimitWindow> = store.table("windows").unwrap();
        let limit = Limit::per_hour(2);
        let start = 7200;

        assert_eq!(admit(&table, b"k", limit, start + 10).unwrap(), Admission::Admitted);
        assert_eq!(admit(&table, b"k", limit, start + 20).unwrap(), Admission::Admitted);
        assert_eq!(admit(&table, b"k", limit, start + 30).unwrap(), Admission::Limited { until: start + 3600 });
        assert_eq!(admit(&table, b"other", limit, start + 30).unwrap(), Admission::Admitted);
        assert_eq!(admit(&table, b"k", limit, start + 3600).unwrap(), Admission::Admitted);
    }

    #[test]
    fn sweep_removes_only_ended_windows() {
        let store = Store::temporary().unwrap();
        let table: Table<LimitWindow> = store.table("windows").unwrap();
        admit(&table, b"hour", Limit::per_hour(5), 0).unwrap();
        admit(&table, b"day", Limit::per_day(5), 0).unwrap();

        assert_eq!(sweep(&table, 3600).unwrap(), 1);
        assert!(table.get(b"hour").unwrap().is_none());
        assert!(table.get(b"day").unwrap().is_some());
    }
}
