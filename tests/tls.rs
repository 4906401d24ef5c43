//! TLS on every listener, against the real binary and real clients: redis-cli `--tls`, the
//! `redis` crate over rustls, curl over HTTPS, memcached bytes over a rustls client, a replica
//! linked to its primary over TLS. Certificates are made by each test (rcgen) in its own
//! directory: a CA, a certificate for 127.0.0.1 and localhost, client certificates, and a
//! second CA whose certificates the daemon must refuse.

mod common;

use common::{resp, run, temp_dir, Daemon};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A certificate authority made for one test, writing its files into `dir`.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
    name: String,
}

/// A certificate and its key, as files.
#[derive(Clone)]
struct Pair {
    cert: PathBuf,
    key: PathBuf,
}

impl Pair {
    fn cert_s(&self) -> &str {
        self.cert.to_str().expect("utf-8 path")
    }
    fn key_s(&self) -> &str {
        self.key.to_str().expect("utf-8 path")
    }
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA certificate");
        std::fs::write(dir.join(format!("{name}-ca.crt")), cert.pem()).expect("write CA");
        Ca {
            issuer: Issuer::new(params, key),
            dir: dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    fn file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.crt", self.name))
    }

    fn file_s(&self) -> String {
        self.file().display().to_string()
    }

    fn pem(&self) -> Vec<u8> {
        std::fs::read(self.file()).expect("read CA")
    }

    /// A certificate for `names` (host names or IP addresses), good for servers and clients.
    fn issue(&self, stem: &str, names: &[&str]) -> Pair {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, stem);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let pair = Pair {
            cert: self.dir.join(format!("{stem}.crt")),
            key: self.dir.join(format!("{stem}.key")),
        };
        std::fs::write(&pair.cert, cert.pem()).expect("write cert");
        std::fs::write(&pair.key, key.serialize_pem()).expect("write key");
        pair
    }

    /// A server certificate for this host.
    fn server(&self, stem: &str) -> Pair {
        self.issue(stem, &["localhost", "127.0.0.1"])
    }
}

/// One test's certificates: `ca` signs the daemon's and a good client's, `other` a client's
/// the daemon must refuse.
struct Pki {
    dir: PathBuf,
    ca: Ca,
    server: Pair,
    client: Pair,
    other: Ca,
    stranger: Pair,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = temp_dir(tag);
        let ca = Ca::new(&dir, "main");
        let other = Ca::new(&dir, "other");
        let server = ca.server("server");
        let client = ca.issue("client", &["client.example"]);
        let stranger = other.issue("stranger", &["client.example"]);
        Pki {
            dir,
            ca,
            server,
            client,
            other,
            stranger,
        }
    }

    /// The flags of a daemon with a TLS RESP port and these certificates.
    fn flags<'a>(&'a self, auth_clients: &'a str) -> Vec<&'a str> {
        vec![
            "--tls-port",
            "0",
            "--tls-cert-file",
            self.server.cert_s(),
            "--tls-key-file",
            self.server.key_s(),
            "--tls-auth-clients",
            auth_clients,
        ]
    }

    /// [`Pki::flags`] with the CA file.
    fn flags_with_ca(&self, auth_clients: &'static str) -> Vec<String> {
        let mut f: Vec<String> = self
            .flags(auth_clients)
            .iter()
            .map(|s| s.to_string())
            .collect();
        f.extend(["--tls-ca-cert-file".to_string(), self.ca.file_s()]);
        f
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(flags: &[String]) -> Daemon {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Daemon::start_with(&flags)
}

fn tls_port(d: &Daemon) -> u16 {
    d.tls_port.expect("started with --tls-port")
}

/// `redis-cli --tls --cacert <ca> -p <port>` with these extra arguments: (success, stdout and
/// stderr together). redis-cli exits 0 even when the command returned an error, so callers
/// look at the text.
fn redis_cli(port: u16, ca: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(ca)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("redis-cli runs (apt-get install redis-tools)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// INFO `section` as a field map, over `con`.
fn info(con: &mut redis::Connection, section: &str) -> HashMap<String, String> {
    let text: String = run(con, &["INFO", section]).expect("INFO");
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn stat(con: &mut redis::Connection, name: &str) -> u64 {
    info(con, "stats")
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("INFO stats has {name}"))
}

/// Poll `f` until it is true or 20 s pass.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// rustls's provider for the tests' own clients. Named, because test builds have two
/// providers compiled in (the redis crate brings ring) and rustls then picks none by itself.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The redis crate's rustls client builds its configuration with rustls's process default.
fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A TLS connection for byte-exact tests: a rustls client trusting `ca`, presenting `client`
/// if given, handshaken before it is returned (Err: why the handshake failed).
struct TlsRaw {
    s: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl TlsRaw {
    fn connect(port: u16, ca: &Path, client: Option<&Pair>) -> Result<TlsRaw, String> {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).expect("CA file") {
            roots.add(c.expect("CA cert")).expect("CA root");
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = match client {
            Some(p) => {
                let certs = CertificateDer::pem_file_iter(&p.cert)
                    .expect("cert")
                    .collect::<Result<Vec<_>, _>>()
                    .expect("certs");
                let key = PrivateKeyDer::from_pem_file(&p.key).expect("key");
                builder
                    .with_client_auth_cert(certs, key)
                    .expect("client auth")
            }
            None => builder.with_no_client_auth(),
        };
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
        let tcp = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut s = rustls::StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).map_err(|e| e.to_string())?;
        }
        Ok(TlsRaw { s })
    }

    fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).expect("write");
        self.s.flush().expect("flush");
    }

    /// Read exactly `expected.len()` bytes and compare; Err if the connection failed first
    /// (a TLS 1.3 server refuses a client certificate after the client's side of the
    /// handshake is done, so that refusal arrives here).
    fn try_expect(&mut self, expected: &[u8]) -> Result<(), String> {
        let mut got = vec![0u8; expected.len()];
        self.s.read_exact(&mut got).map_err(|e| e.to_string())?;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "exact reply bytes"
        );
        Ok(())
    }

    fn expect(&mut self, expected: &[u8]) {
        if let Err(e) = self.try_expect(expected) {
            panic!("reading {:?}: {e}", String::from_utf8_lossy(expected));
        }
    }

    /// PING, answered PONG: the session works end to end.
    fn ping(&mut self) -> Result<(), String> {
        self.s
            .write_all(&resp(&[b"PING"]))
            .map_err(|e| e.to_string())?;
        self.try_expect(b"+PONG\r\n")
    }
}

#[test]
fn redis_cli_talks_resp_over_tls_beside_the_plain_port() {
    let pki = Pki::new("tls-cli");
    let d = start(&pki.flags_with_ca("no"));
    let port = tls_port(&d);
    let ca = pki.ca.file();
    let (ok, out) = redis_cli(port, &ca, &["PING"]);
    assert!(ok && out.trim() == "PONG", "{out}");
    let (_, out) = redis_cli(
        port,
        &ca,
        &["RL.LIMIT", "SET", "ENDPOINT", "/login", "RATE", "2/1m"],
    );
    assert_eq!(out.trim(), "OK");
    let check = |client: &str| redis_cli(port, &ca, &["RL.CHECK", client, "/login"]).1;
    let first = check("ip:1");
    assert!(
        first.starts_with("1\n2\n1\n"),
        "allowed, limit 2, 1 left: {first}"
    );
    check("ip:1");
    let third = check("ip:1");
    assert!(third.starts_with("0\n2\n0\n"), "denied: {third}");
    // The plain port serves the same daemon, and its state.
    let mut plain = d.client();
    let r: Vec<i64> = redis::cmd("RL.PEEK")
        .arg("ip:1")
        .arg("/login")
        .query(&mut plain)
        .expect("RL.PEEK");
    assert_eq!(r[2], 0, "the TLS checks spent the allowance: {r:?}");
    // A client that does not trust the daemon's CA is refused by its own verification.
    let other = pki.other.file();
    let (_, out) = redis_cli(port, &other, &["PING"]);
    assert!(!out.contains("PONG"), "{out}");
    assert!(out.to_lowercase().contains("certificate"), "{out}");
    // INFO tells where TLS is and how handshakes went.
    let server = info(&mut plain, "server");
    assert_eq!(server.get("tls_port"), Some(&port.to_string()));
    assert_eq!(server.get("tcp_port"), Some(&d.port.to_string()));
    assert!(stat(&mut plain, "rl_tls_handshakes") >= 5);
    assert!(
        stat(&mut plain, "rl_tls_handshake_failures") >= 1,
        "the distrusting client"
    );
    // The same counters as /metrics: CONFIG RESETSTAT zeroes INFO's view.
    run::<String>(&mut plain, &["CONFIG", "RESETSTAT"]).unwrap();
    assert_eq!(stat(&mut plain, "rl_tls_handshakes"), 0);
}

#[test]
fn the_redis_crate_pipelines_checks_over_tls_with_a_client_certificate() {
    install_default_provider();
    let pki = Pki::new("tls-crate");
    let d = start(&pki.flags_with_ca("yes"));
    let url = format!("rediss://127.0.0.1:{}/", tls_port(&d));
    let certs = |client: Option<&Pair>| redis::TlsCertificates {
        client_tls: client.map(|p| redis::ClientTlsConfig {
            client_cert: std::fs::read(&p.cert).expect("cert"),
            client_key: std::fs::read(&p.key).expect("key"),
        }),
        root_cert: Some(pki.ca.pem()),
    };
    let client =
        redis::Client::build_with_tls(url.as_str(), certs(Some(&pki.client))).expect("client");
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .expect("TLS connection with a client certificate");
    // Refills about one every 2.6 s: a second or two of checks spend nearly exact counts.
    run::<String>(
        &mut con,
        &["RL.LIMIT", "SET", "DEFAULT", "RATE", "1000000/30d"],
    )
    .unwrap();
    // 10,000 pipelined checks in one write: the replies (~400 KB) are more than one TLS
    // record and more than the socket takes at once.
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.cmd("RL.CHECK")
            .arg(format!("user{}", i % 100))
            .arg("/e");
    }
    let replies: Vec<Vec<i64>> = pipe.query(&mut con).expect("pipeline");
    assert_eq!(replies.len(), 10_000);
    assert!(replies.iter().all(|r| r[0] == 1), "all admitted");
    let left = replies[9_999][2];
    assert!(
        (999_900..999_905).contains(&left),
        "user99's 100th check leaves about 999,900: {left}"
    );
    // Without a client certificate, --tls-auth-clients yes turns the connection away.
    let bare = redis::Client::build_with_tls(url.as_str(), certs(None)).expect("client");
    let refused = bare
        .get_connection_with_timeout(Duration::from_secs(5))
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
    assert!(refused.is_err(), "no client certificate: {refused:?}");
}

#[test]
fn client_certificates_required_optional_or_not_asked_for() {
    let pki = Pki::new("tls-auth");
    let ca = pki.ca.file();
    let ping = |port: u16, client: Option<&Pair>| {
        TlsRaw::connect(port, &ca, client).and_then(|mut c| c.ping())
    };
    // yes: only a certificate signed by the CA file gets in.
    let d = start(&pki.flags_with_ca("yes"));
    let port = tls_port(&d);
    assert!(ping(port, Some(&pki.client)).is_ok());
    let none = ping(port, None);
    assert!(none.is_err(), "no certificate: {none:?}");
    let stranger = ping(port, Some(&pki.stranger));
    assert!(stranger.is_err(), "another CA's certificate: {stranger:?}");
    let (_, out) = redis_cli(port, &ca, &["PING"]);
    assert!(!out.contains("PONG"), "redis-cli without --cert: {out}");
    let (_, out) = redis_cli(
        port,
        &ca,
        &[
            "--cert",
            pki.client.cert_s(),
            "--key",
            pki.client.key_s(),
            "PING",
        ],
    );
    assert_eq!(out.trim(), "PONG", "redis-cli with --cert and --key");
    // optional: no certificate is fine, a bad one is not.
    let d = start(&pki.flags_with_ca("optional"));
    let port = tls_port(&d);
    assert!(ping(port, None).is_ok());
    assert!(ping(port, Some(&pki.client)).is_ok());
    let stranger = ping(port, Some(&pki.stranger));
    assert!(
        stranger.is_err(),
        "optional still checks one shown: {stranger:?}"
    );
    // no: nothing is asked for, and no CA file is needed.
    let no: Vec<String> = pki.flags("no").iter().map(|s| s.to_string()).collect();
    let d = start(&no);
    let (_, out) = redis_cli(tls_port(&d), &ca, &["PING"]);
    assert_eq!(out.trim(), "PONG");
}

#[test]
fn what_tls_needs_is_checked_before_the_daemon_starts() {
    let pki = Pki::new("tls-refuse");
    let fails = |flags: &[&str], says: &str| {
        let log = match Daemon::try_start_with(flags) {
            Ok(_) => panic!("started with {flags:?}"),
            Err(log) => log.join("\n"),
        };
        assert!(log.contains(says), "{flags:?} should say {says:?}: {log}");
    };
    fails(
        &["--tls-port", "0"],
        "needs --tls-cert-file and --tls-key-file",
    );
    // The default --tls-auth-clients yes needs a CA, as in Redis.
    let no_ca = pki.flags("yes");
    fails(&no_ca, "--tls-auth-clients yes needs --tls-ca-cert-file");
    fails(
        &pki.flags("optional"),
        "--tls-auth-clients optional needs --tls-ca-cert-file",
    );
    let other_key = pki.client.key_s();
    fails(
        &[
            "--tls-port",
            "0",
            "--tls-auth-clients",
            "no",
            "--tls-cert-file",
            pki.server.cert_s(),
            "--tls-key-file",
            other_key,
        ],
        "does not match certificate",
    );
    fails(
        &[
            "--tls-port",
            "0",
            "--tls-auth-clients",
            "no",
            "--tls-cert-file",
            "/nonexistent/server.crt",
            "--tls-key-file",
            pki.server.key_s(),
        ],
        "cannot read certificate file /nonexistent/server.crt",
    );
    fails(
        &[
            "--tls-port",
            "0",
            "--tls-auth-clients",
            "no",
            "--tls-cert-file",
            pki.server.key_s(),
            "--tls-key-file",
            pki.server.key_s(),
        ],
        "holds no certificate",
    );
    fails(
        &["--replicaof", "127.0.0.1:1", "--tls-replication", "yes"],
        "--tls-replication yes needs --tls-ca-cert-file",
    );
    fails(&["--plain-port", "no"], "--plain-port no needs --tls-port");
    fails(&["--http-tls", "yes"], "--http-tls yes needs --http-port");
}

#[test]
fn a_plain_text_client_on_the_tls_port_is_closed_and_nobody_else_notices() {
    let pki = Pki::new("tls-plain");
    let d = start(&pki.flags_with_ca("no"));
    let port = tls_port(&d);
    let mut good = TlsRaw::connect(port, &pki.ca.file(), None).expect("TLS client");
    good.ping().expect("PING over TLS");
    let mut plain = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    plain.write_all(&resp(&[b"PING"])).expect("write");
    let mut buf = [0u8; 64];
    let n = plain.read(&mut buf).unwrap_or(0);
    // rustls answers the bytes that are not a TLS record with an alert, then the daemon closes.
    assert!(!buf[..n].starts_with(b"+PONG"), "no RESP over the TLS port");
    let closed = (0..10).any(|_| matches!(plain.read(&mut buf), Ok(0) | Err(_)));
    assert!(closed, "the plain-text client is disconnected");
    good.ping().expect("the TLS client carries on");
    assert!(TlsRaw::connect(port, &pki.ca.file(), None)
        .and_then(|mut c| c.ping())
        .is_ok());
    let mut admin = d.client();
    assert_eq!(stat(&mut admin, "rl_tls_handshake_failures"), 1);
    assert_eq!(stat(&mut admin, "rl_tls_handshake_timeouts"), 0);
}

#[test]
fn a_stalled_handshake_is_closed_after_the_timeout_and_holds_no_worker() {
    let pki = Pki::new("tls-stall");
    let mut flags = pki.flags_with_ca("no");
    // One worker thread: a handshake that held it would hold every connection.
    for f in [
        "--threads",
        "1",
        "--maxclients",
        "4",
        "--tls-handshake-timeout-ms",
        "3000",
    ] {
        flags.push(f.to_string());
    }
    let d = start(&flags);
    let port = tls_port(&d);
    let mut admin = d.client();
    // One connection says nothing; one sends the first bytes of a ClientHello and stops.
    let started = Instant::now();
    let silent = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut partial = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01])
        .expect("write");
    // Meanwhile the daemon serves: the plain client, and a TLS client's full handshake.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(run::<String>(&mut admin, &["PING"]).unwrap(), "PONG");
    let mut served = TlsRaw::connect(port, &pki.ca.file(), None).expect("a TLS client");
    served.ping().expect("PING over TLS");
    // The two handshakes count toward --maxclients 4 with the two clients: a fifth is refused.
    let mut fifth = common::Raw::connect(d.port);
    assert_eq!(fifth.line(), "-ERR max number of clients reached");
    // (A margin for a loaded machine: the two handshakes are still under way before 3 s.)
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "before the timeout"
    );
    // After the timeout both are closed by the daemon.
    for (name, mut s) in [("silent", silent), ("partial", partial)] {
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        let r = s.read(&mut buf);
        assert!(
            matches!(r, Ok(0) | Err(_)),
            "{name}: closed without a reply: {r:?}"
        );
        let after = started.elapsed();
        assert!(
            after >= Duration::from_millis(2900) && after < Duration::from_secs(12),
            "{name} closed after {after:?}, expected about 3 s"
        );
    }
    assert_eq!(stat(&mut admin, "rl_tls_handshake_timeouts"), 2);
    assert_eq!(stat(&mut admin, "rl_tls_handshake_failures"), 2);
    // Their slots are free again.
    let mut c = TlsRaw::connect(port, &pki.ca.file(), None).expect("TLS client");
    c.ping().expect("PING");
}

#[test]
fn https_serves_the_http_routes_with_the_same_certificate() {
    let pki = Pki::new("tls-https");
    let mut flags = pki.flags_with_ca("optional");
    flags.extend(["--http-port", "0", "--http-tls", "yes"].map(String::from));
    let d = start(&flags);
    let base = d.https_url();
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "10", "--cacert", &pki.ca.file_s()])
            .args(args)
            .output()
            .expect("curl runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    assert_eq!(
        curl(&[&format!("{base}/healthz")]),
        (Some(0), "ok\n".into())
    );
    let (code, body) = curl(&[
        "-w",
        " %{http_code}",
        &format!("{base}/v1/check?client=c1&endpoint=/x"),
    ]);
    assert_eq!(code, Some(0));
    assert!(body.ends_with(" 200"), "{body}");
    assert!(body.contains("\"allowed\":true"), "{body}");
    // With a client certificate (optional: checked when shown).
    let (code, body) = curl(&[
        "--cert",
        pki.client.cert_s(),
        "--key",
        pki.client.key_s(),
        &format!("{base}/readyz"),
    ]);
    assert_eq!((code, body.as_str()), (Some(0), "ready\n"));
    // Plain HTTP to the HTTPS port gets nothing it can read as HTTP.
    let (code, _) = curl(&[&format!(
        "http://127.0.0.1:{}/healthz",
        d.http_port.unwrap()
    )]);
    assert_ne!(code, Some(0), "plain HTTP is not served on the HTTPS port");
    let mut admin = d.client();
    assert_eq!(
        run::<Vec<String>>(&mut admin, &["CONFIG", "GET", "http-tls"]).unwrap(),
        ["http-tls", "yes"]
    );
}

#[test]
fn memcached_over_tls_shares_the_key_space() {
    let pki = Pki::new("tls-mc");
    let d = start(
        &[
            "--memcached-port",
            "0",
            "--memcached-tls-port",
            "0",
            "--tls-cert-file",
            pki.server.cert_s(),
            "--tls-key-file",
            pki.server.key_s(),
            "--tls-auth-clients",
            "no",
        ]
        .map(String::from),
    );
    let port = d.memcached_tls_port.expect("memcached TLS port");
    assert!(d.tls_port.is_none(), "no RESP TLS port was asked for");
    let mut m = TlsRaw::connect(port, &pki.ca.file(), None).expect("TLS client");
    m.send(b"set k 0 0 2\r\n41\r\nincr k 1\r\nget k\r\n");
    m.expect(b"STORED\r\n42\r\nVALUE k 0 2\r\n42\r\nEND\r\n");
    let mut plain = d.mc_raw();
    plain.send(b"get k\r\n");
    plain.expect(b"VALUE k 0 2\r\n42\r\nEND\r\n");
    let mut admin = d.client();
    assert_eq!(
        run::<Option<String>>(&mut admin, &["GET", "k"]).unwrap(),
        Some("42".into())
    );
    // memcached's stats count both listeners' connections.
    m.send(b"stats\r\n");
    let mut text = Vec::new();
    let mut b = [0u8; 1];
    while !text.ends_with(b"END\r\n") {
        m.s.read_exact(&mut b).expect("stats");
        text.push(b[0]);
    }
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("STAT curr_connections 2\r\n"), "{text}");
    m.send(b"quit\r\n");
}

#[test]
fn a_replica_links_to_its_primary_over_tls() {
    let pki = Pki::new("tls-repl");
    let primary = start(&pki.flags_with_ca("yes"));
    let node = pki.ca.issue("replica", &["localhost", "127.0.0.1"]);
    let target = format!("127.0.0.1:{}", tls_port(&primary));
    let replica = Daemon::start_with(&[
        "--replicaof",
        &target,
        "--tls-replication",
        "yes",
        "--tls-ca-cert-file",
        &pki.ca.file_s(),
        "--tls-cert-file",
        node.cert_s(),
        "--tls-key-file",
        node.key_s(),
    ]);
    let mut p = primary.client();
    run::<String>(
        &mut p,
        &["RL.LIMIT", "SET", "ENDPOINT", "/pay", "RATE", "3/1m"],
    )
    .unwrap();
    let mut r = replica.client();
    eventually("the replica's link is up", || {
        info(&mut r, "replication").get("master_link_status") == Some(&"up".to_string())
    });
    eventually("the limit reaches the replica", || {
        run::<Vec<String>>(&mut r, &["RL.LIMIT", "GET", "ENDPOINT", "/pay"])
            .is_ok_and(|v| v.iter().any(|s| s == "3/1m"))
    });
    // The stream carries on: state written after the full sync arrives too.
    run::<Vec<i64>>(&mut p, &["RL.CHECK", "u", "/pay"]).unwrap();
    eventually("the check reaches the replica", || {
        run::<Vec<i64>>(&mut r, &["RL.PEEK", "u", "/pay"]).is_ok_and(|v| v[2] == 2)
    });
    let slaves = info(&mut p, "replication");
    assert_eq!(slaves.get("connected_slaves"), Some(&"1".to_string()));
    assert!(
        slaves
            .get("slave0")
            .is_some_and(|s| s.contains("state=online")),
        "{slaves:?}"
    );
    assert!(stat(&mut p, "rl_tls_handshakes") >= 1);
    // A replica that trusts another CA never links, and says why.
    let wrong = Daemon::start_with(&[
        "--replicaof",
        &target,
        "--tls-replication",
        "yes",
        "--tls-ca-cert-file",
        &pki.other.file_s(),
    ]);
    let log = wrong.log_until("certificate", 10).join("\n");
    assert!(log.contains("TLS") && log.contains("certificate"), "{log}");
    let mut w = wrong.client();
    assert_eq!(
        info(&mut w, "replication").get("master_link_status"),
        Some(&"down".to_string())
    );
    // CONFIG SET gives it the right CA and a client certificate: a later attempt links.
    run::<String>(
        &mut w,
        &[
            "CONFIG",
            "SET",
            "tls-ca-cert-file",
            &pki.ca.file_s(),
            "tls-cert-file",
            node.cert_s(),
            "tls-key-file",
            node.key_s(),
        ],
    )
    .unwrap();
    eventually("the corrected replica links", || {
        info(&mut w, "replication").get("master_link_status") == Some(&"up".to_string())
    });
    assert_eq!(
        run::<Vec<String>>(&mut w, &["CONFIG", "GET", "tls-replication"]).unwrap(),
        ["tls-replication", "yes"]
    );
}

#[test]
fn config_set_reloads_certificates_for_new_connections_and_keeps_old_ones() {
    let pki = Pki::new("tls-reload");
    let d = start(&pki.flags_with_ca("no"));
    let port = tls_port(&d);
    let mut admin = d.client();
    // CONFIG GET answers every TLS parameter.
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("*tls*")
        .query(&mut admin)
        .expect("CONFIG GET");
    let got: HashMap<&str, &str> = got
        .chunks(2)
        .map(|kv| (kv[0].as_str(), kv[1].as_str()))
        .collect();
    let port_s = port.to_string();
    let ca_s = pki.ca.file_s();
    for (name, value) in [
        ("tls-port", port_s.as_str()),
        ("tls-cert-file", pki.server.cert_s()),
        ("tls-key-file", pki.server.key_s()),
        ("tls-ca-cert-file", ca_s.as_str()),
        ("tls-auth-clients", "no"),
        ("tls-replication", "no"),
        ("memcached-tls-port", "0"),
        ("http-tls", "no"),
    ] {
        assert_eq!(got.get(name), Some(&value), "{name}: {got:?}");
    }
    let mut before = TlsRaw::connect(port, &pki.ca.file(), None).expect("old certificate");
    before.ping().expect("PING");
    // A certificate from the other CA, with its key, in one CONFIG SET.
    let renewed = pki.other.server("renewed");
    run::<String>(
        &mut admin,
        &[
            "CONFIG",
            "SET",
            "tls-cert-file",
            renewed.cert_s(),
            "tls-key-file",
            renewed.key_s(),
        ],
    )
    .expect("reload");
    let new = TlsRaw::connect(port, &pki.other.file(), None);
    assert!(
        new.and_then(|mut c| c.ping()).is_ok(),
        "new connections get the new certificate"
    );
    let old = TlsRaw::connect(port, &pki.ca.file(), None);
    assert!(old.is_err(), "nor the old one: {:?}", old.err());
    before.ping().expect("an open connection keeps its session");
    // redis-cli, trusting the new CA, agrees.
    let (_, out) = redis_cli(port, &pki.other.file(), &["PING"]);
    assert_eq!(out.trim(), "PONG");
    assert_eq!(
        run::<Vec<String>>(&mut admin, &["CONFIG", "GET", "tls-cert-file"]).unwrap(),
        ["tls-cert-file", renewed.cert_s()]
    );
    // Bad files are refused with the reason, and the certificate in force stays.
    let refused = |args: &[&str], says: &str| {
        let mut full = vec!["CONFIG", "SET"];
        full.extend_from_slice(args);
        let e = run::<String>(&mut d.client(), &full).expect_err("refused");
        assert!(e.contains(says), "{args:?}: {e}");
    };
    refused(
        &["tls-cert-file", "/nonexistent.crt"],
        "cannot read certificate file",
    );
    refused(
        &["tls-cert-file", pki.server.cert_s()],
        "does not match certificate",
    );
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a key\n").unwrap();
    refused(
        &["tls-key-file", garbage.to_str().unwrap()],
        "holds no private key",
    );
    refused(&["tls-cert-file", ""], "go together");
    refused(
        &["tls-cert-file", "", "tls-key-file", ""],
        "needs --tls-cert-file",
    );
    refused(
        &["tls-auth-clients", "yes", "tls-ca-cert-file", ""],
        "needs --tls-ca-cert-file",
    );
    assert!(TlsRaw::connect(port, &pki.other.file(), None)
        .and_then(|mut c| c.ping())
        .is_ok());
    assert_eq!(
        run::<Vec<String>>(&mut admin, &["CONFIG", "GET", "tls-key-file"]).unwrap(),
        ["tls-key-file", renewed.key_s()]
    );
    // Rewriting a file in place and naming it again picks up the new contents.
    std::fs::copy(&pki.server.cert, &renewed.cert).unwrap();
    std::fs::copy(&pki.server.key, &renewed.key).unwrap();
    run::<String>(
        &mut admin,
        &[
            "CONFIG",
            "SET",
            "tls-cert-file",
            renewed.cert_s(),
            "tls-key-file",
            renewed.key_s(),
        ],
    )
    .expect("reload in place");
    assert!(TlsRaw::connect(port, &pki.ca.file(), None)
        .and_then(|mut c| c.ping())
        .is_ok());
    // The client-certificate rule changes the same way, for new connections.
    run::<String>(&mut admin, &["CONFIG", "SET", "tls-auth-clients", "yes"]).unwrap();
    let bare = TlsRaw::connect(port, &pki.ca.file(), None).and_then(|mut c| c.ping());
    assert!(bare.is_err(), "a certificate is now required: {bare:?}");
    assert!(TlsRaw::connect(port, &pki.ca.file(), Some(&pki.client))
        .and_then(|mut c| c.ping())
        .is_ok());
    refused(&["tls-auth-clients", "maybe"], "yes, no or optional");
    assert_eq!(
        run::<Vec<String>>(&mut admin, &["CONFIG", "GET", "tls-auth-clients"]).unwrap(),
        ["tls-auth-clients", "yes"]
    );
    // Changing certificates is an admin's power.
    run::<String>(
        &mut admin,
        &[
            "ACL", "SETUSER", "app", "on", ">pw", "~*", "+@all", "-@admin",
        ],
    )
    .unwrap();
    let mut app = d.client();
    run::<String>(&mut app, &["AUTH", "app", "pw"]).unwrap();
    let e = run::<String>(
        &mut app,
        &["CONFIG", "SET", "tls-cert-file", pki.server.cert_s()],
    )
    .expect_err("not an admin");
    assert!(e.contains("NOPERM"), "{e}");
}

#[test]
fn with_the_plain_port_off_resp_is_served_over_tls_alone() {
    let pki = Pki::new("tls-only");
    let mut flags = pki.flags_with_ca("no");
    flags.extend(["--plain-port", "no"].map(String::from));
    let d = start(&flags);
    assert_eq!(
        Some(d.port),
        d.tls_port,
        "the ready line names the TLS port"
    );
    let mut c = TlsRaw::connect(d.port, &pki.ca.file(), None).expect("TLS");
    c.send(&resp(&[b"INFO", b"server"]));
    let mut text = vec![0u8; 4096];
    let n = c.s.read(&mut text).expect("INFO");
    let text = String::from_utf8_lossy(&text[..n]);
    assert!(text.contains("tcp_port:0\r\n"), "{text}");
    assert!(text.contains(&format!("tls_port:{}\r\n", d.port)), "{text}");
}

#[test]
fn a_reply_larger_than_the_socket_takes_arrives_whole_to_a_slow_reader() {
    // 25 replies of 400 KB (10 MB) to one read of requests, to a client that reads 64 KB at a
    // time with a pause between: the daemon's writes wait on a full socket again and again.
    // (The case where a write ends with its tail still in rustls's buffer, which loopback's
    // large socket buffers make rare, is forced by the unit test in src/stream.rs.)
    let pki = Pki::new("tls-slow");
    let mut flags = pki.flags_with_ca("no");
    flags.extend(["--max-value-size", "409600"].map(String::from));
    let d = start(&flags);
    let value = vec![b'v'; 409_600];
    let mut c = TlsRaw::connect(tls_port(&d), &pki.ca.file(), None).expect("TLS");
    c.send(&resp(&[b"SET", b"big", &value]));
    c.expect(b"+OK\r\n");
    let gets: Vec<u8> = (0..25).flat_map(|_| resp(&[b"GET", b"big"])).collect();
    c.send(&gets);
    let each = format!("${}\r\n", value.len()).len() + value.len() + 2;
    let want = 25 * each;
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while got < want {
        match c.s.read(&mut buf) {
            Ok(0) => panic!("closed after {got} of {want} bytes"),
            Ok(n) => got += n,
            Err(e) => panic!("after {got} of {want} bytes: {e}"),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(got, want);
    c.ping().expect("and the connection carries on");
}
