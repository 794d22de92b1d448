//! The sweeper: an async actor that periodically asks each state actor to
//! delete what has expired, and once a second flushes counters and usage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, Message};

use crate::accounts::SweepAccounts;
use crate::billing::GraceEnded;
use crate::entitlements::revoke_grants_beyond_held;
use crate::clock::{Clock, UnixTime};
use crate::clients::{SweepSelfRegistered, SELF_REGISTERED_IDLE_LIMIT};
use crate::codes::SweepCodes;
use crate::services::Services;
use crate::quotas::SweepQuotas;
use crate::tokens::{RevokeClientTokens, SweepTokens};
use crate::usage::SweepUsage;

/// How often quota counters and usage events are made durable.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

pub struct Sweeper {
    services: Services,
    clock: Arc<dyn Clock>,
    interval: Duration,
    /// Seconds to keep usage events.
    usage_retention: u64,
    /// The time up to which ended grace periods have been enforced. It starts
    /// at 0, so the first sweep after a start also enforces the grace periods
    /// that ended while the server was stopped. It advances only after a
    /// successful check, so the next sweep repeats a failed one.
    grace_checked_until: Arc<AtomicU64>,
}

impl Sweeper {
    pub fn new(services: Services, clock: Arc<dyn Clock>, interval: Duration, usage_retention: u64) -> Sweeper {
        Sweeper { services, clock, interval, usage_retention, grace_checked_until: Arc::new(AtomicU64::new(0)) }
    }
}

impl Actor for Sweeper {
    type Context = Context<Self>;

    fn started(&mut self, context: &mut Self::Context) {
        context.run_interval(FLUSH_INTERVAL, |sweeper, _| {
            let services = sweeper.services.clone();
            actix::spawn(async move {
                if let Err(error) = services.flush().await {
                    tracing::error!(%error, "periodic flush failed");
                }
            });
        });
        context.run_interval(self.interval, |sweeper, _| {
            let services = sweeper.services.clone();
            let now = sweeper.clock.now();
            let retention = sweeper.usage_retention;
            let checked_until = sweeper.grace_checked_until.clone();
            actix::spawn(async move {
                let since = checked_until.load(Ordering::SeqCst);
                if enforce_ended_grace(&services, since, now).await {
                    checked_until.fetch_max(now, Ordering::SeqCst);
                }
                let results = [
                    ("codes", services.codes.send(SweepCodes { now }).await),
                    ("tokens", services.tokens.send(SweepTokens { now }).await),
                    ("accounts", services.accounts.send(SweepAccounts { now }).await),
                    ("quotas", services.quotas.send(SweepQuotas { now }).await),
                    ("usage", services.usage.send(SweepUsage { now, retention }).await),
                ];
                expire_unused_clients(&services, now).await;
                for (kind, result) in results {
                    match result {
                        Ok(Ok(0)) => {}
                        Ok(Ok(removed)) => tracing::debug!(kind, removed, "swept expired records"),
                        Ok(Err(error)) => tracing::error!(kind, %error, "sweep failed"),
                        Err(error) => tracing::error!(kind, %error, "sweep message was not delivered"),
                    }
                }
            });
        });
    }
}

/// Stops the sweeper at shutdown, releasing its handles on the store.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopSweeping;

impl Handler<StopSweeping> for Sweeper {
    type Result = ();

    fn handle(&mut self, _: StopSweeping, context: &mut Self::Context) {
        context.stop();
    }
}

/// Revokes the grants of users whose grace period after a failed payment ended in `(since, now]`.
/// Ends the plans of users whose grace period ended in `(since, now]`; returns
/// whether every user was handled, so that a failure is retried.
async fn enforce_ended_grace(services: &Services, since: UnixTime, now: UnixTime) -> bool {
    let ended = services.billing.send(GraceEnded { since, until: now, grace: services.billing_grace }).await;
    let users = match ended {
        Ok(Ok(users)) => users,
        Ok(Err(error)) => {
            tracing::error!(%error, "grace period check failed");
            return false;
        }
        Err(error) => {
            tracing::error!(%error, "grace period check was not delivered");
            return false;
        }
    };
    let mut complete = true;
    for user_id in users {
        match revoke_grants_beyond_held(services, &services.catalog, &user_id, now).await {
            Ok(revoked) => tracing::info!(target: "ucca::security", user_id = %user_id, revoked, "grace period ended; grants and keys beyond the user's plans revoked"),
            Err(error) => {
                tracing::error!(%error, user_id = %user_id, "grants could not be revoked after the grace period; the next sweep retries");
                complete = false;
            }
        }
    }
    complete
}

/// Removes self-registered clients unused for 90 days and revokes what they still hold.
async fn expire_unused_clients(services: &Services, now: UnixTime) {
    let sweep = SweepSelfRegistered { now, idle_limit: SELF_REGISTERED_IDLE_LIMIT };
    let removed = match services.clients.send(sweep).await {
        Ok(Ok(removed)) => removed,
        Ok(Err(error)) => return tracing::error!(%error, "sweep of unused self-registered clients failed"),
        Err(error) => return tracing::error!(%error, "sweep of unused self-registered clients was not delivered"),
    };
    for client_id in removed {
        match services.tokens.send(RevokeClientTokens { client_id: client_id.clone() }).await {
            Ok(Ok(revoked)) => tracing::info!(target: "ucca::security", client_id = %client_id, revoked, "unused self-registered client expired"),
            Ok(Err(error)) => tracing::error!(%error, client_id = %client_id, "tokens of an expired client could not be revoked"),
            Err(error) => tracing::error!(%error, client_id = %client_id, "token revocation for an expired client was not delivered"),
        }
    }
}
