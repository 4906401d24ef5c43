//! Saving and restoring the engine's state through the snapshot format of `snapshot.rs`.

use crate::snapshot::{self, DecodedSnapshot};
use crate::{Clock, Engine, SnapshotError};

impl<C: Clock> Engine<C> {
    /// Serialise every live entry (see `snapshot.rs` for the format). Shards are visited one at
    /// a time, so checks go on meanwhile; the snapshot is consistent per key, not across keys.
    pub fn snapshot_state(&self) -> Vec<u8> {
        snapshot::write(&self.store, &self.shapes, self.clock.now())
    }

    /// Load a snapshot made by [`Engine::snapshot_state`] into the store (entries that decayed
    /// since are skipped). Returns the number of entries restored. A corrupt or truncated
    /// snapshot is refused whole, before anything is loaded.
    pub fn restore_state(&self, bytes: &[u8]) -> Result<usize, SnapshotError> {
        Ok(self.restore_decoded(DecodedSnapshot::decode(bytes)?))
    }

    /// Load a snapshot already decoded (and so known to be whole) by
    /// [`DecodedSnapshot::decode`]: [`Engine::restore_state`] in two steps, for a caller that
    /// checks a snapshot before it changes anything. Returns the number of entries restored.
    pub fn restore_decoded(&self, snap: DecodedSnapshot) -> usize {
        snapshot::load(
            snap,
            &self.store,
            &|algo, w| self.intern_for_state(algo, w),
            &self.cas,
            self.clock.now(),
        )
    }
}
