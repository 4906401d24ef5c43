//! SAVE, BGSAVE and LASTSAVE: rate-state snapshots on demand, with Redis's replies so that
//! tools that back Redis up (`redis-cli --rdb` aside) work unchanged.
//!
//! The snapshot bytes come from the engine; src/startup.rs writes them (src/persist.rs makes the
//! write durable). Limits and tiers are not in the snapshot: they are saved on every change in
//! the limits log.

use crate::cmd::table::CmdId;
use crate::server::Shared;
use crate::startup::BgsaveRefused;
use ratelimitd_protocol::{Parse, ParseError, Reply};

pub fn execute(id: CmdId, shared: &Shared, args: &[&[u8]]) -> Result<Reply, ParseError> {
    let mut parse = Parse::new(args);
    match id {
        CmdId::Save => {
            parse.finish()?;
            if !shared.persist.try_begin_bgsave() {
                return Ok(Reply::error("ERR Background save already in progress"));
            }
            // A blocking write, as Redis's SAVE: the caller asked to wait for it.
            let result = crate::persist::in_place(|| crate::startup::save(shared));
            shared.persist.end_bgsave();
            match result {
                Ok(_) => Ok(Reply::ok()),
                Err(e) => Ok(Reply::error(format!("ERR snapshot failed: {e}"))),
            }
        }
        CmdId::Bgsave => {
            // SCHEDULE is accepted for compatibility; a save already running is reported.
            if let Some(opt) = parse.try_next() {
                if !opt.eq_ignore_ascii_case(b"SCHEDULE") {
                    return Err(ParseError::Syntax);
                }
            }
            parse.finish()?;
            let Some(shared) = crate::startup::shared() else {
                return Ok(Reply::error("ERR the server is not ready"));
            };
            match crate::startup::bgsave(&shared) {
                Ok(()) => Ok(Reply::simple("Background saving started")),
                Err(BgsaveRefused::InProgress) => {
                    Ok(Reply::error("ERR Background save already in progress"))
                }
                Err(BgsaveRefused::NoThread(e)) => Ok(Reply::error(format!(
                    "ERR Background save not started: {e}"
                ))),
            }
        }
        CmdId::Lastsave => Ok(Reply::Integer(shared.persist.last_save())),
        _ => Err(ParseError::Syntax),
    }
}
