//! The Clients actor: owns the registered OAuth clients and nothing else.

use actix::{Actor, Handler, Message, SyncContext};
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::codec::Record;
use crate::secret::{random_id, Digest32, Secret, SECRET_BYTES};
use crate::store::{Change, Store, StoreError, Table};

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
}

impl Clients {
    pub fn new(store: Store) -> Result<Clients, StoreError> {
        Ok(Clients { clients: store.table("clients")?, store })
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
