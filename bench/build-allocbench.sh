#!/usr/bin/env bash
# Build the benchmark's test-only allocbench.ko for one Debian kernel series
# and print its path (like scripts/build-module.sh, in out/<kver>/allocbench).
#   bench/build-allocbench.sh SERIES
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"
[ $# -eq 1 ] || { echo "usage: $0 SERIES" >&2; exit 2; }
series=$1
env=$VB13_CACHE/kernels/$series.env
[ -f "$env" ] || bash "$VB13_TOP/scripts/fetch-kernels.sh" "$series" >&2
# shellcheck disable=SC1090
. "$env"
out=$VB13_TOP/out/$KVER/allocbench
mkdir -p "$out"
cp "$VB13_TOP/bench/allocbench.c" "$out/"
echo 'obj-m := allocbench.o' >"$out/Kbuild"
if ! make -C "$KDIR" M="$out" W=1 modules >"$out/build.log" 2>&1; then
	cat "$out/build.log" >&2
	vb13_die "allocbench build for $KVER failed"
fi
if grep -q 'warning:' "$out/build.log"; then
	cat "$out/build.log" >&2
	vb13_die "allocbench build for $KVER has warnings"
fi
echo "$out/allocbench.ko"
