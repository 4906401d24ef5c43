#!/usr/bin/env bash
# Interleaved A/B runs of the engine bench (benches/engine.rs) for two or more commits.
#
#   benches/engine-ab.sh ROUNDS KEYS FILTER REV...
#   benches/engine-ab.sh 5 1000000 'rl_check/batch16/' 2507fb6 HEAD
#
# Each REV is checked out into its own worktree under target/ab/ and the engine bench built
# there (release), with this checkout's benches/engine.rs so that every REV runs the same
# harness (HARNESS=own keeps each REV's own). Then, ROUNDS times, every build runs the
# benchmarks matching FILTER with RLD_BENCH_KEYS=KEYS, one after another, pinned to core 1, and
# the middle estimate of the first matching benchmark is kept. Prints every estimate and the
# median per REV.
#
# Why interleave: on a shared VM the speed of the same binary drifts by 15-30 % from one minute
# to the next, so two builds measured one after the other in separate runs cannot be compared;
# alternating them round by round (in reverse order every other round: ab_round_order in
# ab-common.sh) and comparing medians can.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 4 ] || { sed -n '2,18p' "$0"; exit 2; }
rounds=$1 keys=$2 filter=$3
shift 3
source benches/ab-common.sh
bins=()
for rev in "$@"; do
  tree=$(ab_tree "$rev")
  sha=$(git rev-parse --short "$rev")
  if [ "${HARNESS:-current}" = current ]; then
    cp benches/engine.rs "$tree/benches/engine.rs"
  else
    git -C "$tree" checkout -q -- benches/engine.rs
  fi
  (cd "$tree" && CARGO_TARGET_DIR="$tree/target" cargo build --release --bench engine -q)
  bin=$(ls -t "$tree"/target/release/deps/engine-* | grep -v '\.d$' | head -1)
  bins+=("$sha:$bin")
done
declare -A got
for round in $(seq "$rounds"); do
  mapfile -t order < <(ab_round_order "$round")
  for entry in "${order[@]}"; do
    sha=${entry%%:*} bin=${entry#*:}
    v=$(cd /tmp && RLD_BENCH_KEYS=$keys taskset -c 1 "$bin" --bench --warm-up-time 1 \
      --measurement-time 3 "$filter" 2>/dev/null | grep 'time:' | head -1 |
      sed -E 's/.*\[[^ ]+ [^ ]+ ([^ ]+) ([^ ]+) .*/\1/')
    got[$sha]="${got[$sha]:-} $v"
  done
done
echo "keys=$keys filter=$filter rounds=$rounds (ns per check, middle estimates)"
ab_report
