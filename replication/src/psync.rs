//! The primary's answer to `PSYNC <replid> <offset>`: `+CONTINUE` with the backlog's tail when
//! the replica's history is ours and its next byte is still held, else `+FULLRESYNC`.
//!
//! The rule is Redis's (`masterTryPartialResynchronization`): the requested id must be our
//! current id, or our previous id (`replid2`) with an offset no later than where that history
//! ended (`second_repl_offset`); and the offset must lie within the backlog.

use crate::backlog::Backlog;
use crate::ids::ReplIds;

/// Why a partial resync was refused (for the log; the replica just gets a full one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullReason {
    /// `PSYNC ? -1`: the replica has no history.
    NoHistory,
    /// The replica's id is neither ours nor our previous one, or it is the previous one but
    /// beyond where that history ended.
    IdMismatch,
    /// We keep no backlog yet.
    NoBacklog,
    /// The replica's next byte is no longer (or not yet) in the backlog.
    OutOfRange,
}

impl FullReason {
    pub fn describe(self) -> &'static str {
        match self {
            FullReason::NoHistory => "the replica has no history",
            FullReason::IdMismatch => "replication id mismatch",
            FullReason::NoBacklog => "no backlog",
            FullReason::OutOfRange => "requested offset is outside the backlog",
        }
    }
}

/// What to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PsyncDecision {
    /// `+CONTINUE <replid>`, then the backlog from byte `from`.
    Continue { from: u64 },
    /// `+FULLRESYNC <replid> <offset>` and a snapshot.
    Full(FullReason),
}

/// Decide for `PSYNC <req_id> <req_offset>` (`req_offset` is the replica's next wanted byte).
pub fn decide(
    ids: &ReplIds,
    backlog: Option<&Backlog>,
    req_id: &[u8],
    req_offset: i64,
) -> PsyncDecision {
    if req_id == b"?" || req_offset < 0 {
        return PsyncDecision::Full(FullReason::NoHistory);
    }
    let ours = req_id.eq_ignore_ascii_case(ids.replid.as_str().as_bytes());
    let previous = ids.second_offset >= 0
        && req_id.eq_ignore_ascii_case(ids.replid2.as_str().as_bytes())
        && req_offset <= ids.second_offset;
    if !ours && !previous {
        return PsyncDecision::Full(FullReason::IdMismatch);
    }
    let Some(backlog) = backlog else {
        return PsyncDecision::Full(FullReason::NoBacklog);
    };
    let from = req_offset as u64;
    if backlog.covers(from) {
        PsyncDecision::Continue { from }
    } else {
        PsyncDecision::Full(FullReason::OutOfRange)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ReplId;

    fn setup() -> (ReplIds, Backlog) {
        let ids = ReplIds::fresh();
        let mut b = Backlog::new(100, 0);
        b.append(&[7; 250]); // holds bytes 151..=250
        (ids, b)
    }

    #[test]
    fn table_of_decisions() {
        let (ids, b) = setup();
        let id = ids.replid.as_str().as_bytes().to_vec();
        let other = ReplId::random();
        let cases: Vec<(&[u8], i64, Option<&Backlog>, PsyncDecision)> = vec![
            (
                b"?",
                -1,
                Some(&b),
                PsyncDecision::Full(FullReason::NoHistory),
            ),
            (&id, 151, Some(&b), PsyncDecision::Continue { from: 151 }),
            (&id, 251, Some(&b), PsyncDecision::Continue { from: 251 }),
            (
                &id,
                150,
                Some(&b),
                PsyncDecision::Full(FullReason::OutOfRange),
            ),
            (
                &id,
                252,
                Some(&b),
                PsyncDecision::Full(FullReason::OutOfRange),
            ),
            (&id, 200, None, PsyncDecision::Full(FullReason::NoBacklog)),
            (
                other.as_str().as_bytes(),
                200,
                Some(&b),
                PsyncDecision::Full(FullReason::IdMismatch),
            ),
        ];
        for (rid, off, backlog, want) in cases {
            assert_eq!(decide(&ids, backlog, rid, off), want, "{off}");
        }
    }

    #[test]
    fn after_promotion_the_old_id_continues_up_to_the_shift() {
        let (mut ids, mut b) = setup();
        let old = ids.replid.clone();
        ids.shift(ReplId::random(), 250);
        b.append(&[8; 20]); // new history: bytes 251..=270
        let old = old.as_str().as_bytes();
        assert_eq!(
            decide(&ids, Some(&b), old, 251),
            PsyncDecision::Continue { from: 251 }
        );
        assert_eq!(
            decide(&ids, Some(&b), old, 200),
            PsyncDecision::Continue { from: 200 }
        );
        // A replica of the old primary that got bytes the promoted one never saw.
        assert_eq!(
            decide(&ids, Some(&b), old, 252),
            PsyncDecision::Full(FullReason::IdMismatch)
        );
    }
}
