#!/usr/bin/env bash
# Build virtio_balloon13.ko for one kernel series and print its path.
#   scripts/build-module.sh SERIES [extra kbuild args...]
# SERIES: 6.1, 6.12 or 7.2 (Debian's kernels), or 6.12-debug (the debug kernel of
# scripts/build-debug-kernel.sh, built or checked first: cheap once cached).
# Each kernel gets its own copy of the sources under out/<kver>/src, since
# kbuild writes objects next to them.  The compiler output goes to out/<kver>/build.log.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
[ $# -ge 1 ] || { echo "usage: $0 SERIES [kbuild args...]" >&2; exit 2; }
series=$1; shift
env=$VB13_CACHE/kernels/$series.env
if [ "$series" = 6.12-debug ]; then
	bash "$VB13_TOP/scripts/build-debug-kernel.sh" >&2
else
	[ -f "$env" ] || bash "$VB13_TOP/scripts/fetch-kernels.sh" "$series" >&2
fi
# shellcheck disable=SC1090
. "$env"
out=$VB13_TOP/out/$KVER
mkdir -p "$out"
# make check runs two e2e workers that may build for the same kernel at
# once: one build at a time, and sources copied only when they changed,
# so an up-to-date module is left alone (not rebuilt under a reader).
exec 9>"$out.lock"
flock 9
# The module's sources, at their repository paths (which mirror the kernel
# tree); rsync rewrites only what changed.  Sources of the layout before
# drivers/virtio/ (top-level .c/.h) are removed.
rm -f "$out"/*.c "$out"/*.h
rsync -r --checksum --delete --exclude='*.mod.c' \
	--include='/Kbuild' \
	--include='/drivers/' --include='/drivers/virtio/' \
	--include='/drivers/virtio/Makefile' \
	--include='/drivers/virtio/virtio_balloon13*.[ch]' \
	--include='/include/' --include='/include/uapi/' \
	--include='/include/uapi/linux/' \
	--include='/include/uapi/linux/virtio_balloon13.h' \
	--exclude='*' "$VB13_TOP/" "$out/src/"
# A series may name the sparse its headers need (7.2: unstable's).
CHECK=${CHECK:-}
if ! make -C "$KDIR" M="$out/src" CONFIG_VIRTIO_BALLOON13=m \
	${CHECK:+CHECK="$CHECK"} "$@" modules \
	>"$out/build.log" 2>&1; then
	cat "$out/build.log" >&2
	vb13_die "build for $KVER failed"
fi
echo "$out/src/drivers/virtio/virtio_balloon13.ko"
