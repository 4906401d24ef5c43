//! RESP costs per command for a pipelined batch of 16 RL.CHECKs, the shape redis-benchmark
//! -P 16 sends: parsing the requests (argument buffers recycled, as the connection does) and
//! encoding their replies (five integers each, typical values of an admitted check).
//!
//! Run: `cargo bench --bench protocol`.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ratelimitd_protocol::{compose, Decoder, Limits, ProtoVersion, Reply, Request};

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
                decoder.recycle(args);
            }
            n
        })
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("resp_encode");
    group.throughput(Throughput::Elements(16));
    group.bench_function("check_reply_x16", |b| {
        let mut out = BytesMut::with_capacity(16 * 1024);
        let mut i = 0i64;
        b.iter(|| {
            out.clear();
            for _ in 0..16 {
                i = (i + 1) % 100;
                // allowed, limit, remaining, retry_after_ms, reset_after_ms
                let reply = Reply::ints(&[1, 100, 99 - i, -1, 600 + 6 * i]);
                compose(&reply, ProtoVersion::Resp2, &mut out);
            }
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, parse, encode);
criterion_main!(benches);
