#!/usr/bin/env bash
# Builds Terraform and the official Tailscale Terraform provider (test tools for
# test/interop/terraform.test.ts only, never product code) into a cache folder keyed by both versions,
# and prints that folder: it holds `terraform` and `terraform-provider-tailscale`, ready for a
# `dev_overrides` block. A second call for a built pair is instant.
#
#   scripts/terraform-bin.sh   -> ~/.cache/weft/terraform/terraform-v1.5.7+provider-v0.29.2
#
# Exit codes: 0 built (or cached); 3 the provider cannot be had on this machine (the reason is on
# stderr; nothing was built); anything else is a real failure.
#
# Terraform: v1.5.7 is the last release under the MPL 2.0 (v1.6.0 on are under the BUSL 1.1, not an
# open-source licence); `go install github.com/hashicorp/terraform@v1.5.7` builds it from the module
# proxy in about 3 minutes on 2 cores.
#
# The provider: the module proxy refuses github.com/tailscale/terraform-provider-tailscale outright
# (403 "This module version is not available" for its version list and for every tag), though every
# module it depends on is served. While it does, this exits 3 at once (before building terraform) and
# the Terraform test skips saying so; it starts working on its own the day the proxy serves it. A
# cache folder that already holds both binaries (built by other means) is used as it is.
#
# The cache root is $TERRAFORM_BIN_CACHE, by default ${XDG_CACHE_HOME:-$HOME/.cache}/weft/terraform.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/go-cache.sh
source "$here/lib/go-cache.sh"

TERRAFORM_VERSION=v1.5.7
PROVIDER_VERSION=v0.29.2
PROVIDER_MODULE=github.com/tailscale/terraform-provider-tailscale
CANNOT_BUILD=3

if [ $# -gt 0 ]; then
  echo "usage: $0 (no arguments: the versions are pinned in the script)" >&2
  exit 2
fi

root=${TERRAFORM_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft/terraform}
dir=$root/terraform-$TERRAFORM_VERSION+provider-$PROVIDER_VERSION
bins=(terraform terraform-provider-tailscale)

complete() { for b in "${bins[@]}"; do [ -x "$dir/$b" ] || return 1; done; }

go_cache_exit_if_built "$dir" complete
go_cache_require_go "terraform and the tailscale provider"
go_cache_lock "$root" .build.lock "$dir" complete
go_cache_build_dir "$root/.build.XXXXXX"

# The provider from the module proxy, through a throwaway module (go get of an exact version never
# asks for the version list). Succeeds once the proxy serves the module; until then says why not.
provider_from_proxy() {
  local work=$tmp/proxy-build
  mkdir -p "$work"
  (
    cd "$work"
    go mod init provider-build >/dev/null 2>&1
    GOTOOLCHAIN=auto go get "$PROVIDER_MODULE@$PROVIDER_VERSION" &&
      GOTOOLCHAIN=auto go build -trimpath -o "$tmp/terraform-provider-tailscale" "$PROVIDER_MODULE"
  ) >"$tmp/proxy.log" 2>&1
}

echo "building $PROVIDER_MODULE@$PROVIDER_VERSION" >&2
if ! provider_from_proxy; then
  {
    echo "cannot build the Tailscale Terraform provider here: the Go module proxy refuses $PROVIDER_MODULE@$PROVIDER_VERSION:"
    grep -m 3 -E '403|not available|error|refus' "$tmp/proxy.log" || tail -n 3 "$tmp/proxy.log"
  } >&2
  exit $CANNOT_BUILD
fi

echo "building github.com/hashicorp/terraform@$TERRAFORM_VERSION" >&2
GOBIN=$tmp GOTOOLCHAIN=auto go install "github.com/hashicorp/terraform@$TERRAFORM_VERSION" >&2

rm -rf "$dir.new"
mkdir -p "$dir.new"
mv "$tmp/terraform" "$tmp/terraform-provider-tailscale" "$dir.new/"
rm -rf "$dir"
mv "$dir.new" "$dir"
echo "$dir"
