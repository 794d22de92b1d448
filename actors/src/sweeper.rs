//! The sweeper: an async actor that periodically asks each state actor to
//! delete what has expired, and once a second flushes counters and usage.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, Message};

use crate::accounts::SweepAccounts;
use crate::clock::Clock;
use crate::codes::SweepCodes;
use crate::services::Services;
use crate::quotas::SweepQuotas;
use crate::tokens::SweepTokens;
use crate::usage::SweepUsage;

/// How often quota counters and usage events are made durable.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

pub struct Sweeper {
    services: Services,
    clock: Arc<dyn Clock>,
    interval: Duration,
    /// Seconds to keep usage events.
    usage_retention: u64,
}

impl Sweeper {
    pub fn new(services: Services, clock: Arc<dyn Clock>, interval: Duration, usage_retention: u64) -> Sweeper {
        Sweeper { services, clock, interval, usage_retention }
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
            actix::spawn(async move {
                let results = [
                    ("codes", services.codes.send(SweepCodes { now }).await),
                    ("tokens", services.tokens.send(SweepTokens { now }).await),
                    ("accounts", services.accounts.send(SweepAccounts { now }).await),
                    ("quotas", services.quotas.send(SweepQuotas { now }).await),
                    ("usage", services.usage.send(SweepUsage { now, retention }).await),
                ];
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
