//! CL.THROTTLE: redis-cell's arithmetic (`cell.rs`) applied to a key's stored TAT under its
//! shard lock, with the slot probed once and written in place.

use crate::cell;
use crate::fingerprint::{fingerprint, TAG_CL};
use crate::store::Put;
use crate::{
    CellError, Clock, Engine, EvictionPolicy, Nanos, Prefetched, ThrottleArgs, ThrottleResult,
};

impl<C: Clock> Engine<C> {
    /// [`Engine::prefetch_check`] for a CL.THROTTLE of `key`; the fingerprint returned is for
    /// [`Engine::throttle_prefetched_at`].
    #[inline]
    pub fn prefetch_throttle(&self, key: &[u8]) -> Prefetched {
        let fp = fingerprint(TAG_CL, &[key]);
        self.store.prefetch_cl(fp);
        Prefetched(fp)
    }

    /// CL.THROTTLE with redis-cell's semantics (quantity 0 peeks).
    pub fn throttle(&self, key: &[u8], args: ThrottleArgs) -> Result<ThrottleResult, CellError> {
        self.throttle_at(key, args, self.clock.now())
    }

    /// [`Engine::throttle`] at `now`, a reading of this engine's clock the caller already took
    /// (see [`Engine::check_at`]).
    pub fn throttle_at(
        &self,
        key: &[u8],
        args: ThrottleArgs,
        now: Nanos,
    ) -> Result<ThrottleResult, CellError> {
        self.throttle_fp(fingerprint(TAG_CL, &[key]), args, now)
    }

    /// [`Engine::throttle_at`] for a key whose [`Engine::prefetch_throttle`] returned `hint`
    /// (see [`Engine::check_prefetched_at`]).
    pub fn throttle_prefetched_at(
        &self,
        hint: Prefetched,
        key: &[u8],
        args: ThrottleArgs,
        now: Nanos,
    ) -> Result<ThrottleResult, CellError> {
        debug_assert_eq!(hint.0, fingerprint(TAG_CL, &[key]));
        self.throttle_fp(hint.0, args, now)
    }

    fn throttle_fp(
        &self,
        fp: u64,
        args: ThrottleArgs,
        now: Nanos,
    ) -> Result<ThrottleResult, CellError> {
        let params = cell::CellParams::new(&args)?;
        let mut locked = self.store.lock_at(fp, now);
        // Probed once: the write goes to the slot this read found.
        let slot = locked.shard.cl_slot(fp);
        let tat = slot.map(|(_, t)| t).filter(|&t| t > now);
        let (mut result, write) = cell::decide(&params, tat, now);
        match write {
            cell::Write::Store(t) => {
                if let Put::Refused(policy) = locked.cl_set(fp, slot, t) {
                    if policy == EvictionPolicy::RefuseDeny {
                        result.limited = true;
                        result.retry_after_s = -1;
                    }
                }
            }
            cell::Write::Remove => locked.shard.cl_remove(fp),
            cell::Write::None => {}
        }
        Ok(result)
    }
}
