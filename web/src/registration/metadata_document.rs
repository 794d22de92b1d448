//! Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document-00):
//! a client id that is an https URL names a JSON document with the client's
//! metadata. This module checks such URLs, fetches documents with a short timeout
//! and a size cap, refuses private and loopback addresses, validates the document,
//! and stores the client until the cached copy expires.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use actix_web::http::header;
use serde::Deserialize;
use serde_json::Value;
use ucca_actors::clients::{
    check_client_name, check_client_scopes, check_redirect_uris, AdmitSelfRegistration, GetSelfRegistration, RegistrationSource,
    SelfRegistrationKind, StoreDocumentClient,
};
use ucca_actors::ratelimit::Admission;
use ucca_actors::UnixTime;
use url::{Host, Url};

use super::{elapsed_ms, self_registered_scopes, DocumentRefusal};
use crate::errors::ask;
use crate::state::AppState;

/// Maximum length of a client id URL, in bytes.
const MAX_URL_LEN: usize = 2000;
/// Maximum size of a metadata document, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 10 * 1024;
/// Limit on one fetch, name resolution included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds on how long a fetched document is reused, in seconds, whatever its `Cache-Control` requests.
const MIN_CACHE_SECONDS: u64 = 60;
const MAX_CACHE_SECONDS: u64 = 86_400;
/// How long a document without `max-age` is reused, in seconds.
const DEFAULT_CACHE_SECONDS: u64 = 3600;

/// Checks whether a client id is URL-shaped, and so names a metadata document rather than a registered client.
pub fn is_url_client_id(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// Makes sure the client named by `client_id` is stored from a fresh copy of its metadata document.
pub async fn ensure_client(state: &AppState, client_id: &str, caller: IpAddr) -> Result<(), DocumentRefusal> {
    if !state.config.client_metadata_documents {
        return Err(DocumentRefusal::Disabled);
    }
    let test_mode = state.config.client_metadata_test_mode;
    let url = check_client_id_url(client_id, test_mode).map_err(DocumentRefusal::InvalidClientId)?;

    let now = state.now();
    let cached = ask(&state.services.clients, GetSelfRegistration { client_id: client_id.to_string() })
        .await
        .map_err(|_| DocumentRefusal::Internal)?;
    let fresh = cached.is_some_and(|registration| {
        registration.source == RegistrationSource::MetadataDocument && registration.document_expires_at.is_some_and(|expires| expires > now)
    });
    if fresh {
        return Ok(());
    }

    let admission = ask(&state.services.clients, AdmitSelfRegistration { ip: caller, kind: SelfRegistrationKind::DocumentFetch, now })
        .await
        .map_err(|_| DocumentRefusal::Internal)?;
    if let Admission::Limited { .. } = admission {
        tracing::warn!(target: "ucca::security", ip = %caller, "metadata document fetch limit reached");
        return Err(DocumentRefusal::RateLimited);
    }

    let started = Instant::now();
    let fetched = fetch(&url, test_mode).await;
    let (body, max_age) = match fetched {
        Ok(fetched) => fetched,
        Err(reason) => {
            tracing::warn!(target: "ucca::security", client_id, elapsed_ms = elapsed_ms(started), reason = %reason, "metadata document fetch failed");
            return Err(DocumentRefusal::Unusable(reason));
        }
    };
    let document = parse_document(state, &url, &body).map_err(DocumentRefusal::Unusable)?;

    let store = StoreDocumentClient {
        client_id: client_id.to_string(),
        name: document.name,
        redirect_uris: document.redirect_uris,
        scopes: self_registered_scopes(state),
        expires_at: now + cache_seconds(max_age),
        now,
    };
    ask(&state.services.clients, store).await.map_err(|_| DocumentRefusal::Internal)?;
    tracing::info!(client_id, elapsed_ms = elapsed_ms(started), "metadata document fetched");
    Ok(())
}

/// Checks a client id URL: https with a path, no query, fragment or user
/// information, written in the normalized form so that the document's `client_id`
/// can be compared as a plain string. Test mode also accepts http on a loopback host.
pub fn check_client_id_url(raw: &str, test_mode: bool) -> Result<Url, String> {
    if raw.len() > MAX_URL_LEN {
        return Err(format!("it is longer than {MAX_URL_LEN} bytes"));
    }
    let url = Url::parse(raw).map_err(|error| format!("it is not a URL ({error})"))?;
    match url.scheme() {
        "https" => {}
        "http" if test_mode && url.host().is_some_and(|host| is_loopback_host(&host)) => {}
        _ => return Err("it must use https".into()),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("it must not contain user information".into());
    }
    if raw.contains('?') || raw.contains('#') {
        return Err("it must not have a query or a fragment".into());
    }
    if url.path() == "/" {
        return Err("it must have a path, such as /client.json".into());
    }
    // Url resolves dot segments and lower-cases the host; any such change means the text was not in normal form.
    if url.as_str() != raw {
        return Err(format!("it must be written in normalized form, {}", url.as_str()));
    }
    Ok(url)
}

fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Ipv4(address) => address.is_loopback(),
        Host::Ipv6(address) => address.is_loopback(),
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
    }
}

/// Checks whether the server may connect to `ip` for a metadata document: public
/// unicast addresses only, plus loopback in test mode.
pub fn address_allowed(ip: IpAddr, test_mode: bool) -> bool {
    if ip.is_loopback() {
        return test_mode;
    }
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: std::net::Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let shared = a == 100 && (64..128).contains(&b); // 100.64.0.0/10, carrier-grade NAT
    let benchmarking = a == 198 && (b == 18 || b == 19); // 198.18.0.0/15
    let reserved = a >= 240; // 240.0.0.0/4, including broadcast
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || shared
        || benchmarking
        || reserved)
}

fn is_public_v6(ip: std::net::Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let unique_local = first & 0xfe00 == 0xfc00; // fc00::/7
    let link_local = first & 0xffc0 == 0xfe80; // fe80::/10
    let documentation = first == 0x2001 && ip.segments()[1] == 0x0db8; // 2001:db8::/32
    !(ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || unique_local || link_local || documentation)
}

/// Fetches the document: the URL's addresses are resolved and checked first, and
/// the connection is pinned to them, so a second resolution cannot swap in another
/// address. Redirects, proxies and other statuses than 200 are refused. Returns the
/// body and its `max-age`, if any.
async fn fetch(url: &Url, test_mode: bool) -> Result<(Vec<u8>, Option<CacheDirective>), String> {
    match tokio::time::timeout(FETCH_TIMEOUT, fetch_unbounded(url, test_mode)).await {
        Ok(result) => result,
        Err(_) => Err(format!("fetching it took longer than {} seconds", FETCH_TIMEOUT.as_secs())),
    }
}

async fn fetch_unbounded(url: &Url, test_mode: bool) -> Result<(Vec<u8>, Option<CacheDirective>), String> {
    let port = url.port_or_known_default().unwrap_or(443);
    let mut client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(FETCH_TIMEOUT)
        .user_agent(concat!("ucca-auth/", env!("CARGO_PKG_VERSION")));
    let addresses: Vec<SocketAddr> = match url.host() {
        Some(Host::Ipv4(address)) => vec![SocketAddr::new(IpAddr::V4(address), port)],
        Some(Host::Ipv6(address)) => vec![SocketAddr::new(IpAddr::V6(address), port)],
        Some(Host::Domain(name)) => {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
                .await
                .map_err(|error| format!("its host name {name} could not be resolved ({error})"))?
                .collect();
            client = client.resolve_to_addrs(name, &resolved);
            resolved
        }
        None => return Err("it has no host".into()),
    };
    if addresses.is_empty() {
        return Err("its host name has no addresses".into());
    }
    if let Some(refused) = addresses.iter().find(|address| !address_allowed(address.ip(), test_mode)) {
        return Err(format!("its host resolves to {}, a private, loopback or reserved address", refused.ip()));
    }

    let client = client.build().map_err(|error| format!("the HTTP client could not be built ({error})"))?;
    let mut response = client
        .get(url.as_str())
        .header(header::ACCEPT.as_str(), "application/json")
        .send()
        .await
        .map_err(|error| format!("the request failed ({})", error.without_url()))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(format!("it answered HTTP {} instead of 200", response.status().as_u16()));
    }
    if response.content_length().is_some_and(|length| length > MAX_DOCUMENT_BYTES as u64) {
        return Err(format!("it is larger than {MAX_DOCUMENT_BYTES} bytes"));
    }
    let cache = response
        .headers()
        .get(header::CACHE_CONTROL.as_str())
        .and_then(|value| value.to_str().ok())
        .and_then(CacheDirective::parse);

    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| format!("reading it failed ({})", error.without_url()))? {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("it is larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, cache))
}

/// The caching directive of a document's `Cache-Control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CacheDirective {
    NoStore,
    MaxAge(u64),
}

impl CacheDirective {
    fn parse(value: &str) -> Option<CacheDirective> {
        let mut max_age = None;
        for directive in value.split(',').map(|directive| directive.trim().to_ascii_lowercase()) {
            if directive == "no-store" || directive == "no-cache" {
                return Some(CacheDirective::NoStore);
            }
            if let Some(seconds) = directive.strip_prefix("max-age=") {
                max_age = seconds.trim_matches('"').parse().ok().map(CacheDirective::MaxAge);
            }
        }
        max_age
    }
}

/// Seconds to reuse a document, clamped so that neither a chatty nor a stale document misbehaves.
fn cache_seconds(directive: Option<CacheDirective>) -> UnixTime {
    match directive {
        None => DEFAULT_CACHE_SECONDS,
        Some(CacheDirective::NoStore) => MIN_CACHE_SECONDS,
        Some(CacheDirective::MaxAge(seconds)) => seconds.clamp(MIN_CACHE_SECONDS, MAX_CACHE_SECONDS),
    }
}

/// The fields of a metadata document this server reads; others are ignored.
#[derive(Debug, Deserialize)]
struct Document {
    client_id: Option<String>,
    client_name: Option<String>,
    redirect_uris: Option<Vec<String>>,
    token_endpoint_auth_method: Option<String>,
    scope: Option<String>,
    grant_types: Option<Vec<String>>,
    response_types: Option<Vec<String>>,
}

/// A validated document, ready to store.
#[derive(Debug, PartialEq, Eq)]
pub struct DocumentClient {
    /// The document's `client_name` followed by the URL's host, so that the consent page shows where the metadata came from.
    pub name: String,
    pub redirect_uris: Vec<String>,
}

fn parse_document(state: &AppState, url: &Url, body: &[u8]) -> Result<DocumentClient, String> {
    let value: Value = serde_json::from_slice(body).map_err(|error| format!("it is not valid JSON ({error})"))?;
    if !value.is_object() {
        return Err("it is not a JSON object".into());
    }
    // A shared secret cannot be kept by a client whose metadata is public.
    if value.get("client_secret").is_some() || value.get("client_secret_expires_at").is_some() {
        return Err("it contains a client_secret, which a metadata document must not".into());
    }
    let document: Document = serde_json::from_value(value).map_err(|error| format!("a field has the wrong type ({error})"))?;

    if document.client_id.as_deref() != Some(url.as_str()) {
        return Err("its client_id is not exactly the URL it was fetched from".into());
    }
    if document.token_endpoint_auth_method.as_deref().is_some_and(|method| method != "none") {
        return Err("its token_endpoint_auth_method must be none: these clients authenticate with PKCE alone".into());
    }
    let name = check_client_name(document.client_name.as_deref()).map_err(|error| error.description().to_string())?;
    let redirect_uris = document.redirect_uris.unwrap_or_default();
    check_redirect_uris(&redirect_uris).map_err(|error| error.description().to_string())?;
    check_client_scopes(document.scope.as_deref(), &state.catalog).map_err(|error| error.description().to_string())?;
    ucca_actors::clients::check_client_flow(document.grant_types.as_deref(), document.response_types.as_deref()).map_err(|error| error.description().to_string())?;

    // NOTE: the consent page shows this name, so the document's host, but not the host of the
    // redirect URI, which MCP 2025-11-25 asks authorization servers to display for these clients.
    let host = url.host_str().unwrap_or("");
    Ok(DocumentClient { name: format!("{name} ({host})"), redirect_uris })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_url_rules() {
        let cases = [
            ("https with path", "https://app.example/client.json", false, true),
            ("https with port", "https://app.example:8443/oauth/client.json", false, true),
            ("no path", "https://app.example", false, false),
            ("root path", "https://app.example/", false, false),
            ("plain http", "http://app.example/client.json", false, false),
            ("loopback http without test mode", "http://127.0.0.1:9000/client.json", false, false),
            ("loopback http in test mode", "http://127.0.0.1:9000/client.json", true, true),
            ("remote http in test mode", "http://app.example/client.json", true, false),
            ("query", "https://app.example/client.json?v=1", false, false),
            ("fragment", "https://app.example/client.json#x", false, false),
            ("user information", "https://me@app.example/client.json", false, false),
            ("dot segment", "https://app.example/a/../client.json", false, false),
            ("upper-case host", "https://APP.example/client.json", false, false),
            ("not a URL", "client.json", false, false),
        ];
        for (description, raw, test_mode, accepted) in cases {
            assert_eq!(check_client_id_url(raw, test_mode).is_ok(), accepted, "{description}: {raw}");
        }
    }

    #[test]
    fn only_public_addresses_are_fetched() {
        let cases = [
            ("public v4", "93.184.216.34", false, true),
            ("loopback v4", "127.0.0.1", false, false),
            ("loopback v4 in test mode", "127.0.0.1", true, true),
            ("private 10/8", "10.1.2.3", true, false),
            ("private 192.168/16", "192.168.0.10", false, false),
            ("link local", "169.254.169.254", false, false),
            ("carrier-grade NAT", "100.64.0.1", false, false),
            ("unspecified", "0.0.0.0", false, false),
            ("public v6", "2606:4700::1111", false, true),
            ("loopback v6", "::1", false, false),
            ("unique local v6", "fd00::1", false, false),
            ("link local v6", "fe80::1", false, false),
            ("mapped private v4", "::ffff:10.0.0.1", false, false),
        ];
        for (description, address, test_mode, allowed) in cases {
            let ip: IpAddr = address.parse().unwrap();
            assert_eq!(address_allowed(ip, test_mode), allowed, "{description}: {address}");
        }
    }

    #[test]
    fn cache_lifetime_follows_cache_control_within_bounds() {
        assert_eq!(cache_seconds(CacheDirective::parse("public, max-age=600")), 600);
        assert_eq!(cache_seconds(CacheDirective::parse("max-age=5")), MIN_CACHE_SECONDS);
        assert_eq!(cache_seconds(CacheDirective::parse("max-age=99999999")), MAX_CACHE_SECONDS);
        assert_eq!(cache_seconds(CacheDirective::parse("no-store")), MIN_CACHE_SECONDS);
        assert_eq!(cache_seconds(CacheDirective::parse("private")), DEFAULT_CACHE_SECONDS);
        assert_eq!(cache_seconds(None), DEFAULT_CACHE_SECONDS);
    }
}
