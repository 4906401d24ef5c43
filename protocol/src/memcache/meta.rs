//! The meta commands' flags (`mg`, `ms`, `md`, `ma`): [`MetaFlags`], and the reading of a
//! request's flag tokens into it. The flags are the meta protocol's own vocabulary, so they
//! live apart from the framing, which they do not affect.

use bytes::Bytes;

use super::number::parse_i32;
use super::{parse_u64, McError};

/// The meta flags we understand. Return flags (`c f k O s t b`) are echoed in the order the
/// client gave them, as memcached does; [`MetaFlags::returns`] keeps that order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetaFlags {
    /// `b`: the key is base64.
    pub base64: bool,
    /// `v`: return the value.
    pub value: bool,
    /// `q`: quiet mode (suppress the common-case reply: EN for mg, HD for ms/md/ma, NF for md).
    pub quiet: bool,
    /// `I`: invalidate (accepted; treated as a plain write/delete).
    pub invalidate: bool,
    /// Return flags in request order: b'c', b'f', b'k', b'O', b's', b't'.
    pub returns: Vec<u8>,
    /// `O<token>`: opaque, echoed back.
    pub opaque: Option<Bytes>,
    /// `T<ttl>`: set the TTL (seconds; memcached's exptime rules).
    pub ttl: Option<i64>,
    /// `N<ttl>`: auto-create on miss with this TTL (mg, ma).
    pub vivify: Option<i64>,
    /// `D<delta>` (ma; default 1).
    pub delta: Option<u64>,
    /// `J<initial>` (ma with N; default 0).
    pub initial: Option<u64>,
    /// `M<mode>`: ms: E add, A append, P prepend, R replace, S set; ma: I/+ incr, D/- decr.
    pub mode: Option<u8>,
    /// `C<cas>`: compare this CAS before writing.
    pub compare_cas: Option<u64>,
    /// `F<flags>`: client flags to store (ms).
    pub client_flags: Option<u32>,
}

/// Read a meta command's flag tokens (those after the key, and after the length for `ms`).
pub(super) fn parse_meta_flags(tokens: &[&[u8]]) -> Result<MetaFlags, McError> {
    let mut f = MetaFlags::default();
    let mut seen = [false; 128];
    for tok in tokens {
        let (&c, rest) = tok.split_first().ok_or(McError::InvalidFlag)?;
        if !c.is_ascii_alphabetic() {
            return Err(McError::InvalidFlag);
        }
        if std::mem::replace(&mut seen[c as usize], true) {
            return Err(McError::DuplicateFlag);
        }
        let num = || parse_u64(rest).ok_or(McError::BadToken);
        let signed = || parse_i32(rest).ok_or(McError::BadToken);
        match c {
            b'b' => f.base64 = true,
            b'v' => f.value = true,
            b'q' => f.quiet = true,
            b'I' => f.invalidate = true,
            b'c' | b'f' | b'k' | b's' | b't' => f.returns.push(c),
            // Accepted and ignored: h (hit before), l (last access), u (no LRU bump),
            // x (remove value, md), E (explicit CAS), R (recache) have no meaning here.
            b'h' | b'l' | b'u' | b'x' => {}
            b'O' => {
                if rest.len() > 32 {
                    return Err(McError::BadToken);
                }
                f.opaque = Some(Bytes::copy_from_slice(rest));
                f.returns.push(b'O');
            }
            b'T' => f.ttl = Some(signed()?),
            b'N' => f.vivify = Some(signed()?),
            b'D' => f.delta = Some(num()?),
            b'J' => f.initial = Some(num()?),
            b'C' => f.compare_cas = Some(num()?),
            b'F' => f.client_flags = Some(u32::try_from(num()?).map_err(|_| McError::BadToken)?),
            b'M' => match rest {
                [m] => f.mode = Some(*m),
                _ => return Err(McError::BadToken),
            },
            _ => return Err(McError::InvalidFlag),
        }
    }
    Ok(f)
}
