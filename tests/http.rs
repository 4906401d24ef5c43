//! The HTTP listener against the real binary, with a real HTTP client (reqwest): metrics,
//! health, /v1/check (GET, POST form, POST JSON), forward-auth as nginx, Traefik and Envoy
//! call it, and bad input (missing or malformed parameters, huge headers, huge bodies).

mod common;
use common::inproc::InProcess;
use common::{run, Daemon};
use reqwest::blocking::Client;
use std::io::{Read, Write};
use std::time::Duration;

fn daemon() -> (Daemon, Client) {
    let d = Daemon::start_with(&["--http-port", "0"]);
    let client = Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    (d, client)
}

fn header(r: &reqwest::blocking::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

#[test]
fn health_ready_not_found_and_wrong_method() {
    let (d, http) = daemon();
    let r = http
        .get(format!("{}/healthz", d.http_url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(format!("{}/readyz", d.http_url())).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "ready\n");
    let r = http.get(format!("{}/nope", d.http_url())).send().unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().unwrap();
    assert!(body["error"].as_str().unwrap().contains("not found"));
    let r = http
        .delete(format!("{}/v1/check", d.http_url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(header(&r, "allow").as_deref(), Some("GET, POST"));
    // HEAD is GET without the body on the read-only routes (RFC 9110 9.3.2).
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = http.head(format!("{}{path}", d.http_url())).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.text().unwrap().is_empty(), "{path}");
    }
    let r = http
        .post(format!("{}/healthz", d.http_url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(header(&r, "allow").as_deref(), Some("GET, HEAD"));
}

#[test]
fn ratelimit_headers_name_the_reported_window_and_its_own_reset() {
    // In-process, on a fake clock: the second window refills without waiting for it.
    let d = InProcess::start(&["--http-port", "0"]);
    let http = Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut con = d.client();
    // Two windows of the same capacity: the capacity alone cannot say which one denies.
    run::<String>(
        &mut con,
        &[
            "RL.LIMIT", "SET", "ENDPOINT", "/tie", "RATE", "2/1s", "RATE", "2/1m",
        ],
    )
    .unwrap();
    let url = format!("{}/v1/check?client=t&endpoint=/tie", d.http_url());
    for _ in 0..2 {
        assert_eq!(http.get(&url).send().unwrap().status(), 200);
    }
    d.advance(Duration::from_millis(1100));
    let r = http.get(&url).send().unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(
        header(&r, "ratelimit-policy").as_deref(),
        Some("\"endpoint\";q=2;w=60"),
        "the minute window denies"
    );
    // Allowed, two windows: `t` is the reported window's reset (1 s), not the hour's.
    run::<String>(
        &mut con,
        &[
            "RL.LIMIT", "SET", "ENDPOINT", "/mw", "RATE", "10/1s", "RATE", "1000/1h",
        ],
    )
    .unwrap();
    let r = http
        .get(format!("{}/v1/check?client=m&endpoint=/mw", d.http_url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "ratelimit-policy").as_deref(),
        Some("\"endpoint\";q=10;w=1")
    );
    assert_eq!(
        header(&r, "ratelimit").as_deref(),
        Some("\"endpoint\";r=9;t=1")
    );
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(
        body["reset_after_ms"], 3600,
        "the JSON keeps the longest reset"
    );
}

#[test]
fn check_answers_200_then_429_with_ratelimit_headers_and_retry_after() {
    let (d, http) = daemon();
    let mut con = d.client();
    run::<String>(
        &mut con,
        &["RL.LIMIT", "SET", "ENDPOINT", "/login", "RATE", "2/1m"],
    )
    .unwrap();
    let url = format!("{}/v1/check?client=alice&endpoint=%2Flogin", d.http_url());
    let r = http.get(&url).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "ratelimit-policy").as_deref(),
        Some("\"endpoint\";q=2;w=60")
    );
    assert_eq!(
        header(&r, "ratelimit").as_deref(),
        Some("\"endpoint\";r=1;t=30")
    );
    assert!(header(&r, "retry-after").is_none());
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["allowed"], true);
    assert_eq!(body["limit"], 2);
    assert_eq!(body["remaining"], 1);
    assert_eq!(body["retry_after_ms"], -1);
    http.get(&url).send().unwrap();
    let r = http.get(&url).send().unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after").as_deref(), Some("30"));
    assert_eq!(
        header(&r, "ratelimit").as_deref(),
        Some("\"endpoint\";r=0;t=60")
    );
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["allowed"], false);
    let retry = body["retry_after_ms"].as_i64().unwrap();
    assert!((29_000..=30_000).contains(&retry), "{retry}");
    // Unlimited: 200, no RateLimit headers.
    let r = http
        .get(format!("{}/v1/check?client=a&endpoint=/free", d.http_url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(header(&r, "ratelimit").is_none());
    // The same state as RESP sees.
    let resp: Vec<i64> = run(&mut con, &["RL.PEEK", "alice", "/login"]).unwrap();
    assert_eq!(resp[0], 0);
}

#[test]
fn check_by_post_form_and_json_with_cost() {
    let (d, http) = daemon();
    let mut con = d.client();
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "10/1m"]).unwrap();
    let url = format!("{}/v1/check", d.http_url());
    let r = http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("client=bob&endpoint=%2Fup&cost=4")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["remaining"], 6);
    let r = http
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"client":"bob","endpoint":"/up","cost":7}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 429);
    let r = http
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"{"client":"bob","endpoint":"/up","cost":"6"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn bad_parameters_get_400_with_a_json_error() {
    let (d, http) = daemon();
    let base = d.http_url();
    let cases: &[(&str, &str)] = &[
        ("/v1/check", "missing parameter 'client'"),
        ("/v1/check?client=a", "missing parameter 'endpoint'"),
        (
            "/v1/check?client=&endpoint=/x",
            "missing parameter 'client'",
        ),
        (
            "/v1/check?client=a&endpoint=/x&cost=-1",
            "cost must be an integer",
        ),
        (
            "/v1/check?client=a&endpoint=/x&cost=abc",
            "cost must be an integer",
        ),
        (
            "/v1/check?client=a&endpoint=/x&cost=99999999999999999999",
            "cost must be an integer",
        ),
        (
            "/v1/check?client=a&endpoint=/x&clinet=b",
            "unknown parameter 'clinet'",
        ),
        ("/v1/check?client=a&endpoint=/x&%ff=1", "unknown parameter"),
    ];
    for (path, expected) in cases {
        let r = http.get(format!("{base}{path}")).send().unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let body: serde_json::Value = r.json().unwrap();
        let msg = body["error"].as_str().unwrap_or_default().to_string();
        assert!(msg.contains(expected), "{path}: {msg}");
    }
    let post = |ct: &str, body: Vec<u8>| {
        http.post(format!("{base}/v1/check"))
            .header("content-type", ct)
            .body(body)
            .send()
            .unwrap()
    };
    let r = post("application/json", b"{not json".to_vec());
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("not valid JSON"));
    let r = post("application/json", b"[1,2]".to_vec());
    assert_eq!(r.status(), 400);
    let r = post("text/plain", b"client=a&endpoint=b".to_vec());
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("unsupported content type"));
    let r = post("application/x-www-form-urlencoded", vec![b'a'; 64 * 1024]);
    assert_eq!(r.status(), 413);
}

/// Send raw bytes and return the status line of the answer.
fn raw_status(port: u16, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    let mut buf = vec![0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn huge_heads_and_garbage_are_refused_and_the_listener_carries_on() {
    let (d, http) = daemon();
    let port = d.http_port.unwrap();
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let status = raw_status(port, big.as_bytes());
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        many.push_str(&format!("X-H{i}: 1\r\n"));
    }
    many.push_str("\r\n");
    let status = raw_status(port, many.as_bytes());
    assert!(status.starts_with("HTTP/1.1 431"), "{status}");
    let status = raw_status(port, b"\x16\x03\x01 this is not http\r\n\r\n");
    assert!(
        status.starts_with("HTTP/1.1 400") || status.is_empty(),
        "{status}"
    );
    let r = http
        .get(format!("{}/healthz", d.http_url()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn forward_auth_as_traefik_nginx_and_envoy_call_it() {
    let (d, http) = daemon();
    let mut con = d.client();
    run::<String>(
        &mut con,
        &["RL.LIMIT", "SET", "ENDPOINT", "GET /api/*", "RATE", "1/1h"],
    )
    .unwrap();
    run::<String>(
        &mut con,
        &["RL.LIMIT", "SET", "CLIENT", "ip:127.0.0.1", "RATE", "1/1h"],
    )
    .unwrap();
    let url = format!("{}/v1/forward-auth", d.http_url());
    // Traefik: X-Forwarded-Method / X-Forwarded-Uri; the key names the client.
    let traefik = |key: &str, uri: &str| {
        http.get(&url)
            .header("X-Api-Key", key)
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Uri", uri)
            .send()
            .unwrap()
    };
    let r = traefik("k1", "/api/users?page=1");
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "ratelimit-policy").as_deref(),
        Some("\"endpoint\";q=1;w=3600")
    );
    // Same path, another query string: the same allowance (the query string is dropped).
    let r = traefik("k1", "/api/users?page=2");
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after").as_deref(), Some("3600"));
    // Another key has its own allowance.
    assert_eq!(traefik("k2", "/api/users").status(), 200);
    let peek: Vec<i64> = run(&mut con, &["RL.PEEK", "k1", "GET /api/users"]).unwrap();
    assert_eq!(peek[0], 0, "the endpoint is METHOD + path");

    // nginx: X-Original-Method / X-Original-URI, asks for 403 (auth_request knows only 401/403).
    let nginx = || {
        http.get(&url)
            .header("X-Api-Key", "n1")
            .header("X-Original-Method", "get")
            .header("X-Original-URI", "/api/orders")
            .header("X-RateLimit-Deny-Status", "403")
            .send()
            .unwrap()
    };
    assert_eq!(nginx().status(), 200);
    assert_eq!(nginx().status(), 403);

    // Envoy ext_authz (HTTP): the original method and path, after a path_prefix.
    let envoy = || {
        http.post(format!("{url}/api/items?x=1"))
            .header("X-Api-Key", "e1")
            .send()
            .unwrap()
    };
    assert_eq!(envoy().status(), 200);
    assert_eq!(envoy().status(), 200, "POST is not limited by 'GET /api/*'");
    let peek: Vec<i64> = run(&mut con, &["RL.PEEK", "e1", "POST /api/items"]).unwrap();
    assert_eq!(peek[1], -1);

    // No key: the peer address names the client.
    let anon = || {
        http.get(&url)
            .header("X-Forwarded-Uri", "/home")
            .send()
            .unwrap()
    };
    assert_eq!(anon().status(), 200);
    assert_eq!(anon().status(), 429);

    let r = http
        .get(&url)
        .header("X-RateLimit-Deny-Status", "500")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn forward_auth_spellings_of_one_path_share_one_allowance() {
    let (d, http) = daemon();
    let mut con = d.client();
    run::<String>(
        &mut con,
        &["RL.LIMIT", "SET", "ENDPOINT", "GET /api/*", "RATE", "1/1h"],
    )
    .unwrap();
    let url = format!("{}/v1/forward-auth", d.http_url());
    let call = |uri: &str| {
        http.get(&url)
            .header("X-Api-Key", "k1")
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Uri", uri)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(call("/api/users"), 200);
    // Each spelling names the endpoint the first request spent: none gets a fresh allowance.
    for spelling in [
        "/api//users",
        "/api/./users",
        "/api/users/",
        "/api/%75sers",
        "/api/users;x",
        "/api/v2/../users?page=2",
    ] {
        assert_eq!(call(spelling), 429, "{spelling} is /api/users");
    }
    // The Envoy form (the path after /v1/forward-auth), sent raw so that no client library
    // rewrites it on the way.
    let port = d.http_port.unwrap();
    let status = raw_status(
        port,
        b"GET /v1/forward-auth/api//%75sers/;x HTTP/1.1\r\nHost: x\r\nX-Api-Key: k1\r\n\r\n",
    );
    assert!(status.starts_with("HTTP/1.1 429"), "{status}");
    let peek: Vec<i64> = run(&mut con, &["RL.PEEK", "k1", "GET /api/users"]).unwrap();
    assert_eq!(peek[0], 0, "one endpoint, spent");
    // An encoded slash is not a slash: /api/a%2Fb is another endpoint than /api/a/b.
    assert_eq!(call("/api/a%2fb"), 200);
    assert_eq!(
        call("/api/a%2Fb"),
        429,
        "the case of the hex makes no other endpoint"
    );
    assert_eq!(call("/api/a/b"), 200);
    // Paths are case-sensitive.
    assert_eq!(call("/api/Users"), 200);
}

#[test]
fn forward_auth_client_header_ip_header_and_path_only_endpoints_are_configurable() {
    let d = Daemon::start_with(&[
        "--http-port",
        "0",
        "--http-client-header",
        "X-User",
        "--http-ip-header",
        "X-Real-IP",
        "--forward-auth-endpoint",
        "path",
    ]);
    let http = Client::new();
    let mut con = d.client();
    run::<String>(
        &mut con,
        &["RL.LIMIT", "SET", "ENDPOINT", "/x", "RATE", "1/1h"],
    )
    .unwrap();
    let url = format!("{}/v1/forward-auth", d.http_url());
    let call = |user: Option<&str>, ip: &str| {
        let mut req = http
            .get(&url)
            .header("X-Real-IP", ip)
            .header("X-Forwarded-Method", "DELETE")
            .header("X-Forwarded-Uri", "/x");
        if let Some(u) = user {
            req = req.header("X-User", u);
        }
        req.send().unwrap().status().as_u16()
    };
    assert_eq!(call(Some("u1"), "203.0.113.7"), 200);
    assert_eq!(call(Some("u1"), "203.0.113.8"), 429);
    assert_eq!(call(None, "203.0.113.7"), 200);
    assert_eq!(call(None, "203.0.113.7"), 429);
    let peek: Vec<i64> = run(&mut con, &["RL.PEEK", "ip:203.0.113.7", "/x"]).unwrap();
    assert_eq!(peek[0], 0);
}

#[test]
fn metrics_expose_commands_checks_by_scope_latency_and_gauges() {
    let (d, http) = daemon();
    let mut con = d.client();
    run::<String>(
        &mut con,
        &["RL.LIMIT", "SET", "TIER", "free", "RATE", "1/1h"],
    )
    .unwrap();
    run::<String>(&mut con, &["RL.TIER", "SET", "alice", "free"]).unwrap();
    for _ in 0..3 {
        run::<Vec<i64>>(&mut con, &["RL.CHECK", "alice", "/x"]).unwrap();
    }
    let _ = run::<String>(&mut con, &["RL.CHECK", "alice"]);
    let _ = run::<String>(&mut con, &["NOSUCHCOMMAND"]);
    http.get(format!(
        "{}/v1/check?client=alice&endpoint=/x",
        d.http_url()
    ))
    .send()
    .unwrap();
    let text = http
        .get(format!("{}/metrics", d.http_url()))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for expected in [
        "ratelimitd_commands_total{command=\"rl.check\"} 4",
        "ratelimitd_command_errors_total{command=\"rl.check\"} 1",
        "ratelimitd_commands_total{command=\"unknown\"} 1",
        "ratelimitd_checks_total{result=\"allowed\"} 1",
        "ratelimitd_checks_total{result=\"denied\"} 3",
        "ratelimitd_checks_denied_by_scope_total{scope=\"tier\"} 3",
        "ratelimitd_command_duration_seconds_bucket{family=\"rl_check\",le=\"0.1\"} 4",
        "ratelimitd_keys 1",
        "ratelimitd_connected_clients 1",
        "ratelimitd_replication_role{role=\"master\"} 1",
        "ratelimitd_http_requests_total{code=\"429\",route=\"check\"} 1",
        "ratelimitd_limits 1",
        "ratelimitd_evicted_keys_total 0",
        "ratelimitd_limits_log_live_records 2",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains("alice"), "no client id ever becomes a label");
}

#[test]
fn denials_are_summarised_in_the_log_at_most_once_a_second() {
    let (d, _http) = daemon();
    let mut con = d.client();
    run::<String>(&mut con, &["RL.LIMIT", "SET", "DEFAULT", "RATE", "1/1h"]).unwrap();
    for _ in 0..50 {
        run::<Vec<i64>>(&mut con, &["RL.CHECK", "alice", "/x"]).unwrap();
    }
    let lines = d.log_until("checks denied in the last second", 5);
    let summary = lines
        .iter()
        .find(|l| l.contains("checks denied in the last second"))
        .unwrap_or_else(|| panic!("no summary in {lines:?}"));
    assert!(
        summary.contains("49 checks denied") && summary.contains("default=49"),
        "{summary}"
    );
    // Every `name=N` of the line is a scope kind (no structured field that reads like one).
    assert!(!summary.contains("denied="), "{summary}");
    let more = d.log_until("checks denied", 2);
    assert!(
        !more.iter().any(|l| l.contains("checks denied")),
        "quiet seconds log nothing: {more:?}"
    );
}

#[test]
fn a_body_that_never_arrives_times_out() {
    // A POST that announces 100 bytes and sends 10 would otherwise hold its connection (one
    // of the 4096 HTTP slots) for good. It gets the head's 10 s, then 408.
    let (d, _http) = daemon();
    let port = d.http_port.unwrap();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\
          Content-Type: application/x-www-form-urlencoded\r\n\r\nclient=abc",
    )
    .unwrap();
    let mut buf = vec![0u8; 512];
    let n = s.read(&mut buf).expect("an answer before the read timeout");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}
