#!/usr/bin/env bash
# Builds the official tailscale, tailscaled and derper at one version with `go install` into a cache
# folder keyed by that version, and prints the folder. A second call for a built version is instant.
#
#   scripts/tailscale-bin.sh v1.102.5      -> ~/.cache/weft/tailscale/v1.102.5
#   scripts/tailscale-bin.sh oldest|newest -> the versions pinned in scripts/tailscale-versions.env
#
# The cache root is $TAILSCALE_BIN_CACHE, by default ${XDG_CACHE_HOME:-$HOME/.cache}/weft/tailscale.
# (The variable is deliberately not WEFT_*: weft refuses WEFT_ variables it does not know.)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tailscale-versions.env
source "$here/tailscale-versions.env"
# shellcheck source=lib/go-cache.sh
source "$here/lib/go-cache.sh"

version=${1:-}
case "$version" in
  oldest) version=$TAILSCALE_OLDEST ;;
  newest) version=$TAILSCALE_NEWEST ;;
  v[0-9]*.[0-9]*.[0-9]*) ;;
  *) echo "usage: $0 VERSION|oldest|newest (VERSION like v1.104.5)" >&2; exit 2 ;;
esac

root=${TAILSCALE_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft/tailscale}
dir=$root/$version
bins=(tailscale tailscaled derper)

complete() { for b in "${bins[@]}"; do [ -x "$dir/$b" ] || return 1; done; }

go_cache_exit_if_built "$dir" complete
go_cache_require_go "the official tailscale binaries"
# One builder per version at a time.
go_cache_lock "$root" ".$version.lock" "$dir" complete
go_cache_build_dir "$root/.$version.build.XXXXXX"
for b in "${bins[@]}"; do
  echo "building tailscale.com/cmd/$b@$version" >&2
  # GOTOOLCHAIN=auto: newer releases need a newer Go than the machine's; go fetches that toolchain
  # from the module proxy (the machine's go.env pins GOTOOLCHAIN=local).
  GOBIN=$tmp GOTOOLCHAIN=auto go install "tailscale.com/cmd/$b@$version" >&2
done
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$dir"
