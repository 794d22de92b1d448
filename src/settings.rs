//! Settings: command-line flags, each with an environment variable, over an optional TOML file, over defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use ucca_actors::secret::Secret;

#[derive(Debug, Parser)]
#[command(name = "ucca-auth", version, about = "Self-hosted identity root: magic-link sign-in, an OAuth 2.1 authorization server and the protected APIs it guards.")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server; this is also what `ucca-auth` with no subcommand does.
    Serve(ServeArgs),
}

/// Flags of `serve`. Each is optional here so that the file and the defaults can fill the gaps.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML file with settings; flags and environment variables override it.
    #[arg(long, env = "UCCA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address of the public listener [default: 127.0.0.1:8080].
    #[arg(long, env = "UCCA_BIND", value_name = "ADDR:PORT")]
    pub bind: Option<SocketAddr>,
    /// Address of the ops listener; keep it on loopback [default: 127.0.0.1:8081].
    #[arg(long, env = "UCCA_OPS_BIND", value_name = "ADDR:PORT")]
    pub ops_bind: Option<SocketAddr>,
    /// Directory for the store and the mail outbox [default: ./var].
    #[arg(long, env = "UCCA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Public base URL, https unless on loopback, without a path or trailing slash [default: http:// and the bound public address].
    #[arg(long, env = "UCCA_ISSUER", value_name = "URL")]
    pub issuer: Option<String>,
    /// JSON file of training units and qualifications [default: the demo corpus built into the binary].
    #[arg(long, env = "UCCA_CORPUS", value_name = "FILE")]
    pub corpus: Option<PathBuf>,
    /// Access token lifetime in seconds [default: 3600].
    #[arg(long, env = "UCCA_ACCESS_TTL", value_name = "SECONDS")]
    pub access_ttl: Option<u64>,
    /// SMTP relay URL as lettre reads it, such as smtp://localhost:25 [default: unset, so mail is written as .eml files to <data-dir>/outbox/].
    #[arg(long, env = "UCCA_SMTP_URL", value_name = "URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender address of outgoing mail [default: no-reply@ and the issuer's host].
    #[arg(long, env = "UCCA_MAIL_FROM", value_name = "ADDRESS")]
    pub mail_from: Option<String>,
}

/// The same settings as they may appear in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    bind: Option<SocketAddr>,
    ops_bind: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    issuer: Option<String>,
    corpus: Option<PathBuf>,
    access_ttl: Option<u64>,
    smtp_url: Option<String>,
    mail_from: Option<String>,
}

/// Resolved settings for one server.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub ops_bind: SocketAddr,
    pub data_dir: PathBuf,
    /// `None` derives the issuer from the bound public address.
    pub issuer: Option<String>,
    /// `None` uses the demo corpus built into the binary.
    pub corpus: Option<PathBuf>,
    /// Seconds.
    pub access_ttl: u64,
    pub smtp_url: Option<String>,
    pub mail_from: Option<String>,
    pub ops_api_key: Option<Secret>,
    /// HTTP worker threads on the public listener.
    pub http_workers: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("settings file {path} is invalid: {message}")]
    Parse { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    /// Defaults for every setting, with no ops key.
    pub fn defaults() -> Settings {
        Settings {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ops_bind: SocketAddr::from(([127, 0, 0, 1], 8081)),
            data_dir: PathBuf::from("./var"),
            issuer: None,
            corpus: None,
            access_ttl: 3600,
            smtp_url: None,
            mail_from: None,
            ops_api_key: None,
            http_workers: std::thread::available_parallelism().map_or(2, |cores| cores.get()),
        }
    }

    /// Resolves flags and their environment variables over the file they name over the defaults.
    /// `OPS_API_KEY` is read from the environment only, so it never appears in a process listing.
    pub fn resolve(args: ServeArgs) -> Result<Settings, SettingsError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let defaults = Settings::defaults();
        let ops_api_key = std::env::var("OPS_API_KEY").ok().filter(|key| !key.is_empty()).map(Secret::from_presented);

        let settings = Settings {
            bind: args.bind.or(file.bind).unwrap_or(defaults.bind),
            ops_bind: args.ops_bind.or(file.ops_bind).unwrap_or(defaults.ops_bind),
            data_dir: args.data_dir.or(file.data_dir).unwrap_or(defaults.data_dir),
            issuer: args.issuer.or(file.issuer),
            corpus: args.corpus.or(file.corpus),
            access_ttl: args.access_ttl.or(file.access_ttl).unwrap_or(defaults.access_ttl),
            smtp_url: args.smtp_url.or(file.smtp_url),
            mail_from: args.mail_from.or(file.mail_from),
            ops_api_key,
            http_workers: defaults.http_workers,
        };
        if settings.access_ttl == 0 || settings.access_ttl > 86_400 {
            return Err(SettingsError::Invalid("access-ttl must be from 1 to 86400 seconds".into()));
        }
        Ok(settings)
    }
}

fn read_file(path: &Path) -> Result<FileSettings, SettingsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| SettingsError::Read { path: path.display().to_string(), source })?;
    toml::from_str(&text).map_err(|error| SettingsError::Parse { path: path.display().to_string(), message: error.to_string() })
}

/// Checks the issuer: an absolute https URL, or http on a loopback host, with no path, query, fragment or trailing slash.
pub fn validate_issuer(issuer: &str) -> Result<(), SettingsError> {
    let invalid = |reason: &str| SettingsError::Invalid(format!("issuer {issuer:?} is invalid: {reason}"));
    let url = url::Url::parse(issuer).map_err(|error| invalid(&error.to_string()))?;
    if issuer.ends_with('/') {
        return Err(invalid("remove the trailing slash"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it must be scheme, host and optional port only"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it must not contain user information"));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(invalid("it must use https unless its host is loopback")),
        _ => Err(invalid("it must use https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_rules() {
        let cases = [
            ("https host", "https://id.example.org", true),
            ("https with port", "https://id.example.org:8443", true),
            ("loopback http", "http://127.0.0.1:8080", true),
            ("localhost http", "http://localhost:8080", true),
            ("plain http elsewhere", "http://id.example.org", false),
            ("trailing slash", "https://id.example.org/", false),
            ("path", "https://id.example.org/tenant", false),
            ("query", "https://id.example.org?x=1", false),
            ("other scheme", "ftp://id.example.org", false),
            ("not a URL", "id.example.org", false),
        ];
        for (description, issuer, accepted) in cases {
            assert_eq!(validate_issuer(issuer).is_ok(), accepted, "{description}: {issuer}");
        }
    }
}
