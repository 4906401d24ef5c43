//! Fuzz the memcached text/meta decoder: any bytes, whole then byte by byte, must give
//! requests, error lines or the binary-protocol refusal — never a panic, and the buffer never
//! holds more than a line plus one value.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ratelimitd_protocol::memcache::{McDecoder, McLimits};

fuzz_target!(|data: &[u8]| {
    let limits = McLimits::default();
    let mut d = McDecoder::new(limits);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(_)) = d.decode(&mut buf) {}
    let mut d = McDecoder::new(limits);
    let mut buf = BytesMut::new();
    for b in data {
        buf.extend_from_slice(&[*b]);
        while let Ok(Some(_)) = d.decode(&mut buf) {}
        assert!(buf.len() <= limits.max_get_line_len + limits.max_value_len + 2);
    }
});
