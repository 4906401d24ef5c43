#!/usr/bin/env bash
# RL.CHECK latency while a snapshot of ~1M keys is written (BGSAVE), against the same probe with
# nothing else going on. The daemon runs one worker thread and the whole process is pinned to
# core 0, so the snapshot shares the worker's core, as on a one-core host; redis-benchmark runs
# on core 1, over 127.0.0.1.
#
#   benches/bgsave.sh                 # 3 rounds of (plain probe, probe with a BGSAVE in it)
#   ROUNDS=5 BIN=/tmp/old-ratelimitd benches/bgsave.sh   # another build, to compare
#
# Each probe: redis-benchmark -c 50 -n 200000 RL.CHECK on random keys; the BGSAVE starts 0.5 s
# into it. Prints requests/s, p99, max and max/p99 (ms) for every probe.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-16390}
KEYS=${KEYS:-1000000}
source benches/need.sh
need_packages redis-benchmark redis-cli -- redis-tools
if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  BIN=target/release/ratelimitd
fi
WORK=$(mktemp -d)
taskset -c 0 "$BIN" --port "$PORT" --threads 1 --dir "$WORK/d" --save-interval 0 >"$WORK/log" 2>&1 &
PID=$!
# A probe still running when the script stops would retry its connections forever.
trap 'kill $PID 2>/dev/null; pkill -f "redis-benchmark -p $PORT" || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do redis-cli -p "$PORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$PORT" RL.LIMIT SET DEFAULT RATE 1/1h >/dev/null
taskset -c 1 redis-benchmark -p "$PORT" -c 50 -P 64 -n "$KEYS" -r 1000000000 -q RL.CHECK "k:__rand_int__" /e >/dev/null
echo "$(redis-cli -p "$PORT" DBSIZE) keys"
probe() {
  taskset -c 1 redis-benchmark -p "$PORT" -c 50 -n 200000 -r 1000000 --csv RL.CHECK "probe:__rand_int__" /p |
    tail -1 | tr -d '"' | awk -F, '{printf "%8.0f req/s  p99 %6.3f  max %7.3f ms  max/p99 %5.2f", $2, $7, $8, $8/$7}'
}
for round in $(seq "$ROUNDS"); do
  echo "round $round, plain : $(probe)"
  (sleep 0.5 && redis-cli -p "$PORT" BGSAVE >/dev/null) &
  saver=$!
  echo "round $round, bgsave: $(probe)"
  wait "$saver"
done
