//! OAuth rules that need no storage: redirect URI validation and matching,
//! PKCE S256 checks, and the syntax of scopes and state.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::{Host, Url};

/// Longest redirect URI accepted at registration, in bytes.
pub const MAX_REDIRECT_URI_LEN: usize = 2000;

/// Checks a redirect URI offered at registration: absolute, https or loopback
/// http, no fragment, no userinfo. The error is a sentence for the operator.
pub fn validate_redirect_uri(raw: &str) -> Result<(), String> {
    if raw.is_empty() {
        return Err("redirect URI is empty".into());
    }
    if raw.len() > MAX_REDIRECT_URI_LEN {
        return Err(format!("redirect URI is longer than {MAX_REDIRECT_URI_LEN} bytes"));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("redirect URI {raw:?} contains whitespace or control characters"));
    }
    // RFC 6749 section 3.1.2: the endpoint URI must not include a fragment. Url
    // would accept a bare trailing '#', so check the text itself.
    if raw.contains('#') {
        return Err(format!("redirect URI {raw:?} has a fragment"));
    }

    let url = Url::parse(raw).map_err(|error| format!("redirect URI {raw:?} is not an absolute URI: {error}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("redirect URI {raw:?} contains user information"));
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_loopback(&url) => Ok(()),
        "http" => Err(format!(
            "redirect URI {raw:?} uses http on a host that is not loopback; use https, or http only on 127.0.0.1, [::1] or localhost"
        )),
        scheme => Err(format!("redirect URI {raw:?} has scheme {scheme:?}; only https and loopback http are allowed")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(address)) => address.is_loopback(),
        Some(Host::Ipv6(address)) => address.is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Finds the registered redirect URI that `requested` matches: the same
/// string, or for a loopback http URI the same string apart from the port
/// (RFC 8252 section 7.3, because native apps bind an ephemeral port). The
/// comparison is textual, so no normalisation (dot segments, percent
/// escapes, host spellings) can make two different strings match.
pub fn match_redirect_uri<'a>(registered: &'a [String], requested: &str) -> Option<&'a str> {
    if let Some(exact) = registered.iter().find(|candidate| candidate.as_str() == requested) {
        return Some(exact);
    }

    let requested_without_port = loopback_without_port(requested)?;
    registered
        .iter()
        .find(|candidate| loopback_without_port(candidate).is_some_and(|text| text == requested_without_port))
        .map(String::as_str)
}

/// The loopback hosts RFC 8252 section 7.3 lets a native app listen on, as written in a URI.
const LOOPBACK_HOSTS: [&str; 3] = ["127.0.0.1", "[::1]", "localhost"];

/// For `http://<loopback host>[:port]<rest>`, the same text without `:port`; `None` for anything else.
fn loopback_without_port(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("http://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rsplit_once(':') {
        // An IPv6 literal contains colons, so only a colon after its closing bracket starts a port.
        Some((host, port)) if !port.contains(']') => {
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            host
        }
        _ => authority,
    };
    LOOPBACK_HOSTS.contains(&host).then(|| format!("http://{host}{tail}"))
}

/// Checks that a code challenge has the form S256 produces: 43 base64url characters (RFC 7636 section 4.2).
pub fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43 && challenge.bytes().all(is_base64url)
}

/// Checks a code verifier's form: 43 to 128 unreserved characters (RFC 7636 section 4.1).
pub fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Checks `BASE64URL(SHA256(verifier)) == challenge` in constant time.
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    computed.as_bytes().ct_eq(challenge.as_bytes()).into()
}

fn is_base64url(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

/// Longest `state` value accepted, in bytes.
pub const MAX_STATE_LEN: usize = 1024;

/// Checks a `state` value: printable ASCII (VSCHAR, RFC 6749 appendix A.5) and at most [`MAX_STATE_LEN`] bytes.
pub fn is_valid_state(state: &str) -> bool {
    !state.is_empty() && state.len() <= MAX_STATE_LEN && state.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Splits a scope parameter into its tokens; `None` if a token has characters
/// outside NQCHAR (RFC 6749 section 3.3) or the list is empty.
pub fn parse_scope(raw: &str) -> Option<Vec<String>> {
    let mut scopes: Vec<String> = Vec::new();
    for token in raw.split(' ').filter(|token| !token.is_empty()) {
        if !token.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b)) {
            return None;
        }
        if !scopes.iter().any(|seen| seen == token) {
            scopes.push(token.to_string());
        }
    }
    (!scopes.is_empty()).then_some(scopes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uri_rules() {
        let cases: &[(&str, &str, bool)] = &[
            ("https with path", "https://app.example/cb", true),
            ("https with query", "https://app.example/cb?x=1", true),
            ("loopback ipv4 http", "http://127.0.0.1:8910/cb", true),
            ("loopback ipv6 http", "http://[::1]/cb", true),
            ("localhost http", "http://localhost:3000/cb", true),
            ("upper-case https scheme", "HTTPS://app.example/cb", true),
            ("plain http elsewhere", "http://app.example/cb", false),
            ("fragment", "https://app.example/cb#x", false),
            ("empty fragment", "https://app.example/cb#", false),
            ("userinfo", "https://user:pw@app.example/cb", false),
            ("username only", "https://user@app.example/cb", false),
            ("relative", "/cb", false),
            ("javascript", "javascript:alert(1)", false),
            ("javascript upper case", "JAVASCRIPT:alert(1)", false),
            ("data", "data:text/html,hi", false),
            ("custom scheme", "com.example.app:/cb", false),
            ("space inside", "https://app.example/c b", false),
            ("empty", "", false),
        ];
        for (description, uri, accepted) in cases {
            assert_eq!(validate_redirect_uri(uri).is_ok(), *accepted, "{description}: {uri}");
        }
    }

    #[test]
    fn loopback_redirect_may_differ_only_in_port() {
        let registered = vec!["http://127.0.0.1/cb".to_string(), "https://app.example/cb".to_string()];
        assert_eq!(match_redirect_uri(&registered, "http://127.0.0.1:53121/cb"), Some("http://127.0.0.1/cb"));
        assert_eq!(match_redirect_uri(&registered, "http://127.0.0.1:53121/other"), None);
        assert_eq!(match_redirect_uri(&registered, "https://app.example:8443/cb"), None);
        assert_eq!(match_redirect_uri(&registered, "https://app.example/cb/"), None);
        assert_eq!(match_redirect_uri(&registered, "https://app.example/cb"), Some("https://app.example/cb"));
    }

    #[test]
    fn loopback_matching_is_textual_apart_from_the_port() {
        let registered = vec!["http://127.0.0.1:7000/cb".to_string(), "http://[::1]/cb".to_string()];
        let cases = [
            ("other port", "http://127.0.0.1:51000/cb", true),
            ("no port", "http://127.0.0.1/cb", true),
            ("ipv6 with port", "http://[::1]:6000/cb", true),
            ("dot segments", "http://127.0.0.1:7000/x/../cb", false),
            ("encoded dot segments", "http://127.0.0.1:7000/x/%2e%2e/cb", false),
            ("backslashes", "http://127.0.0.1:7000/x\\..\\cb", false),
            ("short ipv4 form", "http://127.1:7000/cb", false),
            ("upper-case scheme", "HTTP://127.0.0.1:7000/cb", false),
            ("empty port", "http://127.0.0.1:/cb", false),
            ("other host", "http://127.0.0.2:7000/cb", false),
            ("trailing slash", "http://127.0.0.1:7000/cb/", false),
        ];
        for (description, requested, matches) in cases {
            assert_eq!(match_redirect_uri(&registered, requested).is_some(), matches, "{description}: {requested}");
        }
    }

    #[test]
    fn pkce_s256_appendix_b_example() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(is_valid_verifier(verifier));
        assert!(is_s256_challenge(challenge));
        assert!(verifier_matches(verifier, challenge));
        assert!(!verifier_matches(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"));
    }

    #[test]
    fn verifier_form_is_checked() {
        assert!(!is_valid_verifier(&"a".repeat(42)));
        assert!(is_valid_verifier(&"a".repeat(128)));
        assert!(!is_valid_verifier(&"a".repeat(129)));
        assert!(!is_valid_verifier(&format!("{}+", "a".repeat(50))));
    }

    #[test]
    fn scope_parsing_deduplicates_and_rejects_bad_characters() {
        assert_eq!(parse_scope("read  read"), Some(vec!["read".to_string()]));
        assert_eq!(parse_scope("a b"), Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(parse_scope("  "), None);
        assert_eq!(parse_scope("a\"b"), None);
        assert_eq!(parse_scope("a\\b"), None);
    }
}

