//! The Tokens actor: owns access tokens, keyed by the SHA-256 of the token, and the grants they belong to.
//!
//! A grant is what one consented authorization produced. Every token names its
//! grant, and validation checks the grant too, so revoking a grant is a single
//! write that takes effect for all of its tokens at once.

use actix::{Actor, Handler, Message, SyncContext};
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::codec::Record;
use crate::secret::{Digest32, Secret, TOKEN_BYTES};
use crate::store::{Change, Store, StoreError, Table};

/// How long a revoked grant with no tokens is remembered, so a late token issue for it still fails, in seconds.
const REVOKED_GRANT_MEMORY: u64 = 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TokenKind {
    Access,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    pub kind: TokenKind,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    /// The resource (RFC 8707) the token is valid for.
    pub resource: String,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub revoked: bool,
}

impl Record for TokenRecord {
    const KIND: &'static str = "token";
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantRecord {
    pub client_id: String,
    pub user_id: String,
    pub revoked: bool,
    /// The latest expiry of any token issued under the grant; the sweeper removes the grant after it.
    pub expires_at: UnixTime,
}

impl Record for GrantRecord {
    const KIND: &'static str = "grant";
    const VERSION: u16 = 1;
}

pub struct Tokens {
    store: Store,
    tokens: Table<TokenRecord>,
    grants: Table<GrantRecord>,
}

impl Tokens {
    pub fn new(store: Store) -> Result<Tokens, StoreError> {
        Ok(Tokens { tokens: store.table("tokens")?, grants: store.table("grants")?, store })
    }

    fn grant_is_revoked(&self, grant_id: &str) -> Result<bool, StoreError> {
        Ok(self.grants.get(grant_id.as_bytes())?.is_none_or(|grant| grant.revoked))
    }
}

impl Actor for Tokens {
    type Context = SyncContext<Self>;
}

/// Issues an access token under a grant, creating the grant on first use.
#[derive(Debug, Message)]
#[rtype(result = "Result<Issue, StoreError>")]
pub struct IssueAccessToken {
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub resource: String,
    /// Lifetime in seconds.
    pub ttl: u64,
    pub now: UnixTime,
}

#[derive(Debug)]
pub enum Issue {
    Issued { token: Secret, expires_at: UnixTime },
    /// The grant was revoked (a replayed code, say) before this token could be issued.
    GrantRevoked,
}

impl Handler<IssueAccessToken> for Tokens {
    type Result = Result<Issue, StoreError>;

    fn handle(&mut self, message: IssueAccessToken, _: &mut Self::Context) -> Self::Result {
        let expires_at = message.now + message.ttl;
        let grant_live = self.grants.modify(message.grant_id.as_bytes(), |current| match current {
            Some(grant) if grant.revoked => (Change::Keep, false),
            Some(grant) => {
                let expires_at = grant.expires_at.max(expires_at);
                (Change::Put(GrantRecord { expires_at, ..grant }), true)
            }
            None => {
                let grant = GrantRecord {
                    client_id: message.client_id.clone(),
                    user_id: message.user_id.clone(),
                    revoked: false,
                    expires_at,
                };
                (Change::Put(grant), true)
            }
        })?;
        if !grant_live {
            return Ok(Issue::GrantRevoked);
        }

        let token = Secret::generate(TOKEN_BYTES);
        let record = TokenRecord {
            kind: TokenKind::Access,
            grant_id: message.grant_id,
            client_id: message.client_id,
            user_id: message.user_id,
            scopes: message.scopes,
            resource: message.resource,
            issued_at: message.now,
            expires_at,
            revoked: false,
        };
        self.tokens.put(token.digest().as_bytes(), &record)?;
        self.store.commit()?;

        tracing::info!(target: "ucca::security", client_id = %record.client_id, user_id = %record.user_id, grant_id = %record.grant_id, "access token issued");
        Ok(Issue::Issued { token, expires_at })
    }
}

/// Looks up a presented token and reports whether it is active now.
#[derive(Debug, Message)]
#[rtype(result = "Result<TokenStatus, StoreError>")]
pub struct ValidateToken {
    pub token: Digest32,
    pub now: UnixTime,
}

#[derive(Debug, Clone)]
pub enum TokenStatus {
    Active(TokenRecord),
    Inactive(InactiveReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InactiveReason {
    Unknown,
    Expired,
    Revoked,
}

impl Handler<ValidateToken> for Tokens {
    type Result = Result<TokenStatus, StoreError>;

    fn handle(&mut self, message: ValidateToken, _: &mut Self::Context) -> Self::Result {
        let Some(record) = self.tokens.get(message.token.as_bytes())? else {
            return Ok(TokenStatus::Inactive(InactiveReason::Unknown));
        };
        if record.revoked || self.grant_is_revoked(&record.grant_id)? {
            return Ok(TokenStatus::Inactive(InactiveReason::Revoked));
        }
        if message.now >= record.expires_at {
            return Ok(TokenStatus::Inactive(InactiveReason::Expired));
        }
        Ok(TokenStatus::Active(record))
    }
}

/// Revokes one token on behalf of the client it was issued to (RFC 7009).
#[derive(Debug, Message)]
#[rtype(result = "Result<Revocation, StoreError>")]
pub struct RevokeToken {
    pub token: Digest32,
    pub client_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Revoked,
    /// Unknown, expired or already revoked: nothing to do, and RFC 7009 answers success.
    NothingToRevoke,
    /// The token belongs to another client; it stays as it was.
    NotOwner,
}

impl Handler<RevokeToken> for Tokens {
    type Result = Result<Revocation, StoreError>;

    fn handle(&mut self, message: RevokeToken, _: &mut Self::Context) -> Self::Result {
        let outcome = self.tokens.modify(message.token.as_bytes(), |current| match current {
            None => (Change::Keep, Revocation::NothingToRevoke),
            Some(record) if record.client_id != message.client_id => (Change::Keep, Revocation::NotOwner),
            Some(record) if record.revoked => (Change::Keep, Revocation::NothingToRevoke),
            Some(record) => (Change::Put(TokenRecord { revoked: true, ..record }), Revocation::Revoked),
        })?;
        if outcome == Revocation::Revoked {
            self.store.commit()?;
            tracing::info!(target: "ucca::security", client_id = %message.client_id, token = %message.token.label(), "token revoked");
        }
        Ok(outcome)
    }
}

/// Revokes a grant and so every token issued under it, present or future.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct RevokeGrant {
    pub grant_id: String,
    pub now: UnixTime,
}

impl Handler<RevokeGrant> for Tokens {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, message: RevokeGrant, _: &mut Self::Context) -> Self::Result {
        self.grants.modify(message.grant_id.as_bytes(), |current| {
            let grant = match current {
                Some(grant) => GrantRecord { revoked: true, ..grant },
                // The replay arrived before the first token was issued: remember the revocation so that issue fails.
                None => GrantRecord {
                    client_id: String::new(),
                    user_id: String::new(),
                    revoked: true,
                    expires_at: message.now + REVOKED_GRANT_MEMORY,
                },
            };
            (Change::Put(grant), ())
        })?;
        self.store.commit()?;
        tracing::warn!(target: "ucca::security", grant_id = %message.grant_id, "grant revoked");
        Ok(())
    }
}

/// Revokes every token of a client, as when the client is deactivated; returns how many.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct RevokeClientTokens {
    pub client_id: String,
}

impl Handler<RevokeClientTokens> for Tokens {
    type Result = Result<usize, StoreError>;

    fn handle(&mut self, message: RevokeClientTokens, _: &mut Self::Context) -> Self::Result {
        let mut revoked = 0;
        // NOTE: a full scan; fine while deactivation is rare and the sweeper keeps the tree to live tokens.
        let keys: Vec<Vec<u8>> = self
            .tokens
            .entries()
            .filter_map(|entry| match entry {
                Ok((key, record)) if record.client_id == message.client_id && !record.revoked => Some(Ok(key)),
                Ok(_) => None,
                Err(error) => Some(Err(error)),
            })
            .collect::<Result<_, _>>()?;
        for key in keys {
            revoked += self.tokens.modify(&key, |current| match current {
                Some(record) if !record.revoked => (Change::Put(TokenRecord { revoked: true, ..record }), 1),
                _ => (Change::Keep, 0),
            })?;
        }
        self.store.commit()?;
        Ok(revoked)
    }
}

/// Deletes expired tokens and grants; returns how many records went.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct SweepTokens {
    pub now: UnixTime,
}

impl Handler<SweepTokens> for Tokens {
    type Result = Result<usize, StoreError>;

    fn handle(&mut self, message: SweepTokens, _: &mut Self::Context) -> Self::Result {
        let tokens = self.tokens.remove_where(|record| record.expires_at <= message.now)?;
        let grants = self.grants.remove_where(|grant| grant.expires_at <= message.now)?;
        Ok(tokens + grants)
    }
}
