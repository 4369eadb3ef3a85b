#!/bin/bash
# Builds the release VMM of an earlier git revision, so that `make bench
# BENCH_BEFORE=REV` measures it beside today's VMM and QEMU in one run:
# a detached worktree in a temporary directory, the same make target there,
# the binary copied to OUTDIR/propolis-standalone-REV. Prints that path.
# A binary already built from the same commit is reused.
#
#   bench/build-before.sh REV OUTDIR    (BUILD_BEFORE_JOBS=N: make -jN, default nproc)
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 REV OUTDIR" >&2
    exit 2
fi
rev=$1
outdir=$2
# REV becomes part of a file name the Makefile predicts: keep it plain.
if ! [[ $rev =~ ^[A-Za-z0-9_][A-Za-z0-9._-]*$ ]]; then
    echo "build-before: '$rev': name the revision by a hash, tag or branch without '/', '~' or '^'" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
if ! commit=$(git rev-parse --verify --quiet "$rev^{commit}"); then
    echo "build-before: '$rev' is not a commit of this repository" >&2
    exit 1
fi

mkdir -p "$outdir"
out="$(cd "$outdir" && pwd)/propolis-standalone-$rev"
if [ -x "$out" ] && [ "$(cat "$out.commit" 2>/dev/null)" = "$commit" ]; then
    echo "$out"
    exit 0
fi

rm -f "$out.commit"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pst-before-XXXXXX")
cleanup() {
    git worktree remove --force "$tmp/tree" >/dev/null 2>&1 || true
    rm -rf "$tmp"
    git worktree prune
}
trap cleanup EXIT
git worktree add --quiet --detach "$tmp/tree" "$commit" >&2
# A clean make: not the calling make's variables (BUILD, BENCH_BEFORE) or job server.
env -u MAKEFLAGS -u MFLAGS -u MAKEOVERRIDES -u MAKELEVEL \
    make -C "$tmp/tree" -j"${BUILD_BEFORE_JOBS:-$(nproc)}" BUILD=build build/propolis-standalone >&2
cp "$tmp/tree/build/propolis-standalone" "$out.new"
mv "$out.new" "$out"
echo "$commit" >"$out.commit"
echo "$out"
