//! A stable, bounded stand-in for the cargo-fuzz targets in `fuzz/` (which need nightly): feed
//! 100,000 deterministic pseudo-random inputs to both decoders — the RESP `Decoder` and the
//! memcached `McDecoder` — whole and in random chunks, and check that neither panics, loops,
//! or holds more than its limits allow. Inputs mix raw garbage with fragments of real requests
//! so that the deeper paths (data blocks, swallowing, meta flags) are reached too.
//!
//! The real fuzzers: `cargo +nightly fuzz run resp_decode` / `memcache_decode` (see
//! fuzz/README.md).

use bytes::BytesMut;
use ratelimitd_protocol::memcache::{McDecoder, McLimits};
use ratelimitd_protocol::{Decoder, Limits};

/// xorshift64*: deterministic, so a failure reproduces with the printed case number.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const FRAGMENTS: &[&[u8]] = &[
    b"*",
    b"$",
    b"\r\n",
    b"\n",
    b"-1",
    b"0",
    b"3",
    b"99999999999",
    b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
    b"PING",
    b"\"",
    b"'",
    b" ",
    b"get ",
    b"gets a b ",
    b"set k 0 0 ",
    b"5\r\nhello\r\n",
    b"cas k 0 0 1 7",
    b"incr k 1",
    b"noreply",
    b"ma k v D1 J0 N60 MI",
    b"mg k v t k O1 q",
    b"ms k 3 T1 F2 b",
    b"mn",
    b"md k C1 q",
    b"flush_all 1",
    b"\x80",
    b"Zm9v",
    b"delete k 0",
    b"touch k -1",
    b"stats",
    b"\x00",
    b"\xff",
    b"-",
];

fn input(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let parts = rng.below(12);
    for _ in 0..parts {
        if rng.below(3) == 0 {
            let n = rng.below(16);
            out.extend((0..n).map(|_| rng.next() as u8));
        } else {
            out.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())]);
        }
    }
    out
}

#[test]
fn decoders_survive_100k_random_inputs() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let resp_limits = Limits {
        max_bulk_len: 64,
        max_array_len: 8,
        max_inline_len: 128,
        max_request_len: 256,
    };
    let mc_limits = McLimits {
        max_key_len: 250,
        max_line_len: 128,
        max_get_line_len: 256,
        max_value_len: 64,
    };
    for case in 0..100_000u32 {
        let data = input(&mut rng);
        let chunked = rng.below(2) == 0;

        let mut resp = Decoder::new(resp_limits);
        let mut mc = McDecoder::new(mc_limits);
        let mut rbuf = BytesMut::new();
        let mut mbuf = BytesMut::new();
        let mut pos = 0;
        while pos < data.len() {
            let step = if chunked {
                1 + rng.below(8)
            } else {
                data.len()
            };
            let end = (pos + step).min(data.len());
            rbuf.extend_from_slice(&data[pos..end]);
            mbuf.extend_from_slice(&data[pos..end]);
            pos = end;
            // Every call consumes or stops; bound the calls so a loop would fail, not hang.
            let mut calls = 0;
            while let Ok(Some(_)) = resp.decode(&mut rbuf) {
                calls += 1;
                assert!(
                    calls < 10_000,
                    "RESP decoder loops on case {case}: {data:?}"
                );
            }
            let mut calls = 0;
            while let Ok(Some(_)) = mc.decode(&mut mbuf) {
                calls += 1;
                assert!(
                    calls < 10_000,
                    "memcached decoder loops on case {case}: {data:?}"
                );
            }
            // Buffers never grow past what one request may hold.
            assert!(
                mbuf.len() <= 256 + 64 + 2 + 16,
                "case {case}: {} bytes held",
                mbuf.len()
            );
        }
    }
}
