//! The Accounts actor: owns users, the email index, magic links, sessions,
//! entitlements (the scopes a user holds) and consents (what a user approved for a client).
//!
//! A person is a user with an opaque id; the email is only an attribute and an
//! index entry. The first magic link confirmed for an address creates the user.

use std::net::IpAddr;

use actix::{Actor, Handler, Message, SyncContext};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::clock::UnixTime;
use crate::codec::Record;
use crate::phone::{PhoneBook, PhoneConfig};
use crate::ratelimit::{self, Admission, Limit, LimitWindow};
use crate::secret::{random_id, Digest32, Secret, SECRET_BYTES};
use crate::store::{Change, Store, StoreError, Table};

/// Lifetimes of sign-in artefacts, in seconds, and the abuse limits on sign-in and phone verification.
#[derive(Debug, Clone)]
pub struct AccountsConfig {
    pub link_ttl: u64,
    pub session_idle_ttl: u64,
    pub session_absolute_ttl: u64,
    pub link_limits: LinkLimits,
    pub phone: PhoneConfig,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            link_ttl: 15 * 60,
            session_idle_ttl: 14 * 86_400,
            session_absolute_ttl: 30 * 86_400,
            link_limits: LinkLimits::default(),
            phone: PhoneConfig::default(),
        }
    }
}

/// Limits on sign-in link requests, so the server cannot be used to flood a mailbox.
#[derive(Debug, Clone, Copy)]
pub struct LinkLimits {
    /// Links mailed to one address.
    pub per_address: Limit,
    /// Links requested from one IP address, for any addresses.
    pub per_ip: Limit,
}

impl Default for LinkLimits {
    fn default() -> Self {
        // Five links an hour covers a person who mistypes or loses a few; thirty per IP leaves room for a shared office address.
        LinkLimits { per_address: Limit::per_hour(5), per_ip: Limit::per_hour(30) }
    }
}

/// How stale a session's last-seen time may get before a request refreshes it, in seconds.
/// Refreshing on every request would turn each page view into a write.
const LAST_SEEN_GRANULARITY: u64 = 300;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub user_id: String,
    pub email: String,
    pub created_at: UnixTime,
}

impl Record for UserRecord {
    const KIND: &'static str = "user";
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EmailIndex {
    user_id: String,
}

impl Record for EmailIndex {
    const KIND: &'static str = "email index";
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkRecord {
    pub email: String,
    /// Same-origin path to return to after sign-in, already checked by the caller.
    pub return_to: Option<String>,
    pub expires_at: UnixTime,
    pub consumed: bool,
}

impl Record for LinkRecord {
    const KIND: &'static str = "magic link";
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user_id: String,
    pub created_at: UnixTime,
    pub last_seen: UnixTime,
}

impl Record for SessionRecord {
    const KIND: &'static str = "session";
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntitlementRecord {
    pub scopes: Vec<String>,
    pub updated_at: UnixTime,
}

impl Record for EntitlementRecord {
    const KIND: &'static str = "entitlement";
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub scopes: Vec<String>,
    pub granted_at: UnixTime,
}

impl Record for ConsentRecord {
    const KIND: &'static str = "consent";
    const VERSION: u16 = 1;
}

/// Consents are keyed by user and client; both ids are hex, so '/' cannot occur inside either.
fn consent_key(user_id: &str, client_id: &str) -> Vec<u8> {
    format!("{user_id}/{client_id}").into_bytes()
}

pub struct Accounts {
    store: Store,
    config: AccountsConfig,
    users: Table<UserRecord>,
    emails: Table<EmailIndex>,
    links: Table<LinkRecord>,
    sessions: Table<SessionRecord>,
    entitlements: Table<EntitlementRecord>,
    consents: Table<ConsentRecord>,
    link_browsers: Table<LinkBinding>,
    session_index: Table<SessionIndexEntry>,
    link_limits: Table<LimitWindow>,
    phone_book: PhoneBook,
}

impl Accounts {
    pub fn new(store: Store, config: AccountsConfig) -> Result<Accounts, StoreError> {
        Ok(Accounts {
            users: store.table("users")?,
            emails: store.table("emails")?,
            links: store.table("links")?,
            sessions: store.table("sessions")?,
            entitlements: store.table("entitlements")?,
            consents: store.table("consents")?,
            link_browsers: store.table("link_browsers")?,
            session_index: store.table("session_index")?,
            link_limits: store.table("link_limits")?,
            phone_book: PhoneBook::new(store.clone(), config.phone.clone())?,
            config,
            store,
        })
    }

    /// The phone trees, for the phone verification handlers in [`crate::phone`].
    pub(crate) fn phone_book(&self) -> &PhoneBook {
        &self.phone_book
    }

    fn session_expired(&self, session: &SessionRecord, now: UnixTime) -> bool {
        now >= session.created_at + self.config.session_absolute_ttl
            || now >= session.last_seen + self.config.session_idle_ttl
    }

    /// Finds the user for an address, creating one if none exists; the email index insert decides races.
    fn find_or_create_user(&self, email: &str, now: UnixTime) -> Result<UserRecord, StoreError> {
        loop {
            if let Some(index) = self.emails.get(email.as_bytes())? {
                if let Some(user) = self.users.get(index.user_id.as_bytes())? {
                    return Ok(user);
                }
            }

            let user = UserRecord { user_id: random_id(16), email: email.to_string(), created_at: now };
            self.users.put(user.user_id.as_bytes(), &user)?;
            if self.emails.insert_new(email.as_bytes(), &EmailIndex { user_id: user.user_id.clone() })? {
                tracing::info!(target: "ucca::security", user_id = %user.user_id, "user created");
                return Ok(user);
            }
            // Another sign-in for the same address won the index; drop ours and use theirs.
            self.users.remove(user.user_id.as_bytes())?;
        }
    }
}

impl Actor for Accounts {
    type Context = SyncContext<Self>;
}

/// Creates a single-use sign-in link for an address that the caller has normalised.
#[derive(Debug, Message)]
#[rtype(result = "Result<Secret, StoreError>")]
pub struct RequestLink {
    pub email: String,
    pub return_to: Option<String>,
    pub now: UnixTime,
}

impl Handler<RequestLink> for Accounts {
    type Result = Result<Secret, StoreError>;

    fn handle(&mut self, message: RequestLink, _: &mut Self::Context) -> Self::Result {
        let token = Secret::generate(SECRET_BYTES);
        let record = LinkRecord {
            email: message.email,
            return_to: message.return_to,
            expires_at: message.now + self.config.link_ttl,
            consumed: false,
        };
        self.links.put(token.digest().as_bytes(), &record)?;
        self.store.commit()?;
        Ok(token)
    }
}

/// Reports whether a link could still be consumed, without consuming it.
#[derive(Debug, Message)]
#[rtype(result = "Result<LinkState, StoreError>")]
pub struct InspectLink {
    pub link: Digest32,
    pub now: UnixTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Usable,
    Expired,
    AlreadyUsed,
    Unknown,
}

fn link_state(record: Option<&LinkRecord>, now: UnixTime) -> LinkState {
    match record {
        None => LinkState::Unknown,
        Some(link) if link.consumed => LinkState::AlreadyUsed,
        Some(link) if now >= link.expires_at => LinkState::Expired,
        Some(_) => LinkState::Usable,
    }
}

impl Handler<InspectLink> for Accounts {
    type Result = Result<LinkState, StoreError>;

    fn handle(&mut self, message: InspectLink, _: &mut Self::Context) -> Self::Result {
        Ok(link_state(self.links.get(message.link.as_bytes())?.as_ref(), message.now))
    }
}

/// Consumes a link and, if it was usable, signs its owner in with a new session.
#[derive(Debug, Message)]
#[rtype(result = "Result<SignIn, StoreError>")]
pub struct ConsumeLink {
    pub link: Digest32,
    pub now: UnixTime,
}

#[derive(Debug)]
pub enum SignIn {
    SignedIn { session: Secret, user: UserRecord, return_to: Option<String> },
    Refused(LinkState),
}

impl Handler<ConsumeLink> for Accounts {
    type Result = Result<SignIn, StoreError>;

    fn handle(&mut self, message: ConsumeLink, _: &mut Self::Context) -> Self::Result {
        let consumed = self.links.modify(message.link.as_bytes(), |current| {
            match link_state(current.as_ref(), message.now) {
                LinkState::Usable => {
                    let link = current.map(|link| LinkRecord { consumed: true, ..link });
                    let outcome = link.clone().ok_or(LinkState::Unknown);
                    (link.map_or(Change::Keep, Change::Put), outcome)
                }
                refused => (Change::Keep, Err(refused)),
            }
        })?;
        let link = match consumed {
            Ok(link) => link,
            Err(state) => return Ok(SignIn::Refused(state)),
        };

        let user = self.find_or_create_user(&link.email, message.now)?;
        let session = Secret::generate(SECRET_BYTES);
        let record = SessionRecord { user_id: user.user_id.clone(), created_at: message.now, last_seen: message.now };
        self.sessions.put(session.digest().as_bytes(), &record)?;
        self.store.commit()?;

        tracing::info!(target: "ucca::security", user_id = %user.user_id, "signed in by magic link");
        Ok(SignIn::SignedIn { session, user, return_to: link.return_to })
    }
}

/// Resolves a session cookie to its user, refreshing the idle timer.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<UserRecord>, StoreError>")]
pub struct ResolveSession {
    pub session: Digest32,
    pub now: UnixTime,
}

impl Handler<ResolveSession> for Accounts {
    type Result = Result<Option<UserRecord>, StoreError>;

    fn handle(&mut self, message: ResolveSession, _: &mut Self::Context) -> Self::Result {
        let key = message.session.as_bytes();
        let Some(session) = self.sessions.get(key)? else { return Ok(None) };
        if self.session_expired(&session, message.now) {
            return Ok(None);
        }

        if message.now >= session.last_seen + LAST_SEEN_GRANULARITY {
            // Not committed on purpose: losing a last-seen update to a crash only shortens the idle window.
            self.sessions.modify(key, |current| match current {
                Some(current) => (Change::Put(SessionRecord { last_seen: message.now, ..current }), ()),
                None => (Change::Keep, ()),
            })?;
        }
        self.users.get(session.user_id.as_bytes())
    }
}

/// Ends a session (sign-out).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct EndSession {
    pub session: Digest32,
}

impl Handler<EndSession> for Accounts {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, message: EndSession, _: &mut Self::Context) -> Self::Result {
        self.sessions.remove(message.session.as_bytes())?;
        self.store.commit()
    }
}

/// Deletes expired links and sessions; returns how many records went.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct SweepAccounts {
    pub now: UnixTime,
}

impl Handler<SweepAccounts> for Accounts {
    type Result = Result<usize, StoreError>;

    fn handle(&mut self, message: SweepAccounts, _: &mut Self::Context) -> Self::Result {
        let links = self.links.remove_where(|link| link.expires_at <= message.now)?;
        let sessions = self.sessions.remove_where(|session| self.session_expired(session, message.now))?;
        Ok(links + sessions)
    }
}

/// Replaces the scopes a user holds, creating the user if the address is new.
#[derive(Debug, Message)]
#[rtype(result = "Result<UserRecord, StoreError>")]
pub struct SetEntitlements {
    pub email: String,
    pub scopes: Vec<String>,
    pub now: UnixTime,
}

impl Handler<SetEntitlements> for Accounts {
    type Result = Result<UserRecord, StoreError>;

    fn handle(&mut self, message: SetEntitlements, _: &mut Self::Context) -> Self::Result {
        let user = self.find_or_create_user(&message.email, message.now)?;
        let record = EntitlementRecord { scopes: message.scopes, updated_at: message.now };
        self.entitlements.put(user.user_id.as_bytes(), &record)?;
        self.store.commit()?;
        tracing::info!(target: "ucca::security", user_id = %user.user_id, scopes = %record.scopes.join(" "), "entitlements set");
        Ok(user)
    }
}

/// Fetches a user by id.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<UserRecord>, StoreError>")]
pub struct GetUser {
    pub user_id: String,
}

impl Handler<GetUser> for Accounts {
    type Result = Result<Option<UserRecord>, StoreError>;

    fn handle(&mut self, message: GetUser, _: &mut Self::Context) -> Self::Result {
        self.users.get(message.user_id.as_bytes())
    }
}

/// Finds the user for an address, creating one if none exists.
#[derive(Debug, Message)]
#[rtype(result = "Result<UserRecord, StoreError>")]
pub struct EnsureUser {
    pub email: String,
    pub now: UnixTime,
}

impl Handler<EnsureUser> for Accounts {
    type Result = Result<UserRecord, StoreError>;

    fn handle(&mut self, message: EnsureUser, _: &mut Self::Context) -> Self::Result {
        let user = self.find_or_create_user(&message.email, message.now)?;
        self.store.commit()?;
        Ok(user)
    }
}

/// The scopes a user holds through entitlements (not counting those every user holds).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<String>, StoreError>")]
pub struct GetEntitlements {
    pub user_id: String,
}

impl Handler<GetEntitlements> for Accounts {
    type Result = Result<Vec<String>, StoreError>;

    fn handle(&mut self, message: GetEntitlements, _: &mut Self::Context) -> Self::Result {
        Ok(self.entitlements.get(message.user_id.as_bytes())?.map(|record| record.scopes).unwrap_or_default())
    }
}

/// Finds a user by normalised email address.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<UserRecord>, StoreError>")]
pub struct FindUser {
    pub email: String,
}

impl Handler<FindUser> for Accounts {
    type Result = Result<Option<UserRecord>, StoreError>;

    fn handle(&mut self, message: FindUser, _: &mut Self::Context) -> Self::Result {
        let Some(index) = self.emails.get(message.email.as_bytes())? else { return Ok(None) };
        self.users.get(index.user_id.as_bytes())
    }
}

/// Remembers that a user approved `scopes` for a client, adding to what was approved before.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct RecordConsent {
    pub user_id: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub now: UnixTime,
}

impl Handler<RecordConsent> for Accounts {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, message: RecordConsent, _: &mut Self::Context) -> Self::Result {
        self.consents.modify(&consent_key(&message.user_id, &message.client_id), |current| {
            let mut scopes = current.map(|consent| consent.scopes).unwrap_or_default();
            for scope in &message.scopes {
                if !scopes.contains(scope) {
                    scopes.push(scope.clone());
                }
            }
            (Change::Put(ConsentRecord { scopes, granted_at: message.now }), ())
        })?;
        self.store.commit()
    }
}

/// The scopes a user has approved for a client, if any.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<Vec<String>>, StoreError>")]
pub struct GetConsent {
    pub user_id: String,
    pub client_id: String,
}

impl Handler<GetConsent> for Accounts {
    type Result = Result<Option<Vec<String>>, StoreError>;

    fn handle(&mut self, message: GetConsent, _: &mut Self::Context) -> Self::Result {
        Ok(self.consents.get(&consent_key(&message.user_id, &message.client_id))?.map(|consent| consent.scopes))
    }
}

/// Forgets a user's consent for a client; returns whether there was one.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct WithdrawConsent {
    pub user_id: String,
    pub client_id: String,
}

impl Handler<WithdrawConsent> for Accounts {
    type Result = Result<bool, StoreError>;

    fn handle(&mut self, message: WithdrawConsent, _: &mut Self::Context) -> Self::Result {
        let existed = self.consents.modify(&consent_key(&message.user_id, &message.client_id), |current| match current {
            Some(_) => (Change::Remove, true),
            None => (Change::Keep, false),
        })?;
        if existed {
            self.store.commit()?;
            tracing::info!(target: "ucca::security", user_id = %message.user_id, client_id = %message.client_id, "consent withdrawn");
        }
        Ok(existed)
    }
}

/// Longest email address accepted, in bytes (RFC 5321 section 4.5.3.1.3 limits a path to 256 including brackets).
pub const MAX_EMAIL_LEN: usize = 254;

/// Validates an email address and returns its canonical form, lower-cased so one person has one account.
pub fn normalize_email(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.len() > MAX_EMAIL_LEN {
        return None;
    }
    let address: lettre::Address = trimmed.parse().ok()?;
    // Addresses must reach a host with a name, not a bare label or an IP literal.
    if !address.domain().contains('.') || address.domain().starts_with('[') {
        return None;
    }
    Some(address.to_string().to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_normalisation() {
        assert_eq!(normalize_email(" Ada@Example.COM "), Some("ada@example.com".into()));
        for bad in ["", "ada", "ada@", "@example.com", "ada@localhost", "a b@example.com", "ada@[127.0.0.1]"] {
            assert_eq!(normalize_email(bad), None, "{bad:?}");
        }
        assert_eq!(normalize_email(&format!("{}@example.com", "a".repeat(250))), None);
    }
}
