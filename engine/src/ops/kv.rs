//! The key-value space as the daemon reaches it: transactions over the shards of their keys
//! ([`KvTxn`]), FLUSH of the items alone, and one-key reads.

use crate::fingerprint::kv_fingerprint;
use crate::{Clock, Engine, Item, KvTxn};

impl<C: Clock> Engine<C> {
    /// Run `f` with every key of `keys` locked: reads and writes in `f` are atomic together
    /// (one key: INCR, SET NX, memcached's cas; several: EXEC). Keys outside `keys` read as
    /// absent inside `f`. Shards are locked in index order, so transactions cannot deadlock.
    pub fn kv_txn<R>(&self, keys: &[&[u8]], f: impl FnOnce(&mut KvTxn<'_>) -> R) -> R {
        let mut idx: Vec<usize> = keys
            .iter()
            .map(|k| self.store.index_of(kv_fingerprint(k)))
            .collect();
        idx.sort_unstable();
        idx.dedup();
        let mut txn = KvTxn {
            guards: self.store.lock_many(&idx),
            store: &self.store,
            now: self.clock.now(),
            cas: &self.cas,
            writes: 0,
        };
        f(&mut txn)
    }

    /// Drop every key-value item and keep rate state (memcached's `flush_all`).
    pub fn kv_flush(&self) {
        self.store.clear_kv();
    }

    /// Key-value items held (memcached's `curr_items`).
    pub fn kv_count(&self) -> u64 {
        self.store.kv_len()
    }

    /// The live item of one key (a copy).
    pub fn kv_get(&self, key: &[u8]) -> Option<Item> {
        self.kv_txn(&[key], |t| t.get(key).cloned())
    }
}
