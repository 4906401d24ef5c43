//! Memory per key, by the engine's own accounting.

use super::*;

#[test]
fn a_million_gcra_keys_take_at_most_32_bytes_each() {
    // At most 32 B per GCRA key at 1M keys, by the engine's own accounting: tables, wheels
    // and the shard array (benches/memory.rs measures the heap and RSS too). On the way there
    // the figure is a sawtooth — lowest just before a table grows (by 1.25x), highest just
    // after, and wheel slot vectors double — so it is also bounded, more loosely (40 B), at
    // every 50k keys from 250k on.
    let (e, _clock) = engine();
    e.set_limit(Scope::Default, limit(&[window(10, 3_600_000, 0)]));
    for i in 0..1_000_000u32 {
        e.check(&i.to_le_bytes(), b"/e", 1);
        let n = u64::from(i) + 1;
        if n >= 250_000 && n % 50_000 == 0 {
            let per_key = e.memory_bytes() as f64 / n as f64;
            assert!(per_key <= 40.0, "{per_key:.1} B per key at {n} keys");
        }
    }
    assert_eq!(e.key_count(), 1_000_000);
    let per_key = e.memory_bytes() as f64 / 1e6;
    assert!(per_key <= 32.0, "{per_key:.1} B per key at 1M keys");
}
