//! Table-driven tests for request framing: RESP arrays, inline commands, pipelining, partial
//! input, size rejections and their recovery, and protocol errors.

use bytes::BytesMut;
use ratelimitd_protocol::frame::{Decoder, FrameError, Limits, RejectReason, Request};
use ratelimitd_protocol::Args;

fn cmd(args: &[&[u8]]) -> Request {
    Request::Command(Args::from_slices(args))
}

/// What a test saw: each request in order, then the error if decoding failed.
type Outcome = Vec<Result<Request, FrameError>>;

fn rejected(r: RejectReason) -> Request {
    Request::Rejected(r)
}

/// Small limits so the rejection paths are easy to reach.
fn small() -> Limits {
    Limits {
        max_bulk_len: 10,
        max_array_len: 4,
        max_inline_len: 32,
        max_request_len: 25,
    }
}

/// Everything `decode` yields for `input` given in one piece, until it needs more bytes or
/// fails. The error, if any, is the last element.
fn decode_all(limits: Limits, input: &[u8]) -> (Outcome, usize) {
    let mut dec = Decoder::new(limits);
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    loop {
        match dec.decode(&mut buf) {
            Ok(Some(r)) => out.push(Ok(r)),
            Ok(None) => break,
            Err(e) => {
                out.push(Err(e));
                break;
            }
        }
    }
    (out, buf.len())
}

/// Same, but `input` arrives in chunks of `chunk` bytes, decoding after each.
fn decode_chunked(limits: Limits, input: &[u8], chunk: usize) -> (Outcome, usize) {
    let mut dec = Decoder::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(r)) => out.push(Ok(r)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return (out, buf.len());
                }
            }
        }
    }
    (out, buf.len())
}

#[test]
fn requests_decode_whole_and_in_every_chunking() {
    use RejectReason::*;
    let cases: Vec<(&str, &[u8], Outcome)> = vec![
        ("resp array", b"*2\r\n$4\r\nPING\r\n$3\r\nfoo\r\n", vec![Ok(cmd(&[b"PING", b"foo"]))]),
        ("binary bulk", b"*1\r\n$4\r\na\r\n\0\r\n", vec![Ok(cmd(&[b"a\r\n\0"]))]),
        ("empty bulk", b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n", vec![Ok(cmd(&[b"GET", b""]))]),
        (
            "pipelined",
            b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\nPING x\r\n",
            vec![Ok(cmd(&[b"PING"])), Ok(cmd(&[b"ECHO", b"hi"])), Ok(cmd(&[b"PING", b"x"]))],
        ),
        ("star zero skipped", b"*0\r\n*1\r\n$1\r\nA\r\n", vec![Ok(cmd(&[b"A"]))]),
        ("null array skipped", b"*-1\r\n*1\r\n$1\r\nA\r\n", vec![Ok(cmd(&[b"A"]))]),
        ("inline", b"PING\r\n", vec![Ok(cmd(&[b"PING"]))]),
        ("inline bare lf", b"set  a\tb\n", vec![Ok(cmd(&[b"set", b"a", b"b"]))]),
        ("inline empty lines skipped", b"\r\n\n   \r\nPING\n", vec![Ok(cmd(&[b"PING"]))]),
        (
            "inline double quotes",
            b"set \"a b\" \"x\\n\\r\\t\\x41\\\\\\\"\\q\"\r\n",
            vec![Ok(cmd(&[b"set", b"a b", b"x\n\r\tA\\\"q"]))],
        ),
        ("inline single quotes", b"set 'a \\'b\\n' ''\n", vec![Ok(cmd(&[b"set", b"a 'b\\n", b""]))]),
        ("inline quote mid word", b"foo\"bar baz\"\n", vec![Ok(cmd(&[b"foobar baz"]))]),
        ("inline bad hex kept", b"\"\\xZZ\"\n", vec![Ok(cmd(&[b"xZZ"]))]),
        ("inline unbalanced", b"set \"abc\nPING\n", vec![Ok(rejected(UnbalancedQuotes)), Ok(cmd(&[b"PING"]))]),
        ("inline quote then text", b"\"a\"b\nPING\n", vec![Ok(rejected(UnbalancedQuotes)), Ok(cmd(&[b"PING"]))]),
        ("inline single unbalanced", b"'abc\n", vec![Ok(rejected(UnbalancedQuotes))]),
        // Size limits (see `small()`): rejected, then the stream carries on.
        (
            "bulk too long",
            b"*3\r\n$3\r\nSET\r\n$11\r\nhello world\r\n$2\r\nhi\r\n*1\r\n$4\r\nPING\r\n",
            vec![Ok(rejected(BulkTooLong(11, 10))), Ok(cmd(&[b"PING"]))],
        ),
        (
            "huge bulk declared then bytes",
            b"*2\r\n$100\r\n0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\r\n$1\r\nx\r\n*1\r\n$1\r\nA\r\n",
            vec![Ok(rejected(BulkTooLong(100, 10))), Ok(cmd(&[b"A"]))],
        ),
        (
            "array too long",
            b"*5\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n$1\r\ne\r\n*1\r\n$1\r\nB\r\n",
            vec![Ok(rejected(ArrayTooLong(5, 4))), Ok(cmd(&[b"B"]))],
        ),
        (
            "request too long",
            b"*3\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n*1\r\n$1\r\nC\r\n",
            vec![Ok(rejected(RequestTooLong(25))), Ok(cmd(&[b"C"]))],
        ),
        (
            "request too long mid array",
            b"*4\r\n$10\r\n0123456789\r\n$10\r\n0123456789\r\n$9\r\n012345678\r\n$1\r\nx\r\nPING\r\n",
            vec![Ok(rejected(RequestTooLong(25))), Ok(cmd(&[b"PING"]))],
        ),
        (
            "rejected in a pipeline keeps its place",
            b"*1\r\n$1\r\nA\r\n*1\r\n$11\r\nhello world\r\n*1\r\n$1\r\nB\r\n",
            vec![Ok(cmd(&[b"A"])), Ok(rejected(BulkTooLong(11, 10))), Ok(cmd(&[b"B"]))],
        ),
        (
            "inline too long",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nPING\r\n",
            vec![Ok(rejected(InlineTooLong)), Ok(cmd(&[b"PING"]))],
        ),
        ("inline at the limit", b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", vec![Ok(cmd(&[b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]))]),
        // Protocol errors.
        ("non-bulk element", b"*2\r\n$3\r\nGET\r\n:1\r\n", vec![Err(FrameError::ExpectedBulk(':'))]),
        ("simple element", b"*1\r\n+x\r\n", vec![Err(FrameError::ExpectedBulk('+'))]),
        ("bad array length", b"*x\r\n", vec![Err(FrameError::InvalidMultibulkLength)]),
        ("negative array length", b"*-2\r\n", vec![Err(FrameError::InvalidMultibulkLength)]),
        ("plus array length", b"*+1\r\n", vec![Err(FrameError::InvalidMultibulkLength)]),
        ("leading zero array length", b"*01\r\n", vec![Err(FrameError::InvalidMultibulkLength)]),
        ("overflowing array length", b"*99999999999999999999\r\n", vec![Err(FrameError::InvalidMultibulkLength)]),
        ("endless array header", b"*111111111111111111111111", vec![Err(FrameError::InvalidMultibulkLength)]),
        ("array header cr without lf", b"*1\rx", vec![Err(FrameError::InvalidMultibulkLength)]),
        ("null bulk", b"*1\r\n$-1\r\n", vec![Err(FrameError::InvalidBulkLength)]),
        ("bad bulk length", b"*1\r\n$abc\r\n", vec![Err(FrameError::InvalidBulkLength)]),
        ("empty bulk length", b"*1\r\n$\r\n", vec![Err(FrameError::InvalidBulkLength)]),
        (
            "missing crlf after bulk",
            b"*1\r\n$3\r\nfooXY",
            vec![Err(FrameError::Other("bulk string not followed by CRLF".into()))],
        ),
        (
            "garbage after rejected bulk",
            b"*2\r\n$11\r\nhello world\r\n:1\r\n",
            vec![Ok(rejected(BulkTooLong(11, 10))), Err(FrameError::ExpectedBulk(':'))],
        ),
    ];
    for (name, input, want) in cases {
        let (got, _) = decode_all(small(), input);
        assert_eq!(got, want, "{name}: whole");
        for chunk in [1, 2, 3, 7] {
            let (got, _) = decode_chunked(small(), input, chunk);
            assert_eq!(got, want, "{name}: chunks of {chunk}");
        }
    }
}

#[test]
fn half_frames_need_more_and_consume_nothing() {
    let full: &[u8] = b"*2\r\n$4\r\nPING\r\n$3\r\nfoo\r\n";
    for cut in 0..full.len() {
        let mut dec = Decoder::new(Limits::default());
        let mut buf = BytesMut::from(&full[..cut]);
        assert_eq!(dec.decode(&mut buf), Ok(None), "cut at {cut}");
        assert_eq!(buf.len(), cut, "cut at {cut}: nothing consumed");
        buf.extend_from_slice(&full[cut..]);
        assert_eq!(dec.decode(&mut buf), Ok(Some(cmd(&[b"PING", b"foo"]))));
        assert!(buf.is_empty());
    }
}

#[test]
fn arguments_do_not_borrow_the_read_buffer() {
    // The connection decodes several requests ahead and keeps reading into the same buffer:
    // a decoded request must not change when the buffer is reused.
    let mut dec = Decoder::default();
    let mut buf = BytesMut::from(&b"*2\r\n$5\r\nhello\r\n$1\r\nx\r\n"[..]);
    let Ok(Some(Request::Command(args))) = dec.decode(&mut buf) else {
        panic!("expected a command");
    };
    assert!(buf.is_empty());
    buf.extend_from_slice(b"*2\r\n$5\r\nWORLD\r\n$1\r\ny\r\n");
    assert_eq!(args, Args::from_slices(["hello", "x"]));
    assert_eq!(args.get(0), Some(&b"hello"[..]));
}

#[test]
fn oversized_bulk_discarded_across_many_chunks() {
    let limits = Limits {
        max_bulk_len: 1024,
        ..Limits::default()
    };
    let mut dec = Decoder::new(limits);
    let mut buf = BytesMut::new();
    let payload = vec![b'z'; 100_000];
    buf.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$100000\r\n");
    buf.extend_from_slice(&payload[..10]);
    assert_eq!(
        dec.decode(&mut buf),
        Ok(Some(Request::Rejected(RejectReason::BulkTooLong(
            100_000, 1024
        ))))
    );
    assert!(
        buf.is_empty(),
        "buffered part of the oversized bulk is dropped at once"
    );
    // The rest arrives in pieces; nothing is ever buffered beyond one piece.
    for piece in payload[10..].chunks(4096) {
        buf.extend_from_slice(piece);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert!(buf.is_empty());
    }
    // The CRLF, the last element and the next request, split awkwardly.
    for piece in [
        &b"\r"[..],
        b"\n$",
        b"1\r",
        b"\nv\r\n*1\r\n$4\r\nPI",
        b"NG\r\n",
    ] {
        buf.extend_from_slice(piece);
        let got = dec.decode(&mut buf);
        if piece.ends_with(b"NG\r\n") {
            assert_eq!(got, Ok(Some(cmd(&[b"PING"]))));
        } else {
            assert_eq!(got, Ok(None));
        }
    }
    assert!(buf.is_empty());
}

#[test]
fn oversized_inline_discarded_across_chunks() {
    let mut dec = Decoder::new(small());
    let mut buf = BytesMut::from(&b"x"[..]);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    buf.extend_from_slice(&[b'x'; 40]);
    assert_eq!(
        dec.decode(&mut buf),
        Ok(Some(Request::Rejected(RejectReason::InlineTooLong)))
    );
    buf.extend_from_slice(&[b'y'; 40]);
    assert_eq!(dec.decode(&mut buf), Ok(None));
    assert!(buf.is_empty());
    buf.extend_from_slice(b"yyy\r\nPING\r\n");
    assert_eq!(dec.decode(&mut buf), Ok(Some(cmd(&[b"PING"]))));
}

#[test]
fn array_too_long_rejected_before_elements_arrive() {
    let mut dec = Decoder::new(small());
    let mut buf = BytesMut::from(&b"*1000\r\n"[..]);
    assert_eq!(
        dec.decode(&mut buf),
        Ok(Some(Request::Rejected(RejectReason::ArrayTooLong(1000, 4))))
    );
    for _ in 0..1000 {
        buf.extend_from_slice(b"$1\r\nx\r\n");
        assert_eq!(dec.decode(&mut buf), Ok(None));
    }
    buf.extend_from_slice(b"PING\n");
    assert_eq!(dec.decode(&mut buf), Ok(Some(cmd(&[b"PING"]))));
}

#[test]
fn byte_at_a_time_large_request() {
    // Many elements fed one byte at a time: exercises resuming a half-scanned frame.
    let mut input = b"*200\r\n".to_vec();
    let mut want = Vec::new();
    for i in 0..200 {
        let arg = format!("arg{i}");
        input.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        want.push(arg);
    }
    let (got, left) = decode_chunked(Limits::default(), &input, 1);
    assert_eq!(got, vec![Ok(Request::Command(Args::from_slices(want)))]);
    assert_eq!(left, 0);
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A cheap stand-in for fuzzing: every short byte string over a RESP-ish alphabet.
    let alphabet: &[u8] = b"*$:+-01\r\n\"'\\x ";
    let mut stack = vec![Vec::new()];
    while let Some(input) = stack.pop() {
        let _ = decode_all(small(), &input);
        let _ = decode_chunked(small(), &input, 1);
        if input.len() < 5 {
            for &b in alphabet {
                let mut next = input.clone();
                next.push(b);
                stack.push(next);
            }
        }
    }
}

#[test]
fn recycled_argument_vectors_are_refilled_with_only_the_new_request() {
    let mut d = Decoder::new(Limits::default());
    let mut buf = BytesMut::from(
        &b"*4\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n$2\r\nEX\r\n*1\r\n$4\r\nPING\r\n"[..],
    );
    let Ok(Some(Request::Command(first))) = d.decode(&mut buf) else {
        panic!("first request")
    };
    assert_eq!(first.len(), 4);
    let capacity = first.capacity();
    d.recycle(first);
    let Ok(Some(Request::Command(second))) = d.decode(&mut buf) else {
        panic!("second request")
    };
    assert_eq!(second, Args::from_slices(["PING"]));
    assert_eq!(second.capacity(), capacity, "the storage was reused");
    // Storage grown by a huge request is not kept.
    d.recycle(Args::from_slices([vec![b'x'; 100_000]]));
    let mut buf = BytesMut::from(&b"*1\r\n$4\r\nPING\r\n"[..]);
    let Ok(Some(Request::Command(third))) = d.decode(&mut buf) else {
        panic!("third request")
    };
    assert!(third.capacity() < 100_000);
}

#[test]
fn before_sign_in_a_long_array_or_bulk_fails_at_its_header() {
    let mut dec = Decoder::new(Limits::default());
    dec.set_unauthenticated(true);
    // AUTH and HELLO fit the bounds.
    let mut buf = BytesMut::from(&b"*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$1\r\np\r\n"[..]);
    assert_eq!(dec.decode(&mut buf), Ok(Some(cmd(&[b"AUTH", b"u", b"p"]))));
    // Eleven arguments: refused on the header alone, nothing else has to arrive.
    let mut buf = BytesMut::from(&b"*11\r\n"[..]);
    assert_eq!(
        dec.decode(&mut buf),
        Err(FrameError::UnauthenticatedMultibulk)
    );
    let mut dec = Decoder::new(Limits::default());
    dec.set_unauthenticated(true);
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$16385\r\n"[..]);
    assert_eq!(dec.decode(&mut buf), Err(FrameError::UnauthenticatedBulk));
    assert_eq!(
        FrameError::UnauthenticatedBulk.to_string(),
        "ERR Protocol error: unauthenticated bulk length"
    );
    // Once signed in, the usual limits apply.
    dec.set_unauthenticated(false);
    let mut dec2 = Decoder::new(Limits::default());
    let big = format!("*2\r\n$3\r\nGET\r\n$16385\r\n{}\r\n", "k".repeat(16385));
    let mut buf = BytesMut::from(big.as_bytes());
    assert!(matches!(
        dec2.decode(&mut buf),
        Ok(Some(Request::Command(_)))
    ));
    assert!(!dec.is_unauthenticated());
}
