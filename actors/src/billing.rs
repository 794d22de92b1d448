//! The Billing actor: owns subscriptions, processed webhook event ids, the
//! links from payment-provider customers to users, and events waiting for a link.
//!
//! Events arrive out of order and more than once. Each event id is applied at
//! most once. Per subscription, an event older than the last one applied
//! changes nothing, and an event from the same second never revives a
//! cancelled subscription. An event for a customer not yet linked to a user
//! is kept and applied, in order, once a checkout links the customer.

use actix::{Actor, Handler, Message, SyncContext};
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::codec::Record;
use crate::store::{Change, Store, StoreError, Table};

/// A payment-provider event, already authenticated and parsed by the caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BillingEvent {
    pub id: String,
    /// The provider's creation time of the event, in Unix seconds.
    pub created: UnixTime,
    pub kind: EventKind,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum EventKind {
    /// A checkout finished: the customer belongs to this user.
    CheckoutCompleted { customer: String, user_id: String },
    /// A subscription was created or changed; `deleted` when it ended.
    SubscriptionChanged { subscription: String, customer: String, status: String, price_ids: Vec<String>, deleted: bool },
    /// A renewal payment failed; the grace period starts.
    PaymentFailed { subscription: String, customer: String },
}

impl EventKind {
    fn customer(&self) -> &str {
        match self {
            EventKind::CheckoutCompleted { customer, .. }
            | EventKind::SubscriptionChanged { customer, .. }
            | EventKind::PaymentFailed { customer, .. } => customer,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub id: String,
    pub customer: String,
    pub user_id: String,
    pub status: String,
    pub price_ids: Vec<String>,
    pub canceled: bool,
    /// When a payment failed and no later event showed the subscription paid again.
    pub payment_failed_at: Option<UnixTime>,
    /// Creation time of the last event applied, for ordering.
    pub last_event_at: UnixTime,
}

impl Record for SubscriptionRecord {
    const KIND: &'static str = "subscription";
    const VERSION: u16 = 1;
}

impl SubscriptionRecord {
    /// Checks whether the subscription grants its plan at `now`, given the grace period after a failed payment.
    pub fn is_active(&self, now: UnixTime, grace: u64) -> bool {
        let paying = matches!(self.status.as_str(), "active" | "trialing" | "past_due");
        let within_grace = self.payment_failed_at.is_none_or(|failed| now < failed + grace);
        !self.canceled && paying && within_grace
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessedEvent {
    pub created: UnixTime,
    pub processed_at: UnixTime,
}

impl Record for ProcessedEvent {
    const KIND: &'static str = "processed billing event";
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CustomerLink {
    pub user_id: String,
    pub linked_at: UnixTime,
}

impl Record for CustomerLink {
    const KIND: &'static str = "billing customer link";
    const VERSION: u16 = 1;
}

/// Billing facts kept per user.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserBilling {
    pub customers: Vec<String>,
    /// The OAuth client provisioned for the customer's own systems.
    pub provisioned_client: Option<String>,
}

impl Record for UserBilling {
    const KIND: &'static str = "user billing";
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingEvent {
    pub event: BillingEvent,
}

impl Record for PendingEvent {
    const KIND: &'static str = "pending billing event";
    const VERSION: u16 = 1;
}

pub struct Billing {
    store: Store,
    subscriptions: Table<SubscriptionRecord>,
    events: Table<ProcessedEvent>,
    customers: Table<CustomerLink>,
    users: Table<UserBilling>,
    pending: Table<PendingEvent>,
}

impl Billing {
    pub fn new(store: Store) -> Result<Billing, StoreError> {
        Ok(Billing {
            subscriptions: store.table("subscriptions")?,
            events: store.table("billing_events")?,
            customers: store.table("billing_customers")?,
            users: store.table("billing_users")?,
            pending: store.table("billing_pending")?,
            store,
        })
    }

    /// Applies one event to a customer already linked to `user_id`.
    fn apply_linked(&self, event: &BillingEvent, user_id: &str) -> Result<(), StoreError> {
        let (subscription, customer) = match &event.kind {
            EventKind::CheckoutCompleted { .. } => return Ok(()),
            EventKind::SubscriptionChanged { subscription, customer, .. } | EventKind::PaymentFailed { subscription, customer } => {
                (subscription, customer)
            }
        };
        self.subscriptions.modify(subscription.as_bytes(), |current| {
            let record = current.unwrap_or_else(|| SubscriptionRecord {
                id: subscription.clone(),
                customer: customer.clone(),
                user_id: user_id.to_string(),
                status: "incomplete".into(),
                price_ids: Vec::new(),
                canceled: false,
                payment_failed_at: None,
                last_event_at: 0,
            });
            match next_state(record, event) {
                Some(updated) => (Change::Put(updated), ()),
                None => (Change::Keep, ()),
            }
        })
    }
}

/// The subscription after `event`, or `None` when the event must change nothing.
fn next_state(record: SubscriptionRecord, event: &BillingEvent) -> Option<SubscriptionRecord> {
    if event.created < record.last_event_at {
        return None;
    }
    let same_second = event.created == record.last_event_at;
    match &event.kind {
        EventKind::CheckoutCompleted { .. } => None,
        EventKind::SubscriptionChanged { status, price_ids, deleted, .. } => {
            if record.canceled && !deleted && same_second {
                // Out-of-order delivery within one second: a cancellation wins.
                return None;
            }
            let paid_again = matches!(status.as_str(), "active" | "trialing");
            Some(SubscriptionRecord {
                status: if *deleted { "canceled".into() } else { status.clone() },
                price_ids: if price_ids.is_empty() { record.price_ids.clone() } else { price_ids.clone() },
                canceled: *deleted || status == "canceled" || (record.canceled && same_second),
                payment_failed_at: if paid_again && !same_second { None } else { record.payment_failed_at },
                last_event_at: event.created,
                ..record
            })
        }
        EventKind::PaymentFailed { .. } => Some(SubscriptionRecord {
            payment_failed_at: Some(record.payment_failed_at.unwrap_or(event.created)),
            last_event_at: event.created,
            ..record
        }),
    }
}

impl Actor for Billing {
    type Context = SyncContext<Self>;
}

/// Applies a webhook event once.
#[derive(Debug, Message)]
#[rtype(result = "Result<Applied, StoreError>")]
pub struct ApplyEvent {
    pub event: BillingEvent,
    pub now: UnixTime,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The event changed the users listed (their entitlements need a review).
    Applied { users: Vec<String> },
    /// This event id was applied before. The users listed are those it
    /// concerns, so that a redelivery can finish a reconciliation that failed.
    Duplicate { users: Vec<String> },
    /// The customer is not linked to a user yet; the event waits for the link.
    Pending,
}

impl Handler<ApplyEvent> for Billing {
    type Result = Result<Applied, StoreError>;

    fn handle(&mut self, message: ApplyEvent, _: &mut Self::Context) -> Self::Result {
        let event = message.event;
        if self.events.get(event.id.as_bytes())?.is_some() {
            let users = match &event.kind {
                EventKind::CheckoutCompleted { user_id, .. } => vec![user_id.clone()],
                kind => self.customers.get(kind.customer().as_bytes())?.map(|link| link.user_id).into_iter().collect(),
            };
            return Ok(Applied::Duplicate { users });
        }

        let users = match &event.kind {
            EventKind::CheckoutCompleted { customer, user_id } => {
                self.customers.put(customer.as_bytes(), &CustomerLink { user_id: user_id.clone(), linked_at: message.now })?;
                self.users.modify(user_id.as_bytes(), |current| {
                    let mut billing = current.unwrap_or_default();
                    if !billing.customers.contains(customer) {
                        billing.customers.push(customer.clone());
                    }
                    (Change::Put(billing), ())
                })?;

                // Events that arrived before the link are applied now, oldest first.
                let prefix = format!("{customer}/");
                let mut waiting: Vec<(Vec<u8>, BillingEvent)> = self
                    .pending
                    .entries()
                    .filter_map(|entry| match entry {
                        Ok((key, pending)) if key.starts_with(prefix.as_bytes()) => Some(Ok((key, pending.event))),
                        Ok(_) => None,
                        Err(error) => Some(Err(error)),
                    })
                    .collect::<Result<_, _>>()?;
                waiting.sort_by_key(|(_, waiting)| waiting.created);
                for (key, waiting) in waiting {
                    self.apply_linked(&waiting, user_id)?;
                    self.events.put(waiting.id.as_bytes(), &ProcessedEvent { created: waiting.created, processed_at: message.now })?;
                    self.pending.remove(&key)?;
                }
                vec![user_id.clone()]
            }
            kind => match self.customers.get(kind.customer().as_bytes())? {
                Some(link) => {
                    self.apply_linked(&event, &link.user_id)?;
                    vec![link.user_id]
                }
                None => {
                    let key = format!("{}/{}", kind.customer(), event.id);
                    self.pending.put(key.as_bytes(), &PendingEvent { event: event.clone() })?;
                    self.store.commit()?;
                    tracing::info!(event_id = %event.id, "billing event kept until its customer is linked");
                    return Ok(Applied::Pending);
                }
            },
        };

        self.events.put(event.id.as_bytes(), &ProcessedEvent { created: event.created, processed_at: message.now })?;
        self.store.commit()?;
        Ok(Applied::Applied { users })
    }
}

/// Fetches the billing records of one user.
#[derive(Debug, Message)]
#[rtype(result = "Result<CustomerBilling, StoreError>")]
pub struct GetCustomerBilling {
    pub user_id: String,
}

#[derive(Debug, Clone, Default)]
pub struct CustomerBilling {
    pub customers: Vec<String>,
    pub subscriptions: Vec<SubscriptionRecord>,
    pub provisioned_client: Option<String>,
}

impl Handler<GetCustomerBilling> for Billing {
    type Result = Result<CustomerBilling, StoreError>;

    fn handle(&mut self, message: GetCustomerBilling, _: &mut Self::Context) -> Self::Result {
        let Some(billing) = self.users.get(message.user_id.as_bytes())? else { return Ok(CustomerBilling::default()) };
        // NOTE: a full scan of subscriptions; fine for thousands of customers, index by customer beyond that.
        let subscriptions = self
            .subscriptions
            .entries()
            .filter_map(|entry| match entry {
                Ok((_, record)) if billing.customers.contains(&record.customer) => Some(Ok(record)),
                Ok(_) => None,
                Err(error) => Some(Err(error)),
            })
            .collect::<Result<_, _>>()?;
        Ok(CustomerBilling { customers: billing.customers, subscriptions, provisioned_client: billing.provisioned_client })
    }
}

/// Records the OAuth client provisioned for a user's systems; returns false if one was recorded already.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct RecordProvisionedClient {
    pub user_id: String,
    pub client_id: String,
}

impl Handler<RecordProvisionedClient> for Billing {
    type Result = Result<bool, StoreError>;

    fn handle(&mut self, message: RecordProvisionedClient, _: &mut Self::Context) -> Self::Result {
        let recorded = self.users.modify(message.user_id.as_bytes(), |current| {
            let billing = current.unwrap_or_default();
            if billing.provisioned_client.is_some() {
                return (Change::Keep, false);
            }
            (Change::Put(UserBilling { provisioned_client: Some(message.client_id.clone()), ..billing }), true)
        })?;
        self.store.commit()?;
        Ok(recorded)
    }
}

/// Users with a subscription whose grace period after a failed payment ended in `(since, until]`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<String>, StoreError>")]
pub struct GraceEnded {
    pub since: UnixTime,
    pub until: UnixTime,
    /// Seconds of grace after a failed payment.
    pub grace: u64,
}

impl Handler<GraceEnded> for Billing {
    type Result = Result<Vec<String>, StoreError>;

    fn handle(&mut self, message: GraceEnded, _: &mut Self::Context) -> Self::Result {
        let mut users: Vec<String> = Vec::new();
        for entry in self.subscriptions.entries() {
            let (_, record) = entry?;
            let ended = record.payment_failed_at.map(|failed| failed + message.grace);
            if ended.is_some_and(|ended| ended > message.since && ended <= message.until) && !users.contains(&record.user_id) {
                users.push(record.user_id);
            }
        }
        Ok(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription() -> SubscriptionRecord {
        SubscriptionRecord {
            id: "sub_1".into(),
            customer: "cus_1".into(),
            user_id: "u".into(),
            status: "active".into(),
            price_ids: vec!["price_a".into()],
            canceled: false,
            payment_failed_at: None,
            last_event_at: 100,
        }
    }

    fn changed(created: UnixTime, status: &str, deleted: bool) -> BillingEvent {
        BillingEvent {
            id: format!("evt_{created}_{status}"),
            created,
            kind: EventKind::SubscriptionChanged {
                subscription: "sub_1".into(),
                customer: "cus_1".into(),
                status: status.into(),
                price_ids: vec![],
                deleted,
            },
        }
    }

    #[test]
    fn ordering_rules() {
        let canceled = next_state(subscription(), &changed(200, "canceled", true)).unwrap();
        assert!(canceled.canceled);
        assert!(next_state(canceled.clone(), &changed(150, "active", false)).is_none(), "an older update changes nothing");
        assert!(next_state(canceled.clone(), &changed(200, "active", false)).is_none(), "a same-second update never revives");
        let revived = next_state(canceled, &changed(300, "active", false)).unwrap();
        assert!(!revived.canceled, "a later update is a new state");
    }

    #[test]
    fn grace_period_after_failed_payment() {
        let failed = SubscriptionRecord { payment_failed_at: Some(1_000), status: "past_due".into(), ..subscription() };
        assert!(failed.is_active(1_000 + 99, 100));
        assert!(!failed.is_active(1_000 + 100, 100));
        let recovered = next_state(failed, &changed(1_050, "active", false)).unwrap();
        assert!(recovered.is_active(5_000, 100), "a later paid state clears the failure");
    }
}
