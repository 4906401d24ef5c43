#!/usr/bin/env bash
# A flood of distinct keys against the memory bound, under each --maxmemory-policy: KEYS
# distinct RL.CHECK keys (flood:0 .. flood:KEYS-1, each sent once, nothing decays: RATE
# 100/1h) go to a daemon with --maxmemory MAXMEMORY. While they arrive, a sampler asks PING and
# INFO memory every 0.2 s (one connection of its own): the daemon must stay within its bound
# and keep answering.
#
#   benches/flood.sh                                   # KEYS=10000000 MAXMEMORY=64mb
#   KEYS=2000000 POLICIES=refuse-deny benches/flood.sh
#   BIN=target/ab/<rev>/target/release/ratelimitd benches/flood.sh
#
# Prints per policy: the flood's rate; the largest used_memory and the slowest and 99th
# percentile PING round trip seen during it (the probe shares core 1 with the flood's sender);
# after it, used_memory, RSS, peak RSS (VmHWM), DBSIZE, evicted and refused keys, and what a
# check of a key never seen before answers. ratelimitd runs with one worker thread on
# core 0; the flood (python3 writing RESP into redis-cli --pipe) and the sampler on core 1.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${KEYS:-10000000}
MAXMEMORY=${MAXMEMORY:-64mb}
POLICIES=${POLICIES:-evict-nearest refuse-allow refuse-deny}
PORT=${PORT:-16382}
source benches/need.sh
need_packages redis-cli -- redis-tools
need_packages python3 -- python3
# BIN: a ratelimitd binary to flood instead of this tree's (e.g. another revision's build).
if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  BIN=target/release/ratelimitd
fi
WORK=$(mktemp -d)
PID=
trap '[ -n "$PID" ] && kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
cli() { taskset -c 1 redis-cli -p "$PORT" "$@"; }
field() { cli INFO "$1" | tr -d '\r' | awk -F: -v k="$2" '$1==k{print $2}'; }
mb() { awk -v b="$1" 'BEGIN{printf "%.1f MB", b/1e6}'; }

flood() {  # RESP for RL.CHECK flood:<i> /e, i = 0 .. KEYS-1, into redis-cli --pipe
  python3 - "$KEYS" <<'EOF' | taskset -c 1 redis-cli -p "$PORT" --pipe >"$WORK/pipe" 2>&1
import sys
n = int(sys.argv[1])
out = sys.stdout.buffer
step = 100_000
for lo in range(0, n, step):
    parts = []
    for i in range(lo, min(n, lo + step)):
        k = b"flood:%d" % i
        parts.append(b"*3\r\n$8\r\nRL.CHECK\r\n$%d\r\n%s\r\n$2\r\n/e\r\n" % (len(k), k))
    out.write(b"".join(parts))
EOF
}

sampler() {  # one connection until $WORK/done: PING every 5 ms, INFO memory every 0.2 s
  taskset -c 1 python3 - "$PORT" "$WORK/done" <<'EOF' >"$WORK/samples"
import os, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
f = s.makefile("rb")
def ask(cmd):
    s.sendall(cmd)
    line = f.readline()
    if line.startswith(b"$"):
        return f.read(int(line[1:]) + 2)
    return line
pings, used, next_info = [], 0, 0.0
while not os.path.exists(sys.argv[2]):
    t0 = time.perf_counter()
    ask(b"PING\r\n")
    pings.append(time.perf_counter() - t0)
    if t0 >= next_info:
        for l in ask(b"INFO memory\r\n").split(b"\r\n"):
            if l.startswith(b"used_memory:"):
                used = max(used, int(l.split(b":")[1]))
        next_info = t0 + 0.2
    time.sleep(0.005)
pings.sort()
print(used, "%.1f" % (pings[-1] * 1e3), "%.1f" % (pings[int(len(pings) * 0.99)] * 1e3), len(pings))
EOF
}

for policy in $POLICIES; do
  rm -f "$WORK/done"
  taskset -c 0 "$BIN" --port "$PORT" --threads 1 --dir "$WORK/d-$policy" \
    --maxmemory "$MAXMEMORY" --maxmemory-policy "$policy" >"$WORK/log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do cli PING >/dev/null 2>&1 && break; sleep 0.1; done
  cli RL.LIMIT SET DEFAULT RATE 100/1h >/dev/null
  if [ "$policy" = "${POLICIES%% *}" ]; then
    echo "bound: maxmemory $(mb "$(field memory maxmemory)"); $KEYS distinct keys per policy"
    printf '%-14s %9s %14s %19s %12s %9s %9s %9s %9s %9s  %s\n' policy "keys/s" \
      "max used (run)" "PING max / p99 ms" used_memory RSS "peak RSS" DBSIZE evicted \
      refused "new key"
  fi
  sampler &
  SAMPLER=$!
  start=$(date +%s%N)
  flood
  end=$(date +%s%N)
  touch "$WORK/done"
  wait "$SAMPLER"
  grep -q "errors: 0, replies: $KEYS" "$WORK/pipe" || { cat "$WORK/pipe"; exit 1; }
  read -r max_used ping_max ping_p99 _ <"$WORK/samples"
  new_key=$(cli RL.CHECK never-seen-before /e | head -1)
  hwm=$(awk '/VmHWM/{print $2 * 1024}' "/proc/$PID/status")
  printf '%-14s %9.0f %14s %19s %12s %9s %9s %9s %9s %9s  allowed=%s\n' "$policy" \
    "$(echo "$KEYS * 1000000000 / ($end - $start)" | bc)" "$(mb "$max_used")" \
    "$ping_max / $ping_p99" \
    "$(mb "$(field memory used_memory)")" "$(mb "$(field memory used_memory_rss)")" \
    "$(mb "$hwm")" "$(cli DBSIZE)" "$(field stats evicted_keys)" "$(field stats refused_keys)" \
    "$new_key"
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=
done
