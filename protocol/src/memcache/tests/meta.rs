//! The meta commands: `mg`, `ms`, `ma`, base64 keys, and refused flags.

use super::*;

#[test]
fn meta_requests() {
    let mg = one(b"mg foo v t\r\n");
    let Ok(McFrame::Request(McRequest::Meta(m))) = mg else {
        panic!("{mg:?}")
    };
    assert_eq!(
        (m.cmd, &m.key[..], m.flags.value, &m.flags.returns[..]),
        (MetaCmd::Get, &b"foo"[..], true, &b"t"[..])
    );

    let ma = one(b"ma rl:1 v D2 J0 N60 MI\r\n");
    let Ok(McFrame::Request(McRequest::Meta(m))) = ma else {
        panic!("{ma:?}")
    };
    assert_eq!(m.cmd, MetaCmd::Arithmetic);
    assert_eq!(
        (m.flags.delta, m.flags.initial, m.flags.vivify, m.flags.mode),
        (Some(2), Some(0), Some(60), Some(b'I'))
    );

    let ms = one(b"ms k 2 T10 F3 c O99 q\r\nhi\r\n");
    let Ok(McFrame::Request(McRequest::Meta(m))) = ms else {
        panic!("{ms:?}")
    };
    assert_eq!(m.data, Some(b("hi")));
    assert_eq!(
        (m.flags.ttl, m.flags.client_flags, m.flags.quiet),
        (Some(10), Some(3), true)
    );
    assert_eq!(m.flags.returns, b"cO".to_vec());
    assert_eq!(m.flags.opaque, Some(b("99")));

    let b64 = one(b"mg Zm9v b k v\r\n");
    let Ok(McFrame::Request(McRequest::Meta(m))) = b64 else {
        panic!("{b64:?}")
    };
    assert_eq!((&m.key[..], &m.raw_key[..]), (&b"foo"[..], &b"Zm9v"[..]));

    assert_eq!(one(b"mg k v v\r\n"), err(McError::DuplicateFlag));
    assert_eq!(one(b"mg k !\r\n"), err(McError::InvalidFlag));
    assert_eq!(one(b"ma k Dx\r\n"), err(McError::BadToken));
    assert_eq!(one(b"mg\r\n"), err(McError::BadFormat));
    assert_eq!(one(b"mg Zm9 b\r\n"), err(McError::BadBase64));
    assert_eq!(one(b"ms k x\r\n"), err(McError::BadDataChunk));
}
