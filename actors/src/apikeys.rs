//! The ApiKeys actor: owns API keys, keyed by the SHA-256 of the key, and the index from key id to digest.
//!
//! A key reads `ucca_<tier>_<64 hex characters>`. The fixed prefix lets secret
//! scanners recognise a leaked key and tells an operator its tier at a glance.

use actix::{Actor, Handler, Message, SyncContext};
use serde::{Deserialize, Serialize};

use crate::clock::UnixTime;
use crate::codec::Record;
use crate::secret::{random_id, Digest32, Secret, SECRET_BYTES};
use crate::store::{Change, Store, StoreError, Table};

/// Prefix shared by every key.
pub const KEY_PREFIX: &str = "ucca_";
/// The age of `last_used_at` at which a verification refreshes it, in seconds.
const LAST_USED_GRANULARITY: u64 = 60;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    /// Plan name from the catalog, such as `developer`.
    pub tier: String,
    pub user_id: String,
    pub subscription_id: Option<String>,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    pub active: bool,
}

impl Record for ApiKeyRecord {
    const KIND: &'static str = "API key";
    const VERSION: u16 = 1;
}

/// Index entry from a key id to the key's digest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyIndex {
    pub digest: Digest32,
}

impl Record for KeyIndex {
    const KIND: &'static str = "API key index";
    const VERSION: u16 = 1;
}

/// Checks whether a presented credential has the shape of an API key, so callers can tell keys from tokens without a lookup.
pub fn looks_like_key(presented: &str) -> bool {
    let Some(rest) = presented.strip_prefix(KEY_PREFIX) else { return false };
    let Some((tier, secret)) = rest.rsplit_once('_') else { return false };
    !tier.is_empty()
        && tier.bytes().all(|b| b.is_ascii_lowercase())
        && secret.len() == 2 * SECRET_BYTES
        && secret.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn new_key(tier: &str) -> Secret {
    Secret::from_presented(format!("{KEY_PREFIX}{tier}_{}", Secret::generate(SECRET_BYTES).expose()))
}

pub struct ApiKeys {
    store: Store,
    keys: Table<ApiKeyRecord>,
    ids: Table<KeyIndex>,
}

impl ApiKeys {
    pub fn new(store: Store) -> Result<ApiKeys, StoreError> {
        Ok(ApiKeys { keys: store.table("api_keys")?, ids: store.table("api_key_ids")?, store })
    }

    fn insert(&self, record: &ApiKeyRecord) -> Result<Secret, StoreError> {
        let key = new_key(&record.tier);
        self.keys.put(key.digest().as_bytes(), record)?;
        self.ids.put(record.id.as_bytes(), &KeyIndex { digest: key.digest() })?;
        Ok(key)
    }

    fn set_inactive(&self, digest: &[u8]) -> Result<bool, StoreError> {
        self.keys.modify(digest, |current| match current {
            Some(record) if record.active => (Change::Put(ApiKeyRecord { active: false, ..record }), true),
            _ => (Change::Keep, false),
        })
    }
}

impl Actor for ApiKeys {
    type Context = SyncContext<Self>;
}

/// Creates a key for a user on a plan the caller has checked exists.
#[derive(Debug, Message)]
#[rtype(result = "Result<CreatedKey, StoreError>")]
pub struct CreateKey {
    pub user_id: String,
    pub tier: String,
    pub subscription_id: Option<String>,
    pub now: UnixTime,
}

/// A new key, in clear text for the one response that shows it.
#[derive(Debug)]
pub struct CreatedKey {
    pub record: ApiKeyRecord,
    pub key: Secret,
}

impl Handler<CreateKey> for ApiKeys {
    type Result = Result<CreatedKey, StoreError>;

    fn handle(&mut self, message: CreateKey, _: &mut Self::Context) -> Self::Result {
        let record = ApiKeyRecord {
            id: random_id(12),
            tier: message.tier,
            user_id: message.user_id,
            subscription_id: message.subscription_id,
            created_at: message.now,
            last_used_at: None,
            active: true,
        };
        let key = self.insert(&record)?;
        self.store.commit()?;
        tracing::info!(target: "ucca::security", key_id = %record.id, user_id = %record.user_id, tier = %record.tier, "API key created");
        Ok(CreatedKey { record, key })
    }
}

/// Checks a presented key; an active key's last-use time is refreshed.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<ApiKeyRecord>, StoreError>")]
pub struct VerifyKey {
    pub key: Digest32,
    pub now: UnixTime,
}

impl Handler<VerifyKey> for ApiKeys {
    type Result = Result<Option<ApiKeyRecord>, StoreError>;

    fn handle(&mut self, message: VerifyKey, _: &mut Self::Context) -> Self::Result {
        let Some(record) = self.keys.get(message.key.as_bytes())? else { return Ok(None) };
        if !record.active {
            return Ok(None);
        }
        if last_use_due(&record, message.now) {
            self.touch(&message.key, message.now)?;
        }
        Ok(Some(record))
    }
}

/// Whether a use of the key at `now` should refresh its `last_used_at`.
pub fn last_use_due(record: &ApiKeyRecord, now: UnixTime) -> bool {
    record.last_used_at.is_none_or(|last| now >= last + LAST_USED_GRANULARITY)
}

impl ApiKeys {
    fn touch(&self, key: &Digest32, now: UnixTime) -> Result<(), StoreError> {
        // Not committed: last use is informational, and the periodic flush persists it.
        self.keys.modify(key.as_bytes(), |current| match current {
            Some(current) if last_use_due(&current, now) => (Change::Put(ApiKeyRecord { last_used_at: Some(now), ..current }), ()),
            _ => (Change::Keep, ()),
        })
    }
}

/// Records a use of a key that was checked elsewhere (by [`crate::quotas::ConsumeForKey`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct TouchKey {
    pub key: Digest32,
    pub now: UnixTime,
}

impl Handler<TouchKey> for ApiKeys {
    type Result = Result<(), StoreError>;

    fn handle(&mut self, message: TouchKey, _: &mut Self::Context) -> Self::Result {
        self.touch(&message.key, message.now)
    }
}

/// Lists a user's keys, active or not, ordered by creation time.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<ApiKeyRecord>, StoreError>")]
pub struct ListKeys {
    pub user_id: String,
}

impl Handler<ListKeys> for ApiKeys {
    type Result = Result<Vec<ApiKeyRecord>, StoreError>;

    fn handle(&mut self, message: ListKeys, _: &mut Self::Context) -> Self::Result {
        // NOTE: a full scan; keys per server number in the thousands at most.
        let mut keys: Vec<ApiKeyRecord> = self
            .keys
            .entries()
            .filter_map(|entry| match entry {
                Ok((_, record)) if record.user_id == message.user_id => Some(Ok(record)),
                Ok(_) => None,
                Err(error) => Some(Err(error)),
            })
            .collect::<Result<_, _>>()?;
        keys.sort_by_key(|record| (record.created_at, record.id.clone()));
        Ok(keys)
    }
}

/// Fetches a key's record by id.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<ApiKeyRecord>, StoreError>")]
pub struct GetKey {
    pub id: String,
}

impl Handler<GetKey> for ApiKeys {
    type Result = Result<Option<ApiKeyRecord>, StoreError>;

    fn handle(&mut self, message: GetKey, _: &mut Self::Context) -> Self::Result {
        let Some(index) = self.ids.get(message.id.as_bytes())? else { return Ok(None) };
        self.keys.get(index.digest.as_bytes())
    }
}

/// Deactivates a key at once.
#[derive(Debug, Message)]
#[rtype(result = "Result<KeyChange, StoreError>")]
pub struct DeactivateKey {
    pub id: String,
}

#[derive(Debug)]
pub enum KeyChange {
    Done,
    AlreadyInactive,
    NotFound,
}

impl Handler<DeactivateKey> for ApiKeys {
    type Result = Result<KeyChange, StoreError>;

    fn handle(&mut self, message: DeactivateKey, _: &mut Self::Context) -> Self::Result {
        let Some(index) = self.ids.get(message.id.as_bytes())? else { return Ok(KeyChange::NotFound) };
        if !self.set_inactive(index.digest.as_bytes())? {
            return Ok(KeyChange::AlreadyInactive);
        }
        self.store.commit()?;
        tracing::info!(target: "ucca::security", key_id = %message.id, "API key deactivated");
        Ok(KeyChange::Done)
    }
}

/// Deactivates every active key, of any user, whose `subscription_id` is one
/// of `subscription_ids`, and returns the ids of the keys it deactivated.
/// Repeating it deactivates nothing more.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<String>, StoreError>")]
pub struct DeactivateSubscriptionKeys {
    pub subscription_ids: Vec<String>,
}

impl Handler<DeactivateSubscriptionKeys> for ApiKeys {
    type Result = Result<Vec<String>, StoreError>;

    fn handle(&mut self, message: DeactivateSubscriptionKeys, _: &mut Self::Context) -> Self::Result {
        if message.subscription_ids.is_empty() {
            return Ok(Vec::new());
        }
        let carries_ended_subscription =
            |record: &ApiKeyRecord| record.active && record.subscription_id.as_ref().is_some_and(|id| message.subscription_ids.contains(id));
        // NOTE: a full scan, like ListKeys; keys per server number in the thousands at most.
        let matching: Vec<(Vec<u8>, ApiKeyRecord)> = self
            .keys
            .entries()
            .filter(|entry| entry.as_ref().map_or(true, |(_, record)| carries_ended_subscription(record)))
            .collect::<Result<_, _>>()?;

        let mut deactivated = Vec::new();
        let mut ended: Vec<String> = Vec::new();
        for (digest, record) in matching {
            if self.set_inactive(&digest)? {
                deactivated.push(record.id);
                if let Some(subscription_id) = record.subscription_id.filter(|id| !ended.contains(id)) {
                    ended.push(subscription_id);
                }
            }
        }
        if !deactivated.is_empty() {
            self.store.commit()?;
            tracing::info!(target: "ucca::security", key_ids = ?deactivated, subscription_ids = ?ended, "API keys deactivated: their subscription ended");
        }
        Ok(deactivated)
    }
}

/// Replaces an active key with a new one of the same tier, user and subscription; the old key stops working at once.
#[derive(Debug, Message)]
#[rtype(result = "Result<Rotation, StoreError>")]
pub struct RotateKey {
    pub id: String,
    pub now: UnixTime,
}

#[derive(Debug)]
pub enum Rotation {
    Rotated(CreatedKey),
    Inactive,
    NotFound,
}

impl Handler<RotateKey> for ApiKeys {
    type Result = Result<Rotation, StoreError>;

    fn handle(&mut self, message: RotateKey, _: &mut Self::Context) -> Self::Result {
        let Some(index) = self.ids.get(message.id.as_bytes())? else { return Ok(Rotation::NotFound) };
        let Some(old) = self.keys.get(index.digest.as_bytes())? else { return Ok(Rotation::NotFound) };
        // Deactivating first decides a race between two rotations: only one finds the key active.
        if !self.set_inactive(index.digest.as_bytes())? {
            return Ok(Rotation::Inactive);
        }

        let record = ApiKeyRecord { id: random_id(12), created_at: message.now, last_used_at: None, active: true, ..old };
        let key = self.insert(&record)?;
        self.store.commit()?;
        tracing::info!(target: "ucca::security", old_key_id = %message.id, key_id = %record.id, "API key rotated");
        Ok(Rotation::Rotated(CreatedKey { record, key }))
    }
}

#[cfg(test)]
mod tests {
    use actix::{Addr, SyncArbiter};

    use super::*;

    fn start() -> Addr<ApiKeys> {
        let store = Store::temporary().unwrap();
        SyncArbiter::start(1, move || ApiKeys::new(store.clone()).unwrap())
    }

    async fn create(keys: &Addr<ApiKeys>, user_id: &str, subscription_id: Option<&str>) -> CreatedKey {
        let key = CreateKey { user_id: user_id.into(), tier: "developer".into(), subscription_id: subscription_id.map(str::to_string), now: 1_000 };
        keys.send(key).await.unwrap().unwrap()
    }

    async fn is_active(keys: &Addr<ApiKeys>, created: &CreatedKey) -> bool {
        keys.send(VerifyKey { key: created.key.digest(), now: 1_000 }).await.unwrap().unwrap().is_some()
    }

    #[test]
    fn subscription_end_deactivates_its_keys() {
        actix::System::new().block_on(async {
            let keys = start();
            let first = create(&keys, "u1", Some("sub_ended")).await;
            let second = create(&keys, "u1", Some("sub_ended")).await;
            let other_user = create(&keys, "u2", Some("sub_ended")).await;
            let already_inactive = create(&keys, "u1", Some("sub_ended")).await;
            keys.send(DeactivateKey { id: already_inactive.record.id.clone() }).await.unwrap().unwrap();
            let other_subscription = create(&keys, "u1", Some("sub_live")).await;
            let no_subscription = create(&keys, "u1", None).await;

            let ended = DeactivateSubscriptionKeys { subscription_ids: vec!["sub_ended".into()] };
            let mut deactivated = keys.send(ended).await.unwrap().unwrap();
            deactivated.sort();
            let mut expected = vec![first.record.id.clone(), second.record.id.clone(), other_user.record.id.clone()];
            expected.sort();
            assert_eq!(deactivated, expected, "the already inactive key is not listed");

            for (name, created) in [("first", &first), ("second", &second), ("other user", &other_user)] {
                assert!(!is_active(&keys, created).await, "{name} key stopped working");
            }
            assert!(is_active(&keys, &other_subscription).await, "a key of another subscription keeps working");
            assert!(is_active(&keys, &no_subscription).await, "a key without a subscription keeps working");

            let again = DeactivateSubscriptionKeys { subscription_ids: vec!["sub_ended".into()] };
            assert!(keys.send(again).await.unwrap().unwrap().is_empty(), "a repeat deactivates nothing more");
            let none = DeactivateSubscriptionKeys { subscription_ids: Vec::new() };
            assert!(keys.send(none).await.unwrap().unwrap().is_empty());
        });
    }

    #[test]
    fn generated_keys_have_the_recognisable_shape() {
        let key = new_key("developer");
        assert!(key.expose().starts_with("ucca_developer_"));
        assert!(looks_like_key(key.expose()));
        assert!(!looks_like_key(&"a".repeat(96)));
        assert!(!looks_like_key("ucca_developer_short"));
        assert!(!looks_like_key(&format!("ucca__{}", "a".repeat(64))));
    }
}
