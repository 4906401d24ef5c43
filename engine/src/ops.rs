//! The methods of [`Engine`](crate::Engine), one file per topic. The struct, its
//! construction and the public re-exports stay in `lib.rs`; each file here adds an
//! `impl Engine` block:
//! - `checks`: RL.CHECK, RL.PEEK, RL.RESET and RL.EXPLAIN, one at a time or batched: the
//!   limit's windows decided under one shard lock, rescaled when the limit changed, and
//!   committed all or none;
//! - `limits`: limits and tiers, and the publication of the table they live in;
//! - `throttle`: CL.THROTTLE;
//! - `kv`: key-value transactions and items;
//! - `changes`: the change feed for replication (tracking, drain, apply) and FLUSHALL;
//! - `snapshot`: saving and restoring state;
//! - `upkeep`: the store as a whole: its bounds, what it holds, and the expiry steps.

mod changes;
mod checks;
mod kv;
mod limits;
mod snapshot;
mod throttle;
mod upkeep;
