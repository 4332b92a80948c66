#!/usr/bin/env bash
# Builds test/go/apiclient (weft's API v2 driven by Tailscale's official Go client library) with
# `go build` into a cache folder keyed by the hash of its go.mod, go.sum and sources, and prints the
# binary's path. A second call for an unchanged program is instant.
#
# The cache root is $APICLIENT_BIN_CACHE, by default ${XDG_CACHE_HOME:-$HOME/.cache}/weft/apiclient.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/go-cache.sh
source "$here/lib/go-cache.sh"
src=$(cd "$here/../test/go/apiclient" && pwd)

go_cache_require_go "the API v2 test client"

hash=$(cd "$src" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
root=${APICLIENT_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft/apiclient}
dir=$root/$hash
bin=$dir/apiclient

go_cache_exit_if_built "$bin" test -x "$bin"
# One builder per program version at a time.
go_cache_lock "$root" ".$hash.lock" "$bin" test -x "$bin"
go_cache_build_dir "$root/.$hash.build.XXXXXX"
echo "building test/go/apiclient ($hash)" >&2
# -mod=readonly: go.sum pins every module; the build never edits go.mod.
(cd "$src" && GOFLAGS=-mod=readonly GOTOOLCHAIN=auto go build -trimpath -o "$tmp/apiclient" .) >&2
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$bin"
