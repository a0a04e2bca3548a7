//! `table`: a key-value table a validator's setup fills and its reviews read.
//!
//! A setup's own memory becomes the image every review instance maps (see
//! [`crate::runtime::snapshot`]), so data kept there is paid for by every
//! review: each instance's pages of it, and the reset that scans them. The
//! table keeps such data once, in the host, in one buffer with a hash index:
//! a review looks a key up in one probe whatever the table holds.
//!
//! One run fills its own table ([`RunTable::Filling`]), its bytes (capacity,
//! index included) held against the run's memory. When the run is a setup
//! that becomes the reviews' image, the runtime [`freezes`](RunTable::freeze)
//! the table and hands it, read only, to every review
//! ([`RunTable::Frozen`]): a review cannot change what the next one sees.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use wasmtime::component::Linker;

use super::{Capability, GrantError, GrantTable, HostState, PluginSetup};
use crate::bindings::table::{Host, add_to_linker};
use crate::bindings::types::HostError;
use crate::boundary::memory::Held;
use crate::boundary::wire::WireSize;
use crate::boundary::{Boundary, CapView, ViewOf};

/// The `table` capability.
pub struct Table;

impl Capability for Table {
    const INTERFACE: &'static str = "table";
    const WHAT: &'static str = "keep a read-only table its setup fills, outside the reviews' memory";
    const GRANT: &'static str = "always granted";
    type Policy = ();
    type State = RunTable;

    fn configure(_: &mut GrantTable, _: &PluginSetup) -> Result<(), GrantError> {
        Ok(())
    }

    fn prepare(_: &Arc<()>) -> RunTable {
        RunTable::Filling { entries: Entries::default(), held: None }
    }

    fn link(
        linker: &mut Linker<HostState>,
        view: fn(&mut HostState) -> CapView<'_, Self::State>,
    ) -> wasmtime::Result<()> {
        add_to_linker::<HostState, ViewOf<Self::State>>(linker, view)
    }
}

/// Longest key.
pub const MAX_KEY: usize = 1024;
/// Longest value.
pub const MAX_VALUE: usize = 64 * 1024;
/// Bytes before each entry in the buffer: the key's and the value's lengths.
const HEADER: usize = 8;

/// A table's entries: every key and value in one buffer, found through a
/// hash index of offsets (two allocations however many entries there are).
#[derive(Debug, Default)]
pub struct Entries {
    /// Each entry: key length and value length (u32, little endian), key, value.
    data: Vec<u8>,
    /// The offset in `data` of each entry, by the hash of its key.
    index: HashTable<usize>,
    /// Keyed per table, so no plugin can pick keys that collide.
    hasher: std::hash::RandomState,
}

/// The key and value of the entry at `offset` in `data`.
fn entry(data: &[u8], offset: usize) -> (&[u8], &[u8]) {
    let length =
        |at: usize| data.get(at..at + 4).and_then(|b| b.try_into().ok()).map_or(0, u32::from_le_bytes) as usize;
    let (key_len, value_len) = (length(offset), length(offset + 4));
    let key_at = offset + HEADER;
    let key = data.get(key_at..key_at + key_len).unwrap_or_default();
    let value = data.get(key_at + key_len..key_at + key_len + value_len).unwrap_or_default();
    (key, value)
}

/// Bytes hashbrown allocates for an index with room for `capacity` entries:
/// a power of two of buckets (one offset and one control byte each) holding
/// at most 7/8 of them, and a group of control bytes more.
fn index_bytes(capacity: usize) -> usize {
    let buckets = if capacity < 8 { 8 } else { (capacity * 8 / 7).next_power_of_two() };
    buckets * (std::mem::size_of::<usize>() + 1) + 16
}

impl Entries {
    /// The value under `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let offset = self.find(self.hasher.hash_one(key), key)?;
        Some(entry(&self.data, offset).1)
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<usize> {
        self.index.find(hash, |&offset| entry(&self.data, offset).0 == key).copied()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes allocated for the entries and their index.
    pub fn bytes(&self) -> usize {
        self.data.capacity() + index_bytes(self.index.capacity())
    }

    /// Add an entry whose key is not there yet, growing under `held`: the
    /// new capacity is charged before it is allocated.
    fn insert_new(&mut self, hash: u64, key: &[u8], value: &[u8], held: &mut Held) -> Result<(), HostError> {
        let need = HEADER + key.len() + value.len();
        let data = if self.data.capacity() - self.data.len() < need {
            (self.data.len() + need).max(self.data.capacity() * 2)
        } else {
            self.data.capacity()
        };
        let index = if self.index.len() == self.index.capacity() {
            (self.index.capacity() * 2).max(8)
        } else {
            self.index.capacity()
        };
        held.resize(data + index_bytes(index)).map_err(|e| {
            HostError::Invalid(format!("`table.insert`: the table would exceed the plugin's memory: {e}"))
        })?;
        self.data.reserve_exact(data - self.data.len());
        let (data, hasher) = (&self.data, &self.hasher);
        self.index.reserve(index - self.index.len(), |&offset| hasher.hash_one(entry(data, offset).0));
        let offset = self.data.len();
        // Both lengths fit: they are bounded by MAX_KEY and MAX_VALUE.
        self.data.extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.data.extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(value);
        let (data, hasher) = (&self.data, &self.hasher);
        self.index.insert_unique(hash, offset, |&offset| hasher.hash_one(entry(data, offset).0));
        Ok(())
    }

    fn shrink(&mut self) {
        self.data.shrink_to_fit();
        let (data, hasher) = (&self.data, &self.hasher);
        self.index.shrink_to_fit(|&offset| hasher.hash_one(entry(data, offset).0));
    }
}

/// One run's table.
#[derive(Debug)]
pub enum RunTable {
    /// Filled by this run; its bytes held against the run's memory.
    Filling {
        /// The entries so far.
        entries: Entries,
        /// What they hold of the run's memory (from the first insert on).
        held: Option<Held>,
    },
    /// Filled by the setup this review's instance was snapshotted from.
    Frozen(Arc<Entries>),
}

impl RunTable {
    /// The entries, read only from now on: what the setup that filled them
    /// leaves to the reviews started from its snapshot. The run's memory is
    /// given back (the run is over); the table lives as long as the image.
    pub fn freeze(&mut self) -> Arc<Entries> {
        let frozen = match std::mem::replace(self, Self::Frozen(Arc::default())) {
            Self::Filling { mut entries, .. } => {
                entries.shrink();
                Arc::new(entries)
            }
            Self::Frozen(entries) => entries,
        };
        *self = Self::Frozen(Arc::clone(&frozen));
        frozen
    }

    /// A review's table: what its setup filled.
    pub fn frozen(entries: Arc<Entries>) -> Self {
        Self::Frozen(entries)
    }

    fn entries(&self) -> &Entries {
        match self {
            Self::Filling { entries, .. } => entries,
            Self::Frozen(entries) => entries,
        }
    }

    fn insert(&mut self, boundary: &Boundary, key: &[u8], value: &[u8]) -> Result<bool, HostError> {
        let Self::Filling { entries, held } = self else {
            return Err(HostError::Invalid(
                "`table.insert`: the table is read only in a review; a validator's setup fills it".into(),
            ));
        };
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(HostError::Invalid(format!(
                "`table.insert`: keys are limited to {MAX_KEY} bytes and values to {MAX_VALUE} bytes \
                 (this key has {}, this value {})",
                key.len(),
                value.len()
            )));
        }
        let hash = entries.hasher.hash_one(key);
        if entries.find(hash, key).is_some() {
            return Ok(false);
        }
        let held = match held {
            Some(held) => held,
            None => held.insert(boundary.memory().hold(0).map_err(|e| HostError::Invalid(e.to_string()))?),
        };
        entries.insert_new(hash, key, value, held)?;
        Ok(true)
    }
}

impl Host for CapView<'_, RunTable> {
    async fn insert(&mut self, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<Result<bool, HostError>> {
        self.call("table.insert", key.wire_size() + value.wire_size(), async |table, boundary| {
            Ok(table.insert(boundary, &key, &value))
        })
        .await
    }

    async fn get(&mut self, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.call_or_trap("table.get", key.wire_size(), async |table, _| {
            Ok(table.entries().get(&key).map(<[u8]>::to_vec))
        })
        .await
    }

    async fn len(&mut self) -> wasmtime::Result<u64> {
        self.call_or_trap("table.len", 0, async |table, _| Ok(table.entries().len() as u64)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::testing::Run;

    #[tokio::test]
    async fn the_first_value_of_a_key_stays_and_lookups_find_every_entry() {
        let mut run = Run::builder().build();
        let mut view = run.view::<Table>();
        for i in 0..10_000u32 {
            let inserted = view.insert(i.to_le_bytes().to_vec(), format!("user{i}").into_bytes()).await.unwrap();
            assert!(inserted.unwrap());
        }
        assert!(!view.insert(7u32.to_le_bytes().to_vec(), b"other".to_vec()).await.unwrap().unwrap());
        assert_eq!(view.len().await.unwrap(), 10_000);
        for i in [0u32, 7, 4_321, 9_999] {
            let value = view.get(i.to_le_bytes().to_vec()).await.unwrap();
            assert_eq!(value, Some(format!("user{i}").into_bytes()));
        }
        assert_eq!(view.get(10_000u32.to_le_bytes().to_vec()).await.unwrap(), None);
        assert_eq!(view.get(Vec::new()).await.unwrap(), None);
        // An empty key and an empty value are entries like any other.
        assert!(view.insert(Vec::new(), Vec::new()).await.unwrap().unwrap());
        assert_eq!(view.get(Vec::new()).await.unwrap(), Some(Vec::new()));
    }

    #[tokio::test]
    async fn the_table_is_held_against_the_run_memory_and_refused_past_it() {
        let mut run = Run::builder().limits(|l| l.memory_mib = 1).build();
        let mut refused = None;
        for i in 0..100_000u32 {
            match run.view::<Table>().insert(i.to_le_bytes().to_vec(), vec![b'v'; 100]).await.unwrap() {
                Ok(inserted) => assert!(inserted),
                Err(e) => {
                    refused = Some((i, e));
                    break;
                }
            }
            // What the run holds covers what the table allocated.
            let RunTable::Filling { entries, .. } = &run.host.caps.table else { unreachable!() };
            assert!(run.memory.held() >= entries.bytes(), "entry {i}");
        }
        let (count, error) = refused.expect("1 MiB cannot hold 100,000 entries of 112 bytes");
        assert!(count > 3_000, "refused after {count} entries");
        let HostError::Invalid(message) = error else { panic!("{error:?}") };
        assert!(message.contains("exceed the plugin's memory") && message.contains("1 MiB"), "{message}");
        // The entries before stay, and lookups still work.
        assert_eq!(run.view::<Table>().get(0u32.to_le_bytes().to_vec()).await.unwrap(), Some(vec![b'v'; 100]));
    }

    #[tokio::test]
    async fn keys_and_values_are_bounded() {
        let mut run = Run::builder().limits(|l| l.max_call_bytes = 256 * 1024).build();
        let mut view = run.view::<Table>();
        let long_key = view.insert(vec![0; MAX_KEY + 1], Vec::new()).await.unwrap().unwrap_err();
        assert!(matches!(&long_key, HostError::Invalid(m) if m.contains("1024 bytes")), "{long_key:?}");
        let long_value = view.insert(b"k".to_vec(), vec![0; MAX_VALUE + 1]).await.unwrap().unwrap_err();
        assert!(matches!(&long_value, HostError::Invalid(m) if m.contains("65536 bytes")), "{long_value:?}");
        assert!(view.insert(vec![1; MAX_KEY], vec![2; MAX_VALUE]).await.unwrap().unwrap());
        // Like every call: arguments over max-call-bytes are refused first.
        let mut small = Run::builder().limits(|l| l.max_call_bytes = 1024).build();
        let over = small.view::<Table>().insert(b"k".to_vec(), vec![0; 2048]).await.unwrap().unwrap_err();
        assert!(matches!(&over, HostError::Invalid(m) if m.contains("max-call-bytes")), "{over:?}");
        let trap = small.view::<Table>().get(vec![0; 2048]).await.unwrap_err();
        assert!(trap.to_string().contains("table.get"), "{trap}");
    }

    #[tokio::test]
    async fn a_frozen_table_is_read_only_and_shared_and_gives_its_memory_back() {
        let mut setup = Run::builder().build();
        setup.view::<Table>().insert(b"token-hash".to_vec(), b"alice".to_vec()).await.unwrap().unwrap();
        assert!(setup.memory.held() > 0);
        let frozen = setup.host.caps.table.freeze();
        assert_eq!(setup.memory.held(), 0, "the run's memory is given back");
        for _ in 0..2 {
            let mut review = Run::builder().build();
            review.host.caps.table = RunTable::frozen(Arc::clone(&frozen));
            let mut view = review.view::<Table>();
            assert_eq!(view.get(b"token-hash".to_vec()).await.unwrap(), Some(b"alice".to_vec()));
            let refused = view.insert(b"remember".to_vec(), b"me".to_vec()).await.unwrap().unwrap_err();
            assert!(matches!(&refused, HostError::Invalid(m) if m.contains("read only in a review")), "{refused:?}");
            assert_eq!(view.len().await.unwrap(), 1);
        }
    }
}
