//! Limits and tiers: setting, reading and listing them, and the table they live in.
//!
//! The table is published as an immutable snapshot through crossbeam-epoch: a check pins and
//! reads it without a lock ([`Engine::table`]), and an edit clones it, changes the copy and
//! swaps it in under the writer lock ([`Engine::edit_table`]). A limit's windows get their
//! shape ids here too, under that same lock (see `shape.rs`).

use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use crossbeam_epoch::{self as epoch, Guard, Owned};

use crate::table::Table;
use crate::{Algorithm, Clock, Engine, Limit, Scope, Window};

impl<C: Clock> Engine<C> {
    /// The current table snapshot, valid for as long as `guard` is pinned.
    pub(crate) fn table<'g>(&self, guard: &'g Guard) -> &'g Table {
        let shared = self.table.load(Ordering::Acquire, guard);
        // SAFETY: `table` is initialised non-null in `new` and only ever swapped for another
        // non-null `Owned`; a replaced snapshot is destroyed through `defer_destroy`, i.e. only
        // after every guard pinned before the swap (including `guard`) is gone.
        unsafe { shared.deref() }
    }

    /// Apply `edit` to a copy of the table and publish the copy.
    pub(crate) fn edit_table<R>(&self, edit: impl FnOnce(&mut Table) -> R) -> R {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let guard = epoch::pin();
        let mut next = self.table(&guard).clone();
        let out = edit(&mut next);
        let old = self.table.swap(Owned::new(next), Ordering::AcqRel, &guard);
        // SAFETY: `old` was the published snapshot and is now unreachable from `self.table`;
        // readers that still hold it are pinned, and deferred destruction waits for them.
        unsafe { guard.defer_destroy(old) };
        out
    }

    /// Set (replace) the limit of a scope; applies to the next check.
    pub fn set_limit(&self, scope: Scope, mut limit: Limit) {
        let algo = limit.algorithm();
        // Interned under the writer lock, against the table about to be published, so that no
        // other limit change recycles these ids before this limit is in force; the ids already
        // given to this limit's earlier windows are in force too.
        self.edit_table(|t| {
            let mut ids: Vec<u16> = Vec::with_capacity(limit.windows().len());
            for w in limit.windows() {
                let id = self.shapes.intern(algo, w, || {
                    let mut v = ids.clone();
                    t.for_each_limit(|l| v.extend_from_slice(&l.shapes));
                    v
                });
                ids.push(id);
            }
            limit.shapes = ids;
            t.set_limit(scope, limit)
        });
    }

    /// The local shape id of a window that state arrived under (replication, snapshots).
    ///
    /// A window already interned is looked up without the writer lock. A new one is interned
    /// under it, like [`Engine::set_limit`] does: a limit change holds that lock from interning
    /// its windows until its table is published, so the ids it was just given are always
    /// either in the published table or not yet handed out, and recycling here cannot take
    /// one of them.
    pub(crate) fn intern_for_state(&self, algo: Algorithm, w: &Window) -> u16 {
        if let Some(id) = self.shapes.find(algo, w) {
            return id;
        }
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.shapes.intern(algo, w, || self.shapes_in_force())
    }

    /// The shape ids the limits in force use, which [`Shapes::intern`](crate::shape::Shapes::intern) must not hand
    /// to another window.
    pub(crate) fn shapes_in_force(&self) -> Vec<u16> {
        let guard = epoch::pin();
        let mut ids = Vec::new();
        self.table(&guard)
            .for_each_limit(|l| ids.extend_from_slice(&l.shapes));
        ids
    }

    pub fn get_limit(&self, scope: &Scope) -> Option<Limit> {
        let guard = epoch::pin();
        self.table(&guard).get_limit(scope).cloned()
    }

    /// True if the scope had a limit.
    pub fn del_limit(&self, scope: &Scope) -> bool {
        self.edit_table(|t| t.del_limit(scope))
    }

    /// All limits, sorted by scope (Default, then clients, tiers, endpoints, each by name).
    pub fn list_limits(&self) -> Vec<(Scope, Limit)> {
        let guard = epoch::pin();
        self.table(&guard).list()
    }

    pub fn set_tier(&self, client: &[u8], tier: &[u8]) {
        self.edit_table(|t| t.set_tier(client, tier));
    }

    pub fn get_tier(&self, client: &[u8]) -> Option<Vec<u8>> {
        let guard = epoch::pin();
        self.table(&guard).tier_of(client).map(<[u8]>::to_vec)
    }

    /// True if the client had a tier.
    pub fn del_tier(&self, client: &[u8]) -> bool {
        self.edit_table(|t| t.del_tier(client))
    }

    /// All (client, tier) assignments, sorted by client (for persistence and replication).
    pub fn list_tiers(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let guard = epoch::pin();
        self.table(&guard).tiers()
    }
}
