#!/usr/bin/env bash
# Primary-side CPU per RL.CHECK with zero vs one replica attached: CPU time of the primary
# process (utime+stime from /proc) over a fixed number of requests, so other processes on the
# machine (the replica, redis-benchmark) do not enter the figure.
set -euo pipefail
# Usage: benches/replication-cost.sh   (N=2000000 requests, KEYS=100000 distinct keys, ROUNDS=2)
# Needs a release build (cargo build --release) and redis-tools.
cd "$(dirname "$0")/.."
N=${N:-2000000}; KEYS=${KEYS:-100000}
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
run() {
  local label=$1 with_replica=$2
  local d1 d2; d1=$(mktemp -d); d2=$(mktemp -d)
  taskset -c 0 target/release/ratelimitd --port 16401 --threads 1 --dir $d1 2>/dev/null & local p=$!
  sleep 0.7
  redis-cli -p 16401 RL.LIMIT SET DEFAULT RATE 100000/1s >/dev/null
  local r="" h=""
  if [ "$with_replica" = hog ]; then
    # Control: no replica, but a busy loop on the load generator's core, as the replica
    # process would be. It shows how much of the "one replica" figure comes from the load
    # generator getting less CPU (smaller batches per wakeup on the primary), not from
    # replication work in the primary.
    taskset -c 1 sh -c 'while :; do :; done' & h=$!
  fi
  if [ "$with_replica" = 1 ]; then
    taskset -c 1 target/release/ratelimitd --port 16402 --threads 1 --dir $d2 --replicaof 127.0.0.1:16401 2>/dev/null & r=$!
    for _ in $(seq 100); do redis-cli -p 16402 INFO replication 2>/dev/null | grep -q "master_link_status:up" && break; sleep 0.1; done
  fi
  local c0; c0=$(cpu $p)
  local out; out=$(taskset -c 1 redis-benchmark -p 16401 -c 50 -P 16 -n $N -r $KEYS -q RL.CHECK "key:__rand_int__" /api 2>&1 | tr '\r' '\n' | tail -1)
  local c1; c1=$(cpu $p)
  local hz; hz=$(getconf CLK_TCK)
  echo "$label: $(echo "$out" | grep -o '[0-9.]* requests per second'); primary CPU $(( (c1-c0)*1000/hz )) ms for $N requests = $(echo "scale=3; ($c1-$c0)*1000000/$hz/$N" | bc) us/request"
  kill $p ${r:-} ${h:-} 2>/dev/null; wait 2>/dev/null || true; rm -rf $d1 $d2
}
for i in $(seq ${ROUNDS:-2}); do run "zero replicas" 0; run "one replica  " 1; run "busy loop, no replica" hog; done
