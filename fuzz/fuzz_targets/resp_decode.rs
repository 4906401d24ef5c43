//! Fuzz the RESP request decoder: any bytes, fed whole then byte by byte, must give requests,
//! rejections or a frame error — never a panic or an unbounded buffer.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ratelimitd_protocol::{Decoder, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_bulk_len: 1024,
        max_array_len: 64,
        max_inline_len: 1024,
        max_request_len: 4096,
    };
    let mut d = Decoder::new(limits);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = d.decode(&mut buf) {}
    let mut d = Decoder::new(limits);
    let mut buf = BytesMut::new();
    for b in data {
        buf.extend_from_slice(&[*b]);
        while let Ok(Some(_)) = d.decode(&mut buf) {}
    }
});
