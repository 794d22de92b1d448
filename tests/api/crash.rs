//! Crash safety: the real binary is killed with SIGKILL under concurrent load at
//! seeded random moments, restarted on the same data directory, and every
//! change it acknowledged is checked to be still in force.
//!
//! `UCCA_CRASH_ROUNDS` sets the number of kills (default 3) and
//! `UCCA_CRASH_SEED` replays the seed a run prints. A longer run:
//! `UCCA_CRASH_ROUNDS=50 cargo test --test api crash -- --nocapture`.
//! The seed fixes the kill delays and each load task's choices; the
//! interleaving of requests still varies from run to run.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use reqwest::StatusCode;

use crate::helpers::Pkce;
use crate::process::{Agent, Endpoint, Failure, Launch, RemoteClient, ServerProcess};

const DEFAULT_ROUNDS: usize = 3;
/// Concurrent tasks that send load.
const LOAD_TASKS: usize = 4;
/// How long load runs before each kill, in milliseconds.
const KILL_AFTER_MS: RangeInclusive<u64> = 100..=800;
/// Facts of one kind checked after each restart; past this a seeded sample is
/// checked, so long runs stay linear in the number of rounds.
const CHECKS_PER_KIND: usize = 400;
const METHODS: [&str; 3] = ["client_secret_basic", "client_secret_post", "none"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenState {
    Active,
    /// The revocation was sent but no response arrived, so either state is correct.
    RevocationSent,
    Revoked,
}

struct TokenFact {
    client: usize,
    token: String,
    state: TokenState,
    round: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CodeState {
    Issued,
    /// The exchange was sent but no response arrived, so the code may or may not be redeemed.
    ExchangeSent,
    Redeemed { token: usize },
}

struct CodeFact {
    client: usize,
    code: String,
    verifier: String,
    state: CodeState,
    round: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    Requested,
    /// The confirmation was sent but no response arrived.
    ConfirmationSent,
    Consumed,
}

struct LinkFact {
    /// The browser that requested the link and, once it is consumed, carries the session cookie.
    agent: Agent,
    token: String,
    state: LinkState,
    round: usize,
}

/// Everything the server acknowledged, and what it answered wrongly under load.
#[derive(Default)]
struct Ledger {
    clients: Vec<RemoteClient>,
    tokens: Vec<TokenFact>,
    codes: Vec<CodeFact>,
    links: Vec<LinkFact>,
    /// Answers that were wrong in themselves, whatever the crash.
    violations: Vec<String>,
    /// State changes the server answered with success.
    acknowledged: usize,
}

fn update<R>(ledger: &Mutex<Ledger>, change: impl FnOnce(&mut Ledger) -> R) -> R {
    change(&mut ledger.lock().unwrap())
}

#[tokio::test]
async fn acknowledged_changes_survive_sigkill() {
    let rounds = env_number("UCCA_CRASH_ROUNDS").map_or(DEFAULT_ROUNDS, |rounds| rounds as usize);
    let seed = env_number("UCCA_CRASH_SEED").unwrap_or_else(|| rand::rngs::OsRng.next_u64());
    eprintln!("crash test: {rounds} kill rounds with seed {seed}; rerun with UCCA_CRASH_SEED={seed}");
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("create temporary directory");
    let mut server = ServerProcess::start(Launch::new(dir.path()));
    let ledger = Arc::new(Mutex::new(Ledger::default()));

    for round in 1..=rounds {
        // Load from several tasks, then SIGKILL at a random moment.
        let stop = Arc::new(AtomicBool::new(false));
        let tasks: Vec<_> = (0..LOAD_TASKS)
            .map(|task| {
                let task_rng = StdRng::seed_from_u64(rng.next_u64());
                tokio::spawn(load(server.endpoint(), ledger.clone(), task_rng, round, task, stop.clone()))
            })
            .collect();
        let delay = Duration::from_millis(rng.gen_range(KILL_AFTER_MS));
        tokio::time::sleep(delay).await;
        assert!(server.is_running(), "seed {seed}: the server exited by itself in round {round}; its log:\n{}", server.log());
        server.kill();
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.expect("a load task panicked");
        }

        // Restart on the same directory and check every acknowledged change.
        server = server.restart();
        let mut facts = std::mem::take(&mut *ledger.lock().unwrap());
        assert!(facts.violations.is_empty(), "seed {seed}, round {round}: wrong answers under load:\n{}", facts.violations.join("\n"));
        let lost = check_facts(&server.endpoint(), &mut facts, &mut rng)
            .await
            .unwrap_or_else(|failure| panic!("seed {seed}, round {round}: checking the restarted server failed: {failure}"));
        assert!(
            lost.is_empty(),
            "seed {seed}, round {round}: {} acknowledged changes did not survive SIGKILL:\n{}",
            lost.len(),
            lost.join("\n")
        );
        eprintln!(
            "round {round}: killed after {delay:?}; {} changes acknowledged so far ({} clients, {} tokens, {} codes, {} links)",
            facts.acknowledged,
            facts.clients.len(),
            facts.tokens.len(),
            facts.codes.len(),
            facts.links.len()
        );
        *ledger.lock().unwrap() = facts;
    }

    let facts = ledger.lock().unwrap();
    assert!(!facts.clients.is_empty(), "seed {seed}: no registration was acknowledged, so no client was checked");
    assert!(!facts.tokens.is_empty(), "seed {seed}: no token was issued, so no token was checked");
    eprintln!("crash test: {rounds} rounds in {:.1?}", started.elapsed());
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(value.trim().parse().unwrap_or_else(|_| panic!("{name} must be a whole number, got {value:?}")))
}

/// Runs journeys until the server goes away, recording each acknowledged change.
async fn load(endpoint: Endpoint, ledger: Arc<Mutex<Ledger>>, mut rng: StdRng, round: usize, task: usize, stop: Arc<AtomicBool>) {
    let mut own_clients = Vec::new();
    let mut journey = 0;
    while !stop.load(Ordering::Relaxed) {
        journey += 1;
        let email = format!("r{round}-t{task}-j{journey}@example.com");
        match run_journey(&endpoint, &ledger, &mut rng, &mut own_clients, &email, round).await {
            Ok(()) => {}
            // The server was killed; whatever was in flight stays unacknowledged.
            Err(Failure::Transport(_)) => return,
            Err(Failure::Unexpected(message)) => {
                update(&ledger, |ledger| ledger.violations.push(format!("task {task}, {email}: {message}")));
                return;
            }
        }
    }
}

/// Runs one person's visit: maybe a new client, a magic-link sign-in, then a
/// few authorizations, each maybe exchanged, used and revoked.
async fn run_journey(
    endpoint: &Endpoint,
    ledger: &Mutex<Ledger>,
    rng: &mut StdRng,
    own_clients: &mut Vec<usize>,
    email: &str,
    round: usize,
) -> Result<(), Failure> {
    if own_clients.is_empty() || rng.gen_bool(0.2) {
        let method = METHODS[rng.gen_range(0..METHODS.len())];
        let client = endpoint.register_client(method).await?;
        own_clients.push(update(ledger, |ledger| {
            ledger.acknowledged += 1;
            ledger.clients.push(client);
            ledger.clients.len() - 1
        }));
    }

    let agent = Agent::new();
    let token = endpoint.request_link(&agent, email).await?;
    let link = update(ledger, |ledger| {
        ledger.acknowledged += 1;
        ledger.links.push(LinkFact { agent: agent.clone(), token: token.clone(), state: LinkState::Requested, round });
        ledger.links.len() - 1
    });
    // Some links stay unconsumed, to check that they stay usable.
    if rng.gen_bool(0.2) {
        return Ok(());
    }
    update(ledger, |ledger| ledger.links[link].state = LinkState::ConfirmationSent);
    endpoint.confirm_link(&agent, &token).await?;
    update(ledger, |ledger| {
        ledger.acknowledged += 1;
        ledger.links[link].state = LinkState::Consumed;
    });

    for _ in 0..rng.gen_range(1..=3) {
        let client_index = own_clients[rng.gen_range(0..own_clients.len())];
        let client = update(ledger, |ledger| ledger.clients[client_index].clone());
        let pkce = Pkce::new();
        let code = endpoint.authorize(&agent, &client, &pkce).await?;
        let code_index = update(ledger, |ledger| {
            ledger.acknowledged += 1;
            let fact = CodeFact { client: client_index, code: code.clone(), verifier: pkce.verifier.clone(), state: CodeState::Issued, round };
            ledger.codes.push(fact);
            ledger.codes.len() - 1
        });
        // Some codes are left for the check after the restart to exchange.
        if rng.gen_bool(0.2) {
            continue;
        }

        update(ledger, |ledger| ledger.codes[code_index].state = CodeState::ExchangeSent);
        let (status, body) = endpoint.exchange(&client, &code, &pkce.verifier).await?;
        if status != StatusCode::OK {
            return Err(Failure::Unexpected(format!("code exchange answered {status} ({})", body["error"])));
        }
        let access_token = body["access_token"]
            .as_str()
            .ok_or_else(|| Failure::Unexpected("token response has no access_token".into()))?
            .to_string();
        let token_index = update(ledger, |ledger| {
            ledger.acknowledged += 1;
            let fact = TokenFact { client: client_index, token: access_token.clone(), state: TokenState::Active, round };
            ledger.tokens.push(fact);
            let token_index = ledger.tokens.len() - 1;
            ledger.codes[code_index].state = CodeState::Redeemed { token: token_index };
            token_index
        });

        let status = endpoint.lookup(&access_token).await?;
        if status != StatusCode::OK {
            return Err(Failure::Unexpected(format!("the API answered {status} to a token just issued")));
        }

        if rng.gen_bool(0.4) {
            update(ledger, |ledger| ledger.tokens[token_index].state = TokenState::RevocationSent);
            let status = endpoint.revoke(&client, &access_token).await?;
            if status != StatusCode::OK {
                return Err(Failure::Unexpected(format!("revocation by the owning client answered {status}")));
            }
            update(ledger, |ledger| {
                ledger.acknowledged += 1;
                ledger.tokens[token_index].state = TokenState::Revoked;
            });
        }
    }
    Ok(())
}

/// Chooses the facts to check: all of them up to [`CHECKS_PER_KIND`], else a
/// seeded sample, plus every index `always` selects.
fn chosen(rng: &mut StdRng, len: usize, always: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut indices: Vec<usize> = if len <= CHECKS_PER_KIND {
        (0..len).collect()
    } else {
        rand::seq::index::sample(rng, len, CHECKS_PER_KIND).into_vec()
    };
    indices.extend((0..len).filter(|index| always(*index)));
    indices.sort_unstable();
    indices.dedup();
    indices
}

/// Checks acknowledged facts against the restarted server and returns those that no longer hold.
/// Checks that change state (exchanging a waiting code, consuming a waiting link,
/// replaying a redeemed code) update the ledger, as load would.
async fn check_facts(endpoint: &Endpoint, ledger: &mut Ledger, rng: &mut StdRng) -> Result<Vec<String>, Failure> {
    let mut lost = Vec::new();

    for index in chosen(rng, ledger.clients.len(), |_| false) {
        let client = &ledger.clients[index];
        if !endpoint.client_authenticates(client).await? {
            lost.push(format!("client {} ({}) no longer authenticates", client.id, client.method));
        }
    }

    for index in chosen(rng, ledger.tokens.len(), |_| false) {
        let fact = &ledger.tokens[index];
        let expected = match fact.state {
            TokenState::Active => StatusCode::OK,
            TokenState::Revoked => StatusCode::UNAUTHORIZED,
            TokenState::RevocationSent => continue,
        };
        let status = endpoint.lookup(&fact.token).await?;
        if status != expected {
            let client = &ledger.clients[fact.client].id;
            lost.push(format!("token {index} (round {}, client {client}) is {:?} but the API answered {status}", fact.round, fact.state));
        }
    }

    let waiting_links: Vec<bool> = ledger.links.iter().map(|fact| fact.state == LinkState::Requested).collect();
    for index in chosen(rng, ledger.links.len(), |index| waiting_links[index]) {
        let fact = &mut ledger.links[index];
        match fact.state {
            LinkState::Consumed => {
                let status = endpoint.confirm_status(&fact.token).await?;
                if status != StatusCode::GONE {
                    lost.push(format!("consumed link {index} (round {}) answered {status} instead of 410 Gone", fact.round));
                }
                if !endpoint.is_signed_in(&fact.agent).await? {
                    lost.push(format!("the session from link {index} (round {}) no longer signs its browser in", fact.round));
                }
            }
            LinkState::Requested => {
                let status = endpoint.link_page_status(&fact.token).await?;
                if status != StatusCode::OK {
                    lost.push(format!("requested link {index} (round {}) answered {status} instead of its confirmation page", fact.round));
                    continue;
                }
                // Consumed now, so later rounds check it as consumed and it cannot expire unchecked.
                endpoint.confirm_link(&fact.agent, &fact.token).await?;
                fact.state = LinkState::Consumed;
                ledger.acknowledged += 1;
            }
            LinkState::ConfirmationSent => {}
        }
    }

    let waiting_codes: Vec<bool> = ledger.codes.iter().map(|fact| fact.state == CodeState::Issued).collect();
    for index in chosen(rng, ledger.codes.len(), |index| waiting_codes[index]) {
        let fact = &ledger.codes[index];
        let client = ledger.clients[fact.client].clone();
        match fact.state {
            // Codes live 120 s and each is exchanged at the first check after its round, well within that.
            CodeState::Issued => {
                let (status, body) = endpoint.exchange(&client, &fact.code, &fact.verifier).await?;
                let token = body["access_token"].as_str().filter(|_| status == StatusCode::OK);
                let Some(token) = token else {
                    lost.push(format!("code {index} (round {}) issued before the crash could not be exchanged: {status} {}", fact.round, body["error"]));
                    continue;
                };
                let token = TokenFact { client: fact.client, token: token.to_string(), state: TokenState::Active, round: fact.round };
                ledger.tokens.push(token);
                ledger.codes[index].state = CodeState::Redeemed { token: ledger.tokens.len() - 1 };
                ledger.acknowledged += 1;
            }
            // Half the redeemed codes are replayed each time, so the other half keep their tokens active across crashes.
            CodeState::Redeemed { token } if rng.gen_bool(0.5) => {
                let round = fact.round;
                let (status, body) = endpoint.exchange(&client, &fact.code, &fact.verifier).await?;
                if status != StatusCode::BAD_REQUEST || body["error"] != "invalid_grant" {
                    lost.push(format!("redeemed code {index} (round {round}) was accepted again: {status}"));
                }
                // A replay revokes the tokens issued from the code (RFC 6749 section 4.1.2). A lost
                // redemption would leave the code unknown, which is invalid_grant too but revokes nothing.
                let token_fact = &mut ledger.tokens[token];
                if token_fact.state == TokenState::Active && endpoint.lookup(&token_fact.token).await? != StatusCode::UNAUTHORIZED {
                    lost.push(format!("replaying redeemed code {index} (round {round}) did not revoke its token, so the server no longer knew the code"));
                }
                token_fact.state = TokenState::Revoked;
            }
            CodeState::Redeemed { .. } | CodeState::ExchangeSent => {}
        }
    }

    Ok(lost)
}
