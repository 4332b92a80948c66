#!/usr/bin/env bash
# Builds Headscale (for the side-by-side scale benchmark only; never a test dependency) into a cache
# folder keyed by version, and prints the binary's path. A second call for a built version is instant.
#
#   scripts/headscale-bin.sh            -> the version pinned below (the newest release)
#   scripts/headscale-bin.sh v0.29.2
#
# `go install github.com/juanfont/headscale/cmd/headscale@VERSION` is refused here: the module proxy
# answers 403 to the module's version list, which go install reads for deprecation notices. The same
# tagged module builds fine from a throwaway module that requires it at that exact version (go get of
# an exact version never asks for the list), so that is what this does.
#
# The cache root is $HEADSCALE_BIN_CACHE, by default ${XDG_CACHE_HOME:-$HOME/.cache}/weft/headscale.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/go-cache.sh
source "$here/lib/go-cache.sh"

HEADSCALE_VERSION_PINNED=v0.29.2
version=${1:-$HEADSCALE_VERSION_PINNED}
case "$version" in
  v[0-9]*.[0-9]*.[0-9]*) ;;
  *) echo "usage: $0 [VERSION] (VERSION like $HEADSCALE_VERSION_PINNED)" >&2; exit 2 ;;
esac

root=${HEADSCALE_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft/headscale}
bin=$root/$version/headscale
go_cache_exit_if_built "$bin" test -x "$bin"
go_cache_require_go "headscale"
go_cache_lock "$root" ".$version.lock" "$bin" test -x "$bin"
go_cache_build_dir "$root/.$version.build.XXXXXX"
cd "$tmp"
echo "building github.com/juanfont/headscale/cmd/headscale@$version" >&2
go mod init headscale-build >/dev/null 2>&1
GOTOOLCHAIN=auto go get "github.com/juanfont/headscale/cmd/headscale@$version" >&2
GOTOOLCHAIN=auto go build -trimpath -o "$tmp/headscale" github.com/juanfont/headscale/cmd/headscale >&2
mkdir -p "$root/$version"
mv "$tmp/headscale" "$bin"
echo "$bin"
