#!/usr/bin/env bash
# The cost of TLS on pipelined checks: redis-benchmark's RL.CHECK at -P 16 on ratelimitd's plain
# port and on its TLS port, in interleaved rounds on the same release build.
#
#   benches/tls.sh                         # 5 rounds of each (about 2 minutes)
#   ROUNDS=1 N=200000 benches/tls.sh       # one short round
#
# The daemon is pinned to core 0 with one worker thread and restarted before every test (each
# starts from empty tables, as in benches/load.sh); redis-benchmark is pinned to core 1, with
# -c 50 -r 1000000 -P 16. Round r runs plain then TLS when r is odd, TLS then plain when it is
# even, so the machine's drift over minutes falls on both. TLS is TLS 1.3 as redis-benchmark and
# rustls negotiate it (AES-256-GCM here), with a certificate from a CA made for the run and no
# client certificate (--tls-auth-clients no): the 50 handshakes are paid once per test, so the
# figure is the record layer's cost, both sides of it (redis-benchmark encrypts and decrypts
# too, on its own core). So the daemon's own CPU time is read as well (utime + stime from
# /proc, over the test), as nanoseconds per check: the server's share, which another process
# on the machine disturbs less than it does requests/s. Prints every round's figures, the
# medians, and the medians of the per-round TLS/plain ratios. Only 127.0.0.1 is used;
# everything stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
N=${N:-2000000}
PORT=${PORT:-16391}
TLS_PORT=${TLS_PORT:-16392}

source benches/need.sh
need_packages redis-benchmark redis-cli -- redis-tools
command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }
command -v openssl >/dev/null || need_packages openssl -- openssl

cargo build --release -q
BIN=target/release/ratelimitd
WORK=$(mktemp -d)
rld=
cleanup() {
  [ -n "$rld" ] && kill "$rld" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# A CA and a certificate for 127.0.0.1.
(
  cd "$WORK"
  openssl req -x509 -new -nodes -newkey rsa:2048 -keyout ca.key -out ca.crt -days 2 \
    -subj "/CN=bench CA" 2>/dev/null
  openssl req -new -nodes -newkey rsa:2048 -keyout server.key -out server.csr \
    -subj "/CN=ratelimitd" 2>/dev/null
  printf "subjectAltName=IP:127.0.0.1\n" >server.ext
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile server.ext -out server.crt 2>/dev/null
)

wait_port() { for _ in $(seq 100); do redis-cli -p "$1" PING >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "port $1 did not answer" >&2; return 1; }

fresh_ratelimitd() {
  if [ -n "$rld" ]; then
    kill "$rld" 2>/dev/null || true
    wait "$rld" 2>/dev/null || true
  fi
  rm -rf "$WORK/rld"
  taskset -c 0 "$BIN" --port "$PORT" --tls-port "$TLS_PORT" --tls-cert-file "$WORK/server.crt" \
    --tls-key-file "$WORK/server.key" --tls-auth-clients no --threads 1 --dir "$WORK/rld" \
    --save-interval 0 >>"$WORK/rld.log" 2>&1 &
  rld=$!
  wait_port "$PORT"
  redis-cli -p "$PORT" RL.LIMIT SET DEFAULT RATE 100/1m >/dev/null
}

# The daemon's CPU time so far, in clock ticks (utime + stime; its name has no spaces).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$rld/stat"; }

# bench ROUND NAME ARGS... -> appends "round,name,rps,ns_per_check" to $WORK/results
bench() {
  local round=$1 name=$2 line rps before after ns; shift 2
  fresh_ratelimitd
  before=$(cpu_ticks)
  line=$(taskset -c 1 redis-benchmark "$@" -c 50 -r 1000000 -n "$N" -P 16 --csv \
    RL.CHECK "client:__rand_int__" /api/search | tail -1)
  after=$(cpu_ticks)
  rps=$(tr -d '"' <<<"$line" | cut -d, -f2)
  ns=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$N" \
    'BEGIN {printf "%.0f", t / hz * 1e9 / n}')
  echo "$round,$name,$rps,$ns" >>"$WORK/results"
  echo "round $round $name: $rps requests/s, daemon CPU $ns ns per check" >&2
}
plain() { bench "$1" plain -p "$PORT"; }
tls() { bench "$1" tls --tls --cacert "$WORK/ca.crt" -h 127.0.0.1 -p "$TLS_PORT"; }

: >"$WORK/results"
for round in $(seq "$ROUNDS"); do
  if ((round % 2)); then plain "$round"; tls "$round"; else tls "$round"; plain "$round"; fi
done

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# column NAME FIELD (3: requests/s, 4: ns per check), one line per round
column() { awk -F, -v n="$1" -v f="$2" '$2==n {print $f}' "$WORK/results"; }
# ratios FIELD: TLS over plain in the same round, one line per round
ratios() {
  awk -F, -v f="$1" '$2=="plain" {p[$1]=$f} $2=="tls" {t[$1]=$f}
    END {for (k in t) if (p[k] > 0) printf "%d %.3f\n", k, t[k]/p[k]}' "$WORK/results" |
    sort -n | cut -d' ' -f2
}
echo
echo "redis-benchmark RL.CHECK -c 50 -r 1000000 -P 16 -n $N, daemon on core 0 (--threads 1), benchmark on core 1 ($(date -u +%F))"
printf '%-6s %12s %14s   %s\n' port "median r/s" "median ns/chk" "every round (r/s; daemon ns per check)"
for t in plain tls; do
  printf '%-6s %12.0f %14.0f   %s; %s\n' "$t" "$(column "$t" 3 | median)" \
    "$(column "$t" 4 | median)" "$(column "$t" 3 | awk '{printf "%.0f ", $1}')" \
    "$(column "$t" 4 | tr '\n' ' ')"
done
echo "TLS/plain requests/s, median of the per-round ratios: $(ratios 3 | median)  (every round: $(ratios 3 | tr '\n' ' '))"
echo "TLS/plain daemon CPU per check, median of the per-round ratios: $(ratios 4 | median)  (every round: $(ratios 4 | tr '\n' ' '))"
