//! Resynchronisation: refused data blocks are swallowed, half-sent requests wait, and an
//! over-long line is refused without losing the next command.

use super::*;

#[test]
fn refused_data_blocks_are_swallowed_and_the_stream_resynchronises() {
    // Too large (cap 16): swallowed even when sent in pieces, then the next command parses.
    let mut d = McDecoder::new(McLimits {
        max_value_len: 16,
        ..McLimits::default()
    });
    let mut buf = BytesMut::from(&b"set k 0 0 20\r\n0123456789"[..]);
    assert_eq!(
        d.decode(&mut buf),
        Ok(Some(McFrame::Request(McRequest::TooLarge {
            cmd: StoreCmd::Set,
            key: b("k"),
            noreply: false
        })))
    );
    assert_eq!(d.decode(&mut buf), Ok(None));
    buf.extend_from_slice(b"0123456789\r\nget k\r\n");
    assert_eq!(
        d.decode(&mut buf),
        Ok(Some(McFrame::Request(McRequest::Get {
            keys: vec![b("k")],
            cas: false
        })))
    );

    // A bad header with a readable length: the data is not executed as a command.
    let frames = decode_all(b"set k x 0 9\r\nflush_all\r\nversion\r\n");
    assert_eq!(
        frames,
        vec![err(McError::BadFormat), req(McRequest::Version)]
    );
    // A bad length: as memcached, the next line is read as a command.
    let frames = decode_all(b"set k 0 0 -1\r\nversion\r\n");
    assert_eq!(
        frames,
        vec![err(McError::BadFormat), req(McRequest::Version)]
    );
    // Meta set over the cap.
    let frames = decode_all(b"ms k 17 T0\r\n01234567890123456\r\nmn\r\n");
    assert_eq!(
        frames,
        vec![err(McError::TooLarge), req(McRequest::MetaNoop)]
    );
}

#[test]
fn half_sent_requests_wait_and_long_lines_are_refused() {
    let mut d = McDecoder::new(McLimits::default());
    let mut buf = BytesMut::from(&b"set k 0 0 3\r\nab"[..]);
    assert_eq!(d.decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), 15, "nothing consumed for a half request");
    buf.extend_from_slice(b"c\r\nge");
    assert!(matches!(
        d.decode(&mut buf),
        Ok(Some(McFrame::Request(McRequest::Store { .. })))
    ));
    assert_eq!(d.decode(&mut buf), Ok(None));

    let frames = decode_all(&[&[b'x'; 100][..], b"\r\nversion\r\n"].concat());
    assert_eq!(
        frames,
        vec![err(McError::LineTooLong), req(McRequest::Version)]
    );
    // A get line may be longer than other lines (limit 128 in this test).
    let long_get = format!("get {}\r\n", ["k"; 40].join(" "));
    assert!(matches!(
        one(long_get.as_bytes()),
        Ok(McFrame::Request(McRequest::Get { .. }))
    ));
}
