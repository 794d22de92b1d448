//! Token validation: through the Tokens actor pool (`ValidateToken` via
//! `Addr::send`) against the same two sled reads done on the calling thread.
//!
//! The direct case reads the token record and its grant with `Table::get` and
//! makes the same checks as the handler. The difference between the two is the
//! cost of the mailbox: the hop to the SyncArbiter, the hand-off to a worker
//! thread and the reply.

use std::time::{Duration, Instant};

use actix::{Addr, SyncArbiter, System};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ucca_actors::secret::Digest32;
use ucca_actors::store::Table;
use ucca_actors::tokens::{GrantRecord, Issue, IssueTokens, TokenRecord, TokenStatus, Tokens, ValidateToken};
use ucca_actors::{Store, UnixTime};

/// The fixed time every benchmark runs at.
const NOW: UnixTime = 1_767_225_600;
/// Worker threads in the pool, as `src/startup.rs` configures.
const WORKERS: usize = 4;
/// Requests in flight at once in the concurrent case.
const IN_FLIGHT: u64 = 16;

async fn issue_access_token(tokens: &Addr<Tokens>) -> Digest32 {
    let issue = IssueTokens {
        grant_id: "bench-grant".into(),
        client_id: "bench-client".into(),
        user_id: "bench-user".into(),
        scopes: vec!["rtopacks:operational".into()],
        resource: "http://127.0.0.1:8080/v1".into(),
        access_ttl: 3600,
        refresh_ttl: 86_400,
        now: NOW,
    };
    match tokens.send(issue).await.expect("tokens actor answers").expect("tokens are issued") {
        Issue::Issued { access_token, .. } => access_token.digest(),
        Issue::GrantRevoked => panic!("a fresh grant was reported revoked"),
    }
}

/// Makes the handler's checks on the calling thread: token record, then grant, then expiry.
fn validate_directly(tokens: &Table<TokenRecord>, grants: &Table<GrantRecord>, token: &Digest32) -> bool {
    let Some(record) = tokens.get(token.as_bytes()).expect("token read") else { return false };
    let grant = grants.get(record.grant_id.as_bytes()).expect("grant read");
    !record.revoked && grant.is_some_and(|grant| !grant.revoked) && NOW < record.expires_at
}

fn validate(criterion: &mut Criterion) {
    let store = Store::temporary().expect("temporary store");
    let system = System::new();
    let tokens = system.block_on(async {
        let store = store.clone();
        SyncArbiter::start(WORKERS, move || Tokens::new(store.clone()).expect("tokens actor"))
    });
    let token = system.block_on(issue_access_token(&tokens));
    let token_table: Table<TokenRecord> = store.table("tokens").expect("tokens table");
    let grant_table: Table<GrantRecord> = store.table("grants").expect("grants table");

    let mut group = criterion.benchmark_group("validate_token");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));

    group.bench_function("sled_direct", |bench| {
        bench.iter(|| assert!(validate_directly(&token_table, &grant_table, &token)));
    });

    group.bench_function("actor_send_sequential", |bench| {
        bench.iter_custom(|iterations| {
            system.block_on(async {
                let started = Instant::now();
                for _ in 0..iterations {
                    let status = tokens.send(ValidateToken { token, now: NOW }).await.expect("mailbox").expect("store");
                    assert!(matches!(status, TokenStatus::Active(_)));
                }
                started.elapsed()
            })
        });
    });

    group.bench_function("actor_send_16_in_flight", |bench| {
        bench.iter_custom(|iterations| {
            system.block_on(async {
                let started = Instant::now();
                let callers: Vec<_> = (0..IN_FLIGHT)
                    .map(|caller| {
                        let tokens = tokens.clone();
                        let share = iterations / IN_FLIGHT + u64::from(caller < iterations % IN_FLIGHT);
                        actix::spawn(async move {
                            for _ in 0..share {
                                let status = tokens.send(ValidateToken { token, now: NOW }).await.expect("mailbox").expect("store");
                                assert!(matches!(status, TokenStatus::Active(_)));
                            }
                        })
                    })
                    .collect();
                for caller in callers {
                    caller.await.expect("caller task");
                }
                started.elapsed()
            })
        });
    });
    group.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
