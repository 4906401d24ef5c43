# Sourced by the bench scripts that drive redis-benchmark or redis-server (not run).
#
# need_packages CMD... -- PACKAGE...: install the Debian PACKAGEs unless every CMD is on PATH.
# A bench that needs a tool installs it rather than skipping or failing on a fresh machine.
need_packages() {
  local cmds=() missing=0
  while [ "$1" != "--" ]; do cmds+=("$1"); shift; done
  shift
  for c in "${cmds[@]}"; do command -v "$c" >/dev/null || missing=1; done
  if [ "$missing" = 1 ]; then
    echo "installing $*" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
}
