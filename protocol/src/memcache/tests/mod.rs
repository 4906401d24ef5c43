//! Tests of the memcached decoder and composer, by topic: `text.rs` (the text protocol's
//! commands and fields), `meta.rs` (meta commands and flags), `resync.rs` (half-sent input,
//! refused data blocks, long lines) and `reply.rs` (the bytes of every reply). The helpers
//! here decode with small limits, so that the refusal paths are easy to reach.

use super::*;
use bytes::{Bytes, BytesMut};

mod meta;
mod reply;
mod resync;
mod text;

fn decode_all(input: &[u8]) -> Vec<Result<McFrame, McFatal>> {
    let mut d = McDecoder::new(McLimits {
        max_value_len: 16,
        max_line_len: 64,
        max_get_line_len: 128,
        ..McLimits::default()
    });
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    loop {
        match d.decode(&mut buf) {
            Ok(Some(f)) => out.push(Ok(f)),
            Ok(None) => break,
            Err(e) => {
                out.push(Err(e));
                break;
            }
        }
    }
    out
}

fn one(input: &[u8]) -> Result<McFrame, McFatal> {
    let mut all = decode_all(input);
    assert_eq!(
        all.len(),
        1,
        "one frame from {:?}: {all:?}",
        String::from_utf8_lossy(input)
    );
    all.remove(0)
}

fn req(r: McRequest) -> Result<McFrame, McFatal> {
    Ok(McFrame::Request(r))
}

fn err(e: McError) -> Result<McFrame, McFatal> {
    Ok(McFrame::Error(e))
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}
