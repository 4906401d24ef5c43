# Shared by benches/engine-ab.sh and benches/load-ab.sh (sourced, not run): one worktree per
# revision under target/ab/, and the per-revision medians of the figures collected.

# ab_tree REV: the path of the worktree of REV (created if missing).
ab_tree() {
  local sha tree
  sha=$(git rev-parse --short "$1")
  tree="$PWD/target/ab/$sha"
  [ -d "$tree" ] || git worktree add --detach "$tree" "$sha" >/dev/null
  echo "$tree"
}

# ab_round_order ROUND: the caller's `bins` entries, one per line, in their given order on odd
# rounds and reversed on even ones. Why: on this VM the second of two back-to-back runs tends
# to be the faster one whatever it runs (seen with one binary under two flags: the flag run
# second was faster in 5 of 5 rounds, and with the order swapped the other flag, now second,
# in 6 of 7; docs/PERFORMANCE.md), so a fixed order biases the comparison.
ab_round_order() {
  local i
  if (($1 % 2)); then
    printf '%s\n' "${bins[@]}"
  else
    for ((i = ${#bins[@]} - 1; i >= 0; i--)); do printf '%s\n' "${bins[$i]}"; done
  fi
}

# ab_report: for every "label:binary" entry of the caller's `bins`, the median and all figures
# collected in the caller's associative array `got[label]`.
ab_report() {
  local entry sha med
  for entry in "${bins[@]}"; do
    sha=${entry%%:*}
    med=$(echo ${got[$sha]} | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "$sha: median $med  [${got[$sha]} ]"
  done
}
