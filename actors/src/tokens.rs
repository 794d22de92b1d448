//! The Tokens actor: owns access and refresh tokens, keyed by the SHA-256 of
//! the token, and the grants they belong to.
//!
//! A grant is what one consented authorization produced. Every token names its
//! grant, and validation checks the grant too, so revoking a grant is a single
//! write that takes effect for all of its tokens at once.
//!
//! Refresh tokens rotate. Each use issues a successor and records it on the
//! used token, replacing (and revoking) any successor issued from it earlier,
//! so at most one successor is live. The used token keeps working until its
//! successor is first used, which covers a lost response; presenting it after
//! that is treated as theft and revokes the grant. Both decisions are
//! compare-and-swap updates of the used token's record, so they hold under
//! concurrent use.

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
    Refresh,
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
    /// Refresh tokens: the refresh token this one was issued in exchange for.
    pub parent: Option<Digest32>,
    /// Refresh tokens: the latest refresh token issued in exchange for this one.
    pub successor: Option<Digest32>,
    /// Refresh tokens: whether `successor` has been used; after that, presenting this token revokes the grant.
    pub successor_used: bool,
    /// Refresh tokens: the access token issued together with this one, revoked with it when a later refresh replaces it.
    pub paired_access: Option<Digest32>,
}

impl Record for TokenRecord {
    const KIND: &'static str = "token";
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantRecord {
    pub client_id: String,
    pub user_id: String,
    /// The scopes consented to; a refresh may ask for these or fewer.
    pub scopes: Vec<String>,
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
}

impl Actor for Tokens {
    type Context = SyncContext<Self>;
}

/// Issues an access token and a refresh token under a grant, creating the grant on first use.
#[derive(Debug, Message)]
#[rtype(result = "Result<Issue, StoreError>")]
pub struct IssueTokens {
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub resource: String,
    /// Access token lifetime in seconds.
    pub access_ttl: u64,
    /// Refresh token lifetime in seconds.
    pub refresh_ttl: u64,
    pub now: UnixTime,
}

#[derive(Debug)]
pub enum Issue {
    Issued { access_token: Secret, refresh_token: Secret },
    /// The grant was revoked (a replayed code, say) before these tokens could be issued.
    GrantRevoked,
}

/// The claims a new pair of tokens carries.
struct TokenClaims {
    grant_id: String,
    client_id: String,
    user_id: String,
    /// The access token's scopes: the grant's, or fewer after a narrowing refresh.
    scopes: Vec<String>,
    /// The refresh token's scopes, always the grant's (RFC 6749 section 6).
    grant_scopes: Vec<String>,
    resource: String,
}

impl Tokens {
    /// Extends the grant to cover tokens that live until `expires_at`; false if the grant is revoked.
    fn extend_grant(&self, claims: &TokenClaims, expires_at: UnixTime) -> Result<bool, StoreError> {
        self.grants.modify(claims.grant_id.as_bytes(), |current| match current {
            Some(grant) if grant.revoked => (Change::Keep, false),
            Some(grant) => {
                let expires_at = grant.expires_at.max(expires_at);
                (Change::Put(GrantRecord { expires_at, ..grant }), true)
            }
            None => {
                let grant = GrantRecord {
                    client_id: claims.client_id.clone(),
                    user_id: claims.user_id.clone(),
                    scopes: claims.grant_scopes.clone(),
                    revoked: false,
                    expires_at,
                };
                (Change::Put(grant), true)
            }
        })
    }

    /// Stores a new access token and a new refresh token; the caller commits.
    fn store_pair(
        &self,
        claims: &TokenClaims,
        parent: Option<Digest32>,
        access_ttl: u64,
        refresh_ttl: u64,
        now: UnixTime,
    ) -> Result<(Secret, Secret), StoreError> {
        let access_token = Secret::generate(TOKEN_BYTES);
        let refresh_token = Secret::generate(TOKEN_BYTES);
        let record = |kind, ttl, parent, paired_access| TokenRecord {
            kind,
            grant_id: claims.grant_id.clone(),
            client_id: claims.client_id.clone(),
            user_id: claims.user_id.clone(),
            scopes: if kind == TokenKind::Refresh { claims.grant_scopes.clone() } else { claims.scopes.clone() },
            resource: claims.resource.clone(),
            issued_at: now,
            expires_at: now + ttl,
            revoked: false,
            parent,
            successor: None,
            successor_used: false,
            paired_access,
        };
        self.tokens.put(access_token.digest().as_bytes(), &record(TokenKind::Access, access_ttl, None, None))?;
        let paired = Some(access_token.digest());
        self.tokens.put(refresh_token.digest().as_bytes(), &record(TokenKind::Refresh, refresh_ttl, parent, paired))?;
        Ok((access_token, refresh_token))
    }

    /// Revokes every grant that `selected` picks and commits; returns how many.
    fn revoke_grants_where(&self, selected: impl Fn(&GrantRecord) -> bool) -> Result<usize, StoreError> {
        // NOTE: a full scan of grants; they are few per server and the sweeper removes expired ones.
        let keys: Vec<Vec<u8>> = self
            .grants
            .entries()
            .filter_map(|entry| match entry {
                Ok((key, grant)) if selected(&grant) => Some(Ok(key)),
                Ok(_) => None,
                Err(error) => Some(Err(error)),
            })
            .collect::<Result<_, _>>()?;
        let mut revoked = 0;
        for key in keys {
            revoked += self.grants.modify(&key, |current| match current {
                Some(grant) if !grant.revoked => (Change::Put(GrantRecord { revoked: true, ..grant }), 1),
                _ => (Change::Keep, 0),
            })?;
        }
        if revoked > 0 {
            self.store.commit()?;
        }
        Ok(revoked)
    }

    fn revoke_grant(&self, grant_id: &str, now: UnixTime) -> Result<(), StoreError> {
        self.grants.modify(grant_id.as_bytes(), |current| {
            let grant = match current {
                Some(grant) => GrantRecord { revoked: true, ..grant },
                // The replay arrived before the first token was issued: remember the revocation so that issue fails.
                None => GrantRecord {
                    client_id: String::new(),
                    user_id: String::new(),
                    scopes: Vec::new(),
                    revoked: true,
                    expires_at: now + REVOKED_GRANT_MEMORY,
                },
            };
            (Change::Put(grant), ())
        })
    }
}

impl Handler<IssueTokens> for Tokens {
    type Result = Result<Issue, StoreError>;

    fn handle(&mut self, message: IssueTokens, _: &mut Self::Context) -> Self::Result {
        let claims = TokenClaims {
            grant_id: message.grant_id,
            client_id: message.client_id,
            user_id: message.user_id,
            grant_scopes: message.scopes.clone(),
            scopes: message.scopes,
            resource: message.resource,
        };
        let longest = message.now + message.access_ttl.max(message.refresh_ttl);
        if !self.extend_grant(&claims, longest)? {
            return Ok(Issue::GrantRevoked);
        }

        let (access_token, refresh_token) =
            self.store_pair(&claims, None, message.access_ttl, message.refresh_ttl, message.now)?;
        self.store.commit()?;

        tracing::info!(target: "ucca::security", client_id = %claims.client_id, user_id = %claims.user_id, grant_id = %claims.grant_id, "tokens issued");
        Ok(Issue::Issued { access_token, refresh_token })
    }
}

/// Exchanges a refresh token for a new access token and a new refresh token (RFC 6749 section 6).
#[derive(Debug, Message)]
#[rtype(result = "Result<Refresh, StoreError>")]
pub struct RefreshTokens {
    pub token: Digest32,
    pub client_id: String,
    /// A narrower scope set the client asks for; `None` keeps the original scopes.
    pub scopes: Option<Vec<String>>,
    /// The resource the client names; it must be the grant's own (RFC 8707 section 2.2).
    pub resource: Option<String>,
    pub access_ttl: u64,
    pub refresh_ttl: u64,
    pub now: UnixTime,
}

#[derive(Debug)]
pub enum Refresh {
    Refreshed { access_token: Secret, refresh_token: Secret, scopes: Vec<String> },
    /// The token cannot be used; the text says why, for the error description. Nothing changed.
    Refused(&'static str),
    /// The request asks for scopes beyond the original grant (RFC 6749 section 6).
    ScopeExceeded,
    /// The request names a resource other than the grant's.
    WrongResource,
    /// A used token was presented again after its successor was used; the grant is now revoked.
    ReuseDetected,
}

/// How claiming a successor turned out.
enum Claim {
    Live,
    Superseded,
}

impl Handler<RefreshTokens> for Tokens {
    type Result = Result<Refresh, StoreError>;

    fn handle(&mut self, message: RefreshTokens, _: &mut Self::Context) -> Self::Result {
        let now = message.now;
        let Some(record) = self.tokens.get(message.token.as_bytes())? else {
            return Ok(Refresh::Refused("the refresh token is not valid"));
        };
        if record.kind != TokenKind::Refresh {
            return Ok(Refresh::Refused("the token is not a refresh token"));
        }
        if record.client_id != message.client_id {
            return Ok(Refresh::Refused("the refresh token was issued to another client"));
        }
        let grant = self.grants.get(record.grant_id.as_bytes())?;
        let Some(grant) = grant.filter(|grant| !record.revoked && !grant.revoked) else {
            return Ok(Refresh::Refused("the refresh token was revoked"));
        };
        if now >= record.expires_at {
            return Ok(Refresh::Refused("the refresh token expired"));
        }
        if message.resource.as_ref().is_some_and(|resource| *resource != record.resource) {
            return Ok(Refresh::WrongResource);
        }
        // RFC 6749 section 6: a refresh may ask for any part of what the grant allowed,
        // even after narrowing, and one that names no scope gets the whole grant.
        let scopes = match message.scopes {
            Some(requested) if requested.iter().any(|scope| !grant.scopes.contains(scope)) => {
                return Ok(Refresh::ScopeExceeded);
            }
            Some(requested) => requested,
            None => grant.scopes.clone(),
        };

        // First use of this token: mark it as its parent's live successor, unless a later refresh replaced it.
        if let Some(parent) = record.parent {
            let claim = self.tokens.modify(parent.as_bytes(), |current| match current {
                // The parent expired and was swept; nothing is left to contradict this token.
                None => (Change::Keep, Claim::Live),
                Some(parent) if parent.successor != Some(message.token) => (Change::Keep, Claim::Superseded),
                Some(parent) if parent.successor_used => (Change::Keep, Claim::Live),
                Some(parent) => (Change::Put(TokenRecord { successor_used: true, ..parent }), Claim::Live),
            })?;
            if let Claim::Superseded = claim {
                return Ok(Refresh::Refused("the refresh token was replaced by a later refresh"));
            }
        }

        let claims = TokenClaims {
            grant_id: record.grant_id.clone(),
            client_id: record.client_id.clone(),
            user_id: record.user_id.clone(),
            scopes: scopes.clone(),
            grant_scopes: grant.scopes.clone(),
            resource: record.resource.clone(),
        };
        if !self.extend_grant(&claims, now + message.access_ttl.max(message.refresh_ttl))? {
            return Ok(Refresh::Refused("the refresh token was revoked"));
        }
        let (access_token, refresh_token) =
            self.store_pair(&claims, Some(message.token), message.access_ttl, message.refresh_ttl, now)?;
        let successor = refresh_token.digest();

        // Link the successor, replacing an earlier one; a token whose successor was already used is being replayed.
        let linked = self.tokens.modify(message.token.as_bytes(), |current| match current {
            Some(current) if current.successor_used => (Change::Keep, Err(())),
            Some(current) => {
                let replaced = current.successor;
                (Change::Put(TokenRecord { successor: Some(successor), ..current }), Ok(replaced))
            }
            None => (Change::Keep, Err(())),
        })?;
        let replaced = match linked {
            Ok(replaced) => replaced,
            Err(()) => {
                self.revoke_grant(&record.grant_id, now)?;
                self.store.commit()?;
                tracing::warn!(target: "ucca::security", client_id = %record.client_id, grant_id = %record.grant_id, "refresh token reused after rotation; grant revoked");
                return Ok(Refresh::ReuseDetected);
            }
        };
        if let Some(replaced) = replaced {
            // The replaced successor went to a response that was lost or superseded; its access token goes with it.
            let paired = self.tokens.modify(replaced.as_bytes(), |current| match current {
                Some(current) => {
                    let paired = current.paired_access;
                    (Change::Put(TokenRecord { revoked: true, ..current }), paired)
                }
                None => (Change::Keep, None),
            })?;
            if let Some(paired) = paired {
                self.tokens.modify(paired.as_bytes(), |current| match current {
                    Some(current) => (Change::Put(TokenRecord { revoked: true, ..current }), ()),
                    None => (Change::Keep, ()),
                })?;
            }
        }
        self.store.commit()?;

        tracing::info!(target: "ucca::security", client_id = %record.client_id, grant_id = %record.grant_id, "refresh token rotated");
        Ok(Refresh::Refreshed { access_token, refresh_token, scopes })
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
        token_status(&self.tokens, &self.grants, &message.token, message.now)
    }
}

/// Reads a token and its grant and decides whether the token is active at `now`.
///
/// Only reads, so the Quotas actor can run it too: its combined check
/// ([`crate::quotas::ConsumeForToken`]) validates a token and counts the call
/// in one round trip. Tokens stays the only writer of both tables.
pub fn token_status(
    tokens: &Table<TokenRecord>,
    grants: &Table<GrantRecord>,
    token: &Digest32,
    now: UnixTime,
) -> Result<TokenStatus, StoreError> {
    let Some(record) = tokens.get(token.as_bytes())? else {
        return Ok(TokenStatus::Inactive(InactiveReason::Unknown));
    };
    let grant_revoked = grants.get(record.grant_id.as_bytes())?.is_none_or(|grant| grant.revoked);
    if record.revoked || grant_revoked {
        return Ok(TokenStatus::Inactive(InactiveReason::Revoked));
    }
    if now >= record.expires_at {
        return Ok(TokenStatus::Inactive(InactiveReason::Expired));
    }
    Ok(TokenStatus::Active(record))
}

/// Revokes one token on behalf of the client it was issued to (RFC 7009).
#[derive(Debug, Message)]
#[rtype(result = "Result<Revocation, StoreError>")]
pub struct RevokeToken {
    pub token: Digest32,
    pub client_id: String,
    pub now: UnixTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Revoked,
    /// Unknown, expired or already revoked: nothing to do, and RFC 7009 returns success.
    NothingToRevoke,
    /// The token belongs to another client; it stays as it was.
    NotOwner,
}

impl Handler<RevokeToken> for Tokens {
    type Result = Result<Revocation, StoreError>;

    fn handle(&mut self, message: RevokeToken, _: &mut Self::Context) -> Self::Result {
        let outcome = self.tokens.modify(message.token.as_bytes(), |current| match current {
            None => (Change::Keep, (Revocation::NothingToRevoke, None)),
            Some(record) if record.client_id != message.client_id => (Change::Keep, (Revocation::NotOwner, None)),
            Some(record) if record.revoked => (Change::Keep, (Revocation::NothingToRevoke, None)),
            Some(record) => {
                // Revoking a refresh token ends the whole grant (RFC 7009 section 2.1).
                let grant = (record.kind == TokenKind::Refresh).then(|| record.grant_id.clone());
                (Change::Put(TokenRecord { revoked: true, ..record }), (Revocation::Revoked, grant))
            }
        })?;
        let (outcome, grant) = outcome;
        if let Some(grant_id) = grant {
            self.revoke_grant(&grant_id, message.now)?;
        }
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
        self.revoke_grant(&message.grant_id, message.now)?;
        self.store.commit()?;
        tracing::warn!(target: "ucca::security", grant_id = %message.grant_id, "grant revoked");
        Ok(())
    }
}

/// Revokes every grant a user gave, or only those given to one client; returns how many.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct RevokeUserGrants {
    pub user_id: String,
    pub client_id: Option<String>,
}

impl Handler<RevokeUserGrants> for Tokens {
    type Result = Result<usize, StoreError>;

    fn handle(&mut self, message: RevokeUserGrants, _: &mut Self::Context) -> Self::Result {
        let matches = |grant: &GrantRecord| {
            !grant.revoked
                && grant.user_id == message.user_id
                && message.client_id.as_ref().is_none_or(|client_id| *client_id == grant.client_id)
        };
        let revoked = self.revoke_grants_where(matches)?;
        if revoked > 0 {
            tracing::info!(target: "ucca::security", user_id = %message.user_id, revoked, "user grants revoked");
        }
        Ok(revoked)
    }
}

/// Revokes a user's grants that carry a scope outside `held`, as when an entitlement ends; returns how many.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct RevokeGrantsBeyond {
    pub user_id: String,
    /// Every scope the user still holds, implied scopes included.
    pub held: std::collections::BTreeSet<String>,
}

impl Handler<RevokeGrantsBeyond> for Tokens {
    type Result = Result<usize, StoreError>;

    fn handle(&mut self, message: RevokeGrantsBeyond, _: &mut Self::Context) -> Self::Result {
        let beyond = |grant: &GrantRecord| {
            !grant.revoked && grant.user_id == message.user_id && grant.scopes.iter().any(|scope| !message.held.contains(scope))
        };
        let revoked = self.revoke_grants_where(beyond)?;
        if revoked > 0 {
            tracing::info!(target: "ucca::security", user_id = %message.user_id, revoked, "grants revoked: scopes no longer held");
        }
        Ok(revoked)
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
