//! Store export and import: every record as one line of JSON, decoded with its
//! typed record struct, so a backup outlives a change of the bincode layout.
//!
//! This module works on a [`Store`] the caller has opened, which holds the
//! store's lock, so no server runs on it meanwhile. It reads no files and
//! parses no flags. Secrets stay as the SHA-256 digests the store keeps.
//!
//! The format is JSON lines:
//!
//! 1. a header, `{"format":"ucca-auth-export","version":1,"exported_at":…,"record_versions":{tree: version}}`;
//! 2. one line per record, `{"tree":name,"key":hex,"record":{…}}`, tree by tree in key order;
//! 3. a trailer, `{"end":"ucca-auth-export","records":count}`, so a truncated file is rejected.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::apikeys::{ApiKeyRecord, KeyIndex};
use crate::billing::{CustomerLink, PendingEvent, ProcessedEvent, SubscriptionRecord, UserBilling};
use crate::quotas::{IpWindow, QuotaRecord};
use crate::usage::UsageEvent;
use crate::accounts::{ConsentRecord, EmailIndex, EntitlementRecord, LinkBinding, LinkRecord, SessionIndexEntry, SessionRecord, UserRecord};
use crate::clients::{ClientRecord, SelfRegistration};
use crate::clock::UnixTime;
use crate::codec::{decode, encode, Record};
use crate::codes::CodeRecord;
use crate::phone::PhoneRecord;
use crate::ratelimit::LimitWindow;
use crate::store::{Store, StoreError};
use crate::tokens::{GrantRecord, TokenRecord};

/// The `format` value of the header line.
pub const FORMAT: &str = "ucca-auth-export";
/// The version of the line layout described in the module documentation.
pub const FORMAT_VERSION: u32 = 1;

/// The conversion of one tree's records between the stored envelope and JSON.
struct TreeFormat {
    tree: &'static str,
    kind: &'static str,
    record_version: u16,
    /// The record field that must equal the key, for trees keyed by an id that the record also carries.
    id_field: Option<&'static str>,
    to_json: fn(&[u8]) -> Result<Value, StoreError>,
    from_json: fn(&Value) -> Result<Vec<u8>, String>,
}

impl TreeFormat {
    const fn of<T: Record>(tree: &'static str, id_field: Option<&'static str>) -> TreeFormat {
        TreeFormat {
            tree,
            kind: T::KIND,
            record_version: T::VERSION,
            id_field,
            to_json: record_to_json::<T>,
            from_json: record_from_json::<T>,
        }
    }
}

/// Every tree the actors write, with its record type. A tree missing here makes
/// export fail rather than leave records out; `every_actor_tree_has_a_format` checks the list.
const TREES: &[TreeFormat] = &[
    TreeFormat::of::<ClientRecord>("clients", Some("client_id")),
    TreeFormat::of::<SelfRegistration>("client_registrations", None),
    TreeFormat::of::<LimitWindow>("client_registration_limits", None),
    TreeFormat::of::<CodeRecord>("codes", None),
    TreeFormat::of::<TokenRecord>("tokens", None),
    TreeFormat::of::<GrantRecord>("grants", None),
    TreeFormat::of::<UserRecord>("users", Some("user_id")),
    TreeFormat::of::<EmailIndex>("emails", None),
    TreeFormat::of::<LinkRecord>("links", None),
    TreeFormat::of::<SessionRecord>("sessions", None),
    TreeFormat::of::<EntitlementRecord>("entitlements", None),
    TreeFormat::of::<ConsentRecord>("consents", None),
    TreeFormat::of::<LinkBinding>("link_browsers", None),
    TreeFormat::of::<SessionIndexEntry>("session_index", None),
    TreeFormat::of::<LimitWindow>("link_limits", None),
    TreeFormat::of::<PhoneRecord>("phones", None),
    TreeFormat::of::<LimitWindow>("phone_limits", None),
    TreeFormat::of::<ApiKeyRecord>("api_keys", None),
    TreeFormat::of::<KeyIndex>("api_key_ids", None),
    TreeFormat::of::<QuotaRecord>("quota_counters", None),
    TreeFormat::of::<IpWindow>("ip_windows", None),
    TreeFormat::of::<UsageEvent>("usage", None),
    TreeFormat::of::<SubscriptionRecord>("subscriptions", None),
    TreeFormat::of::<ProcessedEvent>("billing_events", None),
    TreeFormat::of::<CustomerLink>("billing_customers", None),
    TreeFormat::of::<UserBilling>("billing_users", None),
    TreeFormat::of::<PendingEvent>("billing_pending", None),
];

fn format_of(tree: &str) -> Option<&'static TreeFormat> {
    TREES.iter().find(|format| format.tree == tree)
}

fn record_to_json<T: Record>(bytes: &[u8]) -> Result<Value, StoreError> {
    let record: T = decode(bytes)?;
    serde_json::to_value(&record).map_err(|error| StoreError::Codec(format!("cannot convert {} record to JSON: {error}", T::KIND)))
}

fn record_from_json<T: Record>(value: &Value) -> Result<Vec<u8>, String> {
    let record: T = serde_json::from_value(value.clone()).map_err(|error| format!("invalid {} record: {error}", T::KIND))?;

    // serde skips fields the struct does not have, so compare the field names
    // to catch a typo or a record from a newer build. Missing fields that the
    // struct defaults stay allowed, which is what lets older exports load.
    let known = serde_json::to_value(&record).map_err(|error| format!("cannot convert {} record: {error}", T::KIND))?;
    if let (Value::Object(given), Value::Object(known)) = (value, &known) {
        if let Some(unknown) = given.keys().find(|name| !known.contains_key(*name)) {
            return Err(format!("{} record has unknown field {unknown:?}", T::KIND));
        }
    }
    encode(&record).map_err(|error| error.to_string())
}

/// Number of records per tree, in tree-name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordCounts(BTreeMap<String, usize>);

impl RecordCounts {
    fn add(&mut self, tree: &str) {
        *self.0.entry(tree.to_string()).or_default() += 1;
    }

    pub fn total(&self) -> usize {
        self.0.values().sum()
    }

    pub fn get(&self, tree: &str) -> usize {
        self.0.get(tree).copied().unwrap_or(0)
    }
}

impl fmt::Display for RecordCounts {
    /// Writes `clients 2, tokens 5`, or `none` when there are no records.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return formatter.write_str("none");
        }
        let parts: Vec<String> = self.0.iter().map(|(tree, count)| format!("{tree} {count}")).collect();
        formatter.write_str(&parts.join(", "))
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    exported_at: UnixTime,
    /// Record version of each tree's struct in the exporting build.
    record_versions: BTreeMap<String, u16>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordLine {
    tree: String,
    key: String,
    record: Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Trailer {
    end: String,
    records: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("tree {tree} holds {records} records of a kind this build cannot export; nothing was exported")]
    UnknownTree { tree: String, records: usize },
    #[error("record {key} in tree {tree} is unreadable: {source}")]
    Unreadable { tree: String, key: String, source: StoreError },
    #[error("cannot write the export: {0}")]
    Write(#[from] std::io::Error),
}

/// Writes every record of `store` to `output` and returns how many records each tree had.
pub fn export(store: &Store, output: &mut dyn Write, now: UnixTime) -> Result<RecordCounts, ExportError> {
    let present = store.tree_names();
    for tree in &present {
        if format_of(tree).is_none() {
            let records = store.tree(tree)?.len();
            if records > 0 {
                return Err(ExportError::UnknownTree { tree: tree.clone(), records });
            }
        }
    }

    let header = Header {
        format: FORMAT.to_string(),
        version: FORMAT_VERSION,
        exported_at: now,
        record_versions: TREES.iter().map(|format| (format.tree.to_string(), format.record_version)).collect(),
    };
    write_line(output, &header)?;

    let mut counts = RecordCounts::default();
    // Only trees that exist are opened, because opening a tree creates it.
    for format in TREES.iter().filter(|format| present.iter().any(|tree| tree == format.tree)) {
        for entry in store.tree(format.tree)?.iter() {
            let (key, bytes) = entry?;
            let record = (format.to_json)(&bytes).map_err(|source| ExportError::Unreadable {
                tree: format.tree.to_string(),
                key: hex::encode(&key),
                source,
            })?;
            write_line(output, &RecordLine { tree: format.tree.to_string(), key: hex::encode(&key), record })?;
            counts.add(format.tree);
        }
    }

    write_line(output, &Trailer { end: FORMAT.to_string(), records: counts.total() })?;
    output.flush()?;
    Ok(counts)
}

fn write_line(output: &mut dyn Write, line: &impl Serialize) -> Result<(), ExportError> {
    serde_json::to_writer(&mut *output, line).map_err(std::io::Error::from)?;
    output.write_all(b"\n")?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read the export: {0}")]
    Read(std::io::Error),
    #[error("line {line} of the export is invalid: {reason}")]
    Invalid { line: usize, reason: String },
    #[error("the export ends after line {lines} without its trailer line, so it is truncated")]
    Truncated { lines: usize },
    #[error("the store is not empty (records: {contents}); import only into a new data directory")]
    NotEmpty { contents: RecordCounts },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An export that has been read and checked whole, ready to be written to a store.
pub struct ImportPlan {
    entries: Vec<(&'static str, Vec<u8>, Vec<u8>)>,
    counts: RecordCounts,
}

impl ImportPlan {
    pub fn counts(&self) -> &RecordCounts {
        &self.counts
    }
}

/// Reads and checks a whole export: header, every record decoded with its
/// typed struct, no duplicate keys, and a trailer whose count matches.
/// Nothing is written, so a bad line leaves every store untouched.
pub fn read_export(input: impl BufRead) -> Result<ImportPlan, ImportError> {
    let mut lines = input.lines().enumerate().map(|(index, line)| (index + 1, line));
    let invalid = |line: usize, reason: String| ImportError::Invalid { line, reason };

    let Some((_, first)) = lines.next() else {
        return Err(invalid(1, "the file is empty; the first line must be the export header".into()));
    };
    let header = parse_header(&read_text(1, first)?).map_err(|reason| invalid(1, reason))?;

    let mut entries = Vec::new();
    let mut counts = RecordCounts::default();
    let mut first_seen: HashMap<(&'static str, Vec<u8>), usize> = HashMap::new();
    let mut trailer_line = None;
    let mut last_line = 1;

    for (number, line) in lines {
        last_line = number;
        let text = read_text(number, line)?;
        if let Some(trailer) = trailer_line {
            return Err(invalid(number, format!("nothing may follow the trailer on line {trailer}")));
        }
        let value: Value = serde_json::from_str(&text).map_err(|error| invalid(number, format!("not JSON: {error}")))?;

        if value.get("end").is_some() {
            let trailer: Trailer = serde_json::from_value(value).map_err(|error| invalid(number, format!("invalid trailer: {error}")))?;
            if trailer.end != FORMAT {
                return Err(invalid(number, format!("the trailer names format {:?}, expected {FORMAT:?}", trailer.end)));
            }
            if trailer.records != entries.len() {
                return Err(invalid(
                    number,
                    format!("the trailer counts {} records but the file holds {}", trailer.records, entries.len()),
                ));
            }
            trailer_line = Some(number);
            continue;
        }

        let (tree, key, bytes) = parse_record(&header, value).map_err(|reason| invalid(number, reason))?;
        if let Some(earlier) = first_seen.insert((tree, key.clone()), number) {
            return Err(invalid(number, format!("key {} of tree {tree} already appeared on line {earlier}", hex::encode(&key))));
        }
        counts.add(tree);
        entries.push((tree, key, bytes));
    }

    if trailer_line.is_none() {
        return Err(ImportError::Truncated { lines: last_line });
    }
    Ok(ImportPlan { entries, counts })
}

fn read_text(number: usize, line: std::io::Result<String>) -> Result<String, ImportError> {
    match line {
        Ok(text) => Ok(text),
        Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
            Err(ImportError::Invalid { line: number, reason: "not UTF-8 text".into() })
        }
        Err(error) => Err(ImportError::Read(error)),
    }
}

fn parse_header(text: &str) -> Result<Header, String> {
    let not_header = || format!("the first line must be the export header, with \"format\":\"{FORMAT}\"");
    let value: Value = serde_json::from_str(text).map_err(|_| not_header())?;
    if value.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(not_header());
    }
    match value.get("version").and_then(Value::as_u64) {
        Some(version) if version == u64::from(FORMAT_VERSION) => {}
        Some(version) => return Err(format!("export format version {version} is not supported; this build reads version {FORMAT_VERSION}")),
        None => return Err("the header has no numeric \"version\"".into()),
    }
    serde_json::from_value(value).map_err(|error| format!("invalid header: {error}"))
}

fn parse_record(header: &Header, value: Value) -> Result<(&'static str, Vec<u8>, Vec<u8>), String> {
    let line: RecordLine = serde_json::from_value(value).map_err(|error| format!("invalid record line: {error}"))?;
    let format = format_of(&line.tree).ok_or_else(|| format!("tree {:?} is not known to this build", line.tree))?;

    // An older record version is read with today's struct, which fills fields
    // added since then with their defaults. A newer version may carry fields
    // this build would drop, so it is rejected.
    let exported_version = header
        .record_versions
        .get(format.tree)
        .ok_or_else(|| format!("the header gives no record version for tree {}", format.tree))?;
    if *exported_version > format.record_version {
        return Err(format!(
            "tree {} was exported with {} record version {exported_version}, newer than this build's version {}",
            format.tree, format.kind, format.record_version
        ));
    }

    let key = hex::decode(&line.key).map_err(|_| format!("key {:?} is not hexadecimal", line.key))?;
    if key.is_empty() {
        return Err("the key is empty".into());
    }
    if let Some(field) = format.id_field {
        if line.record.get(field).and_then(Value::as_str).map(str::as_bytes) != Some(key.as_slice()) {
            return Err(format!("the key of a {} record must equal its {field}", format.kind));
        }
    }
    let bytes = (format.from_json)(&line.record)?;
    Ok((format.tree, key, bytes))
}

/// Counts the records in each tree of `store`, leaving out empty trees.
pub fn store_contents(store: &Store) -> Result<RecordCounts, StoreError> {
    let mut counts = RecordCounts::default();
    for tree in store.tree_names() {
        let records = store.tree(&tree)?.len();
        if records > 0 {
            counts.0.insert(tree, records);
        }
    }
    Ok(counts)
}

/// Writes a checked export into `store`, which must be empty, and makes it durable.
pub fn import(store: &Store, plan: ImportPlan) -> Result<RecordCounts, ImportError> {
    let contents = store_contents(store)?;
    if contents.total() > 0 {
        return Err(ImportError::NotEmpty { contents });
    }

    // NOTE: the writes are not one transaction. A failure part-way (disk full,
    // say) leaves some records behind, and the store is then not empty, so a
    // retry needs a new data directory.
    for (tree, key, bytes) in plan.entries {
        store.tree(tree)?.insert(&key, bytes)?;
    }
    store.commit()?;
    Ok(plan.counts)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::accounts::AccountsConfig;
    use crate::clients::AuthMethod;
    use crate::mailer::{MailConfig, MailTransport};
    use crate::sms::SmsConfig;
    use crate::secret::Digest32;
    use crate::services::{Services, ServicesConfig};
    use crate::store::Table;
    use crate::ManualClock;

    fn client(client_id: &str) -> ClientRecord {
        ClientRecord {
            client_id: client_id.to_string(),
            name: "Export test".into(),
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            auth_method: AuthMethod::ClientSecretBasic,
            secret_digest: Some(Digest32::of(b"not a real secret")),
            scopes: vec!["read".into()],
            created_at: 1_767_225_600,
            active: true,
        }
    }

    fn store_with_clients(ids: &[&str]) -> Store {
        let store = Store::temporary().unwrap();
        let clients: Table<ClientRecord> = store.table("clients").unwrap();
        for id in ids {
            clients.put(id.as_bytes(), &client(id)).unwrap();
        }
        store
    }

    fn exported(store: &Store) -> String {
        let mut output = Vec::new();
        export(store, &mut output, 1_767_225_600).unwrap();
        String::from_utf8(output).unwrap()
    }

    fn raw_contents(store: &Store) -> BTreeMap<String, Vec<(Vec<u8>, Vec<u8>)>> {
        store
            .tree_names()
            .into_iter()
            .map(|tree| {
                let entries = store.tree(&tree).unwrap().iter().map(Result::unwrap).collect();
                (tree, entries)
            })
            .collect()
    }

    #[test]
    fn every_actor_tree_has_a_format() {
        let store = Store::temporary().unwrap();
        let outbox = tempfile::tempdir().unwrap();
        let config = ServicesConfig {
            workers: 1,
            accounts: AccountsConfig::default(),
            mail: MailConfig {
                from: "test <no-reply@example.org>".parse().unwrap(),
                transport: MailTransport::Outbox(outbox.path().to_path_buf()),
            },
            sms: SmsConfig::outbox(outbox.path().to_path_buf()),
            sweep_interval: Duration::from_secs(3600),
            usage_retention: 400 * 86_400,
            billing_grace: 7 * 86_400,
        };
        // Starting every actor opens every tree the running server writes.
        actix::System::new().block_on(async {
            let catalog = crate::catalog::Catalog::from_toml("catalog", include_str!("../../data/catalog.toml")).unwrap();
            let (_services, sweeper) = Services::start(store.clone(), config, Arc::new(catalog), Arc::new(ManualClock::new(0))).unwrap();
            sweeper.stop().await;
        });

        let names = store.tree_names();
        assert!(names.iter().any(|tree| tree == "clients"), "actors opened no trees: {names:?}");
        for tree in names {
            assert!(format_of(&tree).is_some(), "tree {tree} has no export format");
        }
    }

    #[test]
    fn round_trip_preserves_every_byte() {
        let source = store_with_clients(&["c1", "c2"]);
        let text = exported(&source);

        let plan = read_export(text.as_bytes()).unwrap();
        assert_eq!(plan.counts().get("clients"), 2);
        let target = Store::temporary().unwrap();
        let counts = import(&target, plan).unwrap();

        assert_eq!(counts.total(), 2);
        assert_eq!(raw_contents(&target), raw_contents(&source));
    }

    #[test]
    fn export_writes_header_records_and_trailer() {
        let text = exported(&store_with_clients(&["c1"]));
        let lines: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();

        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0]["format"], FORMAT);
        assert_eq!(lines[0]["version"], FORMAT_VERSION);
        assert_eq!(lines[0]["record_versions"]["clients"], 1);
        assert_eq!(lines[1]["tree"], "clients");
        assert_eq!(lines[1]["key"], hex::encode("c1"));
        assert_eq!(lines[1]["record"]["client_id"], "c1");
        assert_eq!(lines[2]["end"], FORMAT);
        assert_eq!(lines[2]["records"], 1);
    }

    #[test]
    fn unknown_nonempty_tree_stops_export() {
        let store = store_with_clients(&["c1"]);
        store.tree("mystery").unwrap().insert(b"k", vec![1, 2, 3]).unwrap();
        let mut output = Vec::new();

        let error = export(&store, &mut output, 0).unwrap_err();

        assert!(matches!(error, ExportError::UnknownTree { ref tree, records: 1 } if tree == "mystery"), "{error}");
        assert!(output.is_empty(), "export wrote {} bytes before failing", output.len());
    }

    #[test]
    fn import_into_nonempty_store_changes_nothing() {
        let text = exported(&store_with_clients(&["c1"]));
        let target = store_with_clients(&["existing"]);
        let before = raw_contents(&target);

        let error = import(&target, read_export(text.as_bytes()).unwrap()).unwrap_err();

        assert!(matches!(error, ImportError::NotEmpty { .. }), "{error}");
        assert!(error.to_string().contains("clients 1"), "{error}");
        assert_eq!(raw_contents(&target), before);
    }

    #[test]
    fn older_record_version_is_read_and_newer_rejected() {
        let text = exported(&store_with_clients(&["c1"]));
        let older = text.replace("\"clients\":1", "\"clients\":0");
        let newer = text.replace("\"clients\":1", "\"clients\":2");
        assert_ne!(older, text, "the header did not contain the clients version");

        assert!(read_export(older.as_bytes()).is_ok());
        match read_export(newer.as_bytes()) {
            Err(ImportError::Invalid { line: 2, reason }) => assert!(reason.contains("version 2"), "{reason}"),
            Err(other) => panic!("expected line 2 to be rejected, got {other}"),
            Ok(_) => panic!("a newer record version was accepted"),
        }
    }

    #[test]
    fn malformed_export_names_the_line() {
        let text = exported(&store_with_clients(&["c1", "c2"]));
        let lines: Vec<&str> = text.lines().collect();
        let (header, first, second, trailer) = (lines[0], lines[1], lines[2], lines[3]);
        let join = |parts: &[&str]| parts.join("\n") + "\n";
        let replace = |line: &str, from: &str, to: &str| {
            assert!(line.contains(from), "{from} not in {line}");
            line.replacen(from, to, 1)
        };

        let not_json = "{\"tree\": ";
        let bad_hex = replace(first, &hex::encode("c1"), "zz");
        let unknown_tree = replace(first, "\"tree\":\"clients\"", "\"tree\":\"mystery\"");
        let missing_field = replace(first, "\"active\":true,", "");
        let unknown_field = replace(first, "\"active\":true,", "\"active\":true,\"colour\":\"red\",");
        let key_mismatch = replace(first, &hex::encode("c1"), &hex::encode("c9"));
        let other_format = replace(header, FORMAT, "other-export");
        let newer_format = replace(header, "\"version\":1", "\"version\":2");
        let wrong_count = replace(trailer, "\"records\":2", "\"records\":3");
        let trailer_of_one = replace(trailer, "\"records\":2", "\"records\":1");
        let cases: Vec<(&str, String, usize)> = vec![
            ("empty file", String::new(), 1),
            ("header of another format", join(&[&other_format, first, second, trailer]), 1),
            ("newer format version", join(&[&newer_format, first, second, trailer]), 1),
            ("line that is not JSON", join(&[header, first, not_json, trailer]), 3),
            ("key that is not hex", join(&[header, &bad_hex, second, trailer]), 2),
            ("unknown tree", join(&[header, first, &unknown_tree, trailer]), 3),
            ("record missing a field", join(&[header, &missing_field, second, trailer]), 2),
            ("record with an unknown field", join(&[header, &unknown_field, second, trailer]), 2),
            ("client key differs from client_id", join(&[header, &key_mismatch, second, trailer]), 2),
            ("duplicate key", join(&[header, first, first, trailer]), 3),
            ("blank line", join(&[header, first, "", second, trailer]), 3),
            ("wrong count in trailer", join(&[header, first, second, &wrong_count]), 4),
            ("line after the trailer", join(&[header, first, &trailer_of_one, second]), 4),
        ];

        for (description, input, line) in cases {
            match read_export(input.as_bytes()) {
                Err(ImportError::Invalid { line: reported, reason }) => {
                    assert_eq!(reported, line, "{description}: {reason}");
                }
                Err(other) => panic!("{description}: expected an invalid line, got {other}"),
                Ok(_) => panic!("{description}: the export was accepted"),
            }
        }
    }

    #[test]
    fn export_without_trailer_is_truncated() {
        let text = exported(&store_with_clients(&["c1", "c2"]));
        let truncated: String = text.lines().take(2).map(|line| format!("{line}\n")).collect();

        match read_export(truncated.as_bytes()) {
            Err(ImportError::Truncated { lines }) => assert_eq!(lines, 2),
            Err(other) => panic!("expected a truncated export, got {other}"),
            Ok(_) => panic!("a truncated export was accepted"),
        }
    }
}
