//! The records of the change feed that replication streams: [`Change`] (owned, as a replica
//! receives it) and [`ChangeRef`] (borrowed from the shard, as the drain hands it out).
//!
//! Separate from the store's drain (`store/changes.rs`) because these are the public form:
//! the replication crate encodes and decodes them, and knows nothing of shards.

use crate::kv::Item;

/// One replicated change: the *current* state of something a write touched, read when the
/// changes are drained (so repeated writes of a hot key yield one record). A replica applies it
/// as it is; it never re-runs a decision with its own clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Rate state of one entry. `words` empty: the entry is gone (reset or evicted).
    /// `shape` names the window the state was written under (see `Engine::apply_change`).
    State {
        table: u8,
        key: u64,
        words: Vec<u64>,
        shape: Option<(u64, u64)>,
    },
    /// A key-value item (None: deleted).
    Item { key: Vec<u8>, item: Option<Item> },
    /// Everything was dropped (FLUSHALL); earlier changes are void.
    Flush,
}

/// A [`Change`] as the drain sees it: borrowed from the shard, so that streaming a change costs
/// no allocation (the replication pump encodes it straight into its output buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeRef<'a> {
    /// See [`Change::State`].
    State {
        table: u8,
        key: u64,
        words: &'a [u64],
        shape: Option<(u64, u64)>,
    },
    /// See [`Change::Item`].
    Item {
        key: &'a [u8],
        item: Option<&'a Item>,
    },
    /// See [`Change::Flush`].
    Flush,
}

impl ChangeRef<'_> {
    pub fn to_owned(self) -> Change {
        match self {
            ChangeRef::State {
                table,
                key,
                words,
                shape,
            } => Change::State {
                table,
                key,
                words: words.to_vec(),
                shape,
            },
            ChangeRef::Item { key, item } => Change::Item {
                key: key.to_vec(),
                item: item.cloned(),
            },
            ChangeRef::Flush => Change::Flush,
        }
    }
}

impl Change {
    pub fn as_ref(&self) -> ChangeRef<'_> {
        match self {
            Change::State {
                table,
                key,
                words,
                shape,
            } => ChangeRef::State {
                table: *table,
                key: *key,
                words,
                shape: *shape,
            },
            Change::Item { key, item } => ChangeRef::Item {
                key,
                item: item.as_ref(),
            },
            Change::Flush => ChangeRef::Flush,
        }
    }
}
