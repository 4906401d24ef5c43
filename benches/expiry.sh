#!/usr/bin/env bash
# Mass expiry under load: about 1M keys created within a second or two (limit 1/3s) expire
# while redis-benchmark measures RL.CHECK latency on other keys; then two bursts under 1/1s
# show the memory given back. Reports p50/p99/max with and without the expiry going on, how
# long DBSIZE takes to return to 0, and RSS before, at the peak and after (the goal: max/p99
# during the expiry no higher than in the baseline probe with nothing expiring, and memory
# given back).
#
#   benches/expiry.sh          # KEYS=1000000 by default
#   ROUNDS=5 benches/expiry.sh # repeat the latency phase; prints max/p99 per round and medians
#
# A single round says little on a shared VM: there the baseline alone (no keys expiring) often
# has a max of several times its p99, from the machine. Rounds interleave a baseline probe and
# an expiry probe, so the two can be compared under the same conditions.
#
# ratelimitd runs with one worker thread pinned to core 0, redis-benchmark on core 1, 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-1000000}
ROUNDS=${ROUNDS:-1}
PORT=${PORT:-16381}
source benches/need.sh
need_packages redis-benchmark redis-cli -- redis-tools
cargo build --release -q
WORK=$(mktemp -d)
taskset -c 0 target/release/ratelimitd --port "$PORT" --threads 1 --dir "$WORK/d" >"$WORK/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
cli() { redis-cli -p "$PORT" "$@"; }
rss() { cli INFO memory | tr -d '\r' | awk -F: '$1=="used_memory_rss"{printf "%.1f MiB", $2/1048576}'; }
RATIOS="$WORK/ratios"
probe() {  # label -> "label p50 p99 max max/p99" (ms), RL.CHECK at -P 1 from 50 clients
  local line ratio
  line=$(taskset -c 1 redis-benchmark -p "$PORT" -c 50 -n 200000 -r 1000000 --csv RL.CHECK "probe:__rand_int__" /p | tail -1 | tr -d '"')
  IFS=, read -r _ rps _ _ p50 _ p99 max <<<"$line"
  ratio=$(echo "scale=2; $max / $p99" | bc)
  echo "$1 $ratio" >>"$RATIOS"
  printf '%-24s %10.0f req/s  p50 %6.3f  p99 %6.3f  max %6.3f ms  max/p99 %5.2f\n' "$1" "$rps" "$p50" "$p99" "$max" "$ratio"
}
median_ratio() {  # label -> median max/p99 of that label's rounds
  grep "^$1 " "$RATIOS" | awk '{print $NF}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}
burst() {  # create about KEYS distinct keys as fast as one core sends them
  taskset -c 1 redis-benchmark -p "$PORT" -c 50 -P 64 -n "$KEYS" -r 1000000000 -q RL.CHECK "k:__rand_int__" /e >/dev/null
}

echo "== latency: $KEYS keys expiring while RL.CHECK latency is measured (period 3 s), $ROUNDS round(s)"
cli RL.LIMIT SET DEFAULT RATE 1/3s >/dev/null
for round in $(seq "$ROUNDS"); do
  cli FLUSHALL >/dev/null
  sleep 3 # the previous round's probe keys decay
  probe "baseline"
  cli FLUSHALL >/dev/null
  start=$(date +%s.%N)
  burst
  echo "round $round: created $(cli DBSIZE) keys in $(echo "$(date +%s.%N) - $start" | bc) s; they expire during the next probe"
  probe "expiry"
done
echo "median max/p99 over $ROUNDS round(s): baseline $(median_ratio baseline), during mass expiry $(median_ratio expiry)"

echo "== memory: $KEYS keys with a 1 s period"
cli FLUSHALL >/dev/null
sleep 1
cli RL.LIMIT SET DEFAULT RATE 1/1s >/dev/null
echo "RSS before: $(rss)"
for round in 1 2; do
  burst
  echo "round $round: DBSIZE right after the burst $(cli DBSIZE), RSS at peak $(rss)"
  t0=$(date +%s.%N)
  while [ "$(cli DBSIZE)" != "0" ]; do sleep 0.05; done
  echo "round $round: DBSIZE back to 0 after $(echo "$(date +%s.%N) - $t0" | bc) s; RSS after $(rss)"
done
cli INFO stats | tr -d '\r' | grep -E '^(expired_keys|evicted_keys):'
