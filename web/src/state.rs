//! Shared application state: actor addresses, the corpus, settings, the clock, and values derived from the issuer.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use ucca_actors::corpus::Corpus;
use ucca_actors::secret::Secret;
use ucca_actors::{Clock, Services, UnixTime};

/// Settings the web layer needs, already validated by start-up.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The issuer exactly as configured: scheme, host and optional port, no path, no trailing slash.
    pub issuer: String,
    /// Access token lifetime, in seconds.
    pub access_ttl: u64,
    /// Bearer key for the ops listener; `None` makes ops endpoints answer 503.
    pub ops_api_key: Option<Secret>,
    /// HTTP worker threads per listener.
    pub http_workers: usize,
    /// How long a stopping server waits for in-flight requests, in seconds.
    pub shutdown_timeout: u64,
}

/// Everything a handler can reach. Cloned into each worker, so every field is cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub corpus: Arc<Corpus>,
    pub config: Arc<WebConfig>,
    pub clock: Arc<dyn Clock>,
    pub derived: Arc<Derived>,
}

/// Names and URLs computed once from the issuer.
#[derive(Debug)]
pub struct Derived {
    /// Resource identifier of the operational REST API (RFC 8707).
    pub rest_resource: String,
    pub session_cookie: String,
    pub csrf_cookie: String,
    /// Whether cookies get the `Secure` attribute: true when the issuer is https.
    pub secure_cookies: bool,
}

impl AppState {
    pub fn new(services: Services, corpus: Arc<Corpus>, config: WebConfig, clock: Arc<dyn Clock>) -> AppState {
        // Two instances on one host must not share cookies, so the names carry a short hash of the issuer.
        let suffix = hex::encode(&Sha256::digest(config.issuer.as_bytes())[..4]);
        let derived = Derived {
            rest_resource: format!("{}/v1", config.issuer),
            session_cookie: format!("ucca_session_{suffix}"),
            csrf_cookie: format!("ucca_csrf_{suffix}"),
            secure_cookies: config.issuer.starts_with("https://"),
        };
        AppState { services, corpus, config: Arc::new(config), clock, derived: Arc::new(derived) }
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Resources a token can be bound to.
    pub fn is_known_resource(&self, resource: &str) -> bool {
        resource == self.derived.rest_resource
    }

    /// URL of the protected resource metadata for the REST surface (RFC 9728 section 3.1).
    pub fn rest_resource_metadata_url(&self) -> String {
        format!("{}/.well-known/oauth-protected-resource/v1", self.config.issuer)
    }
}
