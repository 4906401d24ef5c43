//! Differential test: our request framing against an independent RESP parser
//! (`redis-protocol`), on generated pipelines of valid requests fed in random chunk sizes.
//! Both must find the same requests with the same arguments, byte for byte.

use bytes::{Bytes, BytesMut};
use ratelimitd_protocol::{Decoder, Limits, Request};
use redis_protocol::resp2::decode::decode_bytes;
use redis_protocol::resp2::types::BytesFrame;

/// xorshift64: deterministic pseudo-random bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// What the oracle sees in `bytes`: every top-level array's bulk strings.
fn oracle(bytes: &[u8]) -> Vec<Vec<Bytes>> {
    let mut buf = Bytes::copy_from_slice(bytes);
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (frame, used) = decode_bytes(&buf).expect("valid").expect("complete");
        match frame {
            BytesFrame::Array(items) => out.push(
                items
                    .into_iter()
                    .map(|i| match i {
                        BytesFrame::BulkString(b) => b,
                        other => panic!("not a bulk string: {other:?}"),
                    })
                    .collect(),
            ),
            other => panic!("not an array: {other:?}"),
        }
        let _ = buf.split_to(used);
    }
    out
}

#[test]
fn our_framing_agrees_with_redis_protocol() {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for round in 0..300 {
        // A pipeline of 1..20 requests of 1..8 arguments, some empty, some binary, some long.
        let mut bytes = Vec::new();
        for _ in 0..1 + rng.below(20) {
            let args: Vec<Vec<u8>> = (0..1 + rng.below(8))
                .map(|_| {
                    let len = match rng.below(10) {
                        0 => 0,
                        1 => 1000 + rng.below(5000),
                        _ => rng.below(40),
                    } as usize;
                    (0..len).map(|_| rng.next() as u8).collect()
                })
                .collect();
            bytes.extend_from_slice(&encode(&args));
        }
        let want = oracle(&bytes);

        // Feed our decoder in random chunks.
        let mut decoder = Decoder::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let n = (1 + rng.below(64) as usize).min(bytes.len() - at);
            buf.extend_from_slice(&bytes[at..at + n]);
            at += n;
            while let Some(req) = decoder.decode(&mut buf).expect("valid input") {
                match req {
                    Request::Command(args) => got.push(args.to_bytes()),
                    Request::Rejected(r) => panic!("round {round}: rejected {r:?}"),
                }
            }
        }
        assert_eq!(got, want, "round {round}");
        assert!(buf.is_empty());
    }
}
