//! Measures the ring over 1M synthetic keys: spread across 3–16 nodes (each node's share must
//! be within ±5% of 1/N) and movement when a node is added or an arbitrary node removed (at
//! most about 1/N of keys, and only to/from that node). Prints the table recorded in
//! docs/DESIGN.md; reproduce it with
//! `cargo test -p ratelimitd-client --test spread -- --nocapture` (about 8 s unoptimised).

use ratelimitd_client::ring::{default_route_key, fnv1a64, Ring};

const KEYS: usize = 1_000_000;

fn key_hashes() -> Vec<u64> {
    let endpoints = ["/search", "/login", "/api/users", "/api/orders", "/upload"];
    (0..KEYS)
        .map(|i| {
            fnv1a64(&default_route_key(
                &format!("user{i}"),
                endpoints[i % endpoints.len()],
            ))
        })
        .collect()
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.0.0.{}:6379", i + 1)).collect()
}

fn place(ring: &Ring, hashes: &[u64]) -> Vec<usize> {
    hashes
        .iter()
        .map(|&h| ring.locate_hash(h).unwrap_or(usize::MAX))
        .collect()
}

#[test]
fn spread_and_movement_over_a_million_keys() {
    let hashes = key_hashes();
    println!("| N | worst node share vs 1/N | add a node: moved (1/(N+1)) | remove node N/2: moved (1/N) |");
    println!("| --- | --- | --- | --- |");
    for n in 3..=16 {
        let base_names = names(n);
        let base = place(&Ring::new(&base_names), &hashes);

        // Spread.
        let mut counts = vec![0usize; n];
        for &i in &base {
            counts[i] += 1;
        }
        let mean = KEYS as f64 / n as f64;
        let worst = counts
            .iter()
            .map(|&c| (c as f64 - mean) / mean)
            .fold(0.0f64, |w, d| if d.abs() > w.abs() { d } else { w });
        assert!(
            worst.abs() <= 0.05,
            "N={n}: a node is {:+.2}% off",
            worst * 100.0
        );

        // Add a node: only keys that now belong to the new node may move.
        let mut grown_names = base_names.clone();
        grown_names.push(format!("10.0.0.{}:6379", n + 1));
        let grown = place(&Ring::new(&grown_names), &hashes);
        let mut moved_add = 0usize;
        for (a, b) in base.iter().zip(&grown) {
            if a != b {
                assert_eq!(*b, n, "a key moved between two old nodes");
                moved_add += 1;
            }
        }
        let add_frac = moved_add as f64 / KEYS as f64;
        assert!(
            add_frac <= 1.05 / (n + 1) as f64,
            "N={n}: adding moved {add_frac}"
        );

        // Remove an arbitrary (middle) node: only its keys may move.
        let gone = n / 2;
        let shrunk_names: Vec<String> = base_names
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != gone)
            .map(|(_, s)| s.clone())
            .collect();
        let shrunk = place(&Ring::new(&shrunk_names), &hashes);
        let mut moved_del = 0usize;
        for (a, b) in base.iter().zip(&shrunk) {
            let before = &base_names[*a];
            let after = &shrunk_names[*b];
            if before != after {
                assert_eq!(*a, gone, "a key of a surviving node moved");
                moved_del += 1;
            }
        }
        let del_frac = moved_del as f64 / KEYS as f64;
        assert!(
            del_frac <= 1.05 / n as f64,
            "N={n}: removing moved {del_frac}"
        );

        println!(
            "| {n} | {:+.2}% | {:.2}% ({:.2}%) | {:.2}% ({:.2}%) |",
            worst * 100.0,
            add_frac * 100.0,
            100.0 / (n + 1) as f64,
            del_frac * 100.0,
            100.0 / n as f64
        );
    }
}
