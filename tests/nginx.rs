//! The nginx `auth_request` configuration documented in docs/OPERATIONS.md ("Gateways"), run
//! with REAL nginx in front of the real daemon and a tiny upstream, driven by a real HTTP client.
//!
//! The nginx block is read from docs/OPERATIONS.md itself (at compile time), so the test checks
//! exactly what operators copy; only its two addresses are replaced (`127.0.0.1:8080`, the
//! ratelimitd HTTP port, and `listen 80`), and the `app` upstream it proxies to is defined here.
//! nginx runs unprivileged in the foreground as a single process (`daemon off`,
//! `master_process off`) with every path inside a temporary directory, and is killed when the
//! test ends. Without nginx on the PATH the test fails: `scripts/test` installs it.

mod common;
use common::{run, Daemon};
use reqwest::blocking::{Client, Response};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const OPERATIONS: &str = include_str!("../docs/OPERATIONS.md");

/// The fenced nginx block of the "**nginx**" paragraph in docs/OPERATIONS.md.
fn documented_snippet() -> &'static str {
    let start = OPERATIONS
        .find("\n**nginx**")
        .expect("docs/OPERATIONS.md has a **nginx** paragraph");
    let rest = &OPERATIONS[start..];
    let open = rest.find("```nginx\n").expect("an ```nginx block") + "```nginx\n".len();
    let len = rest[open..].find("\n```").expect("the ```nginx block ends");
    &rest[open..open + len]
}

/// `text` with `from` (which must occur exactly once) replaced by `to`.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the documented nginx snippet should contain {from:?} exactly once:\n{text}"
    );
    text.replacen(from, to, 1)
}

/// The fail-open additions the docs give in prose after the block: an error_page in
/// `location /` and a named location in the server.
const FAIL_OPEN_ERROR_PAGE: &str = "error_page 500 502 504 = @app;";
const FAIL_OPEN_LOCATION: &str = "location @app { proxy_pass http://app; }";

/// The documented block with the documented fail-open additions.
fn fail_open_snippet() -> String {
    for line in [FAIL_OPEN_ERROR_PAGE, FAIL_OPEN_LOCATION] {
        assert!(
            OPERATIONS.contains(&format!("`{line}`")),
            "docs/OPERATIONS.md should give `{line}` for failing open"
        );
    }
    let snippet = replace_once(
        documented_snippet(),
        "error_page 403 = @ratelimited;",
        &format!("error_page 403 = @ratelimited;\n        {FAIL_OPEN_ERROR_PAGE}"),
    );
    // The server block is the last one: its closing brace ends the snippet.
    let end = snippet
        .trim_end()
        .rfind('}')
        .expect("the server block's closing brace");
    format!("{}    {FAIL_OPEN_LOCATION}\n}}\n", &snippet[..end])
}

/// The nginx binary: `$NGINX` (scripts/test sets it), else `nginx` on the PATH, else Debian's
/// /usr/sbin/nginx (not on a non-root user's PATH everywhere).
fn nginx_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NGINX").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file());
    on_path
        .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
        .unwrap_or_else(|| PathBuf::from("nginx"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The application behind nginx: answers 200 "hello" to any request and counts them. Stops
/// (and its thread ends) when dropped.
struct Upstream {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let port = listener.local_addr().expect("addr").port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                // Read the request head (GET requests: no body).
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\
                      Connection: close\r\n\r\nhello",
                );
            }
        });
        Upstream {
            port,
            hits,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A real nginx running the documented snippet; killed, and its directory removed, on drop.
struct Nginx {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// nginx running `snippet` (the documented block, possibly with documented additions).
    fn start(snippet: &str, ratelimitd_http_port: u16, app_port: u16) -> Nginx {
        let dir = common::temp_dir("nginx");
        let port = free_port();
        let d = dir.display();
        let snippet = replace_once(
            snippet,
            "server 127.0.0.1:8080;",
            &format!("server 127.0.0.1:{ratelimitd_http_port};"),
        );
        let snippet = replace_once(&snippet, "listen 80;", &format!("listen 127.0.0.1:{port};"));
        let conf = format!(
            "daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
             access_log {d}/access.log;\n\
             client_body_temp_path {d}/client_body;\n\
             proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n\
             # The application the documented snippet proxies to.\n\
             upstream app {{ server 127.0.0.1:{app_port}; }}\n\
             # ---- docs/OPERATIONS.md ----\n\
             {snippet}\n\
             # ---- end ----\n\
             }}\n"
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, &conf).expect("write nginx.conf");
        let stderr = std::fs::File::create(dir.join("stderr.log")).expect("stderr file");
        let nginx_bin = nginx_binary();
        let child = match Command::new(&nginx_bin)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                panic!(
                    "cannot run {} ({e}): install nginx (scripts/test does: apt-get install nginx)",
                    nginx_bin.display()
                );
            }
        };
        let mut nginx = Nginx { child, port, dir };
        // Ready once it accepts connections; fail with its logs if it exits or never does.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}):\n{}\n{conf}", nginx.logs());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {port} within 10s:\n{}",
                nginx.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// nginx's stderr and error log, for failure messages.
    fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!(
            "--- stderr ---\n{}--- error.log ---\n{}",
            read("stderr.log"),
            read("error.log")
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn header(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

#[test]
fn documented_nginx_auth_request_snippet_limits_through_real_nginx() {
    let d = Daemon::start_with(&["--http-port", "0"]);
    let mut con = d.client();
    run::<String>(
        &mut con,
        &["RL.LIMIT", "SET", "ENDPOINT", "GET /api/*", "RATE", "3/1m"],
    )
    .unwrap();
    let app = Upstream::start();
    let nginx = Nginx::start(
        documented_snippet(),
        d.http_port.expect("HTTP port"),
        app.port,
    );
    let http = Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .expect("client");
    let get = |key: &str, path: &str| {
        http.get(nginx.url(path))
            .header("X-Api-Key", key)
            .send()
            .unwrap_or_else(|e| panic!("GET {path} through nginx: {e}\n{}", nginx.logs()))
    };

    // Three allowed: the application answers, with the RateLimit headers from ratelimitd.
    for remaining in [2, 1, 0] {
        let r = get("k1", "/api/items");
        assert_eq!(r.status(), 200, "{}", nginx.logs());
        assert_eq!(
            header(&r, "ratelimit-policy").as_deref(),
            Some("\"endpoint\";q=3;w=60")
        );
        let state = header(&r, "ratelimit").expect("RateLimit header on an allowed request");
        assert!(
            state.starts_with(&format!("\"endpoint\";r={remaining};t=")),
            "{state}"
        );
        assert!(header(&r, "retry-after").is_none());
        assert_eq!(r.text().unwrap(), "hello");
    }
    assert_eq!(app.hits.load(Ordering::SeqCst), 3);

    // The 4th and 5th: 429 from the @ratelimited location, with Retry-After and RateLimit, and
    // the application never sees them.
    for _ in 0..2 {
        let r = get("k1", "/api/items");
        assert_eq!(r.status(), 429, "{}", nginx.logs());
        let retry: u64 = header(&r, "retry-after")
            .expect("Retry-After on a 429")
            .parse()
            .expect("Retry-After in seconds");
        assert!((1..=20).contains(&retry), "Retry-After {retry}");
        let state = header(&r, "ratelimit").expect("RateLimit header on a 429");
        assert!(state.starts_with("\"endpoint\";r=0;t="), "{state}");
        assert_eq!(
            header(&r, "content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(r.text().unwrap(), "{\"error\":\"rate limited\"}\n");
    }
    assert_eq!(
        app.hits.load(Ordering::SeqCst),
        3,
        "denied requests reach the app"
    );

    // Another key has its own allowance; the query string does not make a new endpoint.
    let r = get("k2", "/api/items?page=2");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "hello");
    // nginx passes $request_uri as the client spelt it; every spelling of /api/items is one
    // endpoint, so k4's three requests spell it three ways and the plain fourth is denied.
    for spelling in ["/api//items", "/api/%69tems/", "/api/items;v=1"] {
        let r = get("k4", spelling);
        assert_eq!(r.status(), 200, "{spelling}: {}", nginx.logs());
        assert_eq!(r.text().unwrap(), "hello");
    }
    assert_eq!(get("k4", "/api/items").status(), 429);
    // A path no limit covers passes, without RateLimit headers.
    for _ in 0..5 {
        let r = get("k1", "/home");
        assert_eq!(r.status(), 200);
        assert!(header(&r, "ratelimit").is_none());
        assert_eq!(r.text().unwrap(), "hello");
    }
    // ratelimitd saw what nginx sent: the endpoint is METHOD + path from X-Original-*.
    let peek: Vec<i64> = run(&mut con, &["RL.PEEK", "k1", "GET /api/items"]).unwrap();
    assert_eq!(peek[0], 0);
    assert_eq!(app.hits.load(Ordering::SeqCst), 12);

    // ratelimitd unreachable: nginx answers 500, as the docs say (fail closed).
    drop(con);
    drop(d);
    let r = get("k3", "/api/items");
    assert_eq!(r.status(), 500, "{}", nginx.logs());
    assert_eq!(app.hits.load(Ordering::SeqCst), 12);
}

#[test]
fn documented_fail_open_additions_pass_requests_when_ratelimitd_is_down() {
    let d = Daemon::start_with(&["--http-port", "0"]);
    let mut con = d.client();
    run::<String>(
        &mut con,
        &["RL.LIMIT", "SET", "ENDPOINT", "GET /api/*", "RATE", "1/1m"],
    )
    .unwrap();
    let app = Upstream::start();
    let nginx = Nginx::start(
        &fail_open_snippet(),
        d.http_port.expect("HTTP port"),
        app.port,
    );
    let http = Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .expect("client");
    let get = |path: &str| {
        http.get(nginx.url(path))
            .header("X-Api-Key", "k1")
            .send()
            .unwrap_or_else(|e| panic!("GET {path} through nginx: {e}\n{}", nginx.logs()))
    };
    // While ratelimitd is up, failing open changes nothing: limits still deny.
    assert_eq!(get("/api/items").status(), 200, "{}", nginx.logs());
    let r = get("/api/items");
    assert_eq!(r.status(), 429, "{}", nginx.logs());
    assert!(header(&r, "retry-after").is_some());
    assert_eq!(app.hits.load(Ordering::SeqCst), 1);
    // ratelimitd down: the request goes to the application unchecked.
    drop(con);
    drop(d);
    let r = get("/api/items");
    assert_eq!(r.status(), 200, "{}", nginx.logs());
    assert_eq!(r.text().unwrap(), "hello");
    assert_eq!(app.hits.load(Ordering::SeqCst), 2);
}
