//! Shared application state: actor addresses, the corpus, settings, the clock, and values derived from the issuer.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use serde::Deserialize;
use ucca_actors::catalog::{Capability, Catalog};
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
    /// Refresh token lifetime, in seconds.
    pub refresh_ttl: u64,
    /// Routes of upstream services guarded through `/auth/check`, matched by longest prefix.
    pub forward_auth_routes: Vec<ForwardRoute>,
    /// Proxies whose `X-Forwarded-For` is believed when finding a caller's address.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Bearer key for the ops listener; `None` makes ops endpoints return 503.
    pub ops_api_key: Option<Secret>,
    /// Secret that signs payment-provider webhooks; `None` makes the webhook return 503.
    pub stripe_webhook_secret: Option<Secret>,
    /// HTTP worker threads per listener.
    pub http_workers: usize,
    /// How long a stopping server waits for in-flight requests, in seconds.
    pub shutdown_timeout: u64,
    /// Origins (`scheme://host[:port]`) whose requests `/mcp` serves; a request with any other `Origin` gets 403.
    pub mcp_allowed_origins: Vec<String>,
    /// The tool set `/mcp` serves.
    pub mcp_tools: crate::mcp::McpTools,
    /// Whether `POST /oauth/register` accepts dynamic client registrations (RFC 7591).
    pub dynamic_registration: bool,
    /// Whether a client id may be the https URL of a client ID metadata document.
    pub client_metadata_documents: bool,
    /// For tests only: metadata documents may also be fetched over http from loopback addresses.
    pub client_metadata_test_mode: bool,
}

/// One entry of the forward-auth route table, as written in the settings file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardRoute {
    /// Path prefix of the original request URI, such as `/reports/`.
    pub prefix: String,
    /// HTTP methods the entry covers; empty covers every method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// The capability a token must grant.
    pub capability: Capability,
}

/// Everything a handler can reach. Cloned into each worker, so every field is cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub corpus: Arc<Corpus>,
    pub catalog: Arc<Catalog>,
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
    pub fn new(
        services: Services,
        corpus: Arc<Corpus>,
        catalog: Arc<Catalog>,
        config: WebConfig,
        clock: Arc<dyn Clock>,
    ) -> AppState {
        // Two instances on one host must not share cookies, so the names carry a short hash of the issuer.
        let suffix = hex::encode(&Sha256::digest(config.issuer.as_bytes())[..4]);
        let derived = Derived {
            rest_resource: format!("{}/v1", config.issuer),
            session_cookie: format!("ucca_session_{suffix}"),
            csrf_cookie: format!("ucca_csrf_{suffix}"),
            secure_cookies: config.issuer.starts_with("https://"),
        };
        AppState { services, corpus, catalog, config: Arc::new(config), clock, derived: Arc::new(derived) }
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Resources a token can be bound to.
    pub fn is_known_resource(&self, resource: &str) -> bool {
        resource == self.derived.rest_resource || resource == self.mcp_resource()
    }

    /// Resource identifier of the MCP endpoint (RFC 8707), distinct from the REST API's.
    pub fn mcp_resource(&self) -> String {
        format!("{}/mcp", self.config.issuer)
    }

    /// URL of a surface's protected resource metadata: the well-known path with
    /// the resource's own path appended (RFC 9728 section 3.1).
    pub fn resource_metadata_url(&self, resource: &str) -> String {
        let path = resource.strip_prefix(self.config.issuer.as_str()).unwrap_or("");
        format!("{}/.well-known/oauth-protected-resource{path}", self.config.issuer)
    }
}

/// The caller's IP address: the peer address, unless the peer is a trusted
/// proxy, in which case the right-most `X-Forwarded-For` entry that is not a
/// trusted proxy. Entries further left are written by the client and can be forged.
pub fn client_ip(peer: Option<std::net::IpAddr>, forwarded_for: Option<&str>, trusted: &[std::net::IpAddr]) -> Option<std::net::IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let Some(chain) = forwarded_for else { return Some(peer) };
    let mut last_trusted = peer;
    for entry in chain.rsplit(',') {
        match entry.trim().parse::<std::net::IpAddr>() {
            Ok(address) if trusted.contains(&address) => last_trusted = address,
            Ok(address) => return Some(address),
            // A malformed entry ends what can be believed; the last trusted hop is the best estimate.
            Err(_) => return Some(last_trusted),
        }
    }
    Some(last_trusted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let client: std::net::IpAddr = "203.0.113.7".parse().unwrap();
        let forged = "198.51.100.1";
        let cases = [
            ("direct caller ignores the header", Some(client), Some(forged), client),
            ("trusted proxy with one hop", Some(proxy), Some("203.0.113.7"), client),
            ("forged left entry is skipped", Some(proxy), Some("198.51.100.1, 203.0.113.7"), client),
            ("chain of trusted proxies", Some(proxy), Some("203.0.113.7, 10.0.0.1"), client),
            ("trusted proxy without the header", Some(proxy), None, proxy),
            ("malformed entry stops the walk", Some(proxy), Some("203.0.113.7, junk"), proxy),
        ];
        for (description, peer, header, expected) in cases {
            assert_eq!(client_ip(peer, header, &[proxy]), Some(expected), "{description}");
        }
    }
}
