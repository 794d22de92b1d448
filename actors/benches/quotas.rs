//! Quota consumption through the Quotas actor pool (`Consume`), 16 calls in
//! flight: every call on one customer's record, where the pool's workers
//! contend on one compare-and-swap, and calls spread over 10,000 customers.
//! Counters are not committed per call, so no flush is timed here.
//!
//! Also the REST middleware's per-call work for a token, one caller at a time:
//! `ValidateToken` to Tokens then `Consume` to Quotas (two round trips), against
//! `ConsumeForToken` to Quotas (one round trip); and the same pair for an API
//! key, `VerifyKey` then `Consume` against `ConsumeForKey`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Addr, SyncArbiter, System};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ucca_actors::catalog::{Capability, Catalog};
use ucca_actors::apikeys::{ApiKeys, CreateKey, VerifyKey};
use ucca_actors::quotas::{Consume, ConsumeForKey, ConsumeForToken, QuotaDecision, Quotas};
use ucca_actors::secret::Digest32;
use ucca_actors::tokens::{Issue, IssueTokens, TokenStatus, Tokens, ValidateToken};
use ucca_actors::{Store, UnixTime};

const NOW: UnixTime = 1_767_225_600;
const WORKERS: usize = 4;
const IN_FLIGHT: u64 = 16;

fn consume(customer: String) -> Consume {
    Consume { customer, plan: "operational".into(), monthly_limit: None, burst_limit: None, cost: 1, now: NOW }
}

/// Sends `iterations` calls from `IN_FLIGHT` tasks; call `n` goes to customer `n % customers`.
async fn run_calls(quotas: &Addr<Quotas>, iterations: u64, customers: u64) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|caller| {
            let quotas = quotas.clone();
            actix::spawn(async move {
                let mut call = caller;
                while call < iterations {
                    let customer = format!("customer-{}", call % customers);
                    let decision = quotas.send(consume(customer)).await.expect("quotas mailbox").expect("store");
                    assert!(matches!(decision, QuotaDecision::Allowed { .. }));
                    call += IN_FLIGHT;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller task");
    }
    started.elapsed()
}

fn quotas(criterion: &mut Criterion) {
    let store = Store::temporary().expect("temporary store");
    let system = System::new();
    let quotas = system.block_on(async {
        let store = store.clone();
        SyncArbiter::start(WORKERS, move || Quotas::new(store.clone()).expect("quotas actor"))
    });

    let mut group = criterion.benchmark_group("quota_consume");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    for customers in [1u64, 10_000] {
        group.bench_with_input(BenchmarkId::new("customers", customers), &customers, |bench, &customers| {
            bench.iter_custom(|iterations| system.block_on(run_calls(&quotas, iterations, customers)));
        });
    }
    group.finish();
}

const RESOURCE: &str = "http://127.0.0.1:8080/v1";

/// Loads the shipped catalog with every monthly and burst limit removed, so no call is rejected.
fn unlimited_catalog() -> Arc<Catalog> {
    let text: String = include_str!("../../data/catalog.toml")
        .lines()
        .filter(|line| !line.starts_with("call_limit_monthly") && !line.starts_with("burst_per_second"))
        .map(|line| format!("{line}\n"))
        .collect();
    Arc::new(Catalog::from_toml("bench catalog", &text).expect("catalog parses"))
}

async fn issue_access_token(tokens: &Addr<Tokens>) -> Digest32 {
    let issue = IssueTokens {
        grant_id: "bench-grant".into(),
        client_id: "bench-client".into(),
        user_id: "bench-user".into(),
        scopes: vec!["rtopacks:operational".into()],
        resource: RESOURCE.into(),
        access_ttl: 3600,
        refresh_ttl: 86_400,
        now: NOW,
    };
    match tokens.send(issue).await.expect("tokens actor answers").expect("tokens are issued") {
        Issue::Issued { access_token, .. } => access_token.digest(),
        Issue::GrantRevoked => panic!("a fresh grant was reported revoked"),
    }
}

fn token_call(criterion: &mut Criterion) {
    let store = Store::temporary().expect("temporary store");
    let catalog = unlimited_catalog();
    let system = System::new();
    let (tokens, quotas) = system.block_on(async {
        let (for_tokens, for_quotas) = (store.clone(), store.clone());
        (
            SyncArbiter::start(WORKERS, move || Tokens::new(for_tokens.clone()).expect("tokens actor")),
            SyncArbiter::start(WORKERS, move || Quotas::new(for_quotas.clone()).expect("quotas actor")),
        )
    });
    let token = system.block_on(issue_access_token(&tokens));

    let mut group = criterion.benchmark_group("token_call");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("validate_then_consume", |bench| {
        bench.iter_custom(|iterations| {
            system.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    let status = tokens.send(ValidateToken { token, now: NOW }).await.expect("mailbox").expect("store");
                    let TokenStatus::Active(record) = status else { panic!("the token is not active") };
                    let consume = Consume {
                        customer: record.user_id,
                        plan: "operational".into(),
                        monthly_limit: None,
                        burst_limit: None,
                        cost: 1,
                        now: NOW,
                    };
                    let decision = quotas.send(consume).await.expect("mailbox").expect("store");
                    assert!(matches!(decision, QuotaDecision::Allowed { .. }));
                }
                started.elapsed()
            })
        });
    });
    group.bench_function("consume_for_token", |bench| {
        bench.iter_custom(|iterations| {
            system.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    let call = ConsumeForToken {
                        token,
                        resource: RESOURCE.into(),
                        capability: Capability::Lookup,
                        catalog: catalog.clone(),
                        now: NOW,
                    };
                    let call = quotas.send(call).await.expect("mailbox").expect("store");
                    assert!(matches!(call.decision, Some(QuotaDecision::Allowed { .. })));
                }
                started.elapsed()
            })
        });
    });
    group.finish();
}

fn key_call(criterion: &mut Criterion) {
    let store = Store::temporary().expect("temporary store");
    let catalog = unlimited_catalog();
    let system = System::new();
    let (keys, quotas) = system.block_on(async {
        let (for_keys, for_quotas) = (store.clone(), store.clone());
        (
            SyncArbiter::start(WORKERS, move || ApiKeys::new(for_keys.clone()).expect("API keys actor")),
            SyncArbiter::start(WORKERS, move || Quotas::new(for_quotas.clone()).expect("quotas actor")),
        )
    });
    let create = CreateKey { user_id: "user".into(), tier: "enterprise".into(), subscription_id: None, now: NOW };
    let key = system.block_on(keys.send(create)).expect("API keys mailbox").expect("create key").key.digest();

    let mut group = criterion.benchmark_group("key_call");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("verify_then_consume", |bench| {
        bench.iter_custom(|iterations| {
            system.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    let record = keys.send(VerifyKey { key, now: NOW }).await.expect("mailbox").expect("store");
                    let record = record.expect("the key is active");
                    let consume = Consume { customer: record.user_id, plan: record.tier, monthly_limit: None, burst_limit: None, cost: 1, now: NOW };
                    let decision = quotas.send(consume).await.expect("mailbox").expect("store");
                    assert!(matches!(decision, QuotaDecision::Allowed { .. }));
                }
                started.elapsed()
            })
        });
    });
    group.bench_function("consume_for_key", |bench| {
        bench.iter_custom(|iterations| {
            system.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    let call = ConsumeForKey { key, capability: Capability::Lookup, catalog: catalog.clone(), now: NOW };
                    let call = quotas.send(call).await.expect("mailbox").expect("store");
                    assert!(matches!(call.decision, Some(QuotaDecision::Allowed { .. })));
                }
                started.elapsed()
            })
        });
    });
    group.finish();
}

criterion_group!(benches, quotas, token_call, key_call);
criterion_main!(benches);
