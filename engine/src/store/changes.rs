//! The store's side of the change feed: which entries were written since the last drain, the
//! drain that reads their current state back, and applying a replicated record.
//!
//! A shard records the fingerprint (or key-value key) of each write while tracking is on
//! ([`Store::set_tracking`]), and the drain reads each recorded entry as it is then, so a hot
//! key written many times yields one record. Separate from the shard's tables because it is
//! off by default, and then costs a write one untaken branch.

use std::sync::atomic::{AtomicU64, AtomicU8};

use super::bounds::Bounds;
use super::shard::{Shard, T_CL, T_GCRA, T_WIN};
use super::Store;
use crate::fingerprint::kv_fingerprint;
use crate::kv::Item;
use crate::Nanos;

/// One recorded write as [`Store::drain`] reads it back.
pub(crate) enum Drained<'a> {
    /// Rate state of (table, key): its words and how many are used, or None if it is gone.
    Rate(u8, u64, Option<([u64; 3], usize)>),
    /// A key-value item, or None if it was deleted.
    Kv(&'a [u8], Option<&'a Item>),
}

impl Shard {
    /// Record a write of rate-state entry `key` of table `table`, if tracking is on.
    #[inline]
    pub(super) fn mark(&mut self, table: u32, key: u64) {
        if self.track {
            self.dirty.push((table as u8, key));
        }
    }

    /// Record a write of key-value key `key`, if tracking is on.
    #[inline]
    pub(super) fn mark_kv(&mut self, key: &[u8]) {
        if self.track {
            self.dirty_kv.push(key.into());
        }
    }

    /// The words of a rate-state entry as they are now (None: absent).
    fn words_of(&self, table: u8, key: u64) -> Option<([u64; 3], usize)> {
        match u32::from(table) {
            T_GCRA => self.gcra.get(key).map(|w| ([w, 0, 0], 1)),
            T_WIN => self.win.get(key).map(|w| (w, 3)),
            T_CL => self.cl.get(key).map(|t| ([t, 0, 0], 1)),
            _ => None,
        }
    }
}

impl Store {
    /// Start or stop recording writes for replication.
    pub fn set_tracking(&self, on: bool) {
        for i in 0..self.shards.len() {
            let mut s = self.lock_index(i);
            s.track = on;
            if !on {
                s.dirty = Vec::new();
                s.dirty_kv = Vec::new();
            }
        }
    }

    /// Take every shard's recorded writes and read the entries' current state: one record per
    /// key however often it was written since the last drain (a hot key coalesces). The
    /// shard's dirty list is kept (emptied, not freed) so that steady writes do not allocate.
    pub fn drain(&self, mut visit: impl FnMut(Drained<'_>)) {
        for i in 0..self.shards.len() {
            let mut s = self.lock_index(i);
            if s.dirty.is_empty() && s.dirty_kv.is_empty() {
                continue;
            }
            let mut dirty = std::mem::take(&mut s.dirty);
            dirty.sort_unstable();
            dirty.dedup();
            for &(t, k) in &dirty {
                let words = s.words_of(t, k);
                visit(Drained::Rate(t, k, words));
            }
            dirty.clear();
            s.dirty = dirty;
            if !s.dirty_kv.is_empty() {
                let mut dirty_kv = std::mem::take(&mut s.dirty_kv);
                dirty_kv.sort_unstable();
                dirty_kv.dedup();
                for k in &dirty_kv {
                    let item = s.kv.slot(k).and_then(|i| s.kv.at(i)).map(|(_, it)| it);
                    visit(Drained::Kv(k, item));
                }
            }
        }
    }

    /// Apply a replicated rate-state record (None: delete), ignoring bounds as a restore does.
    pub fn apply(&self, table: u8, key: u64, words: Option<&[u64]>) {
        let mut locked = self.lock(key);
        let shard = &mut locked.shard;
        match words {
            Some(w) => {
                shard.restore(table, key, w);
            }
            None => match u32::from(table) {
                T_GCRA => {
                    shard.gcra_remove(key, 0);
                }
                T_WIN => {
                    shard.win_remove(key, 0);
                }
                T_CL => shard.cl_remove(key),
                _ => {}
            },
        }
    }

    /// Apply a replicated key-value record (None: delete).
    pub fn apply_kv(&self, key: &[u8], item: Option<Item>, now: Nanos) {
        let idx = self.shard_of(kv_fingerprint(key));
        let mut shard = self.lock_index(idx);
        match item {
            Some(item) => {
                let unbounded = Bounds {
                    keys_per_shard: AtomicU64::new(u64::MAX),
                    bytes_per_shard: AtomicU64::new(u64::MAX),
                    policy: AtomicU8::new(0),
                };
                let _ = shard.kv_put(key, item, now, &unbounded);
            }
            None => {
                shard.kv_delete(key);
            }
        }
    }
}
