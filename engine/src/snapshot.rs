//! The rate-state snapshot format: what SAVE writes and a restart loads, so a restart does not
//! hand every client a fresh allowance.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic    8 bytes  "RLDSNAP\0"
//! version  u32      1
//! saved_at u64      clock reading (ns since the Unix epoch) when the snapshot was taken
//! shapes   u32 n, then n x (id u16, words u64, u64)   the windows that state refers to
//! entries  u64 m, then m x (table u8, fingerprint u64, word count u8, words u64...)
//! items    u64 k, then k x (key len u32, key, flags u32, cas u64, expires_at u64 (0: none),
//!                           value len u32, value)          the key-value space
//! checksum u64      xxh3_64 of every byte before it
//! ```
//!
//! The engine owns the format; the daemon only stores the bytes durably. Shape ids are local
//! to a process, so the snapshot carries the windows they name and a restore re-interns them
//! and rewrites the ids. Entries carry absolute deadlines, so those that decayed while the
//! daemon was down are simply skipped. Loading is two steps: [`DecodedSnapshot::decode`]
//! checks everything (length, magic, version, checksum, every record: known tables, their word
//! counts, valid windows, complete items) and refuses a bad snapshot whole; loading the
//! decoded form then cannot fail, so nothing is ever half loaded.

use crate::kv::Item;
use crate::limit::{Algorithm, Window};
use crate::packing::{pack, unpack};
use crate::shape::{Shapes, SHAPE_BITS};
use crate::store::Store;
use crate::Nanos;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use xxhash_rust::xxh3::xxh3_64;

const MAGIC: &[u8; 8] = b"RLDSNAP\0";
const VERSION: u32 = 1;
/// Table ids as the store numbers them (gcra, counting windows, CL.THROTTLE).
const T_GCRA: u8 = 0;
const T_WIN: u8 = 1;
const T_CL: u8 = 2;
const SHAPE_MASK: u64 = (1 << SHAPE_BITS) - 1;

/// Why a snapshot was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is truncated ({0} bytes)")]
    Truncated(usize),
    #[error("not a ratelimitd snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u32),
    #[error("snapshot checksum mismatch: the file is corrupt")]
    Checksum,
    #[error("snapshot is malformed: {0}")]
    Malformed(&'static str),
}

pub(crate) fn write(store: &Store, shapes: &Shapes, now: Nanos) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut count: u64 = 0;
    let mut used_shapes: Vec<u16> = Vec::new();
    store.for_each(|table, key, words| {
        entries.push(table);
        entries.extend_from_slice(&key.to_le_bytes());
        entries.push(words.len() as u8);
        for w in words {
            entries.extend_from_slice(&w.to_le_bytes());
        }
        if table == T_GCRA || table == T_WIN {
            let shape = (words[0] & SHAPE_MASK) as u16;
            if shape != 0 && !used_shapes.contains(&shape) {
                used_shapes.push(shape);
            }
        }
        count += 1;
    });
    let mut out = Vec::with_capacity(entries.len() + 64 + used_shapes.len() * 18);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&now.to_le_bytes());
    let known: Vec<(u16, (u64, u64))> = used_shapes
        .iter()
        .filter_map(|&id| {
            shapes
                .get(id)
                .map(|(a, w)| (id, crate::shape::encode(a, &w)))
        })
        .collect();
    out.extend_from_slice(&(known.len() as u32).to_le_bytes());
    for (id, (a, b)) in known {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
    }
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&entries);
    let mut items = Vec::new();
    let mut n_items: u64 = 0;
    store.for_each_kv(now, |item| {
        items.extend_from_slice(&(item.key.len() as u32).to_le_bytes());
        items.extend_from_slice(item.key);
        items.extend_from_slice(&item.flags.to_le_bytes());
        items.extend_from_slice(&item.cas.to_le_bytes());
        items.extend_from_slice(&item.expires_at.unwrap_or(0).to_le_bytes());
        items.extend_from_slice(&(item.value.len() as u32).to_le_bytes());
        items.extend_from_slice(item.value);
        n_items += 1;
    });
    out.extend_from_slice(&n_items.to_le_bytes());
    out.extend_from_slice(&items);
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// A cursor that refuses to read past the end.
struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if self.b.len() < n {
            return Err(SnapshotError::Malformed("a record runs past the end"));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, SnapshotError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, SnapshotError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }
    fn u64(&mut self) -> Result<u64, SnapshotError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
}

/// A snapshot decoded and checked whole, not yet loaded: every entry names a known table with
/// that table's word count, every window is valid, every item is complete. Loading it
/// ([`Engine::restore_decoded`](crate::Engine::restore_decoded)) cannot fail, so a caller can
/// check a snapshot first and change its state only once the snapshot is known to be good (a
/// replica does, see the daemon's `src/replica.rs`), and can drop items it will not keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedSnapshot {
    shapes: Vec<(u16, Algorithm, Window)>,
    entries: Vec<(u8, u64, [u64; 3])>,
    items: Vec<(Vec<u8>, Item)>,
}

impl DecodedSnapshot {
    /// Decode `bytes` made by [`Engine::snapshot_state`](crate::Engine::snapshot_state).
    /// A snapshot that is short, has the wrong magic or version, fails its checksum, or holds
    /// any malformed record is refused whole.
    pub fn decode(bytes: &[u8]) -> Result<DecodedSnapshot, SnapshotError> {
        decode(bytes)
    }

    /// Rate-state entries (each window of a key, each CL.THROTTLE key).
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// The key-value items, key first.
    pub fn items(&self) -> impl Iterator<Item = (&[u8], &Item)> {
        self.items.iter().map(|(k, i)| (&k[..], i))
    }

    /// Keep only the items for which `keep` is true.
    pub fn retain_items(&mut self, mut keep: impl FnMut(&[u8], &Item) -> bool) {
        self.items.retain(|(k, i)| keep(k, i));
    }
}

/// The number of state words of an entry of `table`, or None for a table this build does not
/// have.
fn words_of(table: u8) -> Option<usize> {
    match table {
        T_GCRA | T_CL => Some(1),
        T_WIN => Some(3),
        _ => None,
    }
}

fn decode(bytes: &[u8]) -> Result<DecodedSnapshot, SnapshotError> {
    if bytes.len() < MAGIC.len() + 4 + 8 + 4 + 8 + 8 {
        return Err(SnapshotError::Truncated(bytes.len()));
    }
    if &bytes[..8] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let (body, sum) = bytes.split_at(bytes.len() - 8);
    let mut version = [0u8; 4];
    version.copy_from_slice(&body[8..12]);
    let version = u32::from_le_bytes(version);
    if version != VERSION {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    let mut want = [0u8; 8];
    want.copy_from_slice(sum);
    if xxh3_64(body) != u64::from_le_bytes(want) {
        return Err(SnapshotError::Checksum);
    }
    let mut r = Reader { b: &body[12..] };
    let _saved_at = r.u64()?;
    let n_shapes = r.u32()?;
    // Reserved for no more records than the bytes left can hold (each has a minimum size): a
    // count that lies (in a file whose checksum holds) must not reserve gigabytes.
    let fit = r.b.len() / 18;
    let mut shapes = Vec::with_capacity(usize::try_from(n_shapes).unwrap_or(0).min(fit));
    for _ in 0..n_shapes {
        let id = r.u16()?;
        let (a, b) = (r.u64()?, r.u64()?);
        let (algo, w) = crate::shape::decode(a, b)
            .ok_or(SnapshotError::Malformed("a window that is not valid"))?;
        shapes.push((id, algo, w));
    }
    let count = r.u64()?;
    let fit = r.b.len() / 18;
    let mut entries = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(fit));
    for _ in 0..count {
        let table = r.u8()?;
        let key = r.u64()?;
        let n = r.u8()? as usize;
        let want = words_of(table).ok_or(SnapshotError::Malformed("unknown table id"))?;
        if n != want {
            return Err(SnapshotError::Malformed(
                "an entry's word count does not fit its table",
            ));
        }
        let mut words = [0u64; 3];
        for w in words.iter_mut().take(n) {
            *w = r.u64()?;
        }
        entries.push((table, key, words));
    }
    let n_items = r.u64()?;
    let fit = r.b.len() / 28; // key and value lengths, flags, CAS, expiry
    let mut items = Vec::with_capacity(usize::try_from(n_items).unwrap_or(0).min(fit));
    for _ in 0..n_items {
        let klen = r.u32()? as usize;
        let key = r.take(klen)?.to_vec();
        let flags = r.u32()?;
        let cas = r.u64()?;
        let expires_at = r.u64()?;
        let vlen = r.u32()? as usize;
        let value = r.take(vlen)?.to_vec();
        let item = Item {
            value,
            flags,
            cas,
            expires_at: (expires_at != 0).then_some(expires_at),
        };
        items.push((key, item));
    }
    if !r.b.is_empty() {
        return Err(SnapshotError::Malformed("bytes after the last entry"));
    }
    Ok(DecodedSnapshot {
        shapes,
        entries,
        items,
    })
}

/// Load a decoded snapshot into `store`. `intern` gives the local shape id of each window the
/// snapshot names (see `Engine::intern_for_state`); `cas` is raised past every restored
/// item's CAS value. Entries and items that expired by `now` are skipped.
pub(crate) fn load(
    snap: DecodedSnapshot,
    store: &Store,
    intern: &dyn Fn(Algorithm, &Window) -> u16,
    cas: &AtomicU64,
    now: Nanos,
) -> usize {
    let remap: HashMap<u16, u16> = snap
        .shapes
        .iter()
        .map(|(id, algo, w)| (*id, intern(*algo, w)))
        .collect();
    // Room for every entry first (see `Shard::reserve`: loaded into growing tables, the
    // entries' slot order makes the load quadratic).
    let mut more = vec![[0usize; 3]; store.shard_count()];
    for (table, key, _) in &snap.entries {
        if let Some(slot) = more[store.index_of(*key)].get_mut(usize::from(*table)) {
            *slot += 1;
        }
    }
    store.reserve(&more);
    let mut restored = 0;
    for (table, key, mut words) in snap.entries {
        let deadline = if table == T_CL {
            words[0]
        } else {
            let (t, shape) = unpack(words[0]);
            let shape = remap.get(&shape).copied().unwrap_or(0);
            words[0] = pack(u128::from(t), shape);
            t
        };
        if deadline <= now {
            continue;
        }
        let n = words_of(table).unwrap_or(0);
        if store.restore(table, key, &words[..n]) {
            restored += 1;
        }
    }
    for (key, item) in snap.items {
        // New CAS values continue after every restored one: after a restart, a token a client
        // held from before must not match a new write.
        cas.fetch_max(item.cas, Ordering::Relaxed);
        if item.expires_at.is_none_or(|at| at > now) && store.restore_kv(&key, item, now) {
            restored += 1;
        }
    }
    restored
}
