//! # ratelimitd-replication
//!
//! The pure half of primary→replica streaming replication: what goes on the wire, how much of
//! it the primary keeps for replicas that reconnect, and how it decides between a partial and a
//! full resync. No sockets and no tokio here, so every rule is unit-tested; the daemon's
//! `src/primary.rs` (the primary side) and `src/replica.rs` (the replica's link) do the I/O.
//!
//! ## Layout
//! - [`record`]: the replication stream's records ([`Record`]) and their RESP encoding, and a
//!   bounded, never-panicking decoder ([`record::decode`]) that also reports how many bytes a
//!   record took (offsets count bytes, as in Redis).
//! - [`backlog`]: the [`Backlog`] ring buffer (`--repl-backlog-size`) with its offsets.
//! - [`ids`]: replication ids ([`ReplId`]) and the id pair a promotion leaves behind
//!   ([`ReplIds`]: `master_replid`, `master_replid2`, `second_repl_offset`).
//! - [`psync`]: the primary's answer to `PSYNC <replid> <offset>`: continue from the backlog or
//!   resync in full ([`psync::decide`]).
//! - [`fullsync`]: the full-sync payload (limits, tiers and the engine's state snapshot).
//! - [`skew`]: the replica's estimate of the primary's clock offset, from heartbeats.
//!
//! ## The rule
//! The stream carries the primary's *decisions* — a key's new state with its absolute deadlines,
//! a key-value item, a limit change, a flush — never a command to re-execute. A replica applies
//! them as they are and never runs a check with its own clock, so it cannot diverge. Writes are
//! drained from the engine every millisecond and a hot key written many times in between is
//! one record (its *current* state), so a slow replica costs bandwidth, not correctness.
//!
//! ## Offsets
//! As in Redis: stream bytes are numbered from 1; `master_repl_offset` is the number of the
//! last byte produced; a replica that has processed through byte `n` asks for `PSYNC <id> n+1`.

pub mod backlog;
pub mod fullsync;
pub mod ids;
pub mod psync;
pub mod record;
pub mod skew;

pub use backlog::Backlog;
pub use fullsync::{FullSync, FullSyncError};
pub use ids::{ReplId, ReplIds};
pub use psync::{decide, FullReason, PsyncDecision};
pub use record::{Record, StreamError};
pub use skew::ClockSkew;
