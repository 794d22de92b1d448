//! The Usage actor: owns usage events, one per API or tool call, and their aggregates.
//!
//! Handlers push events onto a shared [`UsageBuffer`]; batches reach the actor
//! when the buffer fills, on every periodic flush (at least once a second),
//! before an aggregate and at shutdown, and are written to the store in
//! batches. A power loss can therefore lose about a second of events.
//! Keys start with the event time in big-endian seconds, so a time range is a
//! key range.

use std::collections::BTreeMap;

use actix::{Actor, Handler, Message, SyncContext};
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::codec::Record;
use crate::secret::random_id;
use crate::store::{Store, StoreError, Table};

/// Events buffered before a write is forced.
const BATCH_SIZE: usize = 256;

/// What kind of credential made a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    None,
    Token,
    ApiKey,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsageEvent {
    pub at: UnixTime,
    /// The tool or API operation, such as `search`.
    pub tool: String,
    pub credential: CredentialKind,
    /// Client id of a token, or key id of an API key.
    pub credential_id: Option<String>,
    /// The customer (user id) the call counted against.
    pub customer: Option<String>,
    pub status: u16,
    pub latency_ms: u32,
}

impl Record for UsageEvent {
    const KIND: &'static str = "usage event";
    const VERSION: u16 = 1;
}

fn event_key(at: UnixTime) -> Vec<u8> {
    let mut key = at.to_be_bytes().to_vec();
    // A random suffix keeps events of the same second apart.
    key.extend_from_slice(random_id(6).as_bytes());
    key
}

pub struct Usage {
    store: Store,
    events: Table<UsageEvent>,
    buffer: Vec<(Vec<u8>, UsageEvent)>,
}

impl Usage {
    pub fn new(store: Store) -> Result<Usage, StoreError> {
        Ok(Usage { events: store.table("usage")?, buffer: Vec::new(), store })
    }

    fn write_buffer(&mut self) -> Result<usize, StoreError> {
        if self.buffer.is_empty() {
            return Ok(0);
        }
        self.events.put_batch(&self.buffer)?;
        let written = self.buffer.len();
        self.buffer.clear();
        Ok(written)
    }
}

impl Actor for Usage {
    type Context = SyncContext<Self>;

    fn stopping(&mut self, _: &mut Self::Context) -> actix::Running {
        if let Err(error) = self.write_buffer() {
            tracing::error!(%error, "usage events could not be written at shutdown");
        }
        actix::Running::Stop
    }
}

/// Events recorded by request handlers and not yet handed to the Usage actor.
///
/// A handler only pushes onto this shared list. Sending every event as its own
/// actor message cost a thread wake-up per call, about a third of a
/// bearer-checked call's time in the HTTP benchmark (bench/README.md).
#[derive(Debug, Default)]
pub struct UsageBuffer {
    events: std::sync::Mutex<Vec<UsageEvent>>,
}

impl UsageBuffer {
    /// Adds an event; returns a full batch for the caller to hand over when the buffer reaches [`BATCH_SIZE`].
    pub fn push(&self, event: UsageEvent) -> Option<Vec<UsageEvent>> {
        let mut events = self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        events.push(event);
        (events.len() >= BATCH_SIZE).then(|| std::mem::take(&mut *events))
    }

    /// Removes and returns every buffered event.
    pub fn take(&self) -> Vec<UsageEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

/// Records a batch of calls.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RecordUsage(pub Vec<UsageEvent>);

impl Handler<RecordUsage> for Usage {
    type Result = ();

    fn handle(&mut self, message: RecordUsage, _: &mut Self::Context) {
        self.buffer.extend(message.0.into_iter().map(|event| (event_key(event.at), event)));
        if self.buffer.len() >= BATCH_SIZE {
            if let Err(error) = self.write_buffer() {
                // The buffer is kept, so the next flush retries it.
                tracing::error!(%error, "usage events could not be written");
            }
        }
    }
}

/// Writes buffered events, then commits the store, which makes quota counters durable too.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct FlushUsage;

impl Handler<FlushUsage> for Usage {
    type Result = Result<usize, StoreError>;

    fn handle(&mut self, _: FlushUsage, _: &mut Self::Context) -> Self::Result {
        let written = self.write_buffer()?;
        self.store.commit()?;
        Ok(written)
    }
}

/// How to group aggregated usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Day,
    Tool,
    Client,
    Customer,
}

/// Aggregates events with `from <= at < to`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<UsageGroup>, StoreError>")]
pub struct AggregateUsage {
    pub from: UnixTime,
    pub to: UnixTime,
    pub group_by: GroupBy,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageGroup {
    pub key: String,
    pub calls: u64,
    /// Calls answered with a 4xx or 5xx status.
    pub errors: u64,
    pub authenticated: u64,
    pub average_latency_ms: f64,
}

impl Handler<AggregateUsage> for Usage {
    type Result = Result<Vec<UsageGroup>, StoreError>;

    fn handle(&mut self, message: AggregateUsage, _: &mut Self::Context) -> Self::Result {
        self.aggregate(&message)
    }
}

/// The group key of calls that carried no valid credential, in both the client
/// and the customer grouping: such a call has neither.
pub const NO_CREDENTIAL: &str = "(no credential)";

impl Usage {
    fn aggregate(&mut self, message: &AggregateUsage) -> Result<Vec<UsageGroup>, StoreError> {
        // Buffered events count too, so an aggregate right after a call includes it.
        self.write_buffer()?;

        struct Totals {
            calls: u64,
            errors: u64,
            authenticated: u64,
            latency_sum: u64,
        }
        let mut groups: BTreeMap<String, Totals> = BTreeMap::new();
        for entry in self.events.range(&message.from.to_be_bytes(), &message.to.to_be_bytes()) {
            let (_, event) = entry?;
            let key = match message.group_by {
                GroupBy::Day => day_label(event.at),
                GroupBy::Tool => event.tool.clone(),
                GroupBy::Client => event.credential_id.clone().unwrap_or_else(|| NO_CREDENTIAL.into()),
                GroupBy::Customer => event.customer.clone().unwrap_or_else(|| NO_CREDENTIAL.into()),
            };
            let totals = groups.entry(key).or_insert(Totals { calls: 0, errors: 0, authenticated: 0, latency_sum: 0 });
            totals.calls += 1;
            totals.errors += u64::from(event.status >= 400);
            totals.authenticated += u64::from(event.credential != CredentialKind::None);
            totals.latency_sum += u64::from(event.latency_ms);
        }

        Ok(groups
            .into_iter()
            .map(|(key, totals)| UsageGroup {
                key,
                calls: totals.calls,
                errors: totals.errors,
                authenticated: totals.authenticated,
                average_latency_ms: totals.latency_sum as f64 / totals.calls as f64,
            })
            .collect())
    }
}

/// `YYYY-MM-DD` of a Unix time, UTC.
pub fn day_label(time: UnixTime) -> String {
    let (year, month) = crate::quotas::year_month(time);
    let day = (time - crate::quotas::month_start(year, month)) / 86_400 + 1;
    format!("{year:04}-{month:02}-{day:02}")
}

/// Deletes events older than the retention period; returns how many went.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct SweepUsage {
    pub now: UnixTime,
    /// Seconds to keep events.
    pub retention: u64,
}

impl Handler<SweepUsage> for Usage {
    type Result = Result<usize, StoreError>;

    fn handle(&mut self, message: SweepUsage, _: &mut Self::Context) -> Self::Result {
        let cutoff = message.now.saturating_sub(message.retention);
        self.events.remove_before(&cutoff.to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_labels_are_utc_dates() {
        assert_eq!(day_label(0), "1970-01-01");
        assert_eq!(day_label(1_767_225_600), "2026-01-01");
        assert_eq!(day_label(1_767_225_600 + 86_400 * 31 + 5), "2026-02-01");
    }

    #[test]
    fn aggregates_group_buffered_and_written_events() {
        let store = Store::temporary().unwrap();
        let mut usage = Usage::new(store).unwrap();
        let event = |at, tool: &str, status| UsageEvent {
            at,
            tool: tool.into(),
            credential: CredentialKind::Token,
            credential_id: Some("client".into()),
            customer: Some("user".into()),
            status,
            latency_ms: 10,
        };
        for (at, tool, status) in [(100, "search", 200), (101, "search", 429), (102, "lookup", 200), (500, "search", 200)] {
            usage.buffer.push((event_key(at), event(at, tool, status)));
        }
        usage.write_buffer().unwrap();
        usage.buffer.push((event_key(103), event(103, "lookup", 200)));

        let groups = usage.aggregate(&AggregateUsage { from: 100, to: 200, group_by: GroupBy::Tool }).unwrap();
        let totals: Vec<(&str, u64, u64)> = groups.iter().map(|group| (group.key.as_str(), group.calls, group.errors)).collect();
        assert_eq!(totals, vec![("lookup", 2, 0), ("search", 2, 1)], "the event at 500 lies outside the range");
        assert_eq!(usage.events.len(), 5, "aggregating writes the buffered event first");
        assert_eq!(usage.events.remove_before(&200u64.to_be_bytes()).unwrap(), 4);
        assert_eq!(usage.events.len(), 1);
    }
}
