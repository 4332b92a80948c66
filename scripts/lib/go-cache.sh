# shellcheck shell=bash
# What the scripts/*-bin.sh builders share: each builds Go programs into a cache folder once and prints
# where they are. Sourced, never run; the functions exit the calling script where they say so.

# go_cache_require_go WHAT: puts /usr/local/go/bin on PATH when go is not on it (the CI image installs
# Go there); exits 1 saying go is needed to build WHAT when there is no go at all.
go_cache_require_go() {
  command -v go >/dev/null 2>&1 && return 0
  if [ -x /usr/local/go/bin/go ]; then
    PATH=$PATH:/usr/local/go/bin
    return 0
  fi
  echo "go is not installed: it is needed to build $1" >&2
  exit 1
}

# go_cache_exit_if_built RESULT TEST...: when the command TEST... succeeds, the build is already in the
# cache: prints RESULT (the path the script answers with) and exits 0.
go_cache_exit_if_built() {
  local built_path=$1
  shift
  if "$@"; then
    echo "$built_path"
    exit 0
  fi
}

# go_cache_lock ROOT LOCK RESULT TEST...: makes the cache root and waits for the lock file ROOT/LOCK,
# held on fd 9 until the script ends, so one builder works at a time; the others find the build
# finished once they get the lock, and go_cache_exit_if_built ends them there.
go_cache_lock() {
  # Not named root: the test may be a function of the calling script that reads its globals.
  local cache_root=$1 lock_file=$2
  shift 2
  mkdir -p "$cache_root"
  exec 9>"$cache_root/$lock_file"
  flock 9
  go_cache_exit_if_built "$@"
}

# go_cache_build_dir TEMPLATE: sets tmp to a new folder made by `mktemp -d TEMPLATE` (inside the cache
# root, so the finished build moves into place with a rename), removed when the script exits unless
# the script clears the trap after moving it.
go_cache_build_dir() {
  tmp=$(mktemp -d "$1")
  trap 'rm -rf "$tmp"' EXIT
}
