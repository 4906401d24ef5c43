//! RESP request parsing cost: ns per command for a pipelined batch of RL.CHECK requests, the
//! shape redis-benchmark -P 16 sends.
//!
//! Run: `cargo bench --bench protocol`.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ratelimitd_protocol::{Decoder, Limits, Request};

fn batch(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let client = format!("client:{i:06}");
        out.extend_from_slice(
            format!(
                "*3\r\n$8\r\nRL.CHECK\r\n${}\r\n{client}\r\n$11\r\n/api/search\r\n",
                client.len()
            )
            .as_bytes(),
        );
    }
    out
}

fn parse(c: &mut Criterion) {
    let bytes = batch(16);
    let mut group = c.benchmark_group("resp_parse");
    group.throughput(Throughput::Elements(16));
    group.bench_function("rl_check_x16", |b| {
        let mut decoder = Decoder::new(Limits::default());
        b.iter(|| {
            let mut buf = BytesMut::from(&bytes[..]);
            let mut n = 0;
            while let Ok(Some(Request::Command(args))) = decoder.decode(&mut buf) {
                n += args.len();
            }
            n
        })
    });
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
