//! Parsing of request input: `application/x-www-form-urlencoded` query strings and bodies, keeping repeats visible, and JSON object bodies.

/// Parameters in request order. A parameter sent with an empty value counts as omitted (RFC 6749 section 3.1).
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(raw: &[u8]) -> Params {
        Params { pairs: url::form_urlencoded::parse(raw).into_owned().collect() }
    }

    /// Returns the first of `defined` that appears more than once, ignoring empty
    /// values. Only parameters a specification defines count, because RFC 6749
    /// section 3.1 has the server ignore unrecognized parameters.
    pub fn repeated<'a>(&self, defined: &[&'a str]) -> Option<&'a str> {
        defined.iter().copied().find(|name| self.is_repeated(name))
    }

    /// Returns every non-empty value of `name`, in request order, without duplicates.
    pub fn distinct(&self, name: &str) -> Vec<&str> {
        let mut values: Vec<&str> = Vec::new();
        for (key, value) in &self.pairs {
            if key == name && !value.is_empty() && !values.contains(&value.as_str()) {
                values.push(value);
            }
        }
        values
    }

    /// Whether `name` appears more than once with a value.
    pub fn is_repeated(&self, name: &str) -> bool {
        self.pairs.iter().filter(|(key, value)| key == name && !value.is_empty()).count() > 1
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(key, value)| key == name && !value.is_empty()).map(|(_, value)| value.as_str())
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

/// Parses a request body that must be one JSON object into `T`. Serde's
/// message for a body of another JSON type names the Rust type, so that case
/// gets a message of its own.
pub fn json_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|error| format!("the body is not valid JSON: {error}"))?;
    if !value.is_object() {
        return Err("the body is not a JSON object".to_string());
    }
    serde_json::from_value(value).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_are_found_and_empty_values_ignored() {
        let params = Params::parse(b"a=1&b=&b=2&a=3&z=1&z=2");
        assert_eq!(params.repeated(&["b", "a"]), Some("a"));
        assert_eq!(params.repeated(&["b"]), None, "an empty value does not count");
        assert!(params.is_repeated("a"));
        assert!(!params.is_repeated("b"));
        assert_eq!(params.get("b"), Some("2"));
        assert_eq!(Params::parse(b"x=1&y=2").repeated(&["x", "y"]), None);
        assert_eq!(params.distinct("z"), ["1", "2"]);
        assert_eq!(Params::parse(b"r=x&r=x&r=").distinct("r"), ["x"]);
    }

    #[test]
    fn values_are_percent_decoded() {
        assert_eq!(Params::parse(b"redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&s=a+b").get("s"), Some("a b"));
    }

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        name: String,
    }

    #[test]
    fn json_object_rejects_other_types() {
        for body in [&b"[]"[..], b"\"text\"", b"7", b"null"] {
            let error = json_object::<Body>(body).unwrap_err();
            assert_eq!(error, "the body is not a JSON object", "{}", String::from_utf8_lossy(body));
        }
        assert!(json_object::<Body>(b"{").unwrap_err().starts_with("the body is not valid JSON"));
        assert_eq!(json_object::<Body>(b"{}").unwrap_err(), "missing field `name`");
        assert_eq!(json_object::<Body>(br#"{"name": "x"}"#).unwrap().name, "x");
    }
}
