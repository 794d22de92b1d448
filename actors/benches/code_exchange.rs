//! A durable authorization-code exchange: `RedeemCode` then `IssueTokens`,
//! each of which commits (flushes sled) before it replies, as the token
//! endpoint does. Measured with one caller and with 16 concurrent callers, so
//! the effect of group commit shows: concurrent commits share one flush.
//!
//! The store is opened in a temporary directory under the system's temp dir,
//! which is on disk here. `Store::temporary()` would put its files in /dev/shm,
//! where a flush costs almost nothing.

use std::time::{Duration, Instant};

use actix::{Addr, SyncArbiter, System};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sha2::{Digest, Sha256};
use ucca_actors::codes::{CodeGrant, CodeRecord, Codes, RedeemCode, Redemption, CODE_TTL};
use ucca_actors::secret::{random_id, Digest32, Secret, SECRET_BYTES};
use ucca_actors::store::Table;
use ucca_actors::tokens::{Issue, IssueTokens, Tokens};
use ucca_actors::{Store, UnixTime};

const NOW: UnixTime = 1_767_225_600;
const WORKERS: usize = 4;
const VERIFIER: &str = "bench-verifier-0123456789-0123456789-0123456789";
const CLIENT: &str = "bench-client";
const REDIRECT_URI: &str = "http://127.0.0.1:7000/cb";
const RESOURCE: &str = "http://127.0.0.1:8080/v1";

struct Pools {
    store: Store,
    codes: Addr<Codes>,
    tokens: Addr<Tokens>,
}

/// Writes `count` fresh codes straight into the codes table with one flush, outside the timed section.
fn seed_codes(store: &Store, count: u64) -> Vec<Digest32> {
    let table: Table<CodeRecord> = store.table("codes").expect("codes table");
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()));
    let digests: Vec<Digest32> = (0..count)
        .map(|_| {
            let digest = Secret::generate(SECRET_BYTES).digest();
            let record = CodeRecord {
                grant: CodeGrant {
                    client_id: CLIENT.into(),
                    user_id: "bench-user".into(),
                    redirect_uri: REDIRECT_URI.into(),
                    redirect_uri_in_request: true,
                    code_challenge: challenge.clone(),
                    scopes: vec!["rtopacks:operational".into()],
                    resource: RESOURCE.into(),
                },
                grant_id: random_id(16),
                expires_at: NOW + CODE_TTL,
                redeemed: false,
            };
            table.put(digest.as_bytes(), &record).expect("seed code");
            digest
        })
        .collect();
    store.commit().expect("flush seeded codes");
    digests
}

/// Redeems one code and issues its tokens, as the token endpoint does.
async fn exchange(codes: &Addr<Codes>, tokens: &Addr<Tokens>, code: Digest32) {
    let redeem = RedeemCode {
        code,
        client_id: CLIENT.into(),
        redirect_uri: Some(REDIRECT_URI.into()),
        code_verifier: VERIFIER.into(),
        resource: None,
        now: NOW,
    };
    let (grant, grant_id) = match codes.send(redeem).await.expect("codes mailbox").expect("redeem") {
        Redemption::Redeemed { grant, grant_id } => (grant, grant_id),
        other => panic!("a fresh code was not redeemed: {other:?}"),
    };
    let issue = IssueTokens {
        grant_id,
        client_id: grant.client_id,
        user_id: grant.user_id,
        scopes: grant.scopes,
        resource: grant.resource,
        access_ttl: 3600,
        refresh_ttl: 30 * 86_400,
        now: NOW,
    };
    match tokens.send(issue).await.expect("tokens mailbox").expect("issue") {
        Issue::Issued { .. } => {}
        Issue::GrantRevoked => panic!("a fresh grant was reported revoked"),
    }
}

/// Runs `codes.len()` exchanges split over `callers` concurrent tasks; returns the wall time.
async fn run_exchanges(pools: &Pools, codes: Vec<Digest32>, callers: usize) -> Duration {
    let mut shares: Vec<Vec<Digest32>> = vec![Vec::new(); callers];
    for (index, code) in codes.into_iter().enumerate() {
        shares[index % callers].push(code);
    }
    let started = Instant::now();
    let tasks: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let (codes, tokens) = (pools.codes.clone(), pools.tokens.clone());
            actix::spawn(async move {
                for code in share {
                    exchange(&codes, &tokens, code).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller task");
    }
    started.elapsed()
}

fn code_exchange(criterion: &mut Criterion) {
    let directory = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(directory.path()).expect("store in a temporary directory");
    let system = System::new();
    let pools = system.block_on(async {
        let (for_codes, for_tokens) = (store.clone(), store.clone());
        Pools {
            codes: SyncArbiter::start(WORKERS, move || Codes::new(for_codes.clone()).expect("codes actor")),
            tokens: SyncArbiter::start(WORKERS, move || Tokens::new(for_tokens.clone()).expect("tokens actor")),
            store: store.clone(),
        }
    });

    let mut group = criterion.benchmark_group("code_exchange");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    for callers in [1usize, 16] {
        group.bench_with_input(BenchmarkId::new("callers", callers), &callers, |bench, &callers| {
            bench.iter_custom(|iterations| {
                let codes = seed_codes(&pools.store, iterations);
                system.block_on(run_exchanges(&pools, codes, callers))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, code_exchange);
criterion_main!(benches);
