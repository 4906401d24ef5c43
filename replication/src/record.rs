//! Stream records and their wire form.
//!
//! Every record is a RESP array of bulk strings, so the stream is framed exactly like client
//! requests (a replica's link and `redis-cli --replica` can both read it) and offsets count bytes
//! the way Redis counts them. Integers that a replica only copies (keys, state words, shapes)
//! travel as fixed-width little-endian bulks: they are copied, never printed, and fixed widths
//! make malformed input easy to refuse.
//!
//! | record | elements |
//! | --- | --- |
//! | rate state of one entry | `RPL.STATE <table: decimal> <key: 8 B LE> <shape: 0 or 16 B> <words: 8·n B>` (n = 0: the entry is gone) |
//! | rate state of many entries | `RPL.STATES <entries>`, see below |
//! | key-value item | `RPL.ITEM <key> <value> <flags: decimal> <cas: decimal> <expires_at ns: decimal, 0 = none>` |
//! | key-value item deleted | `RPL.DEL <key>` |
//! | rate state flushed | `RPL.FLUSH` |
//! | limit or tier change | `RPL.LIMIT <the RL.LIMIT / RL.TIER SET/DEL argument list, name first>` |
//! | heartbeat | `PING <primary clock: ns since the Unix epoch, decimal>` (once a second) |
//! | ack request | `REPLCONF GETACK *` (sent by WAIT, answered at once with `REPLCONF ACK`) |
//!
//! The shape is the 16 bytes `a` (LE) then `b` (LE) of `Change::State::shape`.
//!
//! `RPL.STATES` is what the primary's pump sends: the states of one drain packed into one bulk
//! (up to [`STATES_CHUNK`] bytes per record), each entry `<table: 1 B> <n words: 1 B> <flags:
//! 1 B> <key: 8 B LE> [<shape: 16 B>] <words: 8·n B LE>`. Flags: bit 0, a shape follows; bit 1,
//! the entry has the previous entry's shape (no bytes). Keys checked under one limit share
//! their shape, so an entry is typically 19 bytes where an `RPL.STATE` record is 77: most of
//! what a replica costs its primary is bytes (encoding, copying, and on loopback the kernel's
//! work on both ends).

use bytes::Bytes;
use ratelimitd_engine::{Change, ChangeRef, Item};

/// One record of the replication stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A state change drained from the primary's engine.
    Change(Change),
    /// Rate-state changes packed into one `RPL.STATES` record (all `Change::State`).
    States(Vec<Change>),
    /// `RL.LIMIT SET|DEL ...` or `RL.TIER SET|DEL ...`, replayed through the live parser.
    Limit(Vec<Bytes>),
    /// Heartbeat carrying the primary's clock reading (ns since the Unix epoch).
    Ping { primary_now: u64 },
    /// The primary asks for an immediate `REPLCONF ACK`.
    GetAck,
}

/// Why bytes from a primary are not a valid stream. The replica logs it, drops the link and
/// resynchronises; it never panics on them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("not a RESP array of bulk strings at this point ({0})")]
    Framing(&'static str),
    #[error("a record of {0} elements is more than the limit of {MAX_ELEMENTS}")]
    TooManyElements(u64),
    #[error("a bulk string of {0} bytes is more than the limit of {MAX_BULK} bytes")]
    BulkTooLong(u64),
    #[error("unknown record '{0}'")]
    Unknown(String),
    #[error("malformed {0} record")]
    Malformed(&'static str),
}

/// Most elements in one record (a limit change has at most a few dozen).
pub const MAX_ELEMENTS: u64 = 4096;
/// Largest bulk string in one record (a key-value item is bounded far below this).
pub const MAX_BULK: u64 = 64 * 1024 * 1024;
/// Most state words in one entry (the engine's largest state is a handful).
const MAX_WORDS: usize = 64;

/// Append the RESP array of bulk strings `parts` to `out`.
pub fn encode_array(parts: &[&[u8]], out: &mut Vec<u8>) {
    header_into(b'*', parts.len(), out);
    for p in parts {
        bulk_into(p, out);
    }
}

/// `<prefix><n>\r\n`, without formatting through a String (the pump writes one per element).
fn header_into(prefix: u8, n: usize, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push(prefix);
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

fn bulk_into(p: &[u8], out: &mut Vec<u8>) {
    header_into(b'$', p.len(), out);
    out.extend_from_slice(p);
    out.extend_from_slice(b"\r\n");
}

/// Append one drained change's wire form to `out`. Rate state, the bulk of the stream, is
/// written without any allocation: the pump calls this once per changed key.
pub fn encode_change(change: ChangeRef<'_>, out: &mut Vec<u8>) {
    match change {
        ChangeRef::State {
            table,
            key,
            words,
            shape,
        } => {
            header_into(b'*', 5, out);
            bulk_into(b"RPL.STATE", out);
            let mut t = [0u8; 3];
            let digits = decimal_u8(table, &mut t);
            bulk_into(digits, out);
            bulk_into(&key.to_le_bytes(), out);
            match shape {
                Some((a, b)) => {
                    header_into(b'$', 16, out);
                    out.extend_from_slice(&a.to_le_bytes());
                    out.extend_from_slice(&b.to_le_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                None => bulk_into(b"", out),
            }
            header_into(b'$', words.len() * 8, out);
            for word in words {
                out.extend_from_slice(&word.to_le_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        ChangeRef::Item {
            key,
            item: Some(item),
        } => {
            let flags = item.flags.to_string();
            let cas = item.cas.to_string();
            let exp = item.expires_at.unwrap_or(0).to_string();
            encode_array(
                &[
                    b"RPL.ITEM",
                    key,
                    &item.value,
                    flags.as_bytes(),
                    cas.as_bytes(),
                    exp.as_bytes(),
                ],
                out,
            );
        }
        ChangeRef::Item { key, item: None } => encode_array(&[b"RPL.DEL", key], out),
        ChangeRef::Flush => encode_array(&[b"RPL.FLUSH"], out),
    }
}

/// The decimal digits of `n`, in `buf`.
fn decimal_u8(n: u8, buf: &mut [u8; 3]) -> &[u8] {
    let (h, t, o) = (n / 100, n / 10 % 10, n % 10);
    buf[0] = b'0' + h;
    buf[1] = b'0' + t;
    buf[2] = b'0' + o;
    let skip = if h > 0 {
        0
    } else if t > 0 {
        1
    } else {
        2
    };
    &buf[skip..]
}

/// Most bytes of entries in one `RPL.STATES` record.
pub const STATES_CHUNK: usize = 64 * 1024;

const HAS_SHAPE: u8 = 1;
const SAME_SHAPE: u8 = 2;

/// Packs rate states into `RPL.STATES` records. The buffer is kept between uses, so a pump
/// that reuses one allocates nothing in the steady state.
#[derive(Debug, Default)]
pub struct StatesWriter {
    entries: Vec<u8>,
    last_shape: Option<(u64, u64)>,
}

impl StatesWriter {
    /// Add one state; a record is written to `out` whenever [`STATES_CHUNK`] bytes are pending.
    pub fn push(
        &mut self,
        table: u8,
        key: u64,
        words: &[u64],
        shape: Option<(u64, u64)>,
        out: &mut Vec<u8>,
    ) {
        // A state has at most a handful of words; anything longer is not ours to send.
        let n = u8::try_from(words.len().min(MAX_WORDS)).unwrap_or(u8::MAX);
        let flags = match shape {
            None => 0,
            Some(_) if shape == self.last_shape => SAME_SHAPE,
            Some(_) => HAS_SHAPE,
        };
        self.entries.extend_from_slice(&[table, n, flags]);
        self.entries.extend_from_slice(&key.to_le_bytes());
        if let (HAS_SHAPE, Some((a, b))) = (flags, shape) {
            self.entries.extend_from_slice(&a.to_le_bytes());
            self.entries.extend_from_slice(&b.to_le_bytes());
        }
        if shape.is_some() {
            self.last_shape = shape;
        }
        for w in &words[..usize::from(n)] {
            self.entries.extend_from_slice(&w.to_le_bytes());
        }
        if self.entries.len() >= STATES_CHUNK {
            self.finish(out);
        }
    }

    /// Write what is pending as one record (nothing if nothing is).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.entries.is_empty() {
            return;
        }
        header_into(b'*', 2, out);
        bulk_into(b"RPL.STATES", out);
        bulk_into(&self.entries, out);
        self.entries.clear();
        self.last_shape = None;
    }
}

/// The first `n` bytes of `b`, which moves past them.
fn split_off<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], StreamError> {
    if b.len() < n {
        return Err(StreamError::Malformed("RPL.STATES"));
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

/// The entries of an `RPL.STATES` bulk.
fn parse_states(mut b: &[u8]) -> Result<Vec<Change>, StreamError> {
    const BAD: StreamError = StreamError::Malformed("RPL.STATES");
    let mut out = Vec::new();
    let mut last_shape = None;
    while !b.is_empty() {
        let head = split_off(&mut b, 3)?;
        let (table, n, flags) = (head[0], usize::from(head[1]), head[2]);
        if n > MAX_WORDS || flags > SAME_SHAPE {
            return Err(BAD);
        }
        let key = le64(split_off(&mut b, 8)?).ok_or(BAD)?;
        let shape = match flags {
            HAS_SHAPE => {
                let s = split_off(&mut b, 16)?;
                last_shape = Some((le64(&s[..8]).ok_or(BAD)?, le64(&s[8..]).ok_or(BAD)?));
                last_shape
            }
            SAME_SHAPE => Some(last_shape.ok_or(BAD)?),
            _ => None,
        };
        let words = split_off(&mut b, 8 * n)?
            .chunks_exact(8)
            .filter_map(le64)
            .collect();
        out.push(Change::State {
            table,
            key,
            words,
            shape,
        });
    }
    Ok(out)
}

/// Append `record`'s wire form to `out`.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    match record {
        Record::Change(change) => encode_change(change.as_ref(), out),
        Record::States(changes) => {
            let mut w = StatesWriter::default();
            for c in changes {
                if let Change::State {
                    table,
                    key,
                    words,
                    shape,
                } = c
                {
                    w.push(*table, *key, words, *shape, out);
                }
            }
            w.finish(out);
        }
        Record::Limit(args) => {
            let mut parts: Vec<&[u8]> = Vec::with_capacity(args.len() + 1);
            parts.push(b"RPL.LIMIT");
            parts.extend(args.iter().map(|a| &a[..]));
            encode_array(&parts, out);
        }
        Record::Ping { primary_now } => {
            let now = primary_now.to_string();
            encode_array(&[b"PING", now.as_bytes()], out);
        }
        Record::GetAck => encode_array(&[b"REPLCONF", b"GETACK", b"*"], out),
    }
}

/// The wire form of one record.
pub fn to_bytes(record: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    encode(record, &mut out);
    out
}

/// Read a `<prefix><decimal>\r\n` header at `pos`. Ok(None): not complete yet.
fn header(buf: &[u8], pos: usize, prefix: u8) -> Result<Option<(i64, usize)>, StreamError> {
    let Some(&first) = buf.get(pos) else {
        return Ok(None);
    };
    if first != prefix {
        return Err(StreamError::Framing(if prefix == b'*' {
            "expected '*'"
        } else {
            "expected '$'"
        }));
    }
    let rest = &buf[pos + 1..];
    let Some(cr) = rest.iter().take(21).position(|&b| b == b'\r') else {
        return if rest.len() > 20 {
            Err(StreamError::Framing("length header too long"))
        } else {
            Ok(None)
        };
    };
    match rest.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(StreamError::Framing("header not ended by CRLF")),
    }
    let text = std::str::from_utf8(&rest[..cr]).map_err(|_| StreamError::Framing("bad length"))?;
    let n: i64 = text
        .parse()
        .map_err(|_| StreamError::Framing("bad length"))?;
    Ok(Some((n, pos + 1 + cr + 2)))
}

/// One array's elements and the bytes it took.
pub type Split<'a> = (Vec<&'a [u8]>, usize);

/// Split one RESP array of bulk strings off the front of `buf`: its elements and the bytes it
/// took. Ok(None): more bytes are needed. Bounded by [`MAX_ELEMENTS`] and [`MAX_BULK`] before
/// anything is allocated for them.
pub fn split_array(buf: &[u8]) -> Result<Option<Split<'_>>, StreamError> {
    let Some((count, mut pos)) = header(buf, 0, b'*')? else {
        return Ok(None);
    };
    if count < 1 {
        return Err(StreamError::Framing("empty array"));
    }
    if count as u64 > MAX_ELEMENTS {
        return Err(StreamError::TooManyElements(count as u64));
    }
    let mut parts = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let Some((len, start)) = header(buf, pos, b'$')? else {
            return Ok(None);
        };
        if len < 0 {
            return Err(StreamError::Framing("null bulk string"));
        }
        if len as u64 > MAX_BULK {
            return Err(StreamError::BulkTooLong(len as u64));
        }
        let end = start + len as usize;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(StreamError::Framing("bulk string not ended by CRLF"));
        }
        parts.push(&buf[start..end]);
        pos = end + 2;
    }
    Ok(Some((parts, pos)))
}

fn decimal<T: std::str::FromStr>(b: &[u8], what: &'static str) -> Result<T, StreamError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(StreamError::Malformed(what))
}

fn le64(b: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Decode the record at the front of `buf`. Ok(None): more bytes are needed. On success,
/// also returns how many bytes the record took (what the replica's offset advances by).
/// Never panics, whatever the bytes.
pub fn decode(buf: &[u8]) -> Result<Option<(Record, usize)>, StreamError> {
    let Some((parts, used)) = split_array(buf)? else {
        return Ok(None);
    };
    Ok(Some((parse(&parts)?, used)))
}

/// Turn one array's elements into a record.
pub fn parse(parts: &[&[u8]]) -> Result<Record, StreamError> {
    let name = parts.first().copied().unwrap_or_default();
    let upper = name.to_ascii_uppercase();
    let record = match &upper[..] {
        b"RPL.STATE" => {
            let [_, table, key, shape, words] = parts else {
                return Err(StreamError::Malformed("RPL.STATE"));
            };
            let table: u8 = decimal(table, "RPL.STATE")?;
            let key = le64(key).ok_or(StreamError::Malformed("RPL.STATE"))?;
            let shape = match shape.len() {
                0 => None,
                16 => Some((
                    le64(&shape[..8]).unwrap_or_default(),
                    le64(&shape[8..]).unwrap_or_default(),
                )),
                _ => return Err(StreamError::Malformed("RPL.STATE")),
            };
            if words.len() % 8 != 0 || words.len() / 8 > MAX_WORDS {
                return Err(StreamError::Malformed("RPL.STATE"));
            }
            let words = words.chunks_exact(8).filter_map(le64).collect::<Vec<u64>>();
            Record::Change(Change::State {
                table,
                key,
                words,
                shape,
            })
        }
        b"RPL.STATES" => {
            let [_, entries] = parts else {
                return Err(StreamError::Malformed("RPL.STATES"));
            };
            Record::States(parse_states(entries)?)
        }
        b"RPL.ITEM" => {
            let [_, key, value, flags, cas, exp] = parts else {
                return Err(StreamError::Malformed("RPL.ITEM"));
            };
            let exp: u64 = decimal(exp, "RPL.ITEM")?;
            Record::Change(Change::Item {
                key: key.to_vec(),
                item: Some(Item {
                    value: value.to_vec(),
                    flags: decimal(flags, "RPL.ITEM")?,
                    cas: decimal(cas, "RPL.ITEM")?,
                    expires_at: (exp != 0).then_some(exp),
                }),
            })
        }
        b"RPL.DEL" => {
            let [_, key] = parts else {
                return Err(StreamError::Malformed("RPL.DEL"));
            };
            Record::Change(Change::Item {
                key: key.to_vec(),
                item: None,
            })
        }
        b"RPL.FLUSH" => {
            if parts.len() != 1 {
                return Err(StreamError::Malformed("RPL.FLUSH"));
            }
            Record::Change(Change::Flush)
        }
        b"RPL.LIMIT" => {
            if parts.len() < 3 {
                return Err(StreamError::Malformed("RPL.LIMIT"));
            }
            Record::Limit(
                parts[1..]
                    .iter()
                    .map(|p| Bytes::copy_from_slice(p))
                    .collect(),
            )
        }
        b"PING" => match parts {
            [_] => Record::Ping { primary_now: 0 },
            [_, now] => Record::Ping {
                primary_now: decimal(now, "PING")?,
            },
            _ => return Err(StreamError::Malformed("PING")),
        },
        b"REPLCONF" => {
            let sub = parts.get(1).map(|s| s.to_ascii_uppercase());
            if sub.as_deref() == Some(b"GETACK") {
                Record::GetAck
            } else {
                return Err(StreamError::Malformed("REPLCONF"));
            }
        }
        _ => {
            return Err(StreamError::Unknown(
                String::from_utf8_lossy(&name[..name.len().min(32)]).into_owned(),
            ))
        }
    };
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        vec![
            Record::Change(Change::State {
                table: 0,
                key: 0xdead_beef_0123_4567,
                words: vec![1, u64::MAX],
                shape: Some((7, 9)),
            }),
            Record::Change(Change::State {
                table: 2,
                key: 1,
                words: vec![],
                shape: None,
            }),
            Record::Change(Change::Item {
                key: b"k\r\n\0".to_vec(),
                item: Some(Item {
                    value: b"42".to_vec(),
                    flags: 3,
                    cas: 17,
                    expires_at: Some(1_700_000_000_000_000_000),
                }),
            }),
            Record::Change(Change::Item {
                key: b"k".to_vec(),
                item: Some(Item::default()),
            }),
            Record::Change(Change::Item {
                key: b"gone".to_vec(),
                item: None,
            }),
            Record::Change(Change::Flush),
            Record::States(vec![
                Change::State {
                    table: 0,
                    key: 5,
                    words: vec![7],
                    shape: Some((1, 2)),
                },
                Change::State {
                    table: 0,
                    key: 6,
                    words: vec![8],
                    shape: Some((1, 2)),
                },
                Change::State {
                    table: 2,
                    key: 7,
                    words: vec![9],
                    shape: None,
                },
                Change::State {
                    table: 1,
                    key: 8,
                    words: vec![1, 2, 3],
                    shape: Some((1, 2)),
                },
                Change::State {
                    table: 1,
                    key: 9,
                    words: vec![],
                    shape: None,
                },
                Change::State {
                    table: 0,
                    key: u64::MAX,
                    words: vec![u64::MAX],
                    shape: Some((u64::MAX, 0)),
                },
            ]),
            Record::Limit(vec![
                Bytes::from_static(b"RL.LIMIT"),
                Bytes::from_static(b"SET"),
                Bytes::from_static(b"DEFAULT"),
                Bytes::from_static(b"RATE"),
                Bytes::from_static(b"10/1s"),
            ]),
            Record::Ping {
                primary_now: 1_700_000_000_123_456_789,
            },
            Record::GetAck,
        ]
    }

    #[test]
    fn every_record_round_trips_and_reports_its_length() {
        let mut stream = Vec::new();
        for r in samples() {
            encode(&r, &mut stream);
        }
        let mut pos = 0;
        for want in samples() {
            let (got, used) = decode(&stream[pos..]).expect("valid").expect("complete");
            assert_eq!(got, want);
            assert_eq!(used, to_bytes(&want).len());
            pos += used;
        }
        assert_eq!(pos, stream.len());
    }

    #[test]
    fn state_records_are_the_documented_array_byte_for_byte() {
        // encode_change writes the array by hand (no allocation); it must be the same bytes
        // as the generic array writer given the documented elements.
        for (table, words, shape) in [
            (0u8, vec![1u64, u64::MAX], Some((7u64, 9u64))),
            (9, vec![], None),
            (10, vec![42], None),
            (100, vec![1, 2, 3], Some((0, u64::MAX))),
            (255, vec![5], None),
        ] {
            let key = 0x0123_4567_89ab_cdefu64;
            let mut got = Vec::new();
            encode_change(
                ChangeRef::State {
                    table,
                    key,
                    words: &words,
                    shape,
                },
                &mut got,
            );
            let shape_bytes: Vec<u8> = shape
                .map(|(a, b)| [a.to_le_bytes(), b.to_le_bytes()].concat())
                .unwrap_or_default();
            let word_bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let want = to_bytes_of(&[
                b"RPL.STATE",
                table.to_string().as_bytes(),
                &key.to_le_bytes(),
                &shape_bytes,
                &word_bytes,
            ]);
            assert_eq!(got, want, "table {table}");
        }
        let mut big = Vec::new();
        encode_array(&[&[b'x'; 1234]], &mut big);
        assert!(big.starts_with(b"*1\r\n$1234\r\nxx"));
    }

    #[test]
    fn many_states_split_into_records_of_bounded_size_and_read_back_in_order() {
        let states: Vec<Change> = (0..10_000u64)
            .map(|i| Change::State {
                table: (i % 3) as u8,
                key: i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                words: vec![i; (i % 4) as usize],
                shape: (i % 3 != 2).then_some((i / 1000, 7)),
            })
            .collect();
        let mut w = StatesWriter::default();
        let mut out = Vec::new();
        for c in &states {
            let Change::State {
                table,
                key,
                words,
                shape,
            } = c
            else {
                unreachable!()
            };
            w.push(*table, *key, words, *shape, &mut out);
        }
        w.finish(&mut out);
        let mut got = Vec::new();
        let mut pos = 0;
        let mut records = 0;
        while pos < out.len() {
            let (r, used) = decode(&out[pos..]).expect("valid").expect("complete");
            assert!(used < STATES_CHUNK + 1024, "a record of {used} bytes");
            let Record::States(v) = r else {
                panic!("not RPL.STATES: {r:?}")
            };
            got.extend(v);
            pos += used;
            records += 1;
        }
        assert!(records > 1, "split over several records");
        assert_eq!(got, states);
        // Typically 19-27 bytes per entry, against 77 for an RPL.STATE record.
        assert!(out.len() < states.len() * 30, "{} bytes", out.len());
    }

    #[test]
    fn a_record_cut_anywhere_is_incomplete_not_an_error() {
        for r in samples() {
            let bytes = to_bytes(&r);
            for cut in 0..bytes.len() {
                assert_eq!(decode(&bytes[..cut]), Ok(None), "{r:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn malformed_records_are_errors_never_panics() {
        let bad: Vec<Vec<u8>> = vec![
            b"+OK\r\n".to_vec(),
            b"*0\r\n".to_vec(),
            b"*-1\r\n".to_vec(),
            b"*1\r\n:5\r\n".to_vec(),
            b"*1\r\n$3\r\nfooXX".to_vec(),
            b"*99999999\r\n".to_vec(),
            b"*1\r\n$999999999999\r\n".to_vec(),
            b"*1\r\n$abc\r\n".to_vec(),
            b"*1\r\n$-1\r\n".to_vec(),
            to_bytes_of(&[b"RPL.STATE", b"0", b"short", b"", b""]),
            to_bytes_of(&[b"RPL.STATE", b"300", &[0; 8], b"", b""]),
            to_bytes_of(&[b"RPL.STATE", b"0", &[0; 8], b"odd", b""]),
            to_bytes_of(&[b"RPL.STATE", b"0", &[0; 8], b"", b"1234567"]),
            to_bytes_of(&[b"RPL.ITEM", b"k", b"v", b"x", b"1", b"0"]),
            to_bytes_of(&[b"RPL.STATES"]),
            to_bytes_of(&[b"RPL.STATES", &[0, 1, 0, 1, 2, 3]]),
            to_bytes_of(&[b"RPL.STATES", &[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]]),
            to_bytes_of(&[b"RPL.STATES", &[0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0]]),
            to_bytes_of(&[b"RPL.STATES", &[0, 65, 0, 0, 0, 0, 0, 0, 0, 0, 0]]),
            to_bytes_of(&[b"RPL.STATES", &[0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 9]]),
            to_bytes_of(&[b"RPL.DEL"]),
            to_bytes_of(&[b"RPL.FLUSH", b"x"]),
            to_bytes_of(&[b"RPL.LIMIT", b"RL.LIMIT"]),
            to_bytes_of(&[b"PING", b"soon"]),
            to_bytes_of(&[b"SET", b"a", b"b"]),
        ];
        for b in bad {
            assert!(decode(&b).is_err(), "{:?}", String::from_utf8_lossy(&b));
        }
    }

    fn to_bytes_of(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_array(parts, &mut out);
        out
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic fuzz: xorshift bytes, and mutations of valid records.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let valid: Vec<u8> = samples().iter().flat_map(to_bytes).collect();
        for _ in 0..20_000 {
            let mut b = valid.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
            }
            let cut = (next() as usize) % b.len();
            let mut pos = 0;
            while let Ok(Some((_, used))) = decode(&b[pos..cut]) {
                pos += used;
            }
        }
    }
}
