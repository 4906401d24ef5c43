//! Reply shapes several commands share: Redis's HELP listing, its unknown-subcommand and
//! unknown-command errors, and the text reply of INFO and CLIENT LIST.

use crate::text::shorten;
use bytes::Bytes;
use ratelimitd_protocol::{ParseError, Reply};

/// The reply to `CMD HELP`: one status line per entry, as Redis answers it. Every command
/// whose unknown-subcommand error says "Try CMD HELP" answers it.
pub fn help_reply(lines: &[&'static str]) -> Reply {
    Reply::Array(
        lines
            .iter()
            .map(|l| Reply::Simple(Bytes::from_static(l.as_bytes())))
            .collect(),
    )
}

/// `ERR unknown subcommand 'x'. Try CMD HELP.`, as Redis words it.
pub fn unknown_subcommand(sub: &[u8], cmd: &str) -> ParseError {
    ParseError::Invalid(format!(
        "unknown subcommand '{}'. Try {} HELP.",
        shorten(sub, 128),
        cmd
    ))
}

/// Redis's text: `ERR unknown command 'foo', with args beginning with: 'a' 'b' `.
pub fn unknown_command(name: &[u8], rest: &[&[u8]]) -> Reply {
    let mut msg = format!(
        "ERR unknown command '{}', with args beginning with: ",
        shorten(name, 128)
    );
    for arg in rest {
        msg.push_str(&format!("'{}' ", shorten(arg, 128)));
        if msg.len() > 512 {
            break;
        }
    }
    Reply::error(msg)
}

/// A text reply that RESP3 clients receive as a verbatim string and RESP2 clients as a bulk
/// string (what Redis does for INFO and CLIENT LIST).
pub fn text_reply(text: String) -> Reply {
    Reply::Verbatim("txt", Bytes::from(text))
}
