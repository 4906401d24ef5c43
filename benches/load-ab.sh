#!/usr/bin/env bash
# Interleaved A/B load runs of the daemon for two or more commits, with redis-benchmark.
#
#   benches/load-ab.sh ROUNDS REV...
#   benches/load-ab.sh 5 bed4676 HEAD
#   P=1 N=600000 benches/load-ab.sh 5 bed4676 HEAD
#   benches/load-ab.sh 7 HEAD HEAD+--huge-pages=no   # one build; daemon flags after +, comma-separated
#   BENCH_USER=checker BENCH_PASS=pw benches/load-ab.sh 5 HEAD+--aclfile=/tmp/a.acl HEAD+--aclfile=/tmp/b.acl
#                                                     # redis-benchmark signs in (AUTH)
#
# Each REV is checked out into its own worktree under target/ab/ and its daemon built there
# (release). Then, ROUNDS times, every build in turn is started fresh (one worker thread pinned
# to core 0, limit 100/1m) and loaded by redis-benchmark pinned to core 1 with
# `-c 50 -r 1000000 -P $P -n $N` running $CMD (default: RL.CHECK k:__rand_int__ /api). Prints
# every requests/s figure and the median per REV. Same reason to interleave as
# benches/engine-ab.sh: this VM's speed drifts from minute to minute; the order of the builds
# is reversed every other round (see ab_round_order in ab-common.sh). 127.0.0.1 only.
# Remove the worktrees afterwards with `git worktree remove --force target/ab/<sha>`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,16p' "$0"; exit 2; }
rounds=$1
shift
N=${N:-3000000}
P=${P:-16}
PORT=${PORT:-16390}
read -r -a CMD <<<"${CMD:-RL.CHECK k:__rand_int__ /api}"
# redis-benchmark signs in as BENCH_USER with BENCH_PASS when given (the set-up runs as default).
sign_in=()
[ -n "${BENCH_USER:-}" ] && sign_in=(--user "$BENCH_USER" -a "${BENCH_PASS:-}")
source benches/need.sh
need_packages redis-benchmark redis-cli -- redis-tools
source benches/ab-common.sh
bins=()
for arg in "$@"; do
  rev=${arg%%+*}
  tree=$(ab_tree "$rev")
  label=$(git rev-parse --short "$rev")
  [ "$arg" = "$rev" ] || label="$label+${arg#*+}"
  (cd "$tree" && CARGO_TARGET_DIR="$tree/target" cargo build --release --bin ratelimitd -q)
  bins+=("$label:$tree/target/release/ratelimitd")
done
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
declare -A got
for round in $(seq "$rounds"); do
  mapfile -t order < <(ab_round_order "$round")
  for entry in "${order[@]}"; do
    label=${entry%%:*} bin=${entry#*:}
    flags=()
    [[ $label == *+* ]] && IFS=, read -r -a flags <<<"${label#*+}"
    rm -rf "$work/d"
    taskset -c 0 "$bin" --port "$PORT" --threads 1 --dir "$work/d" "${flags[@]}" >"$work/log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do redis-cli -p "$PORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$PORT" RL.LIMIT SET DEFAULT RATE 100/1m >/dev/null
    v=$(taskset -c 1 redis-benchmark -p "$PORT" "${sign_in[@]}" -c 50 -r 1000000 -n "$N" -P "$P" --csv \
      "${CMD[@]}" | tail -1 | cut -d, -f2 | tr -d '"')
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
    got[$label]="${got[$label]:-} ${v%.*}"
  done
done
echo "${CMD[*]} -c 50 -r 1000000 -P $P -n $N, rounds=$rounds (requests/s)"
ab_report
