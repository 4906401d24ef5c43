#!/usr/bin/env bash
# Load comparison with redis-benchmark: ratelimitd (RL.CHECK, CL.THROTTLE) against redis-server
# (INCR, and a fixed-window Lua script run with EVALSHA) on the same core.
#
#   benches/load.sh            # full run (about 2 minutes)
#   N=200000 benches/load.sh   # fewer requests per test
#
# Servers are pinned to core 0 (ratelimitd with one worker thread), redis-benchmark to core 1,
# one server at a time. Every test uses -c 50 -r 1000000, at -P 1 and -P 16. Prints a table of
# requests/s, p50, p99 and max latency (ms), and each result's ratio to Redis INCR at the same
# pipeline depth from this same run. Only 127.0.0.1 is used; everything stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-1000000}
N1=${N1:-$((N / 5))}          # -P 1 is ~10x slower; fewer requests keep the run short
RLD_PORT=${RLD_PORT:-16379}
REDIS_PORT=${REDIS_PORT:-16380}

source benches/need.sh
need_packages redis-server redis-benchmark redis-cli -- redis-server redis-tools
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }

cargo build --release -q
BIN=target/release/ratelimitd
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

wait_port() { for _ in $(seq 100); do redis-cli -p "$1" PING >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "port $1 did not answer" >&2; return 1; }

# bench NAME PORT PIPELINE REQUESTS COMMAND... -> appends "name,P,rps,p50,p99,max" to $WORK/results
bench() {
  local name=$1 port=$2 p=$3 n=$4; shift 4
  local line
  line=$(taskset -c 1 redis-benchmark -p "$port" -c 50 -r 1000000 -n "$n" -P "$p" --csv "$@" | tail -1)
  # "test","rps","avg","min","p50","p95","p99","max"
  IFS=, read -r _ rps _ _ p50 _ p99 max <<<"$(tr -d '"' <<<"$line")"
  echo "$name,$p,$rps,$p50,$p99,$max" >>"$WORK/results"
}

: >"$WORK/results"

# --- redis-server ------------------------------------------------------------------------
taskset -c 0 redis-server --port "$REDIS_PORT" --save "" --appendonly no --dir "$WORK" \
  --daemonize no --loglevel warning >"$WORK/redis.log" 2>&1 &
pids+=($!)
wait_port "$REDIS_PORT"
SHA=$(redis-cli -p "$REDIS_PORT" SCRIPT LOAD "local c = redis.call('INCR', KEYS[1]) if c == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end if c > tonumber(ARGV[2]) then return 0 end return 1")
for p in 1 16; do
  n=$([ "$p" = 1 ] && echo "$N1" || echo "$N")
  bench "redis INCR" "$REDIS_PORT" "$p" "$n" INCR "counter:__rand_int__"
  bench "redis EVALSHA fixed-window" "$REDIS_PORT" "$p" "$n" EVALSHA "$SHA" 1 "rl:__rand_int__" 60 100
done
redis-cli -p "$REDIS_PORT" SHUTDOWN NOSAVE >/dev/null 2>&1 || true

# --- ratelimitd ----------------------------------------------------------------------------
taskset -c 0 "$BIN" --port "$RLD_PORT" --threads 1 --dir "$WORK/rld" >"$WORK/rld.log" 2>&1 &
pids+=($!)
wait_port "$RLD_PORT"
redis-cli -p "$RLD_PORT" RL.LIMIT SET DEFAULT RATE 100/1m >/dev/null
for p in 1 16; do
  n=$([ "$p" = 1 ] && echo "$N1" || echo "$N")
  bench "ratelimitd RL.CHECK" "$RLD_PORT" "$p" "$n" RL.CHECK "client:__rand_int__" /api/search
  bench "ratelimitd CL.THROTTLE" "$RLD_PORT" "$p" "$n" CL.THROTTLE "key:__rand_int__" 15 30 60
done

# --- table -----------------------------------------------------------------------------------
echo
echo "redis-benchmark -c 50 -r 1000000, servers on core 0, benchmark on core 1 ($(date -u +%F))"
printf '%-28s %3s %12s %8s %8s %8s %9s\n' test P "requests/s" p50 p99 max "vs INCR"
for p in 1 16; do
  base=$(awk -F, -v p="$p" '$1=="redis INCR" && $2==p {print $3}' "$WORK/results")
  awk -F, -v p="$p" -v base="$base" '$2==p {printf "%-28s %3s %12.0f %8.3f %8.3f %8.3f %8.2fx\n", $1, $2, $3, $4, $5, $6, $3/base}' "$WORK/results"
done
