//! The bytes of every memcached reply, as memcached writes them.

use super::*;

#[test]
fn replies() {
    let cases: Vec<(McReply, &[u8])> = vec![
        (McReply::Status("STORED"), b"STORED\r\n"),
        (McReply::None, b""),
        (McReply::Number(42), b"42\r\n"),
        (
            McReply::Error("CLIENT_ERROR a\r\nb".into()),
            b"CLIENT_ERROR a  b\r\n",
        ),
        (
            McError::TooLarge.into(),
            b"SERVER_ERROR object too large for cache\r\n",
        ),
        (
            McReply::Values(vec![
                McValue {
                    key: b("a"),
                    flags: 3,
                    data: b("xy"),
                    cas: None,
                },
                McValue {
                    key: b("b"),
                    flags: 0,
                    data: b(""),
                    cas: Some(7),
                },
            ]),
            b"VALUE a 3 2\r\nxy\r\nVALUE b 0 0 7\r\n\r\nEND\r\n",
        ),
        (McReply::Values(vec![]), b"END\r\n"),
        (
            McReply::Stats(vec![("pid".into(), "1".into())]),
            b"STAT pid 1\r\nEND\r\n",
        ),
        (McReply::Version("1.6.21".into()), b"VERSION 1.6.21\r\n"),
        (
            McReply::Meta {
                code: "HD",
                flags: vec![],
                value: None,
            },
            b"HD\r\n",
        ),
        (
            McReply::Meta {
                code: "EN",
                flags: vec![b("Oab")],
                value: None,
            },
            b"EN Oab\r\n",
        ),
        (
            McReply::Meta {
                code: "VA",
                flags: vec![b("t-1")],
                value: Some(b("10")),
            },
            b"VA 2 t-1\r\n10\r\n",
        ),
    ];
    for (reply, want) in cases {
        let mut out = BytesMut::new();
        compose_mc(&reply, &mut out);
        assert_eq!(&out[..], want, "{reply:?}");
    }
}
