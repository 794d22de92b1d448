//! The storage interface: named trees of key -> bytes with compare-and-swap,
//! typed tables over them, and group-committed durability.
//!
//! This is the only module that calls sled. Keeping the surface this narrow
//! (get, put, compare-and-swap, scan, flush) lets another backend replace sled
//! without touching the actors.

use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use crate::codec::{decode, encode, Record};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data directory {} is in use by another process", .0.display())]
    Locked(PathBuf),
    #[error("storage backend failed: {0}")]
    Backend(String),
    #[error("stored data is unreadable: {0}")]
    Codec(String),
}

impl From<sled::Error> for StoreError {
    fn from(error: sled::Error) -> Self {
        StoreError::Backend(error.to_string())
    }
}

/// An open store. Cheap to clone; every clone shares one database and one committer.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    committer: Arc<GroupCommit>,
}

impl Store {
    /// Opens or creates the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new().path(dir).open().map_err(|error| match error {
            // sled 0.34 reports a held file lock as an I/O error whose message
            // names the lock; the OS error kind is folded into that message.
            sled::Error::Io(ref io)
                if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("could not acquire lock") =>
            {
                StoreError::Locked(dir.to_path_buf())
            }
            other => StoreError::Backend(other.to_string()),
        })?;
        Ok(Store { db, committer: Arc::new(GroupCommit::default()) })
    }

    /// Opens a store that lives in a temporary directory and is deleted on drop, for benchmarks.
    pub fn temporary() -> Result<Store, StoreError> {
        let db = sled::Config::new().temporary(true).open()?;
        Ok(Store { db, committer: Arc::new(GroupCommit::default()) })
    }

    pub fn tree(&self, name: &str) -> Result<Tree, StoreError> {
        Ok(Tree { inner: self.db.open_tree(name)? })
    }

    pub fn table<T: Record>(&self, name: &str) -> Result<Table<T>, StoreError> {
        Ok(Table { tree: self.tree(name)?, record: PhantomData })
    }

    /// Makes every write that completed before this call durable.
    ///
    /// Concurrent callers share flushes: a caller waits for a flush that
    /// started after its own request, and whoever finds no flush running starts
    /// one that covers every request made so far.
    pub fn commit(&self) -> Result<(), StoreError> {
        self.committer.commit(|| self.db.flush().map(|_| ()).map_err(StoreError::from))
    }

    /// Returns the names of the trees opened through [`Store::tree`] or [`Store::table`], sorted.
    ///
    /// sled's own default tree is left out: this interface never writes to it.
    pub fn tree_names(&self) -> Vec<String> {
        let default = self.db.name();
        let mut names: Vec<String> = self
            .db
            .tree_names()
            .into_iter()
            .filter(|name| *name != default)
            .map(|name| String::from_utf8_lossy(&name).into_owned())
            .collect();
        names.sort();
        names
    }
}

/// Group commit state: requests are numbered, and a flush covers every number issued before it began.
#[derive(Default)]
struct GroupCommit {
    state: Mutex<CommitState>,
    done: Condvar,
}

#[derive(Default)]
struct CommitState {
    requested: u64,
    completed: u64,
    flushing: bool,
}

impl GroupCommit {
    fn commit(&self, flush: impl Fn() -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.requested += 1;
        let ticket = state.requested;

        loop {
            if state.completed >= ticket {
                return Ok(());
            }
            if state.flushing {
                state = self.done.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }

            state.flushing = true;
            let covered = state.requested;
            drop(state);
            let result = flush();
            state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            state.flushing = false;
            if result.is_ok() {
                state.completed = state.completed.max(covered);
            }
            self.done.notify_all();
            result?;
        }
    }
}

/// One named tree of raw bytes.
#[derive(Clone)]
pub struct Tree {
    inner: sled::Tree,
}

impl Tree {
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.inner.get(key)?.map(|value| value.to_vec()))
    }

    pub fn insert(&self, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        self.inner.insert(key, value)?;
        Ok(())
    }

    pub fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.inner.remove(key)?;
        Ok(())
    }

    /// Replaces `expected` with `new` atomically; returns false when the current value differs.
    pub fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        Ok(self.inner.compare_and_swap(key, expected, new)?.is_ok())
    }

    pub fn iter(&self) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        self.inner
            .iter()
            .map(|entry| entry.map(|(key, value)| (key.to_vec(), value.to_vec())).map_err(StoreError::from))
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

/// What a read-modify-write decides to do with the record it was shown.
pub enum Change<T> {
    Keep,
    Put(T),
    Remove,
}

/// A tree whose values are records of one type.
pub struct Table<T> {
    tree: Tree,
    record: PhantomData<fn() -> T>,
}

impl<T> Clone for Table<T> {
    fn clone(&self) -> Self {
        Table { tree: self.tree.clone(), record: PhantomData }
    }
}

impl<T: Record> Table<T> {
    pub fn get(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.tree.get(key)?.map(|bytes| decode(&bytes)).transpose()
    }

    pub fn put(&self, key: &[u8], record: &T) -> Result<(), StoreError> {
        self.tree.insert(key, encode(record)?)
    }

    /// Stores `record` only if `key` is absent; returns false if it was present.
    pub fn insert_new(&self, key: &[u8], record: &T) -> Result<bool, StoreError> {
        self.tree.compare_and_swap(key, None, Some(encode(record)?))
    }

    pub fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        self.tree.remove(key)
    }

    /// Reads the record, lets `decide` choose a change and an outcome, and
    /// applies the change only if the record is still what `decide` saw.
    /// On a conflict it reads again and asks again, so `decide` must be pure.
    pub fn modify<R>(
        &self,
        key: &[u8],
        mut decide: impl FnMut(Option<T>) -> (Change<T>, R),
    ) -> Result<R, StoreError> {
        loop {
            let current = self.tree.get(key)?;
            let record = current.as_deref().map(decode::<T>).transpose()?;
            let (change, outcome) = decide(record);
            let new = match change {
                Change::Keep => return Ok(outcome),
                Change::Put(record) => Some(encode(&record)?),
                Change::Remove => None,
            };
            if self.tree.compare_and_swap(key, current.as_deref(), new)? {
                return Ok(outcome);
            }
        }
    }

    /// Every record with its key, in key order.
    pub fn entries(&self) -> impl Iterator<Item = Result<(Vec<u8>, T), StoreError>> + '_ {
        self.tree
            .iter()
            .map(|entry| entry.and_then(|(key, bytes)| Ok((key, decode::<T>(&bytes)?))))
    }

    /// Records whose keys lie in `start..end`, in key order.
    pub fn range(&self, start: &[u8], end: &[u8]) -> impl Iterator<Item = Result<(Vec<u8>, T), StoreError>> + '_ {
        self.tree
            .inner
            .range(start.to_vec()..end.to_vec())
            .map(|entry| entry.map_err(StoreError::from).and_then(|(key, bytes)| Ok((key.to_vec(), decode::<T>(&bytes)?))))
    }

    /// Writes many records as one atomic batch.
    pub fn put_batch(&self, records: &[(Vec<u8>, T)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, record) in records {
            batch.insert(key.as_slice(), encode(record)?);
        }
        self.tree.inner.apply_batch(batch)?;
        Ok(())
    }

    /// Deletes every record whose key sorts before `end`; returns how many went.
    pub fn remove_before(&self, end: &[u8]) -> Result<usize, StoreError> {
        let mut removed = 0;
        for entry in self.tree.inner.range(..end.to_vec()) {
            let (key, _) = entry?;
            self.tree.inner.remove(key)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Removes every record for which `expired` holds, unless it changed meanwhile; returns how many went.
    pub fn remove_where(&self, expired: impl Fn(&T) -> bool) -> Result<usize, StoreError> {
        let mut removed = 0;
        for entry in self.tree.iter() {
            let (key, bytes) = entry?;
            // An unreadable record is left for an operator to inspect rather than silently dropped.
            let Ok(record) = decode::<T>(&bytes) else { continue };
            if expired(&record) && self.tree.compare_and_swap(&key, Some(&bytes), None)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Counter {
        value: u32,
    }

    impl Record for Counter {
        const KIND: &'static str = "counter";
        const VERSION: u16 = 1;
    }

    #[test]
    fn modify_applies_each_increment_once_under_contention() {
        let store = Store::temporary().unwrap();
        let table: Table<Counter> = store.table("counters").unwrap();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let table = table.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        table
                            .modify(b"c", |current| {
                                let value = current.map_or(0, |counter| counter.value) + 1;
                                (Change::Put(Counter { value }), ())
                            })
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(table.get(b"c").unwrap(), Some(Counter { value: 800 }));
    }

    #[test]
    fn insert_new_keeps_the_first_record() {
        let store = Store::temporary().unwrap();
        let table: Table<Counter> = store.table("counters").unwrap();
        assert!(table.insert_new(b"k", &Counter { value: 1 }).unwrap());
        assert!(!table.insert_new(b"k", &Counter { value: 2 }).unwrap());
        assert_eq!(table.get(b"k").unwrap(), Some(Counter { value: 1 }));
    }

    #[test]
    fn concurrent_commits_all_return_after_a_flush() {
        let store = Store::temporary().unwrap();
        let tree = store.tree("t").unwrap();
        let threads: Vec<_> = (0..16u8)
            .map(|i| {
                let (store, tree) = (store.clone(), tree.clone());
                std::thread::spawn(move || {
                    tree.insert(&[i], vec![i]).unwrap();
                    store.commit().unwrap();
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let state = store.committer.state.lock().unwrap();
        assert_eq!(state.requested, 16);
        assert_eq!(state.completed, 16);
        assert!(!state.flushing);
    }

    #[test]
    fn second_open_of_a_directory_reports_it_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        match Store::open(dir.path()) {
            Err(StoreError::Locked(path)) => assert_eq!(path, dir.path()),
            Err(other) => panic!("expected Locked, got {other}"),
            Ok(_) => panic!("a second open of one directory succeeded"),
        }
    }
}
