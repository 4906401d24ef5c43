//! Writes the shared ring test vectors (`clients/vectors/ring.json`) to stdout.
//!
//! Run `cargo run -p ratelimitd-client --example gen_vectors > clients/vectors/ring.json` only
//! when the spec in docs/HASHING.md deliberately changes: the file is the contract between the
//! Rust and Python clients, and regenerating it silently would hide a routing change. It is
//! written by hand-rolled JSON so the library needs no serde.

use ratelimitd_client::ring::{default_route_key, fnv1a64, mix64, Ring};

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() {
    let mut out = String::new();
    out.push_str("{\n  \"spec\": \"docs/HASHING.md\",\n");
    out.push_str("  \"fnv1a64\": [\n");
    let inputs: [&[u8]; 6] = [
        b"",
        b"a",
        b"foobar",
        b"node-a",
        b"\x00\x00\x00\x05alice/search",
        b"\xff\x00\x80",
    ];
    let rows: Vec<String> = inputs
        .iter()
        .map(|i| {
            format!(
                "    {{\"input_hex\": \"{}\", \"hash\": \"{:016x}\"}}",
                hex(i),
                fnv1a64(i)
            )
        })
        .collect();
    out.push_str(&rows.join(",\n"));
    out.push_str("\n  ],\n  \"mix64\": [\n");
    let xs = [0u64, 1, 0xcbf29ce484222325, u64::MAX, 0x0123456789abcdef];
    let rows: Vec<String> = xs
        .iter()
        .map(|&x| {
            format!(
                "    {{\"input\": \"{x:016x}\", \"output\": \"{:016x}\"}}",
                mix64(x)
            )
        })
        .collect();
    out.push_str(&rows.join(",\n"));
    out.push_str("\n  ],\n  \"rings\": [\n");
    let lists: Vec<Vec<String>> = vec![
        ["node-a", "node-b", "node-c"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        [
            "127.0.0.1:7001",
            "127.0.0.1:7002",
            "127.0.0.1:7003",
            "127.0.0.1:7004",
            "127.0.0.1:7005",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        (0..16).map(|i| format!("node-{i:02}")).collect(),
    ];
    let endpoints = ["/search", "/login", "/api/users", "/api/*", "", "ünï/cödé"];
    let mut rings = Vec::new();
    for names in &lists {
        let ring = Ring::new(names);
        let mut cases = Vec::new();
        let mut pairs: Vec<(String, String)> = (0..100)
            .map(|i| {
                (
                    format!("user{i}"),
                    endpoints[i % endpoints.len()].to_string(),
                )
            })
            .collect();
        pairs.push((String::new(), String::new()));
        pairs.push(("ip:203.0.113.7".into(), "/login".into()));
        pairs.push(("a\"b\\c".into(), "tab\there".into()));
        pairs.push(("ab".into(), "c".into()));
        pairs.push(("a".into(), "bc".into()));
        for (c, e) in &pairs {
            let key = default_route_key(c, e);
            let node = ring.locate(&key).unwrap_or(0);
            cases.push(format!(
                "        {{\"client\": {}, \"endpoint\": {}, \"key_hex\": \"{}\", \"node\": {node}}}",
                json_str(c),
                json_str(e),
                hex(&key)
            ));
        }
        let names_json: Vec<String> = names.iter().map(|n| json_str(n)).collect();
        rings.push(format!(
            "    {{\n      \"nodes\": [{}],\n      \"cases\": [\n{}\n      ]\n    }}",
            names_json.join(", "),
            cases.join(",\n")
        ));
    }
    out.push_str(&rings.join(",\n"));
    out.push_str("\n  ]\n}\n");
    print!("{out}");
}
