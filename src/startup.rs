//! Start-up: binds the listeners, opens the store, starts the actors and builds both servers.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use ucca_actors::accounts::{AccountsConfig, LinkLimits};
use ucca_actors::catalog::{Catalog, CatalogError};
use ucca_actors::corpus::{Corpus, CorpusError};
use ucca_actors::mailer::{redacted_url, MailConfig, MailTransport, SmtpRelay};
use ucca_actors::phone::PhoneConfig;
use ucca_actors::ratelimit::Limit;
use ucca_actors::sms::{SmsConfig, SmsTransport, TwilioConfig};
use ucca_actors::services::StartError;
use ucca_actors::{Clock, Services, ServicesConfig, Store, StoreError, SweeperHandle};
use ucca_web::mcp::framework::FrameworkError;
use ucca_web::mcp::{Framework, McpTools};
use ucca_web::{AppState, WebConfig};

use crate::settings::{validate_issuer, validate_messaging, McpToolSet, Settings, SettingsError};

/// The demo corpus shipped in `data/`, built in so the binary runs from any directory.
const DEMO_CORPUS: &str = include_str!("../data/corpus.json");
/// The catalog shipped in `data/`, built in for the same reason.
const DEFAULT_CATALOG: &str = include_str!("../data/catalog.toml");
/// The demo framework shipped in `data/`, served by `--mcp-tools framework` without `--framework`.
const DEMO_FRAMEWORK: &str = include_str!("../data/framework.json");
/// Seconds a stopping server waits for in-flight requests.
const SHUTDOWN_TIMEOUT: u64 = 10;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Corpus(#[from] CorpusError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Framework(#[from] FrameworkError),
    #[error("cannot listen on {address}: {source}")]
    Bind { address: SocketAddr, source: std::io::Error },
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start the actors: {0}")]
    Actors(#[from] StartError),
    #[error("server failed: {0}")]
    Server(#[from] std::io::Error),
}

/// A built server, listening but not yet running.
pub struct Application {
    public_address: SocketAddr,
    ops_address: SocketAddr,
    issuer: String,
    public: Server,
    ops: Server,
    services: Services,
    sweeper: SweeperHandle,
}

impl Application {
    /// Builds the application on the configured addresses; port 0 picks a free port.
    /// Must run inside an actix system.
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> Result<Application, StartupError> {
        let corpus = match &settings.corpus {
            Some(path) => Corpus::load(path)?,
            None => Corpus::from_json("built-in demo corpus", DEMO_CORPUS)?,
        };
        let catalog = Arc::new(load_catalog(&settings)?);
        let mcp_tools = load_mcp_tools(&settings)?;

        let public_listener = bind(settings.bind)?;
        let ops_listener = bind(settings.ops_bind)?;
        let public_address = local_address(&public_listener, settings.bind)?;
        let ops_address = local_address(&ops_listener, settings.ops_bind)?;
        let issuer = settings.issuer.clone().unwrap_or_else(|| format!("http://{public_address}"));
        validate_issuer(&issuer)?;
        validate_messaging(&settings)?;

        std::fs::create_dir_all(&settings.data_dir)?;
        let store = Store::open(&settings.data_dir.join("store"))?;
        let mail = mail_config(&settings, &issuer)?;
        let services_config = ServicesConfig {
            workers: 4,
            accounts: accounts_config(&settings),
            mail,
            sms: sms_config(&settings)?,
            sweep_interval: settings.sweep_interval,
            usage_retention: settings.usage_retention_days * 86_400,
            billing_grace: settings.billing_grace_days * 86_400,
        };
        let (services, sweeper) = Services::start(store.clone(), services_config, catalog.clone(), clock.clone())?;

        let web_config = WebConfig {
            issuer: issuer.clone(),
            access_ttl: settings.access_ttl,
            refresh_ttl: settings.refresh_ttl,
            forward_auth_routes: settings.forward_auth_routes.clone(),
            trusted_proxies: settings.trusted_proxies.clone(),
            ops_api_key: settings.ops_api_key.clone(),
            stripe_webhook_secret: settings.stripe_webhook_secret.clone(),
            http_workers: settings.http_workers,
            shutdown_timeout: SHUTDOWN_TIMEOUT,
            mcp_allowed_origins: settings.mcp_allowed_origins.clone(),
            mcp_tools,
            dynamic_registration: settings.dynamic_registration,
            client_metadata_documents: settings.client_metadata_documents,
            client_metadata_test_mode: settings.client_metadata_test_mode,
        };
        let state = AppState::new(services.clone(), Arc::new(corpus), catalog, web_config, clock);
        let public = ucca_web::public_server(public_listener, state.clone())?;
        let ops = ucca_web::ops_server(ops_listener, state)?;

        tracing::info!(
            public = %public_address,
            ops = %ops_address,
            issuer = %issuer,
            data_dir = %settings.data_dir.display(),
            ops_api = if settings.ops_api_key.is_some() { "enabled" } else { "disabled: OPS_API_KEY is not set" },
            "ucca-auth listening"
        );
        Ok(Application { public_address, ops_address, issuer, public, ops, services, sweeper })
    }

    pub fn public_address(&self) -> SocketAddr {
        self.public_address
    }

    pub fn ops_address(&self) -> SocketAddr {
        self.ops_address
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Handles that stop both servers, for tests and embedding.
    pub fn handles(&self) -> (ServerHandle, ServerHandle) {
        (self.public.handle(), self.ops.handle())
    }

    /// Serves until SIGINT or SIGTERM (or a handle) stops the servers, which
    /// drain in-flight requests; then flushes the store.
    pub async fn run_until_stopped(self) -> Result<(), StartupError> {
        let handles = self.handles();
        let signals = actix_web::rt::spawn(async move {
            wait_for_shutdown_signal().await;
            tracing::info!(timeout_seconds = SHUTDOWN_TIMEOUT, "shutdown signal received; draining in-flight requests");
            // Both stop together: an idle server finishing first must not end the process under the busy one.
            let (public, ops) = handles;
            let (_, _) = futures_util::future::join(public.stop(true), ops.stop(true)).await;
        });

        let (public, ops) = futures_join(self.public, self.ops).await;
        signals.abort();
        self.sweeper.stop().await;
        // Writes buffered usage events and commits everything, counters included.
        self.services.flush().await?;
        tracing::info!("ucca-auth stopped; store flushed");
        public?;
        ops?;
        Ok(())
    }
}

async fn futures_join(public: Server, ops: Server) -> (std::io::Result<()>, std::io::Result<()>) {
    let public_handle = public.handle();
    let ops_handle = ops.handle();
    let public_task = actix_web::rt::spawn(public);
    let ops_task = actix_web::rt::spawn(ops);

    // When either server stops, stop the other too, so neither outlives its twin.
    let public_result = flatten(public_task.await);
    ops_handle.stop(true).await;
    let ops_result = flatten(ops_task.await);
    public_handle.stop(true).await;
    (public_result, ops_result)
}

/// Waits for SIGTERM or SIGINT (Ctrl-C).
async fn wait_for_shutdown_signal() {
    use actix_web::rt::signal;
    #[cfg(unix)]
    {
        match signal::unix::signal(signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                futures_util::future::select(Box::pin(terminate.recv()), Box::pin(signal::ctrl_c())).await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM; only SIGINT stops the server gracefully");
                let _ = signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = signal::ctrl_c().await;
    }
}

fn flatten(joined: Result<std::io::Result<()>, actix_web::rt::task::JoinError>) -> std::io::Result<()> {
    joined.map_err(std::io::Error::other)?
}

/// Loads what the `/mcp` tool set needs: for the framework tools, the framework file the settings name or the built-in one.
fn load_mcp_tools(settings: &Settings) -> Result<McpTools, FrameworkError> {
    match settings.mcp_tools {
        McpToolSet::Corpus => Ok(McpTools::Corpus),
        McpToolSet::Framework => {
            let framework = match &settings.framework {
                Some(path) => Framework::load(path)?,
                None => Framework::from_json("built-in demo framework", DEMO_FRAMEWORK)?,
            };
            Ok(McpTools::Framework(Arc::new(framework)))
        }
    }
}

/// Loads the catalog the settings name, or the built-in one.
pub fn load_catalog(settings: &Settings) -> Result<Catalog, CatalogError> {
    match &settings.catalog {
        Some(path) => Catalog::load(path),
        None => Catalog::from_toml("built-in catalog", DEFAULT_CATALOG),
    }
}

fn bind(address: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(address).map_err(|source| StartupError::Bind { address, source })
}

fn local_address(listener: &TcpListener, address: SocketAddr) -> Result<SocketAddr, StartupError> {
    listener.local_addr().map_err(|source| StartupError::Bind { address, source })
}

fn mail_config(settings: &Settings, issuer: &str) -> Result<MailConfig, StartupError> {
    let host = url::Url::parse(issuer).ok().and_then(|url| url.host_str().map(str::to_string)).unwrap_or_default();
    // A bare IP literal is not a valid mail domain, so loopback issuers send from localhost.
    let domain = if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') { "localhost".to_string() } else { host };
    let from_text = settings.mail_from.clone().unwrap_or_else(|| format!("ucca-auth <no-reply@{domain}>"));
    let from = from_text
        .parse()
        .map_err(|_| SettingsError::Invalid(format!("mail-from {from_text:?} is not a valid mail address")))?;
    let transport = match &settings.smtp_url {
        Some(url) => {
            warn_if_unencrypted(url);
            MailTransport::Smtp(SmtpRelay {
                url: url.clone(),
                password: settings.smtp_password.clone(),
                retry: settings.mail_retry,
                timeout: SMTP_TIMEOUT,
            })
        }
        None => MailTransport::Outbox(outbox_dir(settings)),
    };
    match &transport {
        MailTransport::Smtp(relay) => tracing::info!(relay = %redacted_url(&relay.url), "mail goes to the SMTP relay"),
        MailTransport::Outbox(dir) => tracing::info!(outbox = %dir.display(), "mail is written to the outbox; set --smtp-url to send it"),
    }
    Ok(MailConfig { from, transport })
}

/// Plain `smtp://` is meant for a relay on the same host; elsewhere sign-in links would cross the network in the clear.
fn warn_if_unencrypted(url: &str) {
    let Ok(parsed) = url::Url::parse(url) else { return };
    let required_tls = parsed.query_pairs().any(|(name, value)| name == "tls" && value == "required");
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    if parsed.scheme() == "smtp" && !required_tls && !loopback {
        tracing::warn!(relay = %redacted_url(url), "mail to this relay is not encrypted; use smtps:// or add ?tls=required");
    }
}

/// Seconds one SMTP session may take, connection included.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Seconds one request to the SMS gateway may take, connection included.
const SMS_TIMEOUT: Duration = Duration::from_secs(10);

fn accounts_config(settings: &Settings) -> AccountsConfig {
    AccountsConfig {
        link_limits: LinkLimits {
            per_address: Limit::per_hour(settings.link_requests_per_address),
            per_ip: Limit::per_hour(settings.link_requests_per_ip),
        },
        phone: PhoneConfig {
            allowed_country_codes: settings.sms_country_codes.clone(),
            per_number: Limit::per_hour(settings.phone_codes_per_number),
            per_ip: Limit::per_hour(settings.phone_codes_per_ip),
            daily_cap: settings.sms_daily_cap,
            ..PhoneConfig::default()
        },
        ..AccountsConfig::default()
    }
}

fn sms_config(settings: &Settings) -> Result<SmsConfig, StartupError> {
    let gateway = (&settings.sms_gateway_url, &settings.sms_account_sid, &settings.sms_auth_token, &settings.sms_from);
    let transport = match gateway {
        (Some(base_url), Some(account_sid), Some(auth_token), Some(from)) => {
            tracing::info!(gateway = %base_url, "text messages go to the SMS gateway");
            SmsTransport::Twilio(TwilioConfig {
                base_url: base_url.clone(),
                account_sid: account_sid.clone(),
                auth_token: auth_token.clone(),
                from: from.clone(),
            })
        }
        (None, _, _, _) => {
            tracing::info!(outbox = %outbox_dir(settings).display(), "text messages are written to the outbox; set --sms-gateway-url to send them");
            SmsTransport::Outbox(outbox_dir(settings))
        }
        _ => {
            return Err(SettingsError::Invalid("sms-gateway-url needs sms-account-sid, sms-from and UCCA_SMS_AUTH_TOKEN".into()).into());
        }
    };
    Ok(SmsConfig { transport, timeout: SMS_TIMEOUT })
}

/// Where mail goes when no SMTP relay is configured.
pub fn outbox_dir(settings: &Settings) -> PathBuf {
    settings.data_dir.join("outbox")
}
