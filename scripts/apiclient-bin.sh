#!/usr/bin/env bash
# Builds test/go/apiclient (weft's API v2 driven by Tailscale's official Go client library) with
# `go build` into a cache folder keyed by the hash of its go.mod, go.sum and sources, and prints the
# binary's path. A second call for an unchanged program is instant.
#
# The cache root is $APICLIENT_BIN_CACHE, by default ${XDG_CACHE_HOME:-$HOME/.cache}/weft/apiclient.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../test/go/apiclient" && pwd)

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then PATH=$PATH:/usr/local/go/bin; else
    echo "go is not installed: it is needed to build the API v2 test client" >&2; exit 1
  fi
fi

hash=$(cd "$src" && cat go.mod go.sum ./*.go | sha256sum | cut -c1-16)
root=${APICLIENT_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft/apiclient}
dir=$root/$hash
bin=$dir/apiclient

if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

mkdir -p "$root"
# One builder per program version at a time; the others wait and then find the finished binary.
exec 9>"$root/.$hash.lock"
flock 9
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

tmp=$(mktemp -d "$root/.$hash.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "building test/go/apiclient ($hash)" >&2
# -mod=readonly: go.sum pins every module; the build never edits go.mod.
(cd "$src" && GOFLAGS=-mod=readonly GOTOOLCHAIN=auto go build -trimpath -o "$tmp/apiclient" .) >&2
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "$bin"
