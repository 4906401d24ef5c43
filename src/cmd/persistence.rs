//! SAVE, BGSAVE and LASTSAVE: rate-state snapshots on demand, with Redis's replies so that
//! tools that back Redis up work unchanged.
//!
//! The snapshot is taken and written by src/saving.rs. Limits and tiers are not in the
//! snapshot: they are saved on every change in the limits log.

use super::spec::Ctx;
use crate::saving::BgsaveRefused;
use ratelimitd_protocol::{Parse, ParseError, Reply};

/// SAVE: a blocking write, as Redis's: the caller asked to wait for it.
pub fn save(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    let shared = ctx.shared;
    if !shared.persist.try_begin_bgsave() {
        return Ok(Reply::error("ERR Background save already in progress"));
    }
    let result = crate::persist::in_place(|| crate::saving::save(shared));
    shared.persist.end_bgsave();
    match result {
        Ok(_) => Ok(Reply::ok()),
        Err(e) => Ok(Reply::error(format!("ERR snapshot failed: {e}"))),
    }
}

/// BGSAVE [SCHEDULE]: SCHEDULE is accepted for compatibility; a save already running is
/// reported.
pub fn bgsave(ctx: &mut Ctx<'_>, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    if let Some(opt) = parse.try_next() {
        if !opt.eq_ignore_ascii_case(b"SCHEDULE") {
            return Err(ParseError::Syntax);
        }
    }
    parse.finish()?;
    match crate::saving::bgsave(ctx.shared) {
        Ok(()) => Ok(Reply::simple("Background saving started")),
        Err(BgsaveRefused::InProgress) => {
            Ok(Reply::error("ERR Background save already in progress"))
        }
        Err(BgsaveRefused::NoThread(e)) => Ok(Reply::error(format!(
            "ERR Background save not started: {e}"
        ))),
    }
}

/// LASTSAVE: Unix time of the last successful snapshot.
pub fn lastsave(ctx: &mut Ctx<'_>, _: &[&[u8]]) -> Result<Reply, ParseError> {
    Ok(Reply::Integer(ctx.shared.persist.last_save()))
}
