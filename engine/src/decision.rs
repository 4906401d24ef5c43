//! The multi-window decision: how one decision per window becomes a check's single reply,
//! charging all windows or none; what a check the bound refused answers; and the debt
//! arithmetic that reads a window's state under another window after a limit change.
//!
//! Pure functions of per-window [`Decision`]s, separate from the engine's methods so that
//! the reply's rules (which window is reported, what `remaining` means when some window
//! denies) can be read, and tested, without a store.

use crate::gcra::{ceil_ms, Decision};
use crate::limit::Window;
use crate::results::{CheckResult, ScopeKind, UNLIMITED};
use crate::store::EvictionPolicy;

/// A window's index as [`CheckResult::window`] holds it (a limit has at most
/// [`MAX_WINDOWS`](crate::MAX_WINDOWS)).
fn window_index(i: usize) -> u8 {
    u8::try_from(i).unwrap_or(u8::MAX)
}

pub(crate) fn to_i64(x: u64) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

pub(crate) const NANOS_PER_MS: u64 = 1_000_000;

/// The numbers of one window of the limit being applied, copied out of the table snapshot.
#[derive(Clone, Copy)]
pub(crate) struct Win {
    pub(crate) window: Window,
    pub(crate) shape: u16,
}

/// New state for one window, written only if every window admits the check.
#[derive(Clone, Copy)]
pub(crate) enum NewState {
    Gcra(u64),
    Counting([u64; 3]),
}

/// `ahead * new_tau / old_tau`, the debt `ahead` ns under a window of `old_tau` stands for
/// under one of `new_tau`. Valid windows keep tau under 30 years (~2^60 ns), so the product
/// fits u128; should it not, both taus lose their low bits alike, which keeps their ratio to
/// ~64 significant bits, rather than overflow.
pub(crate) fn scale_debt(ahead: u64, new_tau: u128, old_tau: u128) -> u128 {
    match u128::from(ahead).checked_mul(new_tau) {
        Some(x) => x / old_tau,
        None => {
            let shift = 64 - new_tau.leading_zeros();
            u128::from(ahead) * (new_tau >> shift) / (old_tau >> shift).max(1)
        }
    }
}

/// A check the bound refused to store: fail-open keeps it allowed (nothing recorded),
/// fail-closed denies it with no retry time to offer.
pub(crate) fn refused(
    mut r: CheckResult,
    policy: EvictionPolicy,
    reset_uncharged_ns: u128,
) -> CheckResult {
    if policy == EvictionPolicy::RefuseDeny {
        // Nothing was charged, and nothing is admitted while the bound refuses new keys: no
        // remaining, the reset of the state as it stands (0 for a key never stored), and no
        // wait that would be known to help (-1).
        r.allowed = false;
        r.remaining = 0;
        r.retry_after_ms = -1;
        r.reset_after_ms = ceil_ms(reset_uncharged_ns);
    }
    r
}

/// [`summarize`] for a single window (the common case), without the scans.
#[inline]
pub(crate) fn summarize_one(capacity: u64, d: &Decision) -> CheckResult {
    if d.allowed {
        CheckResult {
            allowed: true,
            limit: to_i64(capacity),
            remaining: to_i64(d.remaining),
            retry_after_ms: -1,
            reset_after_ms: ceil_ms(d.reset_if_charged_ns),
            scope: ScopeKind::None,
            window: 0,
        }
    } else {
        CheckResult {
            allowed: false,
            limit: to_i64(capacity),
            remaining: to_i64(d.remaining),
            retry_after_ms: d.retry_after_ns.map_or(-1, ceil_ms),
            reset_after_ms: ceil_ms(d.reset_uncharged_ns),
            scope: ScopeKind::None,
            window: 0,
        }
    }
}

/// Combine per-window decisions into one reply (see [`Engine::check`](crate::Engine::check)).
/// `cost` is the check's: a window that would have admitted it reports its `remaining` after
/// charging, and a denied check's `remaining` is as things stand.
pub(crate) fn summarize(
    wins: &[Option<Win>],
    decisions: &[Option<Decision>],
    cost: u64,
) -> CheckResult {
    let capacity = |i: usize| wins[i].map_or(0, |w| w.window.capacity());
    let mut all_allowed = true;
    let mut reset_allowed: u128 = 0; // max reset if charged
    let mut reset_denied: u128 = 0; // max reset uncharged
                                    // Allowed: (remaining, window index) with the fewest remaining.
    let mut tightest: Option<(u64, usize)> = None;
    // Denied: the window with the longest wait; `None` wait = never fits (longest of all).
    let mut worst: Option<(Option<u128>, usize)> = None;
    for (i, d) in decisions.iter().enumerate() {
        let Some(d) = d else { continue };
        reset_allowed = reset_allowed.max(d.reset_if_charged_ns);
        reset_denied = reset_denied.max(d.reset_uncharged_ns);
        if d.allowed {
            let fewer = match tightest {
                None => true,
                Some((r, _)) => d.remaining < r,
            };
            if fewer {
                tightest = Some((d.remaining, i));
            }
        } else {
            all_allowed = false;
            let longer = match worst {
                None => true,
                Some((None, _)) => false,
                Some((Some(w), _)) => match d.retry_after_ns {
                    None => true,
                    Some(r) => r > w,
                },
            };
            if longer {
                worst = Some((d.retry_after_ns, i));
            }
        }
    }
    if all_allowed {
        let Some((remaining, i)) = tightest else {
            return UNLIMITED; // No windows: cannot happen for a valid Limit.
        };
        CheckResult {
            allowed: true,
            limit: to_i64(capacity(i)),
            remaining: to_i64(remaining),
            retry_after_ms: -1,
            reset_after_ms: ceil_ms(reset_allowed),
            scope: ScopeKind::None,
            window: window_index(i),
        }
    } else {
        let Some((wait, i)) = worst else {
            return UNLIMITED; // Unreachable: some window denied.
        };
        // How many cost-1 checks would be admitted now: the fewest of any window, not those
        // of the window reported, which another window may undercut. Windows that would have
        // admitted this check report their remaining after it, every algorithm's being the
        // uncharged one less the cost.
        let remaining = decisions
            .iter()
            .flatten()
            .map(|d| {
                if d.allowed {
                    d.remaining.saturating_add(cost)
                } else {
                    d.remaining
                }
            })
            .min()
            .unwrap_or(0);
        CheckResult {
            allowed: false,
            limit: to_i64(capacity(i)),
            remaining: to_i64(remaining),
            retry_after_ms: wait.map_or(-1, ceil_ms),
            reset_after_ms: ceil_ms(reset_denied),
            scope: ScopeKind::None,
            window: window_index(i),
        }
    }
}
