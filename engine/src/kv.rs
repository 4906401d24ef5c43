//! The plain key-value space: the counters and small values that `INCR`/`EXPIRE`/`SET`/`GET`
//! (RESP) and `add`/`incr`/`get`/`touch` (memcached) work on, for teams moving off the
//! "INCR + EXPIRE" pattern.
//!
//! Unlike rate state, these keys are stored whole (a `GET` must return *this* key's value, and
//! a fingerprint collision would hand one client another's counter), in a slab per shard so
//! that an item has a stable index the timing wheel can refer to, like every other entry. An
//! item with an expiry is scheduled on the shard's wheel at that moment and dropped when it
//! passes; items count in the same memory bound as rate state.
//!
//! The engine knows no command semantics: the daemon reads and writes items through
//! [`KvTxn`], which holds the locks of every shard the keys live in (taken in shard order, so
//! two transactions cannot deadlock). A one-key update and a `MULTI ... EXEC` over several keys
//! are both one transaction, which is what makes `MULTI; INCR k; EXPIRE k 60 NX; EXEC` atomic.

use crate::Nanos;
use std::collections::HashMap;

/// One stored value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Item {
    pub value: Vec<u8>,
    /// memcached's opaque client flags (0 for values written over RESP).
    pub flags: u32,
    /// A version that changes on every write (memcached's CAS unique; WATCH compares it).
    pub cas: u64,
    /// Absolute expiry, ns since the Unix epoch; None: no expiry.
    pub expires_at: Option<Nanos>,
}

impl Item {
    /// Bytes this item costs, for the memory bound: key, value, and the slab/map overhead.
    pub(crate) fn cost(&self, key_len: usize) -> usize {
        key_len + self.value.len() + 96
    }
}

/// The per-shard store of items: a map from key to slab index, and the slab. The map uses
/// std's randomly keyed SipHash: keys come from clients, so it must resist hash flooding.
#[derive(Debug, Default)]
pub(crate) struct KvTable {
    index: HashMap<Box<[u8]>, u32>,
    slab: Vec<Option<(Box<[u8]>, Item)>>,
    free: Vec<u32>,
    bytes: usize,
}

impl KvTable {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes + self.slab.capacity() * std::mem::size_of::<Option<(Box<[u8]>, Item)>>()
    }

    pub fn slot(&self, key: &[u8]) -> Option<u32> {
        self.index.get(key).copied()
    }

    pub fn at(&self, idx: u32) -> Option<(&[u8], &Item)> {
        self.slab
            .get(idx as usize)
            .and_then(|s| s.as_ref())
            .map(|(k, i)| (&**k, i))
    }

    /// Slots the slab grows by when full: it doubles (at least 4), as a `Vec` would, but by
    /// a known amount, so that [`KvTable::insert_growth`] can tell the bound beforehand.
    fn grow_by(&self) -> usize {
        self.slab.capacity().max(4)
    }

    /// Bytes the slab would grow by to take one more item (0 while it has a free slot). The
    /// bound checks a new item's cost with this: a slab doubling at the bound overshot it by
    /// up to 40 %.
    pub fn insert_growth(&self) -> usize {
        if self.free.is_empty() && self.slab.len() == self.slab.capacity() {
            self.grow_by() * std::mem::size_of::<Option<(Box<[u8]>, Item)>>()
        } else {
            0
        }
    }

    /// Insert a new key; returns its slab index.
    pub fn insert(&mut self, key: &[u8], item: Item) -> u32 {
        self.bytes += item.cost(key.len());
        let entry = Some((Box::<[u8]>::from(key), item));
        let idx = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = entry;
                i
            }
            None => {
                if self.slab.len() == self.slab.capacity() {
                    self.slab.reserve_exact(self.grow_by());
                }
                self.slab.push(entry);
                (self.slab.len() - 1) as u32
            }
        };
        self.index.insert(key.into(), idx);
        idx
    }

    /// Replace the item at `idx` (the key stays), keeping the byte count right.
    pub fn replace(&mut self, idx: u32, item: Item) {
        if let Some(Some((k, old))) = self.slab.get_mut(idx as usize) {
            self.bytes = self.bytes - old.cost(k.len()) + item.cost(k.len());
            *old = item;
        }
    }

    pub fn remove_at(&mut self, idx: u32) {
        if let Some(slot) = self.slab.get_mut(idx as usize) {
            if let Some((k, item)) = slot.take() {
                self.bytes -= item.cost(k.len());
                self.index.remove(&k);
                self.free.push(idx);
            }
        }
        if self.index.is_empty() {
            // Give the memory back once the space is empty (after a burst of counters).
            *self = KvTable::default();
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &[u8], &Item)> {
        self.slab
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|(k, it)| (i as u32, &**k, it)))
    }
}

/// What a transaction does to a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvWrite {
    /// Store this item (its `cas` is assigned by the engine).
    Put(Item),
    /// Store this item with the `cas` it carries: memcached's `touch` and `gat` give an item a
    /// new expiry without making it a new version, so a client's `gets` token still matches.
    Retime(Item),
    Delete,
}

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The memory bound is reached and the policy refuses new keys.
    #[error("OOM command not allowed when used memory > 'maxmemory'.")]
    OutOfMemory,
}

/// Locked access to the items of a fixed set of keys (see [`crate::Engine::kv_txn`]). Every
/// read and write in one transaction sees one consistent state: the shards of all its keys stay
/// locked until it is dropped.
pub struct KvTxn<'a> {
    pub(crate) guards: Vec<(usize, crate::shardlock::ShardGuard<'a, crate::store::Shard>)>,
    pub(crate) store: &'a crate::store::Store,
    pub(crate) now: Nanos,
    pub(crate) cas: &'a std::sync::atomic::AtomicU64,
    /// Writes applied so far (see [`KvTxn::writes`]).
    pub(crate) writes: u64,
}

impl KvTxn<'_> {
    /// The clock reading the transaction runs at (for TTLs).
    pub fn now(&self) -> Nanos {
        self.now
    }

    fn shard_mut(&mut self, key: &[u8]) -> Option<&mut crate::store::Shard> {
        let idx = self.store.index_of(crate::fingerprint::kv_fingerprint(key));
        self.guards
            .iter_mut()
            .find(|(i, _)| *i == idx)
            .map(|(_, g)| &mut **g)
    }

    fn shard(&self, key: &[u8]) -> Option<&crate::store::Shard> {
        let idx = self.store.index_of(crate::fingerprint::kv_fingerprint(key));
        self.guards
            .iter()
            .find(|(i, _)| *i == idx)
            .map(|(_, g)| &**g)
    }

    /// The live item of `key`. A key not named when the transaction began reads as absent.
    pub fn get(&self, key: &[u8]) -> Option<&Item> {
        let now = self.now;
        self.shard(key)?.kv_get(key, now)
    }

    /// How many writes this transaction has applied so far: every [`KvTxn::write`] that
    /// returned Ok for a key the transaction holds (a delete of an absent key included). The
    /// daemon counts them as changes a snapshot would carry.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Apply a write; a `Put` gets a fresh CAS value, returned. A key not named when the
    /// transaction began is ignored (returns Ok(0)).
    pub fn write(&mut self, key: &[u8], w: KvWrite) -> Result<u64, KvError> {
        let r = self.apply(key, w);
        if r.is_ok() && self.holds(key) {
            self.writes += 1;
        }
        r
    }

    fn holds(&self, key: &[u8]) -> bool {
        self.shard(key).is_some()
    }

    fn apply(&mut self, key: &[u8], w: KvWrite) -> Result<u64, KvError> {
        let now = self.now;
        let next_cas = self.cas;
        let bounds = self.store.bounds_ref();
        let Some(shard) = self.shard_mut(key) else {
            return Ok(0);
        };
        match w {
            KvWrite::Put(mut item) => {
                let cas = next_cas.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                item.cas = cas;
                shard.kv_put(key, item, now, bounds)?;
                Ok(cas)
            }
            KvWrite::Retime(item) => {
                let cas = item.cas;
                shard.kv_put(key, item, now, bounds)?;
                Ok(cas)
            }
            KvWrite::Delete => {
                shard.kv_delete(key);
                Ok(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_reuses_indices_and_tracks_bytes() {
        let mut t = KvTable::default();
        let a = t.insert(
            b"a",
            Item {
                value: b"1".to_vec(),
                ..Item::default()
            },
        );
        let b = t.insert(
            b"bb",
            Item {
                value: b"22".to_vec(),
                ..Item::default()
            },
        );
        assert_ne!(a, b);
        assert_eq!(t.len(), 2);
        let bytes = t.bytes;
        t.replace(
            a,
            Item {
                value: b"12345".to_vec(),
                ..Item::default()
            },
        );
        assert_eq!(t.bytes, bytes + 4);
        t.remove_at(a);
        assert_eq!(t.slot(b"a"), None);
        let c = t.insert(b"c", Item::default());
        assert_eq!(c, a, "the freed index is reused");
        assert_eq!(
            t.at(b).map(|(k, i)| (k.to_vec(), i.value.clone())),
            Some((b"bb".to_vec(), b"22".to_vec()))
        );
        t.remove_at(b);
        t.remove_at(c);
        assert_eq!(
            (t.len(), t.bytes()),
            (0, 0),
            "memory is given back when empty"
        );
    }
}
