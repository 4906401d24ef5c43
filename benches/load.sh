#!/usr/bin/env bash
# Load comparison with redis-benchmark: ratelimitd (RL.CHECK, CL.THROTTLE) against redis-server
# (INCR, and a fixed-window Lua script run with EVALSHA) on the same core.
#
#   benches/load.sh                       # 5 rounds (about 3 minutes)
#   ROUNDS=1 N=200000 benches/load.sh     # one short round
#
# Both servers are pinned to core 0 (ratelimitd with one worker thread) and started once;
# redis-benchmark is pinned to core 1 and loads one server at a time, so the idle one costs
# nothing. Every test uses -c 50 -r 1000000, at -P 1 and -P 16. Each round runs every test once,
# Redis and ratelimitd alternating, in reverse order every other round.
#
# Why rounds: on a shared VM the speed of the machine drifts by 15-50 % within minutes, and a
# single pass that measures Redis first and ratelimitd a minute later puts that drift into the
# ratio (two such passes of one build gave 0.99x and 1.57x). Comparing each round's figures with
# the Redis INCR figure of the same round, and taking medians, keeps the drift out.
#
# Prints a table of the medians over the rounds (requests/s, p50, p99, max latency in ms, and
# the median of the per-round ratios to Redis INCR at the same pipeline depth), then every
# round's requests/s and ratio. Every test starts from an empty server, as a single pass would:
# Redis is emptied (FLUSHALL) and ratelimitd restarted before each, so neither has tables
# already grown by a previous test of the round. Only 127.0.0.1 is used; everything stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
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
rld=
cleanup() {
  for p in "${pids[@]}" $rld; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() { for _ in $(seq 100); do redis-cli -p "$1" PING >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "port $1 did not answer" >&2; return 1; }

# bench ROUND NAME PORT PIPELINE REQUESTS COMMAND... -> appends
# "round,name,P,rps,p50,p99,max" to $WORK/results
bench() {
  local round=$1 name=$2 port=$3 p=$4 n=$5; shift 5
  local line
  line=$(taskset -c 1 redis-benchmark -p "$port" -c 50 -r 1000000 -n "$n" -P "$p" --csv "$@" | tail -1)
  # "test","rps","avg","min","p50","p95","p99","max"
  IFS=, read -r _ rps _ _ p50 _ p99 max <<<"$(tr -d '"' <<<"$line")"
  echo "$round,$name,$p,$rps,$p50,$p99,$max" >>"$WORK/results"
}

: >"$WORK/results"

taskset -c 0 redis-server --port "$REDIS_PORT" --save "" --appendonly no --dir "$WORK" \
  --daemonize no --loglevel warning >"$WORK/redis.log" 2>&1 &
pids+=($!)
wait_port "$REDIS_PORT"
SHA=$(redis-cli -p "$REDIS_PORT" SCRIPT LOAD "local c = redis.call('INCR', KEYS[1]) if c == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end if c > tonumber(ARGV[2]) then return 0 end return 1")

# A fresh ratelimitd (no state kept between starts: --save-interval 0, its own empty dir).
fresh_ratelimitd() {
  if [ -n "$rld" ]; then
    kill "$rld" 2>/dev/null || true
    wait "$rld" 2>/dev/null || true
  fi
  rm -rf "$WORK/rld"
  taskset -c 0 "$BIN" --port "$RLD_PORT" --threads 1 --dir "$WORK/rld" --save-interval 0 \
    >>"$WORK/rld.log" 2>&1 &
  rld=$!
  wait_port "$RLD_PORT"
  redis-cli -p "$RLD_PORT" RL.LIMIT SET DEFAULT RATE 100/1m >/dev/null
}

redis_tests() {
  local round=$1 p=$2 n=$3
  redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
  bench "$round" "redis INCR" "$REDIS_PORT" "$p" "$n" INCR "counter:__rand_int__"
  redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null
  bench "$round" "redis EVALSHA fixed-window" "$REDIS_PORT" "$p" "$n" EVALSHA "$SHA" 1 "rl:__rand_int__" 60 100
}
ratelimitd_tests() {
  local round=$1 p=$2 n=$3
  fresh_ratelimitd
  bench "$round" "ratelimitd RL.CHECK" "$RLD_PORT" "$p" "$n" RL.CHECK "client:__rand_int__" /api/search
  fresh_ratelimitd
  bench "$round" "ratelimitd CL.THROTTLE" "$RLD_PORT" "$p" "$n" CL.THROTTLE "key:__rand_int__" 15 30 60
}

for round in $(seq "$ROUNDS"); do
  for p in 1 16; do
    n=$([ "$p" = 1 ] && echo "$N1" || echo "$N")
    if ((round % 2)); then
      redis_tests "$round" "$p" "$n"
      ratelimitd_tests "$round" "$p" "$n"
    else
      ratelimitd_tests "$round" "$p" "$n"
      redis_tests "$round" "$p" "$n"
    fi
  done
done

# --- tables ----------------------------------------------------------------------------------
tests=("redis INCR" "redis EVALSHA fixed-window" "ratelimitd RL.CHECK" "ratelimitd CL.THROTTLE")
# median: of the numbers on stdin (the lower middle one of an even count)
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# column NAME P FIELD: that field (4=rps 5=p50 6=p99 7=max) of every round, one per line
column() { awk -F, -v n="$1" -v p="$2" -v f="$3" '$2==n && $3==p {print $f}' "$WORK/results"; }
# ratios NAME P: requests/s of NAME over Redis INCR's in the same round, one per round
ratios() {
  awk -F, -v n="$1" -v p="$2" '$3==p && $2=="redis INCR" {b[$1]=$4} $3==p && $2==n {r[$1]=$4}
    END {for (k in r) if (b[k] > 0) printf "%d %.2f\n", k, r[k]/b[k]}' "$WORK/results" | sort -n | cut -d' ' -f2
}
echo
echo "redis-benchmark -c 50 -r 1000000, servers on core 0, benchmark on core 1 ($(date -u +%F))"
echo "medians over $ROUNDS rounds; 'vs INCR' is the median of the per-round ratios"
printf '%-28s %3s %12s %8s %8s %8s %9s\n' test P "requests/s" p50 p99 max "vs INCR"
for p in 1 16; do
  for t in "${tests[@]}"; do
    printf '%-28s %3s %12.0f %8.3f %8.3f %8.3f %8.2fx\n' "$t" "$p" \
      "$(column "$t" "$p" 4 | median)" "$(column "$t" "$p" 5 | median)" \
      "$(column "$t" "$p" 6 | median)" "$(column "$t" "$p" 7 | median)" \
      "$(ratios "$t" "$p" | median)"
  done
done
echo
echo "every round (requests/s, and the ratio to Redis INCR of the same round):"
for p in 1 16; do
  for t in "${tests[@]}"; do
    printf '%-28s %3s  %s  |  %s\n' "$t" "$p" "$(column "$t" "$p" 4 | awk '{printf "%.0f ", $1}')" \
      "$(ratios "$t" "$p" | tr '\n' ' ')"
  done
done
