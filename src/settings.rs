//! Settings: command-line flags, each with an environment variable, over an optional TOML file, over defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use ucca_actors::clients::AuthMethod;
use ucca_actors::oauth::validate_redirect_uri;
use ucca_actors::secret::Secret;
use ucca_web::ForwardRoute;

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
    /// Write every record of the store as JSON lines, for backup or for moving to another build. The server must be stopped.
    Export(ExportArgs),
    /// Load an export into an empty store, checking every line before writing any. The server must be stopped.
    Import(ImportArgs),
    /// Manage OAuth clients while the server is stopped; while it runs, use the ops API.
    #[command(subcommand)]
    Client(ClientCommand),
}

/// The data directory of an offline command, the same one `serve` uses.
#[derive(Debug, Clone, Default, Args)]
pub struct StoreArgs {
    /// TOML settings file; offline commands read only its data_dir and catalog, which flags and environment variables override [default: unset].
    #[arg(long, env = "UCCA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory that contains the store; no server may be running on it [default: ./var].
    #[arg(long, env = "UCCA_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Flags of `export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// File to write the export to, replaced only once the export is complete; - writes to standard output.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub output: PathBuf,
}

/// Flags of `import`.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Export file to read; - reads standard input.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub input: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register an OAuth client and print its client_id and, for a confidential client, its secret, which is shown only this once.
    Add(AddClientArgs),
}

/// Flags of `client add`, checked by the same rules as `POST /ops/clients`.
#[derive(Debug, Clone, Args)]
pub struct AddClientArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// TOML catalog whose issuable scopes --scope may name [default: data/catalog.toml, built into the binary].
    #[arg(long, env = "UCCA_CATALOG", value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Client name shown to people on the consent page, 1 to 200 bytes of UTF-8 without control characters.
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Redirect URI: https, or http on a loopback host, matched exactly except for a loopback port. Repeat for several, up to 20.
    #[arg(long = "redirect-uri", value_name = "URI", required = true, value_parser = parse_redirect_uri)]
    pub redirect_uris: Vec<String>,
    /// How the client authenticates at the token endpoint: client_secret_basic, client_secret_post, or none for a public client.
    #[arg(long, value_name = "METHOD", default_value = "client_secret_basic", value_parser = parse_auth_method)]
    pub auth_method: AuthMethod,
    /// Space-separated scopes the client may request, each issuable in the catalog [default: read].
    #[arg(long, value_name = "SCOPES")]
    pub scope: Option<String>,
}

fn parse_redirect_uri(raw: &str) -> Result<String, String> {
    validate_redirect_uri(raw).map(|()| raw.to_string())
}

fn parse_auth_method(raw: &str) -> Result<AuthMethod, String> {
    AuthMethod::parse(raw).ok_or_else(|| format!("{raw:?} is not supported; use client_secret_basic, client_secret_post or none"))
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
    /// TOML catalog of scopes, capabilities and plans [default: data/catalog.toml, built into the binary].
    #[arg(long, env = "UCCA_CATALOG", value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// Access token lifetime in seconds [default: 3600].
    #[arg(long, env = "UCCA_ACCESS_TTL", value_name = "SECONDS")]
    pub access_ttl: Option<u64>,
    /// Refresh token lifetime in seconds [default: 2592000, 30 days].
    #[arg(long, env = "UCCA_REFRESH_TTL", value_name = "SECONDS")]
    pub refresh_ttl: Option<u64>,
    /// SMTP relay URL as lettre reads it, such as smtp://localhost:25 [default: unset, so mail is written as .eml files to <data-dir>/outbox/].
    #[arg(long, env = "UCCA_SMTP_URL", value_name = "URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender address of outgoing mail [default: no-reply@ and the issuer's host].
    #[arg(long, env = "UCCA_MAIL_FROM", value_name = "ADDRESS")]
    pub mail_from: Option<String>,
    /// Comma-separated proxy addresses whose X-Forwarded-For is believed when finding a caller's IP [default: none].
    #[arg(long, env = "UCCA_TRUSTED_PROXIES", value_name = "IP,IP", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<IpAddr>>,
    /// Days to keep usage events [default: 396, about 13 months].
    #[arg(long, env = "UCCA_USAGE_RETENTION_DAYS", value_name = "DAYS")]
    pub usage_retention_days: Option<u64>,
    /// Days a subscription stays active after a failed payment [default: 7].
    #[arg(long, env = "UCCA_BILLING_GRACE_DAYS", value_name = "DAYS")]
    pub billing_grace_days: Option<u64>,
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
    catalog: Option<PathBuf>,
    access_ttl: Option<u64>,
    refresh_ttl: Option<u64>,
    smtp_url: Option<String>,
    mail_from: Option<String>,
    trusted_proxies: Option<Vec<IpAddr>>,
    usage_retention_days: Option<u64>,
    billing_grace_days: Option<u64>,
    #[serde(default)]
    forward_auth: ForwardAuthSettings,
}

/// The `[forward_auth]` table: routes of upstream services guarded through `/auth/check`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardAuthSettings {
    #[serde(default)]
    routes: Vec<ForwardRoute>,
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
    /// `None` uses the catalog built into the binary.
    pub catalog: Option<PathBuf>,
    /// Seconds.
    pub access_ttl: u64,
    /// Seconds.
    pub refresh_ttl: u64,
    /// Forward-auth routes, from the settings file only.
    pub forward_auth_routes: Vec<ForwardRoute>,
    pub smtp_url: Option<String>,
    pub mail_from: Option<String>,
    pub trusted_proxies: Vec<IpAddr>,
    /// Days.
    pub usage_retention_days: u64,
    /// Days.
    pub billing_grace_days: u64,
    pub ops_api_key: Option<Secret>,
    /// From `UCCA_STRIPE_WEBHOOK_SECRET` only.
    pub stripe_webhook_secret: Option<Secret>,
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
            catalog: None,
            access_ttl: 3600,
            refresh_ttl: 30 * 86_400,
            forward_auth_routes: Vec::new(),
            smtp_url: None,
            mail_from: None,
            trusted_proxies: Vec::new(),
            usage_retention_days: 396,
            billing_grace_days: 7,
            ops_api_key: None,
            stripe_webhook_secret: None,
            http_workers: std::thread::available_parallelism().map_or(2, |cores| cores.get()),
        }
    }

    /// Resolves flags and their environment variables over the file they name over the defaults.
    /// `OPS_API_KEY` and `UCCA_STRIPE_WEBHOOK_SECRET` are read from the environment
    /// only, so they never appear in a process listing.
    pub fn resolve(args: ServeArgs) -> Result<Settings, SettingsError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let defaults = Settings::defaults();
        let ops_api_key = std::env::var("OPS_API_KEY").ok().filter(|key| !key.is_empty()).map(Secret::from_presented);
        let stripe_webhook_secret =
            std::env::var("UCCA_STRIPE_WEBHOOK_SECRET").ok().filter(|key| !key.is_empty()).map(Secret::from_presented);

        let settings = Settings {
            bind: args.bind.or(file.bind).unwrap_or(defaults.bind),
            ops_bind: args.ops_bind.or(file.ops_bind).unwrap_or(defaults.ops_bind),
            data_dir: args.data_dir.or(file.data_dir).unwrap_or(defaults.data_dir),
            issuer: args.issuer.or(file.issuer),
            corpus: args.corpus.or(file.corpus),
            catalog: args.catalog.or(file.catalog),
            access_ttl: args.access_ttl.or(file.access_ttl).unwrap_or(defaults.access_ttl),
            refresh_ttl: args.refresh_ttl.or(file.refresh_ttl).unwrap_or(defaults.refresh_ttl),
            forward_auth_routes: file.forward_auth.routes,
            smtp_url: args.smtp_url.or(file.smtp_url),
            mail_from: args.mail_from.or(file.mail_from),
            trusted_proxies: args.trusted_proxies.or(file.trusted_proxies).unwrap_or_default(),
            usage_retention_days: args.usage_retention_days.or(file.usage_retention_days).unwrap_or(defaults.usage_retention_days),
            billing_grace_days: args.billing_grace_days.or(file.billing_grace_days).unwrap_or(defaults.billing_grace_days),
            ops_api_key,
            stripe_webhook_secret,
            http_workers: defaults.http_workers,
        };
        if settings.access_ttl == 0 || settings.access_ttl > 86_400 {
            return Err(SettingsError::Invalid("access-ttl must be from 1 to 86400 seconds".into()));
        }
        if settings.refresh_ttl < settings.access_ttl || settings.refresh_ttl > 365 * 86_400 {
            return Err(SettingsError::Invalid("refresh-ttl must be at least access-ttl and at most 31536000 seconds (a year)".into()));
        }
        if settings.usage_retention_days == 0 {
            return Err(SettingsError::Invalid("usage-retention-days must be at least 1".into()));
        }
        if let Some(route) = settings.forward_auth_routes.iter().find(|route| !route.prefix.starts_with('/')) {
            return Err(SettingsError::Invalid(format!("forward_auth route prefix {:?} must start with /", route.prefix)));
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
