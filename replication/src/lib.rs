//! # ratelimitd-replication
//!
//! Primary→replica streaming replication will live here: the replication id and offset, the
//! backlog used for partial resync, the full-sync snapshot, and the replica's link state.
//!
//! The crate is empty on purpose for now. The rule it will follow is fixed already: the stream
//! carries the primary's *decisions* (key, new state, deadline; limit changes; deletes), never a
//! command to re-execute, so a replica cannot diverge by applying a check with its own clock.
