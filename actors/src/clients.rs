//! The Clients actor: owns the registered OAuth clients and nothing else.

use actix::{Actor, Handler, Message, SyncContext};
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::codec::Record;
use crate::secret::{random_id, Digest32, Secret, SECRET_BYTES};
use crate::store::{Change, Store, StoreError, Table};
use crate::ratelimit::{self, Admission, Limit, LimitWindow};

/// How a client authenticates at the token endpoint (RFC 7591 `token_endpoint_auth_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    /// A public client: it proves possession of the code with PKCE alone.
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::None => "none",
        }
    }

    pub fn parse(name: &str) -> Option<AuthMethod> {
        match name {
            "client_secret_basic" => Some(AuthMethod::ClientSecretBasic),
            "client_secret_post" => Some(AuthMethod::ClientSecretPost),
            "none" => Some(AuthMethod::None),
            _ => None,
        }
    }

    pub fn is_confidential(self) -> bool {
        self != AuthMethod::None
    }
}

/// A registered client as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientRecord {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub auth_method: AuthMethod,
    /// SHA-256 of the client secret; `None` for public clients.
    pub secret_digest: Option<Digest32>,
    /// Scopes the client may request; also its default when a request names none.
    pub scopes: Vec<String>,
    pub created_at: UnixTime,
    pub active: bool,
}

impl Record for ClientRecord {
    const KIND: &'static str = "client";
    const VERSION: u16 = 1;
}

impl ClientRecord {
    /// Checks a presented secret against the stored digest in constant time.
    pub fn secret_matches(&self, presented: &Secret) -> bool {
        self.secret_digest.is_some_and(|digest| digest.matches(&presented.digest()))
    }
}

pub struct Clients {
    store: Store,
    clients: Table<ClientRecord>,
    /// Source and last use of each self-registered client. Operator-registered clients have no entry.
    registrations: Table<SelfRegistration>,
    /// Per-IP windows that limit self-registrations and metadata document fetches.
    registration_limits: Table<LimitWindow>,
}

impl Clients {
    pub fn new(store: Store) -> Result<Clients, StoreError> {
        Ok(Clients {
            clients: store.table("clients")?,
            registrations: store.table("client_registrations")?,
            registration_limits: store.table("client_registration_limits")?,
            store,
        })
    }
}

impl Actor for Clients {
    type Context = SyncContext<Self>;
}

/// Registers a client whose metadata the caller has already validated.
#[derive(Debug, Message)]
#[rtype(result = "Result<Registered, StoreError>")]
pub struct RegisterClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub auth_method: AuthMethod,
    pub scopes: Vec<String>,
    pub now: UnixTime,
}

/// A new client, with its secret in clear text for the one response that shows it.
#[derive(Debug)]
pub struct Registered {
    pub client: ClientRecord,
    pub secret: Option<Secret>,
}

impl Handler<RegisterClient> for Clients {
    type Result = Result<Registered, StoreError>;

    fn handle(&mut self, message: RegisterClient, _: &mut Self::Context) -> Self::Result {
        let secret = message.auth_method.is_confidential().then(|| Secret::generate(SECRET_BYTES));
        let client = ClientRecord {
            client_id: random_id(16),
            name: message.name,
            redirect_uris: message.redirect_uris,
            auth_method: message.auth_method,
            secret_digest: secret.as_ref().map(Secret::digest),
            scopes: message.scopes,
            created_at: message.now,
            active: true,
        };

        if !self.clients.insert_new(client.client_id.as_bytes(), &client)? {
            return Err(StoreError::Backend("generated client id collided with an existing one".into()));
        }
        self.store.commit()?;

        tracing::info!(target: "ucca::security", client_id = %client.client_id, method = client.auth_method.as_str(), "client registered");
        Ok(Registered { client, secret })
    }
}

/// Fetches one client, active or not.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<ClientRecord>, StoreError>")]
pub struct GetClient {
    pub client_id: String,
}

impl Handler<GetClient> for Clients {
    type Result = Result<Option<ClientRecord>, StoreError>;

    fn handle(&mut self, message: GetClient, _: &mut Self::Context) -> Self::Result {
        self.clients.get(message.client_id.as_bytes())
    }
}

/// Lists every client, ordered by client id.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<ClientRecord>, StoreError>")]
pub struct ListClients;

impl Handler<ListClients> for Clients {
    type Result = Result<Vec<ClientRecord>, StoreError>;

    fn handle(&mut self, _: ListClients, _: &mut Self::Context) -> Self::Result {
        self.clients.entries().map(|entry| entry.map(|(_, client)| client)).collect()
    }
}

/// Marks a client inactive so it can no longer authenticate or obtain codes.
#[derive(Debug, Message)]
#[rtype(result = "Result<Deactivation, StoreError>")]
pub struct DeactivateClient {
    pub client_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deactivation {
    Deactivated,
    AlreadyInactive,
    NotFound,
}

impl Handler<DeactivateClient> for Clients {
    type Result = Result<Deactivation, StoreError>;

    fn handle(&mut self, message: DeactivateClient, _: &mut Self::Context) -> Self::Result {
        let outcome = self.clients.modify(message.client_id.as_bytes(), |current| match current {
            None => (Change::Keep, Deactivation::NotFound),
            Some(client) if !client.active => (Change::Keep, Deactivation::AlreadyInactive),
            Some(client) => (Change::Put(ClientRecord { active: false, ..client }), Deactivation::Deactivated),
        })?;
        if outcome == Deactivation::Deactivated {
            self.store.commit()?;
            tracing::info!(target: "ucca::security", client_id = %message.client_id, "client deactivated");
        }
        Ok(outcome)
    }
}

/// Replaces a confidential client's secret with a new one, shown once to the caller.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<Secret>, StoreError>")]
pub struct ReplaceClientSecret {
    pub client_id: String,
}

impl Handler<ReplaceClientSecret> for Clients {
    type Result = Result<Option<Secret>, StoreError>;

    fn handle(&mut self, message: ReplaceClientSecret, _: &mut Self::Context) -> Self::Result {
        let secret = Secret::generate(SECRET_BYTES);
        let digest = secret.digest();
        let replaced = self.clients.modify(message.client_id.as_bytes(), |current| match current {
            Some(client) if client.active && client.auth_method.is_confidential() => {
                (Change::Put(ClientRecord { secret_digest: Some(digest), ..client }), true)
            }
            _ => (Change::Keep, false),
        })?;
        if !replaced {
            return Ok(None);
        }
        self.store.commit()?;
        tracing::info!(target: "ucca::security", client_id = %message.client_id, "client secret replaced");
        Ok(Some(secret))
    }
}

/// Longest client name accepted, in bytes.
pub const MAX_CLIENT_NAME_LEN: usize = 200;
/// Most redirect URIs one client may register.
pub const MAX_REDIRECT_URIS: usize = 20;
/// Scopes a client registered without `scope` may request: the first version's `read`, the least it could need.
pub const DEFAULT_CLIENT_SCOPES: &[&str] = &["read"];

/// Why client metadata was rejected, as RFC 7591 section 3.2.2 error codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataError {
    /// `invalid_redirect_uri`
    RedirectUri(String),
    /// `invalid_client_metadata`
    Metadata(String),
}

impl MetadataError {
    pub fn code(&self) -> &'static str {
        match self {
            MetadataError::RedirectUri(_) => "invalid_redirect_uri",
            MetadataError::Metadata(_) => "invalid_client_metadata",
        }
    }

    pub fn description(&self) -> &str {
        match self {
            MetadataError::RedirectUri(text) | MetadataError::Metadata(text) => text,
        }
    }
}

/// Checks a client name and returns it trimmed.
pub fn check_client_name(raw: Option<&str>) -> Result<String, MetadataError> {
    let name = raw.map(str::trim).unwrap_or_default();
    if name.is_empty() {
        return Err(MetadataError::Metadata(format!("client_name is missing: send 1 to {MAX_CLIENT_NAME_LEN} bytes of text")));
    }
    if name.len() > MAX_CLIENT_NAME_LEN {
        return Err(MetadataError::Metadata(format!("client_name is {} bytes long; the limit is {MAX_CLIENT_NAME_LEN}", name.len())));
    }
    if name.chars().any(char::is_control) {
        return Err(MetadataError::Metadata("client_name contains a control character".to_string()));
    }
    Ok(name.to_string())
}

/// Checks the list of redirect URIs a client registers.
pub fn check_redirect_uris(uris: &[String]) -> Result<(), MetadataError> {
    if uris.is_empty() || uris.len() > MAX_REDIRECT_URIS {
        return Err(MetadataError::RedirectUri(format!("redirect_uris must list 1 to {MAX_REDIRECT_URIS} URIs")));
    }
    for uri in uris {
        crate::oauth::validate_redirect_uri(uri).map_err(MetadataError::RedirectUri)?;
    }
    Ok(())
}

/// Parses the scopes a client may request; `None` gives [`DEFAULT_CLIENT_SCOPES`].
pub fn check_client_scopes(raw: Option<&str>, catalog: &crate::catalog::Catalog) -> Result<Vec<String>, MetadataError> {
    let scopes = match raw {
        None => DEFAULT_CLIENT_SCOPES.iter().map(|scope| scope.to_string()).collect(),
        Some(raw) => crate::oauth::parse_scope(raw)
            .ok_or_else(|| MetadataError::Metadata("scope must be a space-separated list of scope names".into()))?,
    };
    if let Some(unknown) = scopes.iter().find(|scope| !catalog.is_issuable(scope)) {
        return Err(MetadataError::Metadata(format!("scope {unknown} is not issued by this server")));
    }
    Ok(scopes)
}

/// How long a self-registered client may go unused before the sweeper removes it, in seconds (90 days).
pub const SELF_REGISTERED_IDLE_LIMIT: u64 = 90 * 86_400;
/// Dynamic registrations accepted from one IP address per hour.
pub const DYNAMIC_REGISTRATIONS_PER_IP: Limit = Limit::per_hour(20);
/// Metadata document fetches one IP address may cause per hour.
pub const METADATA_FETCHES_PER_IP: Limit = Limit::per_hour(60);
/// `last_used` is rewritten at most this often, in seconds, so that busy clients do not cause a write per request.
const TOUCH_INTERVAL: u64 = 3600;

/// How a client registered itself, without an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationSource {
    /// `POST /oauth/register` (RFC 7591).
    Dynamic,
    /// A client ID metadata document fetched from the URL that is the client id.
    MetadataDocument,
}

/// The self-registration facts of one client, keyed by client id beside its [`ClientRecord`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SelfRegistration {
    pub source: RegistrationSource,
    pub registered_at: UnixTime,
    /// Last registration, document fetch, authorization request or token response for this client.
    pub last_used: UnixTime,
    /// When the cached metadata document must be fetched again; `None` for dynamic registrations.
    pub document_expires_at: Option<UnixTime>,
}

impl Record for SelfRegistration {
    const KIND: &'static str = "client self-registration";
    const VERSION: u16 = 1;
}

/// Registers a public client for `POST /oauth/register`, with metadata the caller has already validated.
#[derive(Debug, Message)]
#[rtype(result = "Result<ClientRecord, StoreError>")]
pub struct RegisterSelfClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub now: UnixTime,
}

impl Handler<RegisterSelfClient> for Clients {
    type Result = Result<ClientRecord, StoreError>;

    fn handle(&mut self, message: RegisterSelfClient, _: &mut Self::Context) -> Self::Result {
        let client = ClientRecord {
            client_id: random_id(16),
            name: message.name,
            redirect_uris: message.redirect_uris,
            auth_method: AuthMethod::None,
            secret_digest: None,
            scopes: message.scopes,
            created_at: message.now,
            active: true,
        };
        let registration = SelfRegistration {
            source: RegistrationSource::Dynamic,
            registered_at: message.now,
            last_used: message.now,
            document_expires_at: None,
        };

        if !self.clients.insert_new(client.client_id.as_bytes(), &client)? {
            return Err(StoreError::Backend("generated client id collided with an existing one".into()));
        }
        // NOTE: a crash between these two writes leaves a public client without an entry, which the sweeper never expires.
        self.registrations.put(client.client_id.as_bytes(), &registration)?;
        self.store.commit()?;

        tracing::info!(target: "ucca::security", client_id = %client.client_id, "public client registered itself");
        Ok(client)
    }
}

/// Stores the client described by a fetched metadata document, whose URL is its client id.
/// An existing record keeps its `active` flag, so a client an operator deactivated stays deactivated.
#[derive(Debug, Message)]
#[rtype(result = "Result<ClientRecord, StoreError>")]
pub struct StoreDocumentClient {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    /// When the document must be fetched again.
    pub expires_at: UnixTime,
    pub now: UnixTime,
}

impl Handler<StoreDocumentClient> for Clients {
    type Result = Result<ClientRecord, StoreError>;

    fn handle(&mut self, message: StoreDocumentClient, _: &mut Self::Context) -> Self::Result {
        let key = message.client_id.as_bytes();
        let registered_at = self.registrations.get(key)?.map_or(message.now, |existing| existing.registered_at);
        let registration = SelfRegistration {
            source: RegistrationSource::MetadataDocument,
            registered_at,
            last_used: message.now,
            document_expires_at: Some(message.expires_at),
        };
        self.registrations.put(key, &registration)?;

        let stored = self.clients.modify(key, |current| {
            let client = ClientRecord {
                client_id: message.client_id.clone(),
                name: message.name.clone(),
                redirect_uris: message.redirect_uris.clone(),
                auth_method: AuthMethod::None,
                secret_digest: None,
                scopes: message.scopes.clone(),
                created_at: current.as_ref().map_or(message.now, |existing| existing.created_at),
                active: current.as_ref().is_none_or(|existing| existing.active),
            };
            (Change::Put(client.clone()), client)
        })?;
        self.store.commit()?;

        tracing::info!(target: "ucca::security", client_id = %stored.client_id, "client metadata document stored");
        Ok(stored)
    }
}

/// Fetches the self-registration entry of a client; `None` for operator-registered and unknown clients.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<SelfRegistration>, StoreError>")]
pub struct GetSelfRegistration {
    pub client_id: String,
}

impl Handler<GetSelfRegistration> for Clients {
    type Result = Result<Option<SelfRegistration>, StoreError>;

    fn handle(&mut self, message: GetSelfRegistration, _: &mut Self::Context) -> Self::Result {
        self.registrations.get(message.client_id.as_bytes())
    }
}

/// What a per-IP self-registration limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfRegistrationKind {
    Dynamic,
    DocumentFetch,
}

/// Counts one self-registration attempt from `ip` against its hourly limit.
#[derive(Debug, Message)]
#[rtype(result = "Result<Admission, StoreError>")]
pub struct AdmitSelfRegistration {
    pub ip: std::net::IpAddr,
    pub kind: SelfRegistrationKind,
    pub now: UnixTime,
}

impl Handler<AdmitSelfRegistration> for Clients {
    type Result = Result<Admission, StoreError>;

    fn handle(&mut self, message: AdmitSelfRegistration, _: &mut Self::Context) -> Self::Result {
        let (prefix, limit) = match message.kind {
            SelfRegistrationKind::Dynamic => ("register", DYNAMIC_REGISTRATIONS_PER_IP),
            SelfRegistrationKind::DocumentFetch => ("fetch", METADATA_FETCHES_PER_IP),
        };
        let key = format!("{prefix}/{}", message.ip);
        ratelimit::admit(&self.registration_limits, key.as_bytes(), limit, message.now)
    }
}

/// Records that a self-registered client was used; other clients are left alone.
/// Not committed: a crash loses at most the last second of these, which only delays expiry.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct TouchClient {
    pub client_id: String,
    pub now: UnixTime,
}

impl Handler<TouchClient> for Clients {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, message: TouchClient, _: &mut Self::Context) -> Self::Result {
        self.registrations.modify(message.client_id.as_bytes(), |current| match current {
            Some(registration) if registration.last_used + TOUCH_INTERVAL <= message.now => {
                (Change::Put(SelfRegistration { last_used: message.now, ..registration }), ())
            }
            _ => (Change::Keep, ()),
        })
    }
}

/// Removes self-registered clients unused for `idle_limit` seconds, and ended per-IP windows.
/// Returns the ids of the removed clients, whose tokens the caller revokes.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<String>, StoreError>")]
pub struct SweepSelfRegistered {
    pub now: UnixTime,
    pub idle_limit: u64,
}

impl Handler<SweepSelfRegistered> for Clients {
    type Result = Result<Vec<String>, StoreError>;

    fn handle(&mut self, message: SweepSelfRegistered, _: &mut Self::Context) -> Self::Result {
        ratelimit::sweep(&self.registration_limits, message.now)?;

        let mut idle = Vec::new();
        for entry in self.registrations.entries() {
            let (key, registration) = entry?;
            if registration.last_used.saturating_add(message.idle_limit) <= message.now {
                idle.push(key);
            }
        }
        let mut removed = Vec::new();
        for key in idle {
            // A touch that raced the scan keeps the client.
            let expired = self.registrations.modify(&key, |current| match current {
                Some(registration) if registration.last_used.saturating_add(message.idle_limit) <= message.now => (Change::Remove, true),
                _ => (Change::Keep, false),
            })?;
            if expired {
                self.clients.remove(&key)?;
                removed.push(String::from_utf8_lossy(&key).into_owned());
            }
        }
        if !removed.is_empty() {
            self.store.commit()?;
            tracing::info!(target: "ucca::security", count = removed.len(), "unused self-registered clients removed");
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod self_registration_tests {
    use actix::{Addr, SyncArbiter};

    use super::*;

    fn start() -> Addr<Clients> {
        let store = Store::temporary().unwrap();
        SyncArbiter::start(1, move || Clients::new(store.clone()).unwrap())
    }

    async fn register(clients: &Addr<Clients>, now: UnixTime) -> ClientRecord {
        let registration = RegisterSelfClient {
            name: "Agent".into(),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            scopes: vec!["read".into()],
            now,
        };
        clients.send(registration).await.unwrap().unwrap()
    }

    #[test]
    fn unused_clients_are_swept_and_used_ones_kept() {
        actix::System::new().block_on(async {
            let clients = start();
            let idle = register(&clients, 1_000).await;
            let used = register(&clients, 1_000).await;
            assert_eq!(idle.auth_method, AuthMethod::None);
            assert!(idle.secret_digest.is_none());

            let later = 1_000 + SELF_REGISTERED_IDLE_LIMIT;
            clients.send(TouchClient { client_id: used.client_id.clone(), now: later - 10 }).await.unwrap().unwrap();
            let removed = clients.send(SweepSelfRegistered { now: later, idle_limit: SELF_REGISTERED_IDLE_LIMIT }).await.unwrap().unwrap();

            assert_eq!(removed, vec![idle.client_id.clone()]);
            assert!(clients.send(GetClient { client_id: idle.client_id.clone() }).await.unwrap().unwrap().is_none());
            assert!(clients.send(GetSelfRegistration { client_id: idle.client_id }).await.unwrap().unwrap().is_none());
            assert!(clients.send(GetClient { client_id: used.client_id.clone() }).await.unwrap().unwrap().is_some());
            let kept = clients.send(GetSelfRegistration { client_id: used.client_id }).await.unwrap().unwrap().unwrap();
            assert_eq!(kept.last_used, later - 10);
        });
    }

    #[test]
    fn operator_clients_are_never_touched_or_swept() {
        actix::System::new().block_on(async {
            let clients = start();
            let operator = RegisterClient {
                name: "Operator".into(),
                redirect_uris: vec!["https://app.example/cb".into()],
                auth_method: AuthMethod::ClientSecretBasic,
                scopes: vec!["read".into()],
                now: 1_000,
            };
            let registered = clients.send(operator).await.unwrap().unwrap();
            let id = registered.client.client_id;

            clients.send(TouchClient { client_id: id.clone(), now: 5_000 }).await.unwrap().unwrap();
            let removed = clients.send(SweepSelfRegistered { now: u64::MAX / 2, idle_limit: SELF_REGISTERED_IDLE_LIMIT }).await.unwrap().unwrap();

            assert!(removed.is_empty());
            assert!(clients.send(GetSelfRegistration { client_id: id.clone() }).await.unwrap().unwrap().is_none());
            assert!(clients.send(GetClient { client_id: id }).await.unwrap().unwrap().is_some());
        });
    }

    #[test]
    fn refetched_document_keeps_an_operator_deactivation() {
        actix::System::new().block_on(async {
            let clients = start();
            let url = "https://app.example/client.json".to_string();
            let document = |now: UnixTime| StoreDocumentClient {
                client_id: url.clone(),
                name: "App (app.example)".into(),
                redirect_uris: vec!["http://127.0.0.1/cb".into()],
                scopes: vec!["read".into()],
                expires_at: now + 3600,
                now,
            };
            let first = clients.send(document(1_000)).await.unwrap().unwrap();
            assert!(first.active);
            clients.send(DeactivateClient { client_id: url.clone() }).await.unwrap().unwrap();

            let refetched = clients.send(document(9_000)).await.unwrap().unwrap();

            assert!(!refetched.active);
            assert_eq!(refetched.created_at, 1_000);
            let registration = clients.send(GetSelfRegistration { client_id: url }).await.unwrap().unwrap().unwrap();
            assert_eq!(registration.source, RegistrationSource::MetadataDocument);
            assert_eq!(registration.document_expires_at, Some(12_600));
        });
    }

    #[test]
    fn registrations_per_ip_are_limited_by_kind() {
        actix::System::new().block_on(async {
            let clients = start();
            let ip: std::net::IpAddr = "203.0.113.9".parse().unwrap();
            let admit = |kind| AdmitSelfRegistration { ip, kind, now: 7_200 };
            for _ in 0..DYNAMIC_REGISTRATIONS_PER_IP.max {
                assert_eq!(clients.send(admit(SelfRegistrationKind::Dynamic)).await.unwrap().unwrap(), Admission::Admitted);
            }
            let refused = clients.send(admit(SelfRegistrationKind::Dynamic)).await.unwrap().unwrap();
            assert_eq!(refused, Admission::Limited { until: 10_800 });
            let fetch = clients.send(admit(SelfRegistrationKind::DocumentFetch)).await.unwrap().unwrap();
            assert_eq!(fetch, Admission::Admitted);
        });
    }
}

/// Client metadata as RFC 7591 section 2 names it, for the ops API and dynamic
/// registration alike; other fields are ignored, as that section allows.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientMetadata {
    pub client_name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub token_endpoint_auth_method: Option<String>,
    pub scope: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
}

/// Checks that a client asks only for the grant and response types this server supports.
pub fn check_client_flow(grant_types: Option<&[String]>, response_types: Option<&[String]>) -> Result<(), MetadataError> {
    let grants = grant_types.unwrap_or_default();
    if grants.iter().any(|grant| grant != "authorization_code" && grant != "refresh_token") {
        return Err(MetadataError::Metadata("grant_types may contain only authorization_code and refresh_token".into()));
    }
    let responses = response_types.unwrap_or_default();
    if responses.iter().any(|response| response != "code") {
        return Err(MetadataError::Metadata("response_types may contain only code".into()));
    }
    Ok(())
}
