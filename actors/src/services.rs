//! Start-up of the actor pools over one store, and the bundle of their addresses that handlers use.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, SyncArbiter};

use crate::accounts::{Accounts, AccountsConfig};
use crate::apikeys::ApiKeys;
use crate::billing::Billing;
use crate::catalog::Catalog;
use crate::quotas::Quotas;
use crate::usage::{FlushUsage, RecordUsage, Usage, UsageBuffer, UsageEvent};
use crate::clients::Clients;
use crate::clock::Clock;
use crate::codes::Codes;
use crate::mailer::{MailConfig, MailError, Mailer};
use crate::sms::{Sms, SmsConfig, SmsError};
use crate::store::{Store, StoreError};
use crate::sweeper::{StopSweeping, Sweeper};
use crate::tokens::Tokens;

#[derive(Debug, Clone)]
pub struct ServicesConfig {
    /// Worker threads per actor pool. sled calls block, so each pool needs a few to overlap I/O.
    pub workers: usize,
    pub accounts: AccountsConfig,
    pub mail: MailConfig,
    pub sms: SmsConfig,
    pub sweep_interval: Duration,
    /// How long usage events are kept, in seconds.
    pub usage_retention: u64,
    /// How long a subscription stays active after a failed payment, in seconds.
    pub billing_grace: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Sms(#[from] SmsError),
}

/// Addresses of every actor pool. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub clients: Addr<Clients>,
    pub codes: Addr<Codes>,
    pub tokens: Addr<Tokens>,
    pub accounts: Addr<Accounts>,
    /// One async actor; SMTP attempts run on tokio's blocking pool.
    pub mailer: Addr<Mailer>,
    pub sms: Addr<Sms>,
    pub api_keys: Addr<ApiKeys>,
    pub quotas: Addr<Quotas>,
    /// One worker, because it buffers events in memory between batch writes.
    pub usage: Addr<Usage>,
    /// Events recorded by handlers, handed to `usage` in batches.
    pub usage_buffer: Arc<UsageBuffer>,
    pub billing: Addr<Billing>,
    /// Seconds a subscription stays active after a failed payment.
    pub billing_grace: u64,
    pub catalog: Arc<Catalog>,
}

impl Services {
    /// Starts every actor pool and the sweeper. Must run inside an actix system.
    pub fn start(
        store: Store,
        config: ServicesConfig,
        catalog: Arc<Catalog>,
        clock: Arc<dyn Clock>,
    ) -> Result<(Services, SweeperHandle), StartError> {
        // Build one instance of each first, so a failure surfaces here rather than inside a worker thread.
        let clients = Clients::new(store.clone())?;
        let codes = Codes::new(store.clone())?;
        let tokens = Tokens::new(store.clone())?;
        let accounts = Accounts::new(store.clone(), config.accounts.clone())?;
        let mailer = Mailer::new(config.mail.clone())?;
        drop(Sms::new(config.sms.clone())?);
        let others = (ApiKeys::new(store.clone())?, Quotas::new(store.clone())?, Usage::new(store.clone())?, Billing::new(store.clone())?);
        drop((clients, codes, tokens, accounts, others));

        let workers = config.workers.max(1);
        let services = Services {
            clients: start_pool(workers, &store, Clients::new),
            codes: start_pool(workers, &store, Codes::new),
            tokens: start_pool(workers, &store, Tokens::new),
            accounts: {
                let (store, accounts) = (store.clone(), config.accounts);
                SyncArbiter::start(workers, move || {
                    Accounts::new(store.clone(), accounts.clone()).unwrap_or_else(|error| worker_start_failed("accounts", error))
                })
            },
            api_keys: start_pool(workers, &store, ApiKeys::new),
            quotas: start_pool(workers, &store, Quotas::new),
            usage: start_pool(1, &store, Usage::new),
            usage_buffer: Arc::new(UsageBuffer::default()),
            billing: start_pool(workers, &store, Billing::new),
            billing_grace: config.billing_grace,
            catalog,
            mailer: mailer.start(),
            sms: {
                let sms = config.sms.clone();
                SyncArbiter::start(2, move || Sms::new(sms.clone()).unwrap_or_else(|error| worker_start_failed("sms", error)))
            },
            store,
        };
        let sweeper = Sweeper::new(services.clone(), clock, config.sweep_interval, config.usage_retention).start();
        Ok((services, SweeperHandle(sweeper)))
    }

    /// Writes buffered usage events and makes every write so far durable: the
    /// once-a-second flush for counters and usage, and the last step of shutdown.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.hand_over_usage();
        // The usage actor commits on its own thread, because a commit blocks on disk I/O.
        match self.usage.send(FlushUsage).await {
            Ok(result) => result.map(|_| ()),
            Err(error) => Err(StoreError::Backend(format!("usage actor did not answer the flush: {error}"))),
        }
    }
}
impl Services {
    /// Records one call, without waiting.
    pub fn record_usage(&self, event: UsageEvent) {
        if let Some(batch) = self.usage_buffer.push(event) {
            self.usage.do_send(RecordUsage(batch));
        }
    }

    /// Hands every buffered event to the usage actor. Its mailbox keeps order, so
    /// a message sent to it afterwards (an aggregate, a flush) sees these events.
    pub fn hand_over_usage(&self) {
        let batch = self.usage_buffer.take();
        if !batch.is_empty() {
            self.usage.do_send(RecordUsage(batch));
        }
    }
}

fn start_pool<A>(workers: usize, store: &Store, build: fn(Store) -> Result<A, StoreError>) -> Addr<A>
where
    A: Actor<Context = actix::SyncContext<A>> + Send,
{
    let store = store.clone();
    SyncArbiter::start(workers, move || build(store.clone()).unwrap_or_else(|error| worker_start_failed("store", error)))
}

/// The same construction succeeded moments earlier in `start`, so a failure here means the machine is broken.
fn worker_start_failed(kind: &str, error: impl std::fmt::Display) -> ! {
    tracing::error!(kind, %error, "actor worker could not start");
    panic!("{kind} actor worker could not start: {error}")
}

/// Handle to stop the sweeper, which otherwise keeps the actor pools alive.
pub struct SweeperHandle(Addr<Sweeper>);

impl SweeperHandle {
    pub async fn stop(self) {
        // An error means it has stopped already.
        let _ = self.0.send(StopSweeping).await;
    }
}
