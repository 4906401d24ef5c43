//! Every listener authenticates, against the real binary: memcached's text-protocol
//! authentication with the daemon's users, and protected mode for clients of other hosts.

mod common;

use common::{run, Daemon};
use std::net::{IpAddr, UdpSocket};

/// This host's address on its non-loopback interface (what another host would see of it):
/// the source address the kernel picks for a datagram to a TEST-NET-3 address (nothing is
/// sent). A machine without one cannot test protected mode, and the test says so.
fn non_loopback_ip() -> IpAddr {
    let s = UdpSocket::bind("0.0.0.0:0").expect("a UDP socket");
    s.connect("203.0.113.1:9")
        .expect("a route out of loopback: protected mode needs a non-loopback address to test");
    let ip = s.local_addr().expect("local address").ip();
    assert!(!ip.is_loopback(), "{ip} is loopback");
    ip
}

#[test]
fn memcached_signs_in_with_the_daemons_users_and_applies_their_rules() {
    let d = Daemon::start_with(&["--memcached-port", "0", "--requirepass", "pw"]);
    let mut admin = d.client();
    run::<String>(&mut admin, &["AUTH", "pw"]).unwrap();
    run::<String>(
        &mut admin,
        &[
            "ACL", "SETUSER", "app", "on", ">apppw", "~app:*", "+@string", "+del",
        ],
    )
    .unwrap();
    let mut m = d.mc_raw();
    m.send(b"get app:x\r\nincr app:n 1\r\nflush_all\r\n");
    m.expect(
        b"CLIENT_ERROR unauthenticated\r\nCLIENT_ERROR unauthenticated\r\nCLIENT_ERROR unauthenticated\r\n",
    );
    // memcached's -Y form: the first set carries "<user> <password>".
    m.send(b"set auth 0 0 9\r\napp wrong\r\n");
    m.expect(b"CLIENT_ERROR authentication failure\r\n");
    m.send(b"set auth 0 0 9\r\napp apppw\r\n");
    m.expect(b"STORED\r\n");
    m.send(b"set app:n 0 0 1\r\n5\r\nincr app:n 2\r\nget app:n\r\n");
    m.expect(b"STORED\r\n7\r\nVALUE app:n 0 1\r\n7\r\nEND\r\n");
    // Its key pattern and its commands hold over memcached as over RESP.
    m.send(b"set other:k 0 0 1\r\nx\r\n");
    m.expect(b"CLIENT_ERROR NOPERM No permissions to access a key\r\n");
    m.send(b"flush_all\r\n");
    m.expect(b"CLIENT_ERROR NOPERM User app has no permissions to run the 'flushall' command\r\n");
    assert_eq!(
        run::<Option<String>>(&mut admin, &["GET", "app:n"]).unwrap(),
        Some("7".into()),
        "the counter is the RESP key space's"
    );
    // A user deleted meanwhile loses its connection.
    run::<i64>(&mut admin, &["ACL", "DELUSER", "app"]).unwrap();
    m.send(b"get app:n\r\n");
    assert!(m.closed(), "the deleted user's connection ends");
}

#[test]
fn memcached_needs_no_credentials_while_the_default_user_has_no_password() {
    let d = Daemon::start_with(&["--memcached-port", "0"]);
    let mut m = d.mc_raw();
    m.send(b"set k 0 0 1\r\n1\r\nget k\r\n");
    m.expect(b"STORED\r\nVALUE k 0 1\r\n1\r\nEND\r\n");
}

#[test]
fn protected_mode_refuses_other_hosts_while_no_password_is_set() {
    let ip = non_loopback_ip();
    let mut d = Daemon::start_with(&["--bind", "0.0.0.0", "--memcached-port", "0"]);
    assert!(
        d.startup_log
            .iter()
            .any(|l| l.contains("WARN")
                && l.contains("protected mode refuses clients from other hosts")),
        "the start warns: {:?}",
        d.startup_log
    );
    let port = d.port;
    let connect = |port: u16| {
        let s = std::net::TcpStream::connect((ip, port)).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        common::Raw { s }
    };
    // The refusal comes as soon as the connection is accepted, and the connection closes.
    let mut other = connect(port);
    let line = other.line();
    assert!(
        line.starts_with("-DENIED ratelimitd is running in protected mode"),
        "{line}"
    );
    assert!(other.closed());
    let mut mc = connect(d.memcached_port.expect("memcached port"));
    let line = mc.line();
    assert!(line.starts_with("SERVER_ERROR DENIED"), "{line}");
    // This host is served; it may turn protected mode off.
    let mut local = d.client();
    assert_eq!(run::<String>(&mut local, &["PING"]).unwrap(), "PONG");
    run::<String>(&mut local, &["CONFIG", "SET", "protected-mode", "no"]).unwrap();
    let mut other = connect(port);
    other.send(&common::resp(&[b"PING"]));
    other.expect(b"+PONG\r\n");
    // With a password, protected mode has nothing to protect: other hosts must AUTH.
    run::<String>(&mut local, &["CONFIG", "SET", "protected-mode", "yes"]).unwrap();
    run::<String>(&mut local, &["ACL", "SETUSER", "default", ">pw"]).unwrap();
    let mut other = connect(port);
    other.send(&common::resp(&[b"PING"]));
    other.expect(b"-NOAUTH Authentication required.\r\n");
    d.kill();
}

/// `curl -s -o /dev/null -w '%{http_code}'` with these extra arguments: the status code.
fn curl_status(args: &[&str]) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn http_needs_credentials_while_the_default_user_has_a_password() {
    let d = Daemon::start_with(&["--http-port", "0", "--requirepass", "pw"]);
    let url = d.http_url();
    let mut admin = d.client();
    run::<String>(&mut admin, &["AUTH", "pw"]).unwrap();
    run::<String>(
        &mut admin,
        &[
            "ACL",
            "SETUSER",
            "tenant",
            "on",
            ">tpw",
            "~tenant:*",
            "+@rate_limit",
        ],
    )
    .unwrap();
    let check = format!("{url}/v1/check?client=tenant:a&endpoint=/x");
    // Probes need nothing; everything else does.
    assert_eq!(curl_status(&[&format!("{url}/healthz")]), "200");
    assert_eq!(curl_status(&[&format!("{url}/readyz")]), "200");
    assert_eq!(curl_status(&[&format!("{url}/metrics")]), "401");
    assert_eq!(curl_status(&[&check]), "401");
    let challenge = std::process::Command::new("curl")
        .args(["-s", "-i", &check])
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&challenge.stdout).to_ascii_lowercase();
    assert!(
        head.contains("www-authenticate: basic realm=\"ratelimitd\""),
        "{head}"
    );
    // Basic with a user, Bearer with the default user's password.
    assert_eq!(
        curl_status(&["-u", "default:pw", &format!("{url}/metrics")]),
        "200"
    );
    assert_eq!(curl_status(&["-u", "tenant:tpw", &check]), "200");
    assert_eq!(
        curl_status(&["-H", "Authorization: Bearer pw", &check]),
        "200"
    );
    assert_eq!(curl_status(&["-u", "tenant:wrong", &check]), "401");
    // The user's rules hold: another tenant's client, and /metrics, are refused.
    let other = format!("{url}/v1/check?client=other:b&endpoint=/x");
    assert_eq!(curl_status(&["-u", "tenant:tpw", &other]), "403");
    assert_eq!(
        curl_status(&["-u", "tenant:tpw", &format!("{url}/metrics")]),
        "403"
    );
    // Forward-auth reads the gateway's X-RateLimit-Authorization, not the end client's
    // Authorization (which belongs to the API it protects).
    let fa = format!("{url}/v1/forward-auth/api");
    assert_eq!(
        curl_status(&[
            "-H",
            "Authorization: Bearer pw",
            "-H",
            "X-Api-Key: tenant:c",
            &fa
        ]),
        "401"
    );
    assert_eq!(
        curl_status(&[
            "-H",
            "X-RateLimit-Authorization: Bearer tenant:tpw",
            "-H",
            "Authorization: Bearer someone-elses-token",
            "-H",
            "X-Api-Key: tenant:c",
            &fa,
        ]),
        "200"
    );
}

#[test]
fn http_auth_checks_leaves_metrics_open_and_none_leaves_everything_open() {
    let d = Daemon::start_with(&[
        "--http-port",
        "0",
        "--requirepass",
        "pw",
        "--http-auth",
        "checks",
    ]);
    let url = d.http_url();
    assert_eq!(curl_status(&[&format!("{url}/metrics")]), "200");
    assert_eq!(
        curl_status(&[&format!("{url}/v1/check?client=a&endpoint=/x")]),
        "401"
    );
    let open = Daemon::start_with(&["--http-port", "0"]);
    let url = open.http_url();
    assert_eq!(
        curl_status(&[&format!("{url}/v1/check?client=a&endpoint=/x")]),
        "200"
    );
    assert_eq!(curl_status(&[&format!("{url}/metrics")]), "200");
}

#[test]
fn protected_mode_refuses_other_hosts_on_http_but_not_probes() {
    let ip = non_loopback_ip();
    let d = Daemon::start_with(&["--bind", "0.0.0.0", "--http-port", "0"]);
    let port = d.http_port.expect("HTTP port");
    let base = format!("http://{ip}:{port}");
    assert_eq!(curl_status(&[&format!("{base}/healthz")]), "200");
    assert_eq!(
        curl_status(&[&format!("{base}/v1/check?client=a&endpoint=/x")]),
        "403"
    );
    assert_eq!(curl_status(&[&format!("{base}/metrics")]), "403");
    assert_eq!(
        curl_status(&[&format!("{}/v1/check?client=a&endpoint=/x", d.http_url())]),
        "200",
        "this host is served"
    );
}
