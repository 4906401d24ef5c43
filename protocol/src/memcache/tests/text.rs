//! The text protocol's commands: each command's fields and refusals, the key bound,
//! pipelining, and numeric fields read as memcached reads them.

use super::*;

#[test]
fn text_requests() {
    let cases: Vec<(&[u8], Result<McFrame, McFatal>)> = vec![
        (
            b"get a\r\n",
            req(McRequest::Get {
                keys: vec![b("a")],
                cas: false,
            }),
        ),
        (
            b"gets a  b\n",
            req(McRequest::Get {
                keys: vec![b("a"), b("b")],
                cas: true,
            }),
        ),
        (b"get\r\n", err(McError::Unknown)),
        (b"GET a\r\n", err(McError::Unknown)),
        (
            b"gat 10 a b\r\n",
            req(McRequest::Gat {
                exptime: 10,
                keys: vec![b("a"), b("b")],
                cas: false,
            }),
        ),
        (b"gats x a\r\n", err(McError::InvalidExptime)),
        (
            b"set k 5 60 3\r\nabc\r\n",
            req(McRequest::Store {
                cmd: StoreCmd::Set,
                key: b("k"),
                flags: 5,
                exptime: 60,
                cas_unique: 0,
                data: b("abc"),
                noreply: false,
            }),
        ),
        (
            b"cas k 0 -1 1 99 noreply\r\nx\r\n",
            req(McRequest::Store {
                cmd: StoreCmd::Cas,
                key: b("k"),
                flags: 0,
                exptime: -1,
                cas_unique: 99,
                data: b("x"),
                noreply: true,
            }),
        ),
        (
            b"append k 0 0 0\r\n\r\n",
            req(McRequest::Store {
                cmd: StoreCmd::Append,
                key: b("k"),
                flags: 0,
                exptime: 0,
                cas_unique: 0,
                data: b(""),
                noreply: false,
            }),
        ),
        (b"set k 0 0 3\r\nabcd\r\n", err(McError::BadDataChunk)),
        (b"set k 0 0\r\n", err(McError::Unknown)),
        (
            b"incr n 5\r\n",
            req(McRequest::Arith {
                incr: true,
                key: b("n"),
                delta: 5,
                noreply: false,
            }),
        ),
        (
            b"decr n 18446744073709551615 noreply\r\n",
            req(McRequest::Arith {
                incr: false,
                key: b("n"),
                delta: u64::MAX,
                noreply: true,
            }),
        ),
        (
            b"incr n 18446744073709551616\r\n",
            err(McError::InvalidDelta),
        ),
        (b"incr n -1\r\n", err(McError::InvalidDelta)),
        (b"incr n\r\n", err(McError::Unknown)),
        (
            b"delete k\r\n",
            req(McRequest::Delete {
                key: b("k"),
                noreply: false,
            }),
        ),
        (
            b"delete k 0 noreply\r\n",
            req(McRequest::Delete {
                key: b("k"),
                noreply: true,
            }),
        ),
        (b"delete k 5\r\n", err(McError::BadFormat)),
        (
            b"touch k 10\r\n",
            req(McRequest::Touch {
                key: b("k"),
                exptime: 10,
                noreply: false,
            }),
        ),
        (b"touch k x\r\n", err(McError::InvalidExptime)),
        (
            b"flush_all\r\n",
            req(McRequest::FlushAll {
                delay: 0,
                noreply: false,
            }),
        ),
        (
            b"flush_all 10 noreply\r\n",
            req(McRequest::FlushAll {
                delay: 10,
                noreply: true,
            }),
        ),
        (b"flush_all x\r\n", err(McError::BadFormat)),
        (b"version\r\n", req(McRequest::Version)),
        (
            b"verbosity 1 noreply\r\n",
            req(McRequest::Verbosity { noreply: true }),
        ),
        (b"stats\r\n", req(McRequest::Stats { group: None })),
        (
            b"stats settings\r\n",
            req(McRequest::Stats {
                group: Some(b("settings")),
            }),
        ),
        (b"quit\r\n", req(McRequest::Quit)),
        (b"mn\r\n", req(McRequest::MetaNoop)),
        (b"\r\n", err(McError::Unknown)),
        (b"bogus\r\n", err(McError::Unknown)),
        (b"\x80\x01\x00\x00", Err(McFatal::Binary)),
        (b"get a\x01b\r\n", err(McError::BadFormat)),
    ];
    for (input, want) in cases {
        assert_eq!(one(input), want, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn key_length_is_bounded_at_250() {
    let mut d = McDecoder::new(McLimits::default());
    let ok = format!("get {}\r\n", "k".repeat(250));
    let mut buf = BytesMut::from(ok.as_bytes());
    assert!(matches!(d.decode(&mut buf), Ok(Some(McFrame::Request(_)))));
    let long = format!("get {}\r\n", "k".repeat(251));
    let mut buf = BytesMut::from(long.as_bytes());
    assert_eq!(
        d.decode(&mut buf),
        Ok(Some(McFrame::Error(McError::BadFormat)))
    );
}

#[test]
fn pipelined_requests_come_out_in_order() {
    let frames = decode_all(b"set a 0 0 1\r\n1\r\nincr a 2\r\nget a\r\nmn\r\n");
    assert_eq!(frames.len(), 4);
    assert!(matches!(
        frames[1],
        Ok(McFrame::Request(McRequest::Arith { .. }))
    ));
}

/// memcached reads its numeric fields with `strtoull`/`strtol`, so zero padding of any
/// length is accepted (checked against memcached 1.6.18), also past 20 characters.
#[test]
fn zero_padded_fields_of_any_length_are_read() {
    let z = |n: u32| format!("{:0>27}", n);
    let neg = |n: u32| format!("-{:0>27}", n);
    let mut d = McDecoder::new(McLimits::default());
    let mut decode = |line: String| {
        let mut buf = BytesMut::from(line.as_bytes());
        let frame = d.decode(&mut buf);
        assert!(buf.is_empty(), "{line:?} left {buf:?}");
        match frame {
            Ok(Some(McFrame::Request(r))) => r,
            other => panic!("{line:?}: {other:?}"),
        }
    };
    assert_eq!(
        decode(format!("set k {} {} {}\r\nabc\r\n", z(5), z(60), z(3))),
        McRequest::Store {
            cmd: StoreCmd::Set,
            key: b("k"),
            flags: 5,
            exptime: 60,
            cas_unique: 0,
            data: b("abc"),
            noreply: false,
        }
    );
    assert!(matches!(
        decode(format!("cas k 0 0 1 {}\r\nx\r\n", z(99))),
        McRequest::Store { cas_unique: 99, .. }
    ));
    assert!(matches!(
        decode(format!("touch k {}\r\n", neg(1))),
        McRequest::Touch { exptime: -1, .. }
    ));
    assert!(matches!(
        decode(format!("gat {} k\r\n", z(10))),
        McRequest::Gat { exptime: 10, .. }
    ));
    assert!(matches!(
        decode(format!("flush_all {}\r\n", z(10))),
        McRequest::FlushAll { delay: 10, .. }
    ));
    assert!(matches!(
        decode(format!("verbosity {}\r\n", z(1))),
        McRequest::Verbosity { .. }
    ));
    assert!(matches!(
        decode(format!("incr k {}\r\n", z(2))),
        McRequest::Arith { delta: 2, .. }
    ));
    let McRequest::Meta(m) = decode(format!(
        "ms k {} T{} F{} C{}\r\nhi\r\n",
        z(2),
        z(10),
        z(3),
        z(7)
    )) else {
        panic!("not a meta request")
    };
    assert_eq!(m.data, Some(b("hi")));
    assert_eq!(
        (m.flags.ttl, m.flags.client_flags, m.flags.compare_cas),
        (Some(10), Some(3), Some(7))
    );
    let McRequest::Meta(m) = decode(format!("ma k D{} J{} N{}\r\n", z(2), z(4), neg(1))) else {
        panic!("not a meta request")
    };
    assert_eq!(
        (m.flags.delta, m.flags.initial, m.flags.vivify),
        (Some(2), Some(4), Some(-1))
    );
}
