//! The replication backlog: the last `--repl-backlog-size` bytes of the stream, kept so that a
//! replica that lost its link for a moment gets only what it missed (`+CONTINUE`) instead of a
//! full resync.
//!
//! A fixed ring allocated once: appending never allocates, and memory is bounded by the size
//! the operator chose. Offsets follow Redis: bytes are numbered from 1, and the backlog holds
//! bytes `first_byte_offset() ..= end_offset()`.

/// A ring buffer of the stream's most recent bytes, with their offsets.
#[derive(Debug, Clone)]
pub struct Backlog {
    buf: Vec<u8>,
    /// Where the next byte goes.
    head: usize,
    /// Bytes held (at most `buf.len()`).
    histlen: usize,
    /// Offset of the last byte appended (the stream's `master_repl_offset`).
    end: u64,
}

impl Backlog {
    /// An empty backlog of `size` bytes (at least 16) whose next byte will be `offset + 1`.
    pub fn new(size: usize, offset: u64) -> Backlog {
        Backlog {
            buf: vec![0; size.max(16)],
            head: 0,
            histlen: 0,
            end: offset,
        }
    }

    /// Capacity in bytes (`repl_backlog_size`).
    pub fn size(&self) -> usize {
        self.buf.len()
    }

    /// Bytes held (`repl_backlog_histlen`).
    pub fn histlen(&self) -> usize {
        self.histlen
    }

    /// Offset of the oldest byte held (`repl_backlog_first_byte_offset`); `end_offset() + 1`
    /// when empty.
    pub fn first_byte_offset(&self) -> u64 {
        self.end + 1 - self.histlen as u64
    }

    /// Offset of the newest byte (`master_repl_offset`).
    pub fn end_offset(&self) -> u64 {
        self.end
    }

    /// Append stream bytes; the oldest fall out when it is full.
    pub fn append(&mut self, data: &[u8]) {
        let cap = self.buf.len();
        self.end += data.len() as u64;
        let data = if data.len() > cap {
            &data[data.len() - cap..]
        } else {
            data
        };
        let first = (cap - self.head).min(data.len());
        self.buf[self.head..self.head + first].copy_from_slice(&data[..first]);
        let rest = &data[first..];
        self.buf[..rest.len()].copy_from_slice(rest);
        self.head = (self.head + data.len()) % cap;
        self.histlen = (self.histlen + data.len()).min(cap);
    }

    /// True when the backlog can serve a replica whose next wanted byte is `from`
    /// (empty tail included: a replica that is fully up to date).
    pub fn covers(&self, from: u64) -> bool {
        from >= self.first_byte_offset() && from <= self.end + 1
    }

    /// The bytes from offset `from` to the end, or None if they are no longer (or not yet) held.
    pub fn tail_from(&self, from: u64) -> Option<Vec<u8>> {
        if !self.covers(from) {
            return None;
        }
        let len = (self.end + 1 - from) as usize;
        let cap = self.buf.len();
        let start = (self.head + cap - len) % cap;
        let mut out = Vec::with_capacity(len);
        if start + len <= cap {
            out.extend_from_slice(&self.buf[start..start + len]);
        } else {
            out.extend_from_slice(&self.buf[start..]);
            out.extend_from_slice(&self.buf[..len - (cap - start)]);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_redis() {
        let mut b = Backlog::new(16, 100);
        assert_eq!(b.first_byte_offset(), 101);
        assert_eq!(b.histlen(), 0);
        assert_eq!(b.tail_from(101), Some(vec![]));
        b.append(b"hello");
        assert_eq!(b.end_offset(), 105);
        assert_eq!(b.first_byte_offset(), 101);
        assert_eq!(b.tail_from(101).as_deref(), Some(&b"hello"[..]));
        assert_eq!(b.tail_from(104).as_deref(), Some(&b"lo"[..]));
        assert_eq!(b.tail_from(106).as_deref(), Some(&b""[..]));
        assert_eq!(b.tail_from(107), None, "a replica ahead of us");
        assert_eq!(b.tail_from(100), None, "before the backlog");
    }

    #[test]
    fn wraps_and_keeps_the_newest_bytes() {
        let mut b = Backlog::new(16, 0);
        let mut all = Vec::new();
        for i in 0..100u8 {
            let chunk: Vec<u8> = (0..(i % 7 + 1)).map(|j| i.wrapping_mul(31) ^ j).collect();
            b.append(&chunk);
            all.extend_from_slice(&chunk);
            assert_eq!(b.end_offset(), all.len() as u64);
            let held = b.histlen();
            assert_eq!(held, all.len().min(16));
            let from = b.first_byte_offset();
            assert_eq!(b.tail_from(from).expect("held"), all[all.len() - held..]);
            assert_eq!(b.tail_from(from - 1), None);
        }
        // One append larger than the ring.
        let big: Vec<u8> = (0..40).collect();
        b.append(&big);
        assert_eq!(b.tail_from(b.first_byte_offset()).expect("held"), big[24..]);
    }
}
