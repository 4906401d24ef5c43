#!/usr/bin/env bash
# Instructions per pipelined RL.CHECK through the whole daemon (read, decode, look-ahead,
# dispatch, the check, counters, reply, write), counted by callgrind, for each REV.
#
#   benches/daemon-icount.sh [REV...]          # default: the working tree's HEAD
#   N=100000 benches/daemon-icount.sh b496a75 HEAD
#
# Why: benches/icount.sh counts the engine's check alone; this counts what the daemon adds
# around it, exactly, so two builds can be compared without the VM's drifting speed. Each
# REV's release daemon (a worktree under target/ab/, as benches/load-ab.sh builds it) runs
# under callgrind with --threads 1, collecting only inside the RESP connection task (its
# `Connection::run`; the background tasks tick on wall time, which valgrind stretches). The
# pattern must name that one function: callgrind toggles collection at every function that
# matches, so a pattern that also matched `Connection::serve`, called inside it, would turn
# collection off again. `redis-cli --pipe` sends it
# N, then 2N, RL.CHECKs over 1000 keys (the same bytes for every REV) on one connection; the
# difference of the two totals over N is the count per check, so a connection's set-up and
# its first reads cancel out. 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/need.sh
source benches/ab-common.sh
need_packages valgrind -- valgrind
need_packages redis-cli -- redis-tools
N=${N:-100000}
PORT=${PORT:-16391}
[ $# -gt 0 ] || set -- HEAD
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# The requests: a limit nothing exhausts, then COUNT checks of keys k0..k999 in turn.
requests() {
  python3 - "$1" <<'PY'
import sys
def cmd(*a):
    out = [f"*{len(a)}\r\n"]
    for x in a:
        out.append(f"${len(x)}\r\n{x}\r\n")
    return "".join(out)
n = int(sys.argv[1])
sys.stdout.write(cmd("RL.LIMIT", "SET", "DEFAULT", "RATE", "1000000000/1s"))
for i in range(n):
    sys.stdout.write(cmd("RL.CHECK", f"k{i % 1000}", "/api"))
PY
}
requests "$N" >"$work/n.resp"
requests $((2 * N)) >"$work/2n.resp"

# count BIN FILE: instructions collected in the connection task while FILE is served.
count() {
  local bin=$1 file=$2 out="$work/callgrind.out" log="$work/valgrind.log"
  rm -rf "$work/dir"
  valgrind --tool=callgrind --callgrind-out-file="$out" \
    --toggle-collect='ratelimitd::connection::Connection::run*' \
    "$bin" --port "$PORT" --threads 1 --dir "$work/dir" --save-interval 0 \
    --log-level warn 2>"$log" &
  pid=$!
  for _ in $(seq 600); do
    redis-cli -p "$PORT" PING >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-cli -p "$PORT" --pipe <"$file" >/dev/null
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
  awk '/Collected/ {print $4}' "$log"
}

for rev in "$@"; do
  rev=$(git rev-parse --short "$rev")
  tree=$(ab_tree "$rev")
  (cd "$tree" && CARGO_TARGET_DIR="$tree/target" cargo build --release --bin ratelimitd -q)
  bin="$tree/target/release/ratelimitd"
  one=$(count "$bin" "$work/n.resp")
  two=$(count "$bin" "$work/2n.resp")
  awk -v a="$one" -v b="$two" -v n="$N" -v r="$rev" \
    'BEGIN {printf "%s: %.1f instructions per pipelined RL.CHECK (%d and %d collected)\n", r, (b - a) / n, a, b}'
done
