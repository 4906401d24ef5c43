#!/usr/bin/env bash
# The cost of security on pipelined checks: redis-benchmark's RL.CHECK at -P 16 against four
# daemons, in interleaved rounds:
#   base   a build from before users and TLS (BASE, default e1479fb), plain port, no sign-in;
#   plain  this build, plain port, the default user (every command, every key);
#   acl    this build, plain port, redis-benchmark signed in as a checker user with a key
#          pattern (`~client:* -@all +rl.check`): the permission and key checks of every request;
#   tls    this build, its TLS port, the default user.
#
#   benches/security.sh                    # 5 rounds of each (about 4 minutes)
#   ROUNDS=1 N=200000 benches/security.sh  # one short round
#   BASE=<rev> benches/security.sh         # another build to compare with
#
# Each daemon is pinned to core 0 with one worker thread and restarted before every test (each
# starts from empty tables, as in benches/load.sh); redis-benchmark is pinned to core 1, with
# -c 50 -r 1000000 -P 16. The four run in one order on odd rounds and in the reverse order on
# even ones, so the machine's drift over minutes falls on all of them. TLS is TLS 1.3 as
# redis-benchmark and rustls negotiate it (AES-256-GCM here), with a certificate from a CA made
# for the run and no client certificate (--tls-auth-clients no): the 50 handshakes are paid once
# per test, so the figure is the record layer's cost, both sides of it (redis-benchmark
# encrypts and decrypts too, on its own core). So the daemon's own CPU time is read as well
# (utime + stime from /proc, over the test), as nanoseconds per check: the server's share, which
# another process on the machine disturbs less than it does requests/s. Prints every round's
# figures, the medians, and the medians of the per-round ratios plain/base, acl/plain and
# tls/plain. Only 127.0.0.1 is used; everything stops by itself.
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

BASE=${BASE:-e1479fb}
cargo build --release -q
BIN=target/release/ratelimitd
source benches/ab-common.sh
base_tree=$(ab_tree "$BASE")
(cd "$base_tree" && CARGO_TARGET_DIR="$base_tree/target" cargo build --release --bin ratelimitd -q)
BASE_BIN="$base_tree/target/release/ratelimitd"
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

# The checker the acl runs sign in as: RL.CHECK on its tenant's clients only.
printf 'user checker on >checkpw ~client:* resetchannels -@all +rl.check\n' >"$WORK/users.acl"

# fresh_ratelimitd WHICH: a new daemon, base (the BASE build) or this one (with TLS and users).
fresh_ratelimitd() {
  if [ -n "$rld" ]; then
    kill "$rld" 2>/dev/null || true
    wait "$rld" 2>/dev/null || true
  fi
  rm -rf "$WORK/rld"
  if [ "$1" = base ]; then
    taskset -c 0 "$BASE_BIN" --port "$PORT" --threads 1 --dir "$WORK/rld" \
      --save-interval 0 >>"$WORK/rld.log" 2>&1 &
  else
    taskset -c 0 "$BIN" --port "$PORT" --tls-port "$TLS_PORT" \
      --tls-cert-file "$WORK/server.crt" --tls-key-file "$WORK/server.key" \
      --tls-auth-clients no --aclfile "$WORK/users.acl" --threads 1 --dir "$WORK/rld" \
      --save-interval 0 >>"$WORK/rld.log" 2>&1 &
  fi
  rld=$!
  wait_port "$PORT"
  redis-cli -p "$PORT" RL.LIMIT SET DEFAULT RATE 100/1m >/dev/null
}

# The daemon's CPU time so far, in clock ticks (utime + stime; its name has no spaces).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$rld/stat"; }

# bench ROUND NAME ARGS... -> appends "round,name,rps,ns_per_check" to $WORK/results
bench() {
  local round=$1 name=$2 line rps before after ns; shift 2
  fresh_ratelimitd "$name"
  before=$(cpu_ticks)
  line=$(taskset -c 1 redis-benchmark "$@" -c 50 -r 1000000 -n "$N" -P 16 --csv \
    RL.CHECK "client:__rand_int__" /api/search | tail -1)
  after=$(cpu_ticks)
  # Every request must have been a check that ran (not one refused by NOAUTH or NOPERM, which
  # would be cheaper): the daemon's own count says so.
  local ran
  ran=$(redis-cli -p "$PORT" INFO stats | tr -d '\r' |
    awk -F: '$1=="rl_checks_allowed" || $1=="rl_checks_denied" {n += $2} END {print n + 0}')
  ((ran >= N)) || { echo "$name: only $ran of $N checks ran" >&2; exit 1; }
  rps=$(tr -d '"' <<<"$line" | cut -d, -f2)
  ns=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$N" \
    'BEGIN {printf "%.0f", t / hz * 1e9 / n}')
  echo "$round,$name,$rps,$ns" >>"$WORK/results"
  echo "round $round $name: $rps requests/s, daemon CPU $ns ns per check" >&2
}
run_base() { bench "$1" base -p "$PORT"; }
run_plain() { bench "$1" plain -p "$PORT"; }
run_acl() { bench "$1" acl -p "$PORT" --user checker -a checkpw; }
run_tls() { bench "$1" tls --tls --cacert "$WORK/ca.crt" -h 127.0.0.1 -p "$TLS_PORT"; }

: >"$WORK/results"
for round in $(seq "$ROUNDS"); do
  if ((round % 2)); then order=(base plain acl tls); else order=(tls acl plain base); fi
  for which in "${order[@]}"; do "run_$which" "$round"; done
done

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# column NAME FIELD (3: requests/s, 4: ns per check), one line per round
column() { awk -F, -v n="$1" -v f="$2" '$2==n {print $f}' "$WORK/results"; }
# ratios FIELD A B: A over B in the same round, one line per round
ratios() {
  awk -F, -v f="$1" -v a="$2" -v b="$3" '$2==a {x[$1]=$f} $2==b {y[$1]=$f}
    END {for (k in x) if (y[k] > 0) printf "%d %.3f\n", k, x[k]/y[k]}' "$WORK/results" |
    sort -n | cut -d' ' -f2
}
echo
echo "redis-benchmark RL.CHECK -c 50 -r 1000000 -P 16 -n $N, daemon on core 0 (--threads 1), benchmark on core 1 ($(date -u +%F), base $BASE)"
printf '%-6s %12s %14s   %s\n' run "median r/s" "median ns/chk" "every round (r/s; daemon ns per check)"
for t in base plain acl tls; do
  printf '%-6s %12.0f %14.0f   %s; %s\n' "$t" "$(column "$t" 3 | median)" \
    "$(column "$t" 4 | median)" "$(column "$t" 3 | awk '{printf "%.0f ", $1}')" \
    "$(column "$t" 4 | tr '\n' ' ')"
done
for pair in "plain base" "acl plain" "tls plain"; do
  read -r a b <<<"$pair"
  echo "$a/$b requests/s, median of the per-round ratios: $(ratios 3 "$a" "$b" | median)  (every round: $(ratios 3 "$a" "$b" | tr '\n' ' '))"
  echo "$a/$b daemon CPU per check, median of the per-round ratios: $(ratios 4 "$a" "$b" | median)  (every round: $(ratios 4 "$a" "$b" | tr '\n' ' '))"
done
