#!/usr/bin/env bash
# Instructions per batched check (benches/icount.rs), counted by callgrind, for each REV.
#
#   benches/icount.sh [KEYS] [REV...]
#   benches/icount.sh 1000 e7cfe36~1 e7cfe36
#
# Without a REV, the working tree is measured. Each REV is built in its own worktree under
# target/ab/ (as in engine-ab.sh), with this checkout's benches/icount.rs. The count is exact
# and does not drift with the VM's speed, so one run per build is enough; it is instructions,
# not time (see benches/icount.rs for what that leaves out).
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/need.sh
source benches/ab-common.sh
need_packages valgrind callgrind_annotate -- valgrind
keys=${1:-1000}
shift || true
count() {
  local tree=$1 bin out
  (cd "$tree" && CARGO_TARGET_DIR="$tree/target" cargo build --release --bench icount -q)
  bin=$(ls -t "$tree"/target/release/deps/icount-* | grep -v '\.d$' | head -1)
  out=$(mktemp)
  RLD_ICOUNT_KEYS=$keys valgrind --tool=callgrind --callgrind-out-file="$out" \
    --toggle-collect='icount::run' "$bin" --bench 2>&1 >/dev/null |
    awk -v n=$((20000 * 16)) '/Collected/ {printf "%.1f instructions per check\n", $4 / n}'
  rm -f "$out"
}
if [ $# -eq 0 ]; then
  echo -n "working tree, $keys keys: "
  count "$PWD"
fi
for rev in "$@"; do
  tree=$(ab_tree "$rev")
  mkdir -p "$tree/benches"
  cp benches/icount.rs "$tree/benches/icount.rs"
  grep -q 'name = "icount"' "$tree/Cargo.toml" ||
    printf '\n[[bench]]\nname = "icount"\nharness = false\n' >>"$tree/Cargo.toml"
  echo -n "$(git rev-parse --short "$rev"), $keys keys: "
  count "$tree"
done
