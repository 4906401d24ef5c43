//! The full-sync payload: what follows `+FULLRESYNC <replid> <offset>` as `$<len>\r\n<payload>`
//! (no trailing CRLF, like Redis's RDB transfer).
//!
//! ```text
//! "RLDSYNC1"                          8 bytes: name and format version
//! u32 LE   n                          number of limit/tier commands
//! n × (u32 LE len, RESP array)        RL.LIMIT SET ... / RL.TIER SET ... argument lists
//! u64 LE   len, bytes                 Engine::snapshot_state() (itself versioned + checksummed)
//! u64 LE   xxh3-64 of all the above
//! ```
//!
//! Limits travel as the commands that set them, so the replica applies them through the live
//! parser (and persists them in its own limits log) exactly as it would a client's command.

use crate::record::{encode_array, split_array};
use bytes::Bytes;
use xxhash_rust::xxh3::xxh3_64;

const MAGIC: &[u8; 8] = b"RLDSYNC1";

/// A decoded payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FullSync {
    /// `RL.LIMIT SET ...` and `RL.TIER SET ...` argument lists (command name first).
    pub limits: Vec<Vec<Bytes>>,
    /// The engine's state snapshot.
    pub state: Vec<u8>,
}

/// Why a payload was refused (the replica then retries the sync).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FullSyncError {
    #[error("not a ratelimitd full-sync payload")]
    BadMagic,
    #[error("payload cut short")]
    Truncated,
    #[error("payload checksum mismatch")]
    Checksum,
    #[error("malformed limit command in the payload")]
    BadLimit,
}

impl FullSync {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.state.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.limits.len() as u32).to_le_bytes());
        let mut cmd = Vec::new();
        for args in &self.limits {
            cmd.clear();
            let parts: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
            encode_array(&parts, &mut cmd);
            out.extend_from_slice(&(cmd.len() as u32).to_le_bytes());
            out.extend_from_slice(&cmd);
        }
        out.extend_from_slice(&(self.state.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.state);
        let sum = xxh3_64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<FullSync, FullSyncError> {
        if bytes.len() < MAGIC.len() + 4 + 8 + 8 {
            return Err(if bytes.starts_with(MAGIC) || bytes.len() < 8 {
                FullSyncError::Truncated
            } else {
                FullSyncError::BadMagic
            });
        }
        if &bytes[..8] != MAGIC {
            return Err(FullSyncError::BadMagic);
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        let sum = u64::from_le_bytes(sum.try_into().map_err(|_| FullSyncError::Truncated)?);
        if xxh3_64(body) != sum {
            return Err(FullSyncError::Checksum);
        }
        let mut r = Reader { b: body, pos: 8 };
        let n = r.u32()?;
        let mut limits = Vec::new();
        for _ in 0..n {
            let len = r.u32()? as usize;
            let cmd = r.take(len)?;
            match split_array(cmd) {
                Ok(Some((parts, used))) if used == cmd.len() => {
                    limits.push(parts.iter().map(|p| Bytes::copy_from_slice(p)).collect())
                }
                _ => return Err(FullSyncError::BadLimit),
            }
        }
        let len = usize::try_from(r.u64()?).map_err(|_| FullSyncError::Truncated)?;
        let state = r.take(len)?.to_vec();
        if r.pos != body.len() {
            return Err(FullSyncError::Truncated);
        }
        Ok(FullSync { limits, state })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FullSyncError> {
        let end = self.pos.checked_add(n).ok_or(FullSyncError::Truncated)?;
        let out = self.b.get(self.pos..end).ok_or(FullSyncError::Truncated)?;
        self.pos = end;
        Ok(out)
    }
    fn u32(&mut self) -> Result<u32, FullSyncError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(
            b.try_into().map_err(|_| FullSyncError::Truncated)?,
        ))
    }
    fn u64(&mut self) -> Result<u64, FullSyncError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(
            b.try_into().map_err(|_| FullSyncError::Truncated)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FullSync {
        FullSync {
            limits: vec![
                ["RL.LIMIT", "SET", "DEFAULT", "RATE", "10/1s"]
                    .iter()
                    .map(|s| Bytes::from(*s))
                    .collect(),
                vec![
                    Bytes::from("RL.TIER"),
                    Bytes::from("SET"),
                    Bytes::from(&b"a\r\n\0"[..]),
                    Bytes::from("gold"),
                ],
            ],
            state: (0..=255u8).collect(),
        }
    }

    #[test]
    fn round_trips() {
        let s = sample();
        assert_eq!(FullSync::decode(&s.encode()), Ok(s));
        let empty = FullSync::default();
        assert_eq!(FullSync::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn damage_is_detected() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert!(FullSync::decode(&bytes[..cut]).is_err(), "cut {cut}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x41;
            assert!(FullSync::decode(&b).is_err(), "flip {i}");
        }
    }
}
