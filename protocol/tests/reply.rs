//! Reply encoding: exact RESP2 and RESP3 bytes for every `Reply` variant, nested values
//! included, compared with what Redis sends.

use bytes::Bytes;
use ratelimitd_protocol::reply::{format_double, to_bytes};
use ratelimitd_protocol::{ProtoVersion, Reply};

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

#[test]
fn every_variant_in_both_versions() {
    let nested = Reply::Array(vec![
        Reply::Integer(1),
        Reply::Array(vec![Reply::bulk(b("a")), Reply::Null]),
        Reply::Map(vec![(Reply::bulk(b("k")), Reply::Boolean(true))]),
    ]);
    let cases: Vec<(&str, Reply, &str, &str)> = vec![
        ("ok", Reply::ok(), "+OK\r\n", "+OK\r\n"),
        ("simple", Reply::simple("PONG"), "+PONG\r\n", "+PONG\r\n"),
        (
            "simple crlf",
            Reply::Simple(b("a\r\nb")),
            "+a  b\r\n",
            "+a  b\r\n",
        ),
        (
            "error",
            Reply::error("ERR bad"),
            "-ERR bad\r\n",
            "-ERR bad\r\n",
        ),
        (
            "error crlf",
            Reply::error("ERR a\nb\rc"),
            "-ERR a b c\r\n",
            "-ERR a b c\r\n",
        ),
        ("empty error", Reply::error(""), "-ERR\r\n", "-ERR\r\n"),
        ("integer", Reply::Integer(42), ":42\r\n", ":42\r\n"),
        (
            "negative",
            Reply::Integer(i64::MIN),
            ":-9223372036854775808\r\n",
            ":-9223372036854775808\r\n",
        ),
        (
            "bulk",
            Reply::bulk(b("hello")),
            "$5\r\nhello\r\n",
            "$5\r\nhello\r\n",
        ),
        ("empty bulk", Reply::bulk(b("")), "$0\r\n\r\n", "$0\r\n\r\n"),
        (
            "binary bulk",
            Reply::bulk(b("a\r\nb")),
            "$4\r\na\r\nb\r\n",
            "$4\r\na\r\nb\r\n",
        ),
        ("null", Reply::Null, "$-1\r\n", "_\r\n"),
        ("null array", Reply::NullArray, "*-1\r\n", "_\r\n"),
        ("empty array", Reply::Array(vec![]), "*0\r\n", "*0\r\n"),
        (
            "array",
            Reply::Array(vec![Reply::Integer(1), Reply::bulk(b("x"))]),
            "*2\r\n:1\r\n$1\r\nx\r\n",
            "*2\r\n:1\r\n$1\r\nx\r\n",
        ),
        (
            "nested",
            nested,
            "*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n*2\r\n$1\r\nk\r\n:1\r\n",
            "*3\r\n:1\r\n*2\r\n$1\r\na\r\n_\r\n%1\r\n$1\r\nk\r\n#t\r\n",
        ),
        (
            "map",
            Reply::Map(vec![
                (Reply::bulk(b("limit")), Reply::Integer(10)),
                (
                    Reply::bulk(b("sub")),
                    Reply::Map(vec![(Reply::simple("x"), Reply::Double(1.5))]),
                ),
            ]),
            "*4\r\n$5\r\nlimit\r\n:10\r\n$3\r\nsub\r\n*2\r\n+x\r\n$3\r\n1.5\r\n",
            "%2\r\n$5\r\nlimit\r\n:10\r\n$3\r\nsub\r\n%1\r\n+x\r\n,1.5\r\n",
        ),
        ("empty map", Reply::Map(vec![]), "*0\r\n", "%0\r\n"),
        (
            "set",
            Reply::Set(vec![Reply::bulk(b("a")), Reply::bulk(b("b"))]),
            "*2\r\n$1\r\na\r\n$1\r\nb\r\n",
            "~2\r\n$1\r\na\r\n$1\r\nb\r\n",
        ),
        ("double", Reply::Double(1.5), "$3\r\n1.5\r\n", ",1.5\r\n"),
        ("double int", Reply::Double(3.0), "$1\r\n3\r\n", ",3\r\n"),
        (
            "double inf",
            Reply::Double(f64::INFINITY),
            "$3\r\ninf\r\n",
            ",inf\r\n",
        ),
        (
            "double -inf",
            Reply::Double(f64::NEG_INFINITY),
            "$4\r\n-inf\r\n",
            ",-inf\r\n",
        ),
        (
            "double nan",
            Reply::Double(f64::NAN),
            "$3\r\nnan\r\n",
            ",nan\r\n",
        ),
        ("true", Reply::Boolean(true), ":1\r\n", "#t\r\n"),
        ("false", Reply::Boolean(false), ":0\r\n", "#f\r\n"),
        (
            "verbatim",
            Reply::Verbatim("txt", b("hi\nthere")),
            "$8\r\nhi\nthere\r\n",
            "=12\r\ntxt:hi\nthere\r\n",
        ),
        (
            "verbatim empty",
            Reply::Verbatim("txt", b("")),
            "$0\r\n\r\n",
            "=4\r\ntxt:\r\n",
        ),
    ];
    for (name, reply, resp2, resp3) in cases {
        let got2 = to_bytes(&reply, ProtoVersion::Resp2);
        assert_eq!(std::str::from_utf8(&got2).unwrap(), resp2, "{name}: RESP2");
        let got3 = to_bytes(&reply, ProtoVersion::Resp3);
        assert_eq!(std::str::from_utf8(&got3).unwrap(), resp3, "{name}: RESP3");
    }
}

#[test]
fn compose_appends() {
    let mut out = bytes::BytesMut::from(&b"+A\r\n"[..]);
    ratelimitd_protocol::compose(&Reply::Integer(7), ProtoVersion::Resp2, &mut out);
    assert_eq!(&out[..], b"+A\r\n:7\r\n");
}

#[test]
fn doubles_print_like_redis() {
    let cases: &[(f64, &str)] = &[
        (0.0, "0"),
        (-0.0, "-0"),
        (1.0, "1"),
        (-2.0, "-2"),
        (1.5, "1.5"),
        (-1.5, "-1.5"),
        (0.1, "0.1"),
        (2.71, "2.71"),
        (0.001, "0.001"),
        (1.0e-7, "1e-7"),
        (1.5e-7, "1.5e-7"),
        (123456.789, "123456.789"),
        (1.0e18, "1000000000000000000"),
        (1.0e19, "1e+19"),
        (1.0e100, "1e+100"),
        (-1.25e300, "-1.25e+300"),
        (4611686018427387904.0, "4611686018427387904"), // 2^62: still the integer path
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (5e-324, "5e-324"),
        (0.30000000000000004, "0.30000000000000004"),
        (1234567.5, "1234567.5"),
    ];
    for &(d, want) in cases {
        assert_eq!(format_double(d), want, "{d:?}");
    }
}

#[test]
fn integers_at_the_edges() {
    for (n, want) in [
        (0i64, ":0\r\n"),
        (-1, ":-1\r\n"),
        (9, ":9\r\n"),
        (10, ":10\r\n"),
        (i64::MAX, ":9223372036854775807\r\n"),
        (i64::MIN, ":-9223372036854775808\r\n"),
    ] {
        assert_eq!(
            &to_bytes(&Reply::Integer(n), ProtoVersion::Resp2)[..],
            want.as_bytes()
        );
    }
    // Every digit count, both sides of each power of ten, and a spread of values in between,
    // against the standard library's formatting.
    let mut values = vec![0i64, 1, -1, 99, 100, 101, -99, -100, i64::MAX, i64::MIN];
    let mut p = 1i64;
    while let Some(next) = p.checked_mul(10) {
        values.extend([p - 1, p, p + 1, -p, -(p - 1), next / 3, -(next / 7)]);
        p = next;
    }
    values.extend((0..2000).map(|i| i * 37 - 1000));
    for n in values {
        assert_eq!(
            &to_bytes(&Reply::Integer(n), ProtoVersion::Resp2)[..],
            format!(":{n}\r\n").as_bytes(),
            "{n}"
        );
    }
    // Lengths use the same writer.
    assert_eq!(
        &to_bytes(
            &Reply::Bulk(Bytes::from_static(b"0123456789")),
            ProtoVersion::Resp2
        )[..],
        b"$10\r\n0123456789\r\n"
    );
}

#[test]
fn inline_integer_arrays_encode_like_arrays_of_integers() {
    for items in [
        &[][..],
        &[1, -1, 0, i64::MAX, i64::MIN][..],
        &[7; 8][..],
        &[i64::MIN; 8][..],
        &[3; 9][..],
    ] {
        let plain = Reply::Array(items.iter().map(|&n| Reply::Integer(n)).collect());
        for version in [ProtoVersion::Resp2, ProtoVersion::Resp3] {
            assert_eq!(
                to_bytes(&Reply::ints(items), version),
                to_bytes(&plain, version)
            );
        }
    }
    assert!(matches!(Reply::ints(&[1; 8]), Reply::IntArray(_)));
    assert!(
        matches!(Reply::ints(&[1; 9]), Reply::Array(_)),
        "more than 8 fall back"
    );
}
