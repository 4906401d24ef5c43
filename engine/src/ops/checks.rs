//! RL.CHECK, RL.PEEK, RL.RESET and RL.EXPLAIN: the engine's side of the RL commands.
//!
//! A check fingerprints its key, resolves the limit that applies from the table snapshot,
//! then, under the key's shard lock, reads each window's state (rescaled if it was written
//! under another limit), decides every window, and writes the new states only if every
//! window admits the check. A single GCRA window, the common case, takes a shorter path
//! without the per-window arrays.

use crossbeam_epoch as epoch;

use crate::counting;
use crate::decision::{
    refused, scale_debt, summarize, summarize_one, to_i64, NewState, Win, NANOS_PER_MS,
};
use crate::fingerprint::{fingerprint, window_key, TAG_RL};
use crate::gcra::{self, ceil_ms, Decision, Params};
use crate::packing::{pack, unpack};
use crate::results::UNLIMITED;
use crate::store::{self, Put, Shard};
use crate::table::Table;
use crate::{
    Algorithm, CheckRequest, CheckResult, Clock, Engine, EvictionPolicy, Explanation, Limit, Nanos,
    Prefetched, ScopeKind, WindowState, MAX_WINDOWS,
};

impl<C: Clock> Engine<C> {
    /// The limit that applies to (client, endpoint), copied out of the snapshot.
    fn applicable(
        &self,
        client: &[u8],
        endpoint: &[u8],
    ) -> Option<(Algorithm, [Option<Win>; MAX_WINDOWS], ScopeKind)> {
        let guard = epoch::pin();
        Self::applicable_in(self.table(&guard), client, endpoint)
    }

    /// The limit that applies to (client, endpoint) in `table`, copied out of it.
    fn applicable_in(
        table: &Table,
        client: &[u8],
        endpoint: &[u8],
    ) -> Option<(Algorithm, [Option<Win>; MAX_WINDOWS], ScopeKind)> {
        let resolved = table.resolve(client, endpoint)?;
        let kind = resolved.kind();
        let limit = resolved.limit;
        let mut wins = [None; MAX_WINDOWS];
        for (i, (slot, w)) in wins.iter_mut().zip(limit.windows()).enumerate() {
            *slot = Some(Win {
                window: *w,
                shape: limit.shape(i),
            });
        }
        Some((limit.algorithm(), wins, kind))
    }

    /// Start loading the memory a check of (client, endpoint) will touch first (its key's
    /// slot). A hint only: nothing is read or changed. The daemon calls it for every check of
    /// a pipelined batch before running the first, so that at millions of keys the cache misses
    /// of the batch overlap instead of queueing one after another.
    ///
    /// Returns the key's fingerprint, for [`Engine::check_prefetched_at`] to use instead of
    /// hashing the key again.
    #[inline]
    pub fn prefetch_check(&self, client: &[u8], endpoint: &[u8]) -> Prefetched {
        let fp = fingerprint(TAG_RL, &[client, endpoint]);
        self.store.prefetch_gcra(fp);
        Prefetched(fp)
    }

    /// Check-and-consume each request as [`Engine::check`] would, in order, appending one
    /// result per request to `out`. The clock is read and the limits snapshot loaded once per
    /// batch (all the checks of a batch are judged at the same instant), and the slots of up to
    /// 16 keys are requested from memory before the first of them is decided.
    pub fn check_many(&self, requests: &[CheckRequest<'_>], out: &mut Vec<CheckResult>) {
        const AHEAD: usize = 16;
        out.reserve(requests.len());
        let guard = epoch::pin();
        let table = self.table(&guard);
        let now = self.clock.now();
        for chunk in requests.chunks(AHEAD) {
            let mut fps = [0u64; AHEAD];
            for (fp, r) in fps.iter_mut().zip(chunk) {
                *fp = fingerprint(TAG_RL, &[r.client, r.endpoint]);
                self.store.prefetch_gcra(*fp);
            }
            for (&fp, r) in fps.iter().zip(chunk) {
                out.push(match table.resolve(r.client, r.endpoint) {
                    Some(res) => self.decide_key(fp, res.limit, res.kind(), now, r.cost, true),
                    None => UNLIMITED,
                });
            }
        }
    }

    /// Check-and-consume `cost` for (client, endpoint) under the limit that applies.
    /// All windows are charged or none. Allowed: the reported window is the one with the fewest
    /// `remaining` after charging. Denied: the one needing the longest wait; `retry_after_ms`
    /// is the wait after which every window fits, or -1 if some window can never fit `cost`.
    /// `reset_after_ms` is the longest over all windows. Cost 0 behaves as a peek.
    pub fn check(&self, client: &[u8], endpoint: &[u8], cost: u64) -> CheckResult {
        self.evaluate(client, endpoint, cost, true, None, None)
    }

    /// [`Engine::check`] at `now`, a reading of this engine's clock ([`Engine::now`]) the
    /// caller already took: the daemon reads the clock once per command and times the command
    /// with the same reading. A reading a little in the past is harmless (it is what a check
    /// that lost the race for the shard lock sees anyway).
    pub fn check_at(&self, client: &[u8], endpoint: &[u8], cost: u64, now: Nanos) -> CheckResult {
        self.evaluate(client, endpoint, cost, true, Some(now), None)
    }

    /// [`Engine::check_at`] for a key whose [`Engine::prefetch_check`] returned `key`: the key
    /// is not hashed a second time (at a thousand keys, where the prefetch finds the table in
    /// the caches already, that second hash made the prefetch a loss). `key` must come from
    /// the prefetch of this same (client, endpoint); debug builds check it.
    pub fn check_prefetched_at(
        &self,
        key: Prefetched,
        client: &[u8],
        endpoint: &[u8],
        cost: u64,
        now: Nanos,
    ) -> CheckResult {
        self.evaluate(client, endpoint, cost, true, Some(now), Some(key))
    }

    /// What a cost-1 check would decide, consuming nothing. `allowed` and `retry_after_ms` are
    /// the cost-1 decision; when it would be allowed, `remaining` and `reset_after_ms` describe
    /// the state as it is now (nothing charged), so a fresh key peeks as `remaining == limit`.
    /// A key decayed to full reads as fresh.
    pub fn peek(&self, client: &[u8], endpoint: &[u8]) -> CheckResult {
        let one = self.evaluate(client, endpoint, 1, false, None, None);
        if one.allowed {
            self.evaluate(client, endpoint, 0, false, None, None)
        } else {
            one
        }
    }

    /// Decide every window of the limit for one (client, endpoint) under its shard lock.
    ///
    /// Returns each window's decision, its state if charged, and — for a window whose stored
    /// state was written under another limit and read rescaled — that rescaled state as it
    /// stands, uncharged. A charged check that does not write its new states writes those:
    /// left in the old limit's terms, the state would go on decaying at the old limit's pace
    /// and every later check would rescale it afresh, so a client told "retry in 100 ms"
    /// after a change from 10/1m to 10/1s would still be denied seconds later.
    #[allow(clippy::type_complexity)]
    fn decide_all(
        &self,
        shard: &Shard,
        fp: u64,
        algo: Algorithm,
        wins: &[Option<Win>; MAX_WINDOWS],
        now: Nanos,
        cost: u64,
    ) -> (
        [Option<Decision>; MAX_WINDOWS],
        [Option<NewState>; MAX_WINDOWS],
        [Option<NewState>; MAX_WINDOWS],
    ) {
        let mut decisions = [None; MAX_WINDOWS];
        let mut states = [None; MAX_WINDOWS];
        let mut rescaled = [None; MAX_WINDOWS];
        for (i, win) in wins.iter().enumerate() {
            let Some(win) = win else { break };
            let key = window_key(fp, i);
            match algo {
                Algorithm::Gcra => {
                    let p = Params::of(&win.window);
                    let stored = shard.gcra_get(key);
                    let tat = stored.and_then(|w| self.read_gcra(w, win, &p, now));
                    if let (Some(w), Some(t)) = (stored, tat) {
                        if unpack(w).1 != win.shape {
                            rescaled[i] = Some(NewState::Gcra(pack(u128::from(t), win.shape)));
                        }
                    }
                    let d = gcra::decide(&p, tat, now, cost);
                    states[i] = Some(NewState::Gcra(pack(d.new_tat, win.shape)));
                    decisions[i] = Some(d);
                }
                Algorithm::Sliding | Algorithm::Fixed => {
                    let period_ns = win.window.period_ms() * NANOS_PER_MS;
                    let stored = shard.win_get(key);
                    let counts = stored.and_then(|w| self.read_counts(w, algo, win, now));
                    let decide = if algo == Algorithm::Fixed {
                        counting::decide_fixed
                    } else {
                        counting::decide_sliding
                    };
                    let cap = win.window.capacity();
                    if let (Some(w), Some(c)) = (stored, counts) {
                        if unpack(w[0]).1 != win.shape {
                            let (d0, c0) = decide(cap, period_ns, Some(c), now, 0);
                            rescaled[i] = Some(NewState::Counting([
                                pack(d0.new_tat, win.shape),
                                c0.cur,
                                c0.prev,
                            ]));
                        }
                    }
                    let (d, c) = decide(cap, period_ns, counts, now, cost);
                    states[i] = Some(NewState::Counting([
                        pack(d.new_tat, win.shape),
                        c.cur,
                        c.prev,
                    ]));
                    decisions[i] = Some(d);
                }
            }
        }
        (decisions, states, rescaled)
    }

    /// The TAT a stored GCRA word stands for under the current window, or None if it is full.
    /// State written under another window is rescaled so the fraction of the allowance already
    /// used is kept: a raised limit never turns an allowed client into a denied one.
    fn read_gcra(&self, word: u64, win: &Win, p: &Params, now: Nanos) -> Option<Nanos> {
        let (tat, shape) = unpack(word);
        if tat <= now {
            return None;
        }
        if shape == win.shape || shape == 0 || win.shape == 0 {
            return Some(tat);
        }
        let Some((Algorithm::Gcra, old)) = self.shapes.get(shape) else {
            return Some(tat);
        };
        let old_tau = Params::of(&old).tau.max(1);
        let debt = scale_debt(tat - now, p.tau, old_tau).min(p.tau);
        if debt == 0 {
            return None;
        }
        // Rounded up to the microsecond as the store will keep it, so that the retry time
        // this check reports is measured from the TAT that is then stored (from the unrounded
        // one a retry could come up to 1 us too early).
        let tat = now.saturating_add(u64::try_from(debt).unwrap_or(u64::MAX));
        Some(unpack(pack(u128::from(tat), 0)).0)
    }

    /// The counts a stored fixed/sliding state stands for under the current window, rescaled
    /// (like [`Engine::read_gcra`]) when it was written under another window.
    fn read_counts(
        &self,
        words: [u64; 3],
        algo: Algorithm,
        win: &Win,
        now: Nanos,
    ) -> Option<counting::Counts> {
        let (deadline, shape) = unpack(words[0]);
        if deadline <= now {
            return None;
        }
        let (old_algo, old) = if shape == win.shape || shape == 0 || win.shape == 0 {
            (algo, win.window)
        } else {
            match self.shapes.get(shape) {
                Some((a, w)) if a != Algorithm::Gcra => (a, w),
                _ => (algo, win.window),
            }
        };
        let old_p = old.period_ms() * NANOS_PER_MS;
        let lag = if old_algo == Algorithm::Sliding { 2 } else { 1 };
        let counts = counting::Counts {
            idx: (deadline / old_p).saturating_sub(lag),
            cur: words[1],
            prev: words[2],
        };
        if old_algo == algo && old == win.window {
            return Some(counts);
        }
        let scale = |n: u64| {
            u64::try_from(
                u128::from(n) * u128::from(win.window.capacity())
                    / u128::from(old.capacity().max(1)),
            )
            .unwrap_or(u64::MAX)
        };
        let p = win.window.period_ms() * NANOS_PER_MS;
        if old_algo == algo && old_p == p {
            return Some(counting::Counts {
                idx: counts.idx,
                cur: scale(counts.cur),
                prev: scale(counts.prev),
            });
        }
        let used = counting::usage_at(old_algo == Algorithm::Sliding, old_p, counts, now);
        // Into a shorter window, the fraction used is kept, as above. Into a longer one the
        // fraction would stretch the old window's usage over the whole new window: a full
        // 10/1s raised to 72000/1h would deny for the rest of the hour where the old limit
        // denied for under a second. What the client did spend in the old window, it spent
        // in the new one too, so the count itself is carried (at most the new capacity).
        let cur = if p > old_p {
            used.min(win.window.capacity())
        } else {
            scale(used)
        };
        Some(counting::Counts {
            idx: now / p,
            cur,
            prev: 0,
        })
    }

    /// The shared body of check and peek: decide every window under one shard lock, then
    /// commit all new states (only if `charge`, the cost is non-zero and every window allows).
    /// `key`: the fingerprint a prefetch of this (client, endpoint) already worked out.
    fn evaluate(
        &self,
        client: &[u8],
        endpoint: &[u8],
        cost: u64,
        charge: bool,
        now: Option<Nanos>,
        key: Option<Prefetched>,
    ) -> CheckResult {
        let fp = match key {
            Some(key) => {
                debug_assert_eq!(key.0, fingerprint(TAG_RL, &[client, endpoint]));
                key.0
            }
            None => {
                // Fingerprint first and start loading the key's slot, so that the limit lookup
                // and the clock read below overlap with what is, at millions of keys, a miss.
                let fp = fingerprint(TAG_RL, &[client, endpoint]);
                self.store.prefetch_gcra(fp);
                fp
            }
        };
        let guard = epoch::pin();
        let Some(resolved) = self.table(&guard).resolve(client, endpoint) else {
            return UNLIMITED;
        };
        let now = now.unwrap_or_else(|| self.clock.now());
        self.decide_key(fp, resolved.limit, resolved.kind(), now, cost, charge)
    }

    /// Decide (and if `charge`, consume) one key under `rule` at `now`, under its shard lock.
    /// The limit is borrowed from the table snapshot (the caller keeps it pinned): copying
    /// its windows out for every check was a tenth of the check's time.
    fn decide_key(
        &self,
        fp: u64,
        limit: &Limit,
        kind: ScopeKind,
        now: Nanos,
        cost: u64,
        charge: bool,
    ) -> CheckResult {
        let algo = limit.algorithm();
        if let ([window], Algorithm::Gcra) = (limit.windows(), algo) {
            // The common case, without the per-window arrays: one GCRA window, its slot found
            // once and, if the check is charged, written in place.
            let win = Win {
                window: *window,
                shape: limit.shape(0),
            };
            let p = Params::of(window);
            let mut locked = self.store.lock_at(fp, now);
            let slot = locked.shard.gcra_slot(fp);
            let tat = slot.and_then(|(_, w)| self.read_gcra(w, &win, &p, now));
            let d = gcra::decide(&p, tat, now, cost);
            let mut result = summarize_one(p.capacity, &d);
            result.scope = kind;
            if charge && cost > 0 && d.allowed {
                let word = pack(d.new_tat, win.shape);
                if let Put::Refused(policy) = locked.gcra_set(fp, slot, word) {
                    result = refused(result, policy, d.reset_uncharged_ns);
                }
            } else if let (true, Some((i, w)), Some(tat)) = (charge, slot, tat) {
                if unpack(w).1 != win.shape {
                    // Read rescaled (written under another limit): keep it rescaled, see
                    // `decide_all`.
                    locked.gcra_set(fp, Some((i, w)), pack(u128::from(tat), win.shape));
                }
            }
            return result;
        }
        let mut wins = [None; MAX_WINDOWS];
        for (i, (slot, w)) in wins.iter_mut().zip(limit.windows()).enumerate() {
            *slot = Some(Win {
                window: *w,
                shape: limit.shape(i),
            });
        }
        let n = limit.windows().len();
        let mut locked = self.store.lock_at(fp, now);
        let (decisions, states, rescaled) =
            self.decide_all(&locked.shard, fp, algo, &wins, now, cost);
        let mut result = summarize(&wins[..n], &decisions[..n], cost);
        result.scope = kind;
        if charge && cost > 0 && result.allowed {
            if let Err(policy) = self.commit(&mut locked, fp, &states[..n]) {
                let uncharged = decisions[..n].iter().flatten();
                let reset = uncharged.map(|d| d.reset_uncharged_ns).max().unwrap_or(0);
                result = refused(result, policy, reset);
            }
        } else if charge {
            for (i, state) in rescaled[..n].iter().enumerate() {
                // Existing keys only: these writes never meet the bounds.
                match state {
                    Some(NewState::Gcra(w)) => locked.gcra_put(window_key(fp, i), *w),
                    Some(NewState::Counting(s)) => locked.win_put(window_key(fp, i), *s),
                    None => Put::Stored,
                };
            }
        }
        result
    }

    /// Write every window's new state; if the bound refuses a new key part-way, put the earlier
    /// windows back as they were, so the check charges all windows or none.
    fn commit(
        &self,
        locked: &mut store::Locked<'_>,
        fp: u64,
        states: &[Option<NewState>],
    ) -> Result<(), EvictionPolicy> {
        locked.shard.keep_windows(fp, states.len());
        let r = self.commit_windows(locked, fp, states);
        locked.shard.keep_windows(fp, 0);
        r
    }

    fn commit_windows(
        &self,
        locked: &mut store::Locked<'_>,
        fp: u64,
        states: &[Option<NewState>],
    ) -> Result<(), EvictionPolicy> {
        let mut before: [Option<Option<NewState>>; MAX_WINDOWS] = [None; MAX_WINDOWS];
        for (i, state) in states.iter().enumerate() {
            let key = window_key(fp, i);
            let put = match state {
                Some(NewState::Gcra(w)) => {
                    before[i] = Some(locked.shard.gcra_get(key).map(NewState::Gcra));
                    locked.gcra_put(key, *w)
                }
                Some(NewState::Counting(s)) => {
                    before[i] = Some(locked.shard.win_get(key).map(NewState::Counting));
                    locked.win_put(key, *s)
                }
                None => Put::Stored,
            };
            if let Put::Refused(policy) = put {
                let now = self.clock.now();
                for (j, old) in before.iter().enumerate().take(i) {
                    let key = window_key(fp, j);
                    match old {
                        Some(Some(state)) => locked.shard.roll_back(key, *state),
                        Some(None) => {
                            locked.shard.gcra_remove(key, now);
                            locked.shard.win_remove(key, now);
                        }
                        None => {}
                    }
                }
                return Err(policy);
            }
        }
        Ok(())
    }

    /// Restore the full allowance of (client, endpoint). True if any state was removed.
    ///
    /// All [`MAX_WINDOWS`] window keys of both state tables are cleared, not just those of the
    /// current limit: the limit may have changed since the state was written. Only live state
    /// counts as removed.
    pub fn reset(&self, client: &[u8], endpoint: &[u8]) -> bool {
        let fp = fingerprint(TAG_RL, &[client, endpoint]);
        let now = self.clock.now();
        let mut locked = self.store.lock(fp);
        let mut removed_live = false;
        for i in 0..MAX_WINDOWS {
            let key = window_key(fp, i);
            removed_live |= locked.shard.gcra_remove(key, now);
            removed_live |= locked.shard.win_remove(key, now);
        }
        removed_live
    }

    pub fn explain(&self, client: &[u8], endpoint: &[u8]) -> Explanation {
        let (scope, tier, limit) = {
            let guard = epoch::pin();
            let table = self.table(&guard);
            let tier = table.tier_of(client).map(<[u8]>::to_vec);
            match table.resolve(client, endpoint) {
                Some(r) => (Some(r.scope(client)), tier, Some(r.limit.clone())),
                None => (None, tier, None),
            }
        };
        let mut windows = Vec::new();
        if let Some((algo, wins, _)) = limit
            .as_ref()
            .and_then(|_| self.applicable(client, endpoint))
        {
            let fp = fingerprint(TAG_RL, &[client, endpoint]);
            let now = self.clock.now();
            let locked = self.store.lock(fp);
            let (decisions, _, _) = self.decide_all(&locked.shard, fp, algo, &wins, now, 0);
            drop(locked);
            for (w, d) in wins.iter().zip(decisions) {
                if let (Some(w), Some(d)) = (w, d) {
                    windows.push(WindowState {
                        window: w.window,
                        remaining: to_i64(d.remaining),
                        reset_after_ms: ceil_ms(d.reset_uncharged_ns),
                    });
                }
            }
        }
        Explanation {
            scope,
            tier,
            limit,
            windows,
        }
    }
}
