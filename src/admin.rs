//! Offline commands: export and import of the store, and client registration
//! while the server is stopped. Each opens the store itself, and sled locks it,
//! so each fails while a server runs on the same data directory.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ucca_actors::accounts::AccountsConfig;
use ucca_actors::catalog::{Catalog, CatalogError};
use ucca_actors::clients::{
    check_client_name, check_client_scopes, check_redirect_uris, MetadataError, RegisterClient, Registered, MAX_CLIENT_NAME_LEN,
    MAX_REDIRECT_URIS,
};
use ucca_actors::export::{self, ExportError, ImportError, RecordCounts};
use ucca_actors::mailer::{MailConfig, MailTransport};
use ucca_actors::{Clock, Services, ServicesConfig, Store, StoreError, SystemClock};
use ucca_auth::settings::{AddClientArgs, ExportArgs, ImportArgs, ServeArgs, Settings, SettingsError, StoreArgs};
use ucca_auth::startup::{load_catalog, outbox_dir};

/// Subdirectory of the data directory that contains the store, where start-up opens it.
const STORE_DIR: &str = "store";
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("no store found in {}: check --data-dir", .0.display())]
    NoStore(PathBuf),
    #[error("the store in {} is in use by a running server: stop it first, or use the ops API while it runs", .0.display())]
    InUse(PathBuf),
    #[error("cannot open the store in {}: {source}", .dir.display())]
    Open { dir: PathBuf, source: StoreError },
    #[error("cannot read {}: {source}", .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("import failed, nothing was written: {0}")]
    ImportRejected(ImportError),
    #[error("import failed: {0}")]
    Import(ImportError),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot register the client: {0}")]
    Register(String),
}

/// Resolves the data directory the way `serve` does: flag or variable, then the settings file, then the default.
fn resolve(store: &StoreArgs, catalog: Option<PathBuf>) -> Result<Settings, AdminError> {
    let args = ServeArgs { config: store.config.clone(), data_dir: store.data_dir.clone(), catalog, ..ServeArgs::default() };
    Ok(Settings::resolve(args)?)
}

/// Opens the store of `data_dir`; with `create` false, a missing store is an error rather than a new empty one.
fn open_store(data_dir: &Path, create: bool) -> Result<Store, AdminError> {
    let dir = data_dir.join(STORE_DIR);
    if !create && !dir.exists() {
        return Err(AdminError::NoStore(dir));
    }
    Store::open(&dir).map_err(|source| match source {
        StoreError::Locked(_) => AdminError::InUse(dir.clone()),
        other => AdminError::Open { dir: dir.clone(), source: other },
    })
}

fn is_standard_stream(path: &Path) -> bool {
    path == Path::new("-")
}

/// `ucca-auth export`: writes the store as JSON lines to a file or standard output.
pub fn export(args: ExportArgs) -> Result<(), AdminError> {
    let settings = resolve(&args.store, None)?;
    let store = open_store(&settings.data_dir, false)?;
    let now = SystemClock.now();

    let counts = if is_standard_stream(&args.output) {
        let mut output = BufWriter::new(std::io::stdout().lock());
        export::export(&store, &mut output, now)?
    } else {
        write_then_rename(&args.output, |output| export::export(&store, output, now))?
    };

    tracing::info!(
        records = counts.total(),
        trees = %counts,
        data_dir = %settings.data_dir.display(),
        output = %args.output.display(),
        "store exported"
    );
    Ok(())
}

/// Writes `path` through a sibling `.partial` file that is synced and renamed
/// only after `write` succeeds, so an earlier file at `path` is never left half replaced.
fn write_then_rename(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<RecordCounts, ExportError>,
) -> Result<RecordCounts, AdminError> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let write_error = |source| AdminError::Write { path: partial.clone(), source };

    let file = File::create(&partial).map_err(write_error)?;
    let mut output = BufWriter::new(file);
    let written = write(&mut output).map_err(AdminError::from).and_then(|counts| {
        let file = output.into_inner().map_err(|error| write_error(error.into_error()))?;
        file.sync_all().map_err(write_error)?;
        Ok(counts)
    });

    match written {
        Ok(counts) => {
            std::fs::rename(&partial, path).map_err(|source| AdminError::Write { path: path.to_path_buf(), source })?;
            Ok(counts)
        }
        Err(error) => {
            // The partial file is useless, and its removal failing changes nothing for the caller.
            let _ = std::fs::remove_file(&partial);
            Err(error)
        }
    }
}

/// `ucca-auth import`: reads and checks a whole export, then writes it into an empty store.
pub fn import(args: ImportArgs) -> Result<(), AdminError> {
    let settings = resolve(&args.store, None)?;

    // Everything is read and checked before the store is opened, so a bad file changes nothing.
    let plan = if is_standard_stream(&args.input) {
        export::read_export(std::io::stdin().lock())
    } else {
        let file = File::open(&args.input).map_err(|source| AdminError::Read { path: args.input.clone(), source })?;
        export::read_export(BufReader::new(file))
    }
    .map_err(AdminError::ImportRejected)?;

    let store = open_store(&settings.data_dir, true)?;
    let counts = export::import(&store, plan).map_err(|error| match error {
        ImportError::NotEmpty { .. } => AdminError::ImportRejected(error),
        other => AdminError::Import(other),
    })?;

    tracing::info!(
        records = counts.total(),
        trees = %counts,
        data_dir = %settings.data_dir.display(),
        input = %args.input.display(),
        "store imported"
    );
    Ok(())
}

/// `ucca-auth client add`: registers a client through the Clients actor and prints its credentials.
pub fn add_client(args: AddClientArgs) -> Result<(), AdminError> {
    let settings = resolve(&args.store, args.catalog.clone())?;
    let catalog = load_catalog(&settings)?;

    // The checks are the ops API's; only the wording names this command's flags.
    let invalid = |error: MetadataError| AdminError::Invalid(error.description().to_string());
    let name = check_client_name(Some(&args.name)).map_err(|_| {
        AdminError::Invalid(format!("--name must be 1 to {MAX_CLIENT_NAME_LEN} bytes of text without control characters"))
    })?;
    if args.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(AdminError::Invalid(format!("at most {MAX_REDIRECT_URIS} --redirect-uri flags are allowed")));
    }
    check_redirect_uris(&args.redirect_uris).map_err(invalid)?;
    let scopes = check_client_scopes(args.scope.as_deref(), &catalog).map_err(invalid)?;

    // A fresh installation has no store yet; bootstrapping one is what this command is for.
    let store = open_store(&settings.data_dir, true)?;
    let registration = RegisterClient {
        name,
        redirect_uris: args.redirect_uris,
        auth_method: args.auth_method,
        scopes,
        now: SystemClock.now(),
    };
    let registered = register(store, &settings, catalog, registration)?;

    println!("client_id: {}", registered.client.client_id);
    if let Some(secret) = &registered.secret {
        println!("client_secret: {}", secret.expose());
    }
    Ok(())
}

/// Starts the actors on `store` inside a short-lived actix system and sends the registration to the Clients actor,
/// which commits it before replying.
fn register(store: Store, settings: &Settings, catalog: Catalog, registration: RegisterClient) -> Result<Registered, AdminError> {
    let from = "ucca-auth <no-reply@localhost>"
        .parse()
        .map_err(|error| AdminError::Register(format!("invalid sender address: {error}")))?;
    let config = ServicesConfig {
        workers: 1,
        accounts: AccountsConfig::default(),
        // No mail is sent; the mailer still needs a transport to start.
        mail: MailConfig { from, transport: MailTransport::Outbox(outbox_dir(settings)) },
        sms: ucca_actors::sms::SmsConfig::outbox(outbox_dir(settings)),
        // Long enough that no sweep runs during this command.
        sweep_interval: Duration::from_secs(24 * 3600),
        usage_retention: settings.usage_retention_days * 86_400,
        billing_grace: settings.billing_grace_days * 86_400,
    };

    actix_web::rt::System::new().block_on(async move {
        let (services, sweeper) =
            Services::start(store, config, Arc::new(catalog), Arc::new(SystemClock)).map_err(|error| AdminError::Register(error.to_string()))?;
        let reply = services.clients.send(registration).await;
        sweeper.stop().await;
        match reply {
            Ok(Ok(registered)) => Ok(registered),
            Ok(Err(error)) => Err(AdminError::Register(error.to_string())),
            Err(error) => Err(AdminError::Register(format!("the Clients actor did not reply: {error}"))),
        }
    })
}
