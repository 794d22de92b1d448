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

/// How long a sign-in link can be used, in seconds, unless configured otherwise.
pub const LINK_TTL: u64 = 15 * 60;

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            link_ttl: LINK_TTL,
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

/// Index entry from a normalised email address to its user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmailIndex {
    pub user_id: String,
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

    /// Returns the phone trees, for the phone verification handlers in [`crate::phone`].
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

impl Accounts {
    /// Marks a usable link consumed; the compare-and-swap makes a link single use under concurrent confirms.
    fn consume_link(&self, link: &Digest32, now: UnixTime) -> Result<Result<LinkRecord, LinkState>, StoreError> {
        self.links.modify(link.as_bytes(), |current| match link_state(current.as_ref(), now) {
            LinkState::Usable => {
                let link = current.map(|link| LinkRecord { consumed: true, ..link });
                let outcome = link.clone().ok_or(LinkState::Unknown);
                (link.map_or(Change::Keep, Change::Put), outcome)
            }
            refused => (Change::Keep, Err(refused)),
        })
    }

    /// Stores a new session for `user` and its entry in the user's session index; the caller commits.
    fn start_session(&self, user: &UserRecord, device: String, now: UnixTime) -> Result<Secret, StoreError> {
        let session = Secret::generate(SECRET_BYTES);
        let record = SessionRecord { user_id: user.user_id.clone(), created_at: now, last_seen: now };
        self.sessions.put(session.digest().as_bytes(), &record)?;
        let entry = SessionIndexEntry { session: session.digest(), created_at: now, device };
        self.session_index.put(&session_index_key(&user.user_id, &session.digest()), &entry)?;
        Ok(session)
    }
}

impl Handler<ConsumeLink> for Accounts {
    type Result = Result<SignIn, StoreError>;

    fn handle(&mut self, message: ConsumeLink, _: &mut Self::Context) -> Self::Result {
        let link = match self.consume_link(&message.link, message.now)? {
            Ok(link) => link,
            Err(state) => return Ok(SignIn::Refused(state)),
        };

        let user = self.find_or_create_user(&link.email, message.now)?;
        let session = self.start_session(&user, String::new(), message.now)?;
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
        if let Some(session) = self.sessions.get(message.session.as_bytes())? {
            self.session_index.remove(&session_index_key(&session.user_id, &message.session))?;
        }
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
        let bindings = self.link_browsers.remove_where(|binding| binding.expires_at <= message.now)?;
        let sessions = self.sessions.remove_where(|session| self.session_expired(session, message.now))?;
        // An index entry outlives its session when the session expired or was ended by an older build.
        let orphans = self
            .session_index
            .remove_where(|entry| matches!(self.sessions.get(entry.session.as_bytes()), Ok(None)))?;
        let windows = ratelimit::sweep(&self.link_limits, message.now)?;
        let phone = self.phone_book.sweep(message.now)?;
        Ok(links + bindings + sessions + orphans + windows + phone)
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

/// The browser a sign-in link was requested from, as the SHA-256 of a random value in that browser's cookie.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkBinding {
    pub browser: Digest32,
    pub expires_at: UnixTime,
}

impl Record for LinkBinding {
    const KIND: &'static str = "link binding";
    const VERSION: u16 = 1;
}

/// Entry of a user's session index, which lets the account page list the user's sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionIndexEntry {
    /// Key of the session in the `sessions` tree.
    pub session: Digest32,
    pub created_at: UnixTime,
    /// The browser's User-Agent at sign-in, shortened by the caller; empty when unknown.
    pub device: String,
}

impl Record for SessionIndexEntry {
    const KIND: &'static str = "session index entry";
    const VERSION: u16 = 1;
}

/// Index keys are the user id, '/', and the hex session digest; user ids are hex, so '/' ends the prefix.
fn session_index_key(user_id: &str, session: &Digest32) -> Vec<u8> {
    format!("{user_id}/{}", hex::encode(session.0)).into_bytes()
}

/// Returns the key range `[user_id + "/", user_id + "0")`, which contains exactly the keys that start with `user_id/`.
fn user_key_range(user_id: &str) -> (Vec<u8>, Vec<u8>) {
    (format!("{user_id}/").into_bytes(), format!("{user_id}0").into_bytes())
}

/// The sign-in link limit that rejected a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkLimit {
    Address,
    Ip,
}

impl LinkLimit {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkLimit::Address => "per-address",
            LinkLimit::Ip => "per-IP",
        }
    }
}

impl Accounts {
    /// Counts a link request against the per-address limit, then the per-IP limit; returns the limit that rejected it.
    fn admit_link_request(&self, email: &str, ip: Option<IpAddr>, now: UnixTime) -> Result<Option<LinkLimit>, StoreError> {
        // Keyed by a digest, so the limit tree does not list the addresses people typed.
        let address_key = format!("address/{}", hex::encode(Sha256::digest(email.as_bytes())));
        if let Admission::Limited { .. } = ratelimit::admit(&self.link_limits, address_key.as_bytes(), self.config.link_limits.per_address, now)? {
            return Ok(Some(LinkLimit::Address));
        }
        if let Some(ip) = ip {
            let ip_key = format!("ip/{ip}");
            if let Admission::Limited { .. } = ratelimit::admit(&self.link_limits, ip_key.as_bytes(), self.config.link_limits.per_ip, now)? {
                return Ok(Some(LinkLimit::Ip));
            }
        }
        Ok(None)
    }

    /// Stores a new link for `email` bound to `browser`; the caller commits.
    fn issue_bound_link(&self, email: String, return_to: Option<String>, browser: Digest32, now: UnixTime) -> Result<Secret, StoreError> {
        let token = Secret::generate(SECRET_BYTES);
        let expires_at = now + self.config.link_ttl;
        self.links.put(token.digest().as_bytes(), &LinkRecord { email, return_to, expires_at, consumed: false })?;
        self.link_browsers.put(token.digest().as_bytes(), &LinkBinding { browser, expires_at })?;
        Ok(token)
    }

    /// Checks whether `browser` may use a link. Links without a binding, from before bindings existed, are open to any browser.
    fn browser_may_use(&self, link: &Digest32, browser: Option<&Digest32>) -> Result<bool, StoreError> {
        Ok(match self.link_browsers.get(link.as_bytes())? {
            Some(binding) => browser.is_some_and(|browser| browser.matches(&binding.browser)),
            None => true,
        })
    }
}

/// Creates a single-use sign-in link bound to the browser that asked, unless a link request limit is reached.
#[derive(Debug, Message)]
#[rtype(result = "Result<LinkRequest, StoreError>")]
pub struct RequestBoundLink {
    /// Normalised by the caller.
    pub email: String,
    /// Same-origin path, checked by the caller.
    pub return_to: Option<String>,
    pub browser: Digest32,
    /// The caller's address, for the per-IP limit; `None` skips that limit.
    pub ip: Option<IpAddr>,
    pub now: UnixTime,
}

#[derive(Debug)]
pub enum LinkRequest {
    Issued(Secret),
    /// A limit rejected the request, so no link was created.
    Limited(LinkLimit),
}

impl Handler<RequestBoundLink> for Accounts {
    type Result = Result<LinkRequest, StoreError>;

    fn handle(&mut self, message: RequestBoundLink, _: &mut Self::Context) -> Self::Result {
        if let Some(limit) = self.admit_link_request(&message.email, message.ip, message.now)? {
            tracing::info!(target: "ucca::security", limit = limit.as_str(), ip = ?message.ip, "sign-in link request rejected by a limit");
            return Ok(LinkRequest::Limited(limit));
        }
        let token = self.issue_bound_link(message.email, message.return_to, message.browser, message.now)?;
        self.store.commit()?;
        Ok(LinkRequest::Issued(token))
    }
}

/// Outcome of checking a link for one browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkCheck {
    Usable,
    /// The link is usable, but only in the browser that requested it.
    OtherBrowser,
    Unusable(LinkState),
}

/// Reports whether a browser could consume a link, without consuming it.
#[derive(Debug, Message)]
#[rtype(result = "Result<LinkCheck, StoreError>")]
pub struct InspectBoundLink {
    pub link: Digest32,
    /// Digest of the browser's binding cookie, if it sent one.
    pub browser: Option<Digest32>,
    pub now: UnixTime,
}

impl Handler<InspectBoundLink> for Accounts {
    type Result = Result<LinkCheck, StoreError>;

    fn handle(&mut self, message: InspectBoundLink, _: &mut Self::Context) -> Self::Result {
        match link_state(self.links.get(message.link.as_bytes())?.as_ref(), message.now) {
            LinkState::Usable if self.browser_may_use(&message.link, message.browser.as_ref())? => Ok(LinkCheck::Usable),
            LinkState::Usable => Ok(LinkCheck::OtherBrowser),
            other => Ok(LinkCheck::Unusable(other)),
        }
    }
}

/// Consumes a link in the browser it is bound to and signs its owner in with a new session.
#[derive(Debug, Message)]
#[rtype(result = "Result<BoundSignIn, StoreError>")]
pub struct ConsumeBoundLink {
    pub link: Digest32,
    pub browser: Option<Digest32>,
    /// The browser's User-Agent, shortened, for the session list.
    pub device: String,
    pub now: UnixTime,
}

#[derive(Debug)]
pub enum BoundSignIn {
    SignedIn { session: Secret, user: UserRecord, return_to: Option<String> },
    /// The link belongs to another browser and stays usable there.
    OtherBrowser,
    Refused(LinkState),
}

impl Handler<ConsumeBoundLink> for Accounts {
    type Result = Result<BoundSignIn, StoreError>;

    fn handle(&mut self, message: ConsumeBoundLink, _: &mut Self::Context) -> Self::Result {
        // A binding never changes once written, so checking it before the consuming compare-and-swap is race free.
        if !self.browser_may_use(&message.link, message.browser.as_ref())? {
            let state = link_state(self.links.get(message.link.as_bytes())?.as_ref(), message.now);
            if state == LinkState::Usable {
                tracing::info!(target: "ucca::security", link = %message.link.label(), "sign-in link rejected in another browser");
                return Ok(BoundSignIn::OtherBrowser);
            }
            return Ok(BoundSignIn::Refused(state));
        }
        let link = match self.consume_link(&message.link, message.now)? {
            Ok(link) => link,
            Err(state) => return Ok(BoundSignIn::Refused(state)),
        };

        let user = self.find_or_create_user(&link.email, message.now)?;
        let session = self.start_session(&user, message.device, message.now)?;
        self.link_browsers.remove(message.link.as_bytes())?;
        self.store.commit()?;

        tracing::info!(target: "ucca::security", user_id = %user.user_id, "signed in by magic link");
        Ok(BoundSignIn::SignedIn { session, user, return_to: link.return_to })
    }
}

/// Mails a fresh link, bound to the asking browser, for a usable link that was opened in another browser.
/// Holding the first link shows access to the mailbox, so the new link goes to the same address.
#[derive(Debug, Message)]
#[rtype(result = "Result<Reissue, StoreError>")]
pub struct ReissueLink {
    pub link: Digest32,
    pub browser: Digest32,
    pub ip: Option<IpAddr>,
    pub now: UnixTime,
}

#[derive(Debug)]
pub enum Reissue {
    Issued { token: Secret, email: String },
    Limited(LinkLimit),
    Unusable(LinkState),
}

impl Handler<ReissueLink> for Accounts {
    type Result = Result<Reissue, StoreError>;

    fn handle(&mut self, message: ReissueLink, _: &mut Self::Context) -> Self::Result {
        let record = self.links.get(message.link.as_bytes())?;
        let link = match (link_state(record.as_ref(), message.now), record) {
            (LinkState::Usable, Some(link)) => link,
            (LinkState::Usable, None) => return Ok(Reissue::Unusable(LinkState::Unknown)),
            (state, _) => return Ok(Reissue::Unusable(state)),
        };
        if let Some(limit) = self.admit_link_request(&link.email, message.ip, message.now)? {
            tracing::info!(target: "ucca::security", limit = limit.as_str(), ip = ?message.ip, "sign-in link reissue rejected by a limit");
            return Ok(Reissue::Limited(limit));
        }

        let token = self.issue_bound_link(link.email.clone(), link.return_to, message.browser, message.now)?;
        self.store.commit()?;
        Ok(Reissue::Issued { token, email: link.email })
    }
}

/// One of a user's live sessions.
#[derive(Debug, Clone)]
pub struct SessionSummary {
    pub session: Digest32,
    pub created_at: UnixTime,
    pub last_seen: UnixTime,
    pub device: String,
}

/// Lists a user's live sessions, most recently used first.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<SessionSummary>, StoreError>")]
pub struct ListSessions {
    pub user_id: String,
    pub now: UnixTime,
}

impl Handler<ListSessions> for Accounts {
    type Result = Result<Vec<SessionSummary>, StoreError>;

    fn handle(&mut self, message: ListSessions, _: &mut Self::Context) -> Self::Result {
        // NOTE: sessions created before the session index existed are not listed; they still end on "sign out everywhere else" and expire as usual.
        let (start, end) = user_key_range(&message.user_id);
        let mut sessions = Vec::new();
        for entry in self.session_index.range(&start, &end) {
            let (_, entry) = entry?;
            let Some(session) = self.sessions.get(entry.session.as_bytes())? else { continue };
            if session.user_id != message.user_id || self.session_expired(&session, message.now) {
                continue;
            }
            sessions.push(SessionSummary {
                session: entry.session,
                created_at: session.created_at,
                last_seen: session.last_seen,
                device: entry.device,
            });
        }
        sessions.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(b.created_at.cmp(&a.created_at)));
        Ok(sessions)
    }
}

/// Ends one session of a user, only if it is theirs; returns whether it ended.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool, StoreError>")]
pub struct EndUserSession {
    pub user_id: String,
    pub session: Digest32,
}

impl Handler<EndUserSession> for Accounts {
    type Result = Result<bool, StoreError>;

    fn handle(&mut self, message: EndUserSession, _: &mut Self::Context) -> Self::Result {
        let ended = self.sessions.modify(message.session.as_bytes(), |current| match current {
            Some(session) if session.user_id == message.user_id => (Change::Remove, true),
            _ => (Change::Keep, false),
        })?;
        if ended {
            self.session_index.remove(&session_index_key(&message.user_id, &message.session))?;
            self.store.commit()?;
            tracing::info!(target: "ucca::security", user_id = %message.user_id, session = %message.session.label(), "session ended from the account page");
        }
        Ok(ended)
    }
}

impl Accounts {
    /// Removes every session of `user_id` except `keep`, with their index entries; returns how many. The caller commits.
    fn end_sessions_of(&self, user_id: &str, keep: Option<&Digest32>) -> Result<usize, StoreError> {
        // A full scan, so sessions missing from the index (made by an older build) end too.
        let mut ended = 0;
        let keys: Vec<Vec<u8>> = self
            .sessions
            .entries()
            .filter_map(|entry| match entry {
                Ok((key, session)) if session.user_id == user_id && keep.is_none_or(|keep| keep.as_bytes() != key.as_slice()) => {
                    Some(Ok(key))
                }
                Ok(_) => None,
                Err(error) => Some(Err(error)),
            })
            .collect::<Result<_, _>>()?;
        for key in keys {
            let removed = self.sessions.modify(&key, |current| match current {
                Some(session) if session.user_id == user_id => (Change::Remove, true),
                _ => (Change::Keep, false),
            })?;
            if removed {
                ended += 1;
            }
        }

        let (start, end) = user_key_range(user_id);
        let stale: Vec<Vec<u8>> = self
            .session_index
            .range(&start, &end)
            .filter_map(|entry| match entry {
                Ok((key, entry)) if !keep.is_some_and(|keep| keep.matches(&entry.session)) => Some(Ok(key)),
                Ok(_) => None,
                Err(error) => Some(Err(error)),
            })
            .collect::<Result<_, _>>()?;
        for key in stale {
            self.session_index.remove(&key)?;
        }
        Ok(ended)
    }
}

/// Ends every session of a user except the one making the request; returns how many ended.
#[derive(Debug, Message)]
#[rtype(result = "Result<usize, StoreError>")]
pub struct EndOtherSessions {
    pub user_id: String,
    pub keep: Digest32,
}

impl Handler<EndOtherSessions> for Accounts {
    type Result = Result<usize, StoreError>;

    fn handle(&mut self, message: EndOtherSessions, _: &mut Self::Context) -> Self::Result {
        let ended = self.end_sessions_of(&message.user_id, Some(&message.keep))?;
        self.store.commit()?;
        tracing::info!(target: "ucca::security", user_id = %message.user_id, ended, "other sessions ended");
        Ok(ended)
    }
}

/// One client a user has approved, with the scopes approved.
#[derive(Debug, Clone)]
pub struct ConsentSummary {
    pub client_id: String,
    pub scopes: Vec<String>,
    pub granted_at: UnixTime,
}

/// Lists the clients a user has approved, in client id order.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<ConsentSummary>, StoreError>")]
pub struct ListConsents {
    pub user_id: String,
}

impl Handler<ListConsents> for Accounts {
    type Result = Result<Vec<ConsentSummary>, StoreError>;

    fn handle(&mut self, message: ListConsents, _: &mut Self::Context) -> Self::Result {
        let (start, end) = user_key_range(&message.user_id);
        self.consents
            .range(&start, &end)
            .map(|entry| {
                let (key, consent) = entry?;
                let client_id = String::from_utf8_lossy(&key[start.len()..]).into_owned();
                Ok(ConsentSummary { client_id, scopes: consent.scopes, granted_at: consent.granted_at })
            })
            .collect()
    }
}

/// Deletes a user's personal data from the Accounts trees: sessions, consents,
/// entitlements, phone, unused sign-in links, the email index entry and the user
/// record, in that order, so a retry after a crash finishes the work.
/// Link request counters stay, keyed by digests, so deleting an account does not reset the abuse limits.
#[derive(Debug, Message)]
#[rtype(result = "Result<AccountDeletion, StoreError>")]
pub struct DeleteUser {
    pub user_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountDeletion {
    /// Whether the user record existed; false when an earlier attempt already removed it.
    pub user_found: bool,
    pub sessions: usize,
    pub consents: usize,
    pub links: usize,
}

impl Handler<DeleteUser> for Accounts {
    type Result = Result<AccountDeletion, StoreError>;

    fn handle(&mut self, message: DeleteUser, _: &mut Self::Context) -> Self::Result {
        let user_id = message.user_id.as_str();
        let user = self.users.get(user_id.as_bytes())?;
        let mut deletion = AccountDeletion { user_found: user.is_some(), ..AccountDeletion::default() };

        deletion.sessions = self.end_sessions_of(user_id, None)?;
        let (start, end) = user_key_range(user_id);
        let consent_keys: Vec<Vec<u8>> = self.consents.range(&start, &end).map(|entry| entry.map(|(key, _)| key)).collect::<Result<_, _>>()?;
        for key in &consent_keys {
            self.consents.remove(key)?;
        }
        deletion.consents = consent_keys.len();
        self.entitlements.remove(user_id.as_bytes())?;
        self.phone_book.forget(user_id)?;

        if let Some(user) = &user {
            let link_keys: Vec<Vec<u8>> = self
                .links
                .entries()
                .filter_map(|entry| match entry {
                    Ok((key, link)) if link.email == user.email => Some(Ok(key)),
                    Ok(_) => None,
                    Err(error) => Some(Err(error)),
                })
                .collect::<Result<_, _>>()?;
            for key in &link_keys {
                self.links.remove(key)?;
                self.link_browsers.remove(key)?;
            }
            deletion.links = link_keys.len();
            // Only the entry that still names this user goes; a new account may already own the address.
            self.emails.modify(user.email.as_bytes(), |current| match current {
                Some(index) if index.user_id == user_id => (Change::Remove, ()),
                _ => (Change::Keep, ()),
            })?;
        }
        self.users.remove(user_id.as_bytes())?;
        self.store.commit()?;

        tracing::info!(target: "ucca::security", user_id, sessions = deletion.sessions, consents = deletion.consents, "user deleted");
        Ok(deletion)
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
