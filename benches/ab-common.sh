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

# ab_report: for every "sha:binary" entry of the caller's `bins`, the median and all figures
# collected in the caller's associative array `got[sha]`.
ab_report() {
  local entry sha med
  for entry in "${bins[@]}"; do
    sha=${entry%%:*}
    med=$(echo ${got[$sha]} | tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "$sha: median $med  [${got[$sha]} ]"
  done
}
