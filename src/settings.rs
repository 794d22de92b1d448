//! Settings: command-line flags, each with an environment variable, over an optional TOML file, over defaults.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use ucca_actors::clients::AuthMethod;
use ucca_actors::mailer::RetryPolicy;
use ucca_actors::oauth::validate_redirect_uri;
use ucca_actors::secret::Secret;
use ucca_web::ForwardRoute;

/// Settings read only from the environment: secrets stay out of the process
/// list and of shell history, so they have no flag.
const ENVIRONMENT_ONLY: &str = "\
Environment variables without a flag:
  OPS_API_KEY                 Bearer key of the ops API [default: unset, so the ops endpoints answer 503]
  UCCA_STRIPE_WEBHOOK_SECRET  Secret that signs Stripe webhook events [default: unset, so the webhook answers 503]
  UCCA_SMTP_PASSWORD          Password for the user of --smtp-url when the URL carries none [default: unset]
  UCCA_SMS_AUTH_TOKEN         Auth token of the --sms-gateway-url account [default: unset]
  UCCA_LOG                    Log filter, such as debug or ucca::security=info [default: info]";

#[derive(Debug, Parser)]
#[command(name = "ucca-auth", version, about = "Self-hosted identity root: magic-link sign-in, an OAuth 2.1 authorization server and the protected APIs it guards.")]
#[command(args_conflicts_with_subcommands = true)]
#[command(after_help = ENVIRONMENT_ONLY)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server; this is also what `ucca-auth` with no subcommand does.
    #[command(after_help = ENVIRONMENT_ONLY)]
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
    /// TOML file with settings; flags and environment variables override it [default: unset].
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
    /// SMTP relay URL: smtps://user@host for TLS, smtp://user@host:587?tls=required for STARTTLS, or smtp://localhost:25 for an
    /// unencrypted local relay. The password goes in the URL or in UCCA_SMTP_PASSWORD [default: unset, so mail is written as .eml files to <data-dir>/outbox/].
    #[arg(long, env = "UCCA_SMTP_URL", value_name = "URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender of outgoing mail, as an address or "Name <address>" [default: ucca-auth <no-reply@ and the issuer's host>, or localhost in place of a host that is an IP address].
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
    /// Base URL of an SMS gateway that speaks Twilio's Messages API, such as https://api.twilio.com; https unless on loopback.
    /// The auth token comes from UCCA_SMS_AUTH_TOKEN [default: unset, so text messages are written as .txt files to <data-dir>/outbox/].
    #[arg(long, env = "UCCA_SMS_GATEWAY_URL", value_name = "URL")]
    pub sms_gateway_url: Option<String>,
    /// Account SID on the SMS gateway, letters and digits [default: unset; required with --sms-gateway-url].
    #[arg(long, env = "UCCA_SMS_ACCOUNT_SID", value_name = "SID")]
    pub sms_account_sid: Option<String>,
    /// Sender of text messages: an E.164 number or a sender id the gateway account owns [default: unset; required with --sms-gateway-url].
    #[arg(long, env = "UCCA_SMS_FROM", value_name = "SENDER")]
    pub sms_from: Option<String>,
    /// Comma-separated country calling codes whose numbers may receive verification codes, digits without + [default: 61, Australia].
    #[arg(long, env = "UCCA_SMS_COUNTRY_CODES", value_name = "CODE,CODE", value_delimiter = ',')]
    pub sms_country_codes: Option<Vec<String>>,
    /// Verification codes this server sends per UTC day, to all numbers together [default: 200].
    #[arg(long, env = "UCCA_SMS_DAILY_CAP", value_name = "COUNT")]
    pub sms_daily_cap: Option<u64>,
    /// Verification codes sent to one phone number per hour [default: 3].
    #[arg(long, env = "UCCA_PHONE_CODES_PER_NUMBER", value_name = "COUNT")]
    pub phone_codes_per_number: Option<u64>,
    /// Verification codes requested from one IP address per hour [default: 10].
    #[arg(long, env = "UCCA_PHONE_CODES_PER_IP", value_name = "COUNT")]
    pub phone_codes_per_ip: Option<u64>,
    /// Sign-in links mailed to one address per hour [default: 5].
    #[arg(long, env = "UCCA_LINK_REQUESTS_PER_ADDRESS", value_name = "COUNT")]
    pub link_requests_per_address: Option<u64>,
    /// Sign-in links requested from one IP address per hour [default: 30].
    #[arg(long, env = "UCCA_LINK_REQUESTS_PER_IP", value_name = "COUNT")]
    pub link_requests_per_ip: Option<u64>,
    /// Tool set the /mcp endpoint serves: corpus (the tiered corpus tools) or framework (the ucco:framework tools) [default: corpus].
    #[arg(long, env = "UCCA_MCP_TOOLS", value_name = "SET")]
    pub mcp_tools: Option<McpToolSet>,
    /// JSON framework file that the framework tool set serves [default: the demo framework built into the binary].
    #[arg(long, env = "UCCA_FRAMEWORK", value_name = "FILE")]
    pub framework: Option<PathBuf>,
    /// Comma-separated origins (scheme://host[:port]) whose browser requests /mcp serves; a request with another Origin gets 403 [default: none].
    #[arg(long, env = "UCCA_MCP_ALLOWED_ORIGINS", value_name = "ORIGIN,ORIGIN", value_delimiter = ',')]
    pub mcp_allowed_origins: Option<Vec<String>>,
    /// Whether POST /oauth/register accepts dynamic client registrations (RFC 7591): true or false [default: true].
    #[arg(long, env = "UCCA_DYNAMIC_REGISTRATION", value_name = "BOOL")]
    pub dynamic_registration: Option<bool>,
    /// Whether a client id may be the https URL of a client ID metadata document: true or false [default: true].
    #[arg(long, env = "UCCA_CLIENT_METADATA_DOCUMENTS", value_name = "BOOL")]
    pub client_metadata_documents: Option<bool>,
    /// For tests only: also fetch client ID metadata documents over http from loopback addresses: true or false [default: false].
    #[arg(long, env = "UCCA_CLIENT_METADATA_TEST_MODE", value_name = "BOOL")]
    pub client_metadata_test_mode: Option<bool>,
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
    sms_gateway_url: Option<String>,
    sms_account_sid: Option<String>,
    sms_from: Option<String>,
    sms_country_codes: Option<Vec<String>>,
    sms_daily_cap: Option<u64>,
    phone_codes_per_number: Option<u64>,
    phone_codes_per_ip: Option<u64>,
    link_requests_per_address: Option<u64>,
    link_requests_per_ip: Option<u64>,
    mcp_tools: Option<McpToolSet>,
    framework: Option<PathBuf>,
    mcp_allowed_origins: Option<Vec<String>>,
    dynamic_registration: Option<bool>,
    client_metadata_documents: Option<bool>,
    client_metadata_test_mode: Option<bool>,
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
    /// From `UCCA_SMTP_PASSWORD` only: the password for the SMTP URL's user when the URL carries none.
    pub smtp_password: Option<Secret>,
    /// Retries of mail the SMTP relay refused for now; not a flag, tests shorten it.
    pub mail_retry: RetryPolicy,
    /// Time between sweeps of expired records and ended grace periods; not a flag, tests shorten it.
    pub sweep_interval: std::time::Duration,
    pub sms_gateway_url: Option<String>,
    pub sms_account_sid: Option<String>,
    /// From `UCCA_SMS_AUTH_TOKEN` only.
    pub sms_auth_token: Option<Secret>,
    pub sms_from: Option<String>,
    /// Country calling codes, digits without `+`.
    pub sms_country_codes: Vec<String>,
    /// Codes per UTC day.
    pub sms_daily_cap: u64,
    /// Codes per hour.
    pub phone_codes_per_number: u64,
    /// Codes per hour.
    pub phone_codes_per_ip: u64,
    /// Links per hour.
    pub link_requests_per_address: u64,
    /// Links per hour.
    pub link_requests_per_ip: u64,
    /// The tool set `/mcp` serves.
    pub mcp_tools: McpToolSet,
    /// `None` uses the demo framework built into the binary.
    pub framework: Option<PathBuf>,
    /// Origins in the form `scheme://host[:port]`.
    pub mcp_allowed_origins: Vec<String>,
    pub dynamic_registration: bool,
    pub client_metadata_documents: bool,
    /// Lets metadata documents be fetched over http from loopback addresses; for tests only.
    pub client_metadata_test_mode: bool,
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
            smtp_password: None,
            mail_retry: RetryPolicy::default(),
            sweep_interval: std::time::Duration::from_secs(60),
            sms_gateway_url: None,
            sms_account_sid: None,
            sms_auth_token: None,
            sms_from: None,
            sms_country_codes: vec!["61".to_string()],
            sms_daily_cap: 200,
            phone_codes_per_number: 3,
            phone_codes_per_ip: 10,
            link_requests_per_address: 5,
            link_requests_per_ip: 30,
            mcp_tools: McpToolSet::Corpus,
            framework: None,
            mcp_allowed_origins: Vec::new(),
            dynamic_registration: true,
            client_metadata_documents: true,
            client_metadata_test_mode: false,
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
            smtp_password: secret_from_env("UCCA_SMTP_PASSWORD"),
            mail_retry: defaults.mail_retry,
            sweep_interval: defaults.sweep_interval,
            sms_gateway_url: args.sms_gateway_url.or(file.sms_gateway_url),
            sms_account_sid: args.sms_account_sid.or(file.sms_account_sid),
            sms_auth_token: secret_from_env("UCCA_SMS_AUTH_TOKEN"),
            sms_from: args.sms_from.or(file.sms_from),
            sms_country_codes: args.sms_country_codes.or(file.sms_country_codes).unwrap_or(defaults.sms_country_codes),
            sms_daily_cap: args.sms_daily_cap.or(file.sms_daily_cap).unwrap_or(defaults.sms_daily_cap),
            phone_codes_per_number: args.phone_codes_per_number.or(file.phone_codes_per_number).unwrap_or(defaults.phone_codes_per_number),
            phone_codes_per_ip: args.phone_codes_per_ip.or(file.phone_codes_per_ip).unwrap_or(defaults.phone_codes_per_ip),
            link_requests_per_address: args
                .link_requests_per_address
                .or(file.link_requests_per_address)
                .unwrap_or(defaults.link_requests_per_address),
            link_requests_per_ip: args.link_requests_per_ip.or(file.link_requests_per_ip).unwrap_or(defaults.link_requests_per_ip),
            mcp_tools: args.mcp_tools.or(file.mcp_tools).unwrap_or(defaults.mcp_tools),
            framework: args.framework.or(file.framework),
            mcp_allowed_origins: normalize_origins(args.mcp_allowed_origins.or(file.mcp_allowed_origins).unwrap_or_default())?,
            dynamic_registration: args.dynamic_registration.or(file.dynamic_registration).unwrap_or(defaults.dynamic_registration),
            client_metadata_documents: args
                .client_metadata_documents
                .or(file.client_metadata_documents)
                .unwrap_or(defaults.client_metadata_documents),
            client_metadata_test_mode: args
                .client_metadata_test_mode
                .or(file.client_metadata_test_mode)
                .unwrap_or(defaults.client_metadata_test_mode),
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
        validate_messaging(&settings)?;
        Ok(settings)
    }
}

fn secret_from_env(name: &str) -> Option<Secret> {
    std::env::var(name).ok().filter(|value| !value.is_empty()).map(Secret::from_presented)
}

/// Checks the mail and SMS settings and the abuse limits.
pub fn validate_messaging(settings: &Settings) -> Result<(), SettingsError> {
    let invalid = |message: String| Err(SettingsError::Invalid(message));
    if let Some(url) = &settings.smtp_url {
        let scheme = url::Url::parse(url).map(|parsed| parsed.scheme().to_string());
        if !matches!(scheme.as_deref(), Ok("smtp" | "smtps")) {
            return invalid("smtp-url must be an smtps:// or smtp:// URL, such as smtps://user@smtp.example.org".into());
        }
    } else if settings.smtp_password.is_some() {
        return invalid("UCCA_SMTP_PASSWORD is set but smtp-url is not; set smtp-url to the relay it belongs to".into());
    }

    match &settings.sms_gateway_url {
        Some(url) => {
            validate_gateway_url(url)?;
            let sid_ok = settings.sms_account_sid.as_ref().is_some_and(|sid| {
                (1..=64).contains(&sid.len()) && sid.bytes().all(|b| b.is_ascii_alphanumeric())
            });
            if !sid_ok {
                return invalid("sms-account-sid must be set with sms-gateway-url, as 1 to 64 letters and digits".into());
            }
            if settings.sms_auth_token.is_none() {
                return invalid("UCCA_SMS_AUTH_TOKEN must be set with sms-gateway-url".into());
            }
            let from_ok = settings
                .sms_from
                .as_ref()
                .is_some_and(|from| (1..=32).contains(&from.len()) && !from.chars().any(char::is_control));
            if !from_ok {
                return invalid("sms-from must be set with sms-gateway-url, as 1 to 32 characters, such as +61400000000".into());
            }
        }
        None if settings.sms_account_sid.is_some() || settings.sms_auth_token.is_some() => {
            return invalid("an SMS account is configured but sms-gateway-url is not; set it, such as https://api.twilio.com".into());
        }
        None => {}
    }

    if settings.sms_country_codes.is_empty() {
        return invalid("sms-country-codes must name at least one country calling code, such as 61".into());
    }
    for code in &settings.sms_country_codes {
        let valid = (1..=3).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_digit()) && !code.starts_with('0');
        if !valid {
            return invalid(format!("sms-country-codes entry {code:?} must be a country calling code of 1 to 3 digits without +, such as 61"));
        }
    }
    let limits = [
        ("sms-daily-cap", settings.sms_daily_cap),
        ("phone-codes-per-number", settings.phone_codes_per_number),
        ("phone-codes-per-ip", settings.phone_codes_per_ip),
        ("link-requests-per-address", settings.link_requests_per_address),
        ("link-requests-per-ip", settings.link_requests_per_ip),
    ];
    if let Some((name, _)) = limits.iter().find(|(_, value)| *value == 0) {
        return invalid(format!("{name} must be at least 1"));
    }
    Ok(())
}

/// Checks an SMS gateway base URL: http(s) with a host and no query, https unless the host is loopback,
/// because requests carry the account's credentials.
fn validate_gateway_url(raw: &str) -> Result<(), SettingsError> {
    let invalid = |reason: &str| SettingsError::Invalid(format!("sms-gateway-url {raw:?} is invalid: {reason}"));
    let url = url::Url::parse(raw).map_err(|error| invalid(&error.to_string()))?;
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it must be scheme, host, optional port and optional path only"));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => return Err(invalid("it has no host")),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(invalid("it must use https unless its host is loopback")),
    }
}

/// The tool set an instance's `/mcp` endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum McpToolSet {
    /// Search, lookup and the tiered tools over the training corpus.
    #[default]
    Corpus,
    /// The ucco:framework tools over a framework file.
    Framework,
}

/// Checks each allowed origin and writes it as browsers send `Origin`: lower-case scheme and host, no default port, no slash.
fn normalize_origins(raw: Vec<String>) -> Result<Vec<String>, SettingsError> {
    raw.iter()
        .map(|origin| {
            let invalid = |reason: &str| SettingsError::Invalid(format!("mcp allowed origin {origin:?} is invalid: {reason}"));
            let url = url::Url::parse(origin.trim()).map_err(|error| invalid(&error.to_string()))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid("it must be http or https"));
            }
            if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
                return Err(invalid("it must be scheme, host and optional port only, such as https://app.example"));
            }
            Ok(url.origin().ascii_serialization())
        })
        .collect()
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

    #[test]
    fn messaging_rules() {
        fn gateway(settings: &mut Settings) {
            settings.sms_gateway_url = Some("https://api.twilio.com".into());
            settings.sms_account_sid = Some("AC0123456789abcdef".into());
            settings.sms_auth_token = Some(Secret::from_presented("token"));
            settings.sms_from = Some("+61400000000".into());
        }
        type Change = fn(&mut Settings);
        let cases: [(&str, Change, bool); 14] = [
            ("defaults", |_| {}, true),
            ("smtps relay", |s| s.smtp_url = Some("smtps://mailer@smtp.example.org".into()), true),
            ("relay of another scheme", |s| s.smtp_url = Some("https://smtp.example.org".into()), false),
            ("SMTP password without a relay", |s| s.smtp_password = Some(Secret::from_presented("p")), false),
            ("complete gateway", gateway, true),
            ("loopback http gateway", |s| { gateway(s); s.sms_gateway_url = Some("http://127.0.0.1:9000".into()) }, true),
            ("plain http gateway elsewhere", |s| { gateway(s); s.sms_gateway_url = Some("http://sms.example.org".into()) }, false),
            ("gateway without a token", |s| { gateway(s); s.sms_auth_token = None }, false),
            ("gateway SID with a slash", |s| { gateway(s); s.sms_account_sid = Some("AC/../x".into()) }, false),
            ("account without a gateway", |s| s.sms_account_sid = Some("AC01".into()), false),
            ("country code with a plus", |s| s.sms_country_codes = vec!["+61".into()], false),
            ("no country codes", |s| s.sms_country_codes = Vec::new(), false),
            ("zero daily cap", |s| s.sms_daily_cap = 0, false),
            ("zero link limit", |s| s.link_requests_per_ip = 0, false),
        ];
        for (description, change, accepted) in cases {
            let mut settings = Settings::defaults();
            change(&mut settings);
            assert_eq!(validate_messaging(&settings).is_ok(), accepted, "{description}");
        }
    }
}
