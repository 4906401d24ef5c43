//! The change feed for replication: turning tracking on, draining the records of what was
//! written ([`Change`]), applying them on a replica, and FLUSHALL, whose record must come
//! before every write made after it.

use std::sync::PoisonError;

use crate::packing::{pack, unpack};
use crate::shape;
use crate::store;
use crate::{Change, ChangeRef, Clock, Engine};

impl<C: Clock> Engine<C> {
    /// Drop all rate state (limits and tiers are kept, as they are configuration).
    pub fn flush_state(&self) {
        let mut flushed = self.flushed.lock().unwrap_or_else(PoisonError::into_inner);
        self.store.clear(self.clock.now());
        *flushed = true;
    }

    /// Start or stop recording writes for replication ([`Engine::drain_changes`]). Off by
    /// default, and then a write costs nothing extra.
    pub fn set_change_tracking(&self, on: bool) {
        self.store.set_tracking(on);
    }

    /// Append the changes recorded since the last call to `out` (see
    /// [`Engine::drain_changes_with`]).
    pub fn drain_changes(&self, out: &mut Vec<Change>) {
        self.drain_changes_with(|c| out.push(c.to_owned()));
    }

    /// Hand every change recorded since the last call to `visit`: a `Flush` first if FLUSHALL
    /// ran, then the current state of every key written (one record per key, however often it
    /// was written). Nothing is allocated per record; `visit` runs under a shard lock, so it
    /// should only copy the change somewhere.
    pub fn drain_changes_with(&self, mut visit: impl FnMut(ChangeRef<'_>)) {
        let mut flushed = self.flushed.lock().unwrap_or_else(PoisonError::into_inner);
        if std::mem::take(&mut *flushed) {
            visit(ChangeRef::Flush);
        }
        self.store.drain(|drained| match drained {
            store::Drained::Rate(table, key, Some((w, n))) => {
                let shape = if u32::from(table) == 2 {
                    None
                } else {
                    self.shapes
                        .get(unpack(w[0]).1)
                        .map(|(a, win)| shape::encode(a, &win))
                };
                visit(ChangeRef::State {
                    table,
                    key,
                    words: &w[..n],
                    shape,
                });
            }
            store::Drained::Rate(table, key, None) => visit(ChangeRef::State {
                table,
                key,
                words: &[],
                shape: None,
            }),
            store::Drained::Kv(key, item) => visit(ChangeRef::Item { key, item }),
        });
    }

    /// Apply a change drained on a primary. Shape ids are local to a process, so a state's
    /// window travels with it and is re-interned here.
    pub fn apply_change(&self, change: &Change) {
        match change {
            Change::Flush => self.store.clear(self.clock.now()),
            Change::State {
                table,
                key,
                words,
                shape,
            } => {
                if words.is_empty() {
                    self.store.apply(*table, *key, None);
                    return;
                }
                let mut w = words.clone();
                if u32::from(*table) != 2 {
                    let id = shape
                        .and_then(|(a, b)| shape::decode(a, b))
                        .map_or(0, |(algo, win)| self.intern_for_state(algo, &win));
                    let (t, _) = unpack(w[0]);
                    w[0] = pack(u128::from(t), id);
                }
                self.store.apply(*table, *key, Some(&w));
            }
            Change::Item { key, item } => {
                if let Some(item) = item {
                    // CAS values go on from the primary's: a promoted replica must not hand
                    // out again a value a client already holds for an item it kept.
                    self.cas
                        .fetch_max(item.cas, std::sync::atomic::Ordering::Relaxed);
                }
                self.store.apply_kv(key, item.clone(), self.clock.now())
            }
        }
    }
}
