//! The Codes actor: owns authorization codes, which are bound to their request and redeemable once.

use actix::{Actor, Handler, Message, SyncContext};
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::codec::Record;
use crate::oauth::verifier_matches;
use crate::secret::{random_id, Digest32, Secret, SECRET_BYTES};
use crate::store::{Change, Store, StoreError, Table};

/// Lifetime of an authorization code, in seconds.
pub const CODE_TTL: u64 = 120;
/// How long a redeemed or expired code is kept so that a replay is still recognised, in seconds.
const REPLAY_MEMORY: u64 = 24 * 3600;

/// What a code stands for: everything the token endpoint must match and everything the token will carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeGrant {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    /// Whether the authorization request named the redirect URI, in which case
    /// the token request must repeat it (RFC 6749 section 4.1.3).
    pub redirect_uri_in_request: bool,
    pub code_challenge: String,
    pub scopes: Vec<String>,
    pub resource: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeRecord {
    pub grant: CodeGrant,
    /// Identifier of the grant the tokens from this code will belong to, fixed at issue so a replay can revoke them.
    pub grant_id: String,
    pub expires_at: UnixTime,
    pub redeemed: bool,
}

impl Record for CodeRecord {
    const KIND: &'static str = "authorization code";
    const VERSION: u16 = 1;
}

pub struct Codes {
    store: Store,
    codes: Table<CodeRecord>,
}

impl Codes {
    pub fn new(store: Store) -> Result<Codes, StoreError> {
        Ok(Codes { codes: store.table("codes")?, store })
    }
}

impl Actor for Codes {
    type Context = SyncContext<Self>;
}

/// Issues a code for a consented authorization request.
#[derive(Debug, Message)]
#[rtype(result = "Result<Secret, StoreError>")]
pub struct IssueCode {
    pub grant: CodeGrant,
    pub now: UnixTime,
}

impl Handler<IssueCode> for Codes {
    type Result = Result<Secret, StoreError>;

    fn handle(&mut self, message: IssueCode, _: &mut Self::Context) -> Self::Result {
        let code = Secret::generate(SECRET_BYTES);
        let record = CodeRecord {
            grant: message.grant,
            grant_id: random_id(16),
            expires_at: message.now + CODE_TTL,
            redeemed: false,
        };
        self.codes.put(code.digest().as_bytes(), &record)?;
        self.store.commit()?;
        Ok(code)
    }
}

/// Redeems a code for the client that presents it, checking every binding.
#[derive(Debug, Message)]
#[rtype(result = "Result<Redemption, StoreError>")]
pub struct RedeemCode {
    pub code: Digest32,
    pub client_id: String,
    pub redirect_uri: Option<String>,
    pub code_verifier: String,
    pub resource: Option<String>,
    pub now: UnixTime,
}

/// Outcome of a redemption. Only `Redeemed` changed the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    Redeemed { grant: CodeGrant, grant_id: String },
    /// The code was already redeemed: the caller must revoke the grant.
    AlreadyUsed { grant_id: String },
    Expired,
    Unknown,
    /// A binding failed; the text says which, for the error description.
    Mismatch(&'static str),
    /// The resource differs from the one the code was issued for (RFC 8707 `invalid_target`).
    WrongResource,
}

impl Handler<RedeemCode> for Codes {
    type Result = Result<Redemption, StoreError>;

    fn handle(&mut self, message: RedeemCode, _: &mut Self::Context) -> Self::Result {
        let outcome = self.codes.modify(message.code.as_bytes(), |current| {
            let Some(record) = current else { return (Change::Keep, Redemption::Unknown) };
            let grant = &record.grant;

            // A different client learns nothing and changes nothing, so it cannot revoke another client's tokens.
            if grant.client_id != message.client_id {
                return (Change::Keep, Redemption::Mismatch("the code was issued to another client"));
            }
            if record.redeemed {
                return (Change::Keep, Redemption::AlreadyUsed { grant_id: record.grant_id.clone() });
            }
            if message.now >= record.expires_at {
                return (Change::Keep, Redemption::Expired);
            }
            match &message.redirect_uri {
                Some(uri) if *uri != grant.redirect_uri => {
                    return (Change::Keep, Redemption::Mismatch("redirect_uri differs from the authorization request"));
                }
                None if grant.redirect_uri_in_request => {
                    return (Change::Keep, Redemption::Mismatch("redirect_uri is required because the authorization request named it"));
                }
                _ => {}
            }
            if message.resource.as_ref().is_some_and(|resource| *resource != grant.resource) {
                return (Change::Keep, Redemption::WrongResource);
            }
            if !verifier_matches(&message.code_verifier, &grant.code_challenge) {
                return (Change::Keep, Redemption::Mismatch("code_verifier does not match the code_challenge"));
            }

            let outcome = Redemption::Redeemed { grant: grant.clone(), grant_id: record.grant_id.clone() };
            (Change::Put(CodeRecord { redeemed: true, ..record }), outcome)
        })?;

        if matches!(outcome, Redemption::Redeemed { .. }) {
            self.store.commit()?;
        }
        Ok(outcome)
    }
}

/// Deletes codes whose replay window has passed; returns how many went.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct SweepCodes {
    pub now: UnixTime,
}

impl Handler<SweepCodes> for Codes {
    type Result = Result<usize, StoreError>;

    fn handle(&mut self, message: SweepCodes, _: &mut Self::Context) -> Self::Result {
        self.codes.remove_where(|record| record.expires_at + REPLAY_MEMORY <= message.now)
    }
}
