//! Users and what they may do, in Redis's ACL model, so that stock clients authenticate and
//! are refused exactly as Redis would (`AUTH user pass`, `HELLO 3 AUTH user pass`, `-NOPERM`).
//!
//! - [`category`]: the command categories (`@read`, `@write`, `@admin`, ..., and ours:
//!   `@rate_limit`, `@limits`); every row of the command table names its own.
//! - [`catalog`]: what a rule can name: every command and subcommand with a flat id, built
//!   from the command table at start (this module sits below the table, so the table hands it
//!   in).
//! - [`user`]: one user and its rules (`on`, `>pass`, `+@cat`, `-cmd`, `~pattern`, ...).
//! - [`users`]: the registry every connection reads, its change generation, and the ACL LOG.
//!
//! A connection holds the `Arc<User>` it authenticated as and the registry's generation when
//! it took it; a change to any user bumps the generation, and the connection takes its user
//! again before its next command (one atomic load per command when nothing changed).

pub mod catalog;
pub mod category;
pub mod file;
pub mod user;
pub mod users;

pub use catalog::Catalog;
pub use category::{Categories, Category};
pub use user::{KeyAccess, RuleError, User};
pub use users::{AuthError, LogEntry, LogReason, Users};
