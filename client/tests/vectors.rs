//! The ring against the shared test vectors in `clients/vectors/ring.json` — the same file the
//! Python client's tests read, so both libraries provably route every key to the same node.

use ratelimitd_client::ring::{default_route_key, fnv1a64, mix64, Ring};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../clients/vectors/ring.json");
    let text = std::fs::read_to_string(path).expect("read clients/vectors/ring.json");
    serde_json::from_str(&text).expect("ring.json is JSON")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn u64hex(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().expect("string"), 16).expect("hex u64")
}

#[test]
fn fnv1a64_vectors() {
    let v = vectors();
    for case in v["fnv1a64"].as_array().expect("array") {
        let input = unhex(case["input_hex"].as_str().expect("input_hex"));
        assert_eq!(fnv1a64(&input), u64hex(&case["hash"]), "{case}");
    }
}

#[test]
fn mix64_vectors() {
    let v = vectors();
    for case in v["mix64"].as_array().expect("array") {
        assert_eq!(
            mix64(u64hex(&case["input"])),
            u64hex(&case["output"]),
            "{case}"
        );
    }
}

#[test]
fn ring_vectors() {
    let v = vectors();
    let mut n = 0;
    for ring in v["rings"].as_array().expect("array") {
        let names: Vec<&str> = ring["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n.as_str().expect("name"))
            .collect();
        let r = Ring::new(&names);
        for case in ring["cases"].as_array().expect("cases") {
            let client = case["client"].as_str().expect("client");
            let endpoint = case["endpoint"].as_str().expect("endpoint");
            let key = default_route_key(client, endpoint);
            assert_eq!(
                key,
                unhex(case["key_hex"].as_str().expect("key_hex")),
                "{case}"
            );
            let want = case["node"].as_u64().expect("node") as usize;
            assert_eq!(r.locate(&key), Some(want), "{case} on {names:?}");
            n += 1;
        }
    }
    assert!(n >= 300, "only {n} ring vectors");
}
