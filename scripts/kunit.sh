#!/usr/bin/env bash
# Run virtio_balloon13's KUnit suite the standard way.
#
# Debian's linux-source-6.12 is extracted once into the cache; the driver's
# kernel files are copied to the same paths in it (drivers/virtio/,
# include/uapi/linux/; its Kconfig and Makefile lines hooked into
# drivers/virtio's); tools/testing/kunit/kunit.py then builds an x86_64
# kernel from drivers/virtio/tests/.kunitconfig in a cached build directory
# and boots it under Debian's qemu-system-x86_64 (with qboot.rom from
# qemu-system-data).  Later runs rebuild only what changed.
#
# usage: scripts/kunit.sh [options] [FILTER_GLOB]
#   --out DIR           leave kunit.ktap (raw KTAP), console.log (whole serial
#                       console) and kunit.json there (default: <repo>/out/kunit)
#   --timeout SECS      limit for booting and running the tests (default: 900)
#   --kconfig_add X=Y   extra kernel config, repeatable; such runs build in a
#                       build directory of their own
#   --jobs N            parallel make jobs (default: 2)
#   --series S          the kernel tree: 6.12 (Debian's linux-source-6.12,
#                       default) or 7.2 (Debian unstable's linux-source-7.2,
#                       fetched by scripts/fetch-kernels.sh 7.2)
#   --prepare           only set up the source tree; print its path
# FILTER_GLOB selects suites/cases as kunit.py does (e.g. 'virtio_balloon13*').
#
# Exit status: 0 if every test passed and the console shows no kernel splat
# (BUG, WARNING, lockdep, KASAN, ...); 1 otherwise; 2 for a bad command line.
# scripts/tap.py count DIR/kunit.ktap=kunit prints the count.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() { sed -n '11,26s/^# \{0,1\}//p' "$0"; }
bad() { vb13_log "$*"; exit 2; }

out=$VB13_TOP/out/kunit
timeout=900
jobs=2
prepare_only=0
series=6.12
filter=
kadd=()
while [ $# -gt 0 ]; do
	case $1 in
	--out) [ $# -ge 2 ] || bad "--out needs a directory"; out=$2; shift 2 ;;
	--out=*) out=${1#*=}; shift ;;
	--timeout) [ $# -ge 2 ] || bad "--timeout needs seconds"; timeout=$2; shift 2 ;;
	--timeout=*) timeout=${1#*=}; shift ;;
	--jobs) [ $# -ge 2 ] || bad "--jobs needs a number"; jobs=$2; shift 2 ;;
	--jobs=*) jobs=${1#*=}; shift ;;
	--kconfig_add) [ $# -ge 2 ] || bad "--kconfig_add needs CONFIG_X=Y"; kadd+=("$2"); shift 2 ;;
	--kconfig_add=*) kadd+=("${1#*=}"); shift ;;
	--series) [ $# -ge 2 ] || bad "--series needs 6.12 or 7.2"; series=$2; shift 2 ;;
	--series=*) series=${1#*=}; shift ;;
	--prepare) prepare_only=1; shift ;;
	-h|--help) usage; exit 0 ;;
	-*) bad "unknown option $1" ;;
	*) [ -z "$filter" ] || bad "only one filter glob"; filter=$1; shift ;;
	esac
done
[[ $timeout =~ ^[1-9][0-9]*$ ]] || bad "--timeout wants a positive number of seconds, not '$timeout'"
[[ $jobs =~ ^[1-9][0-9]*$ ]] || bad "--jobs wants a positive number, not '$jobs'"
for k in "${kadd[@]}"; do
	[[ $k =~ ^CONFIG_[A-Za-z0-9_]+=.+$ ]] || bad "--kconfig_add wants CONFIG_X=Y, not '$k'"
done

[ "$(id -u)" -eq 0 ] || vb13_die "must run as root (installs Debian packages)"
bash "$VB13_TOP/scripts/setup.sh"
case $series in
6.12)
	pkg=linux-source-6.12
	if ! dpkg -s "$pkg" >/dev/null 2>&1; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
	fi
	;;
7.2)
	# The source tree fetch-kernels.sh extracts from Debian unstable.
	env=$(bash "$VB13_TOP/scripts/fetch-kernels.sh" 7.2 | tail -n1)
	KSRC=$(sed -n 's/^KSRC=//p' "$env")
	[ -f "$KSRC/.vb13-extracted" ] || vb13_die "no linux-source-7.2 tree ($KSRC)"
	;;
*) bad "--series wants 6.12 or 7.2, not '$series'" ;;
esac
[ -r /usr/share/qemu/qboot.rom ] || vb13_die "/usr/share/qemu/qboot.rom missing (package qemu-system-data)"
[ -x /usr/bin/qemu-system-x86_64 ] || vb13_die "/usr/bin/qemu-system-x86_64 missing (package qemu-system-x86)"

# One run at a time per cache: runs share the source tree and build directory.
# 6.12 keeps the lock every older checkout of this script takes.
lock=$VB13_CACHE/kunit.lock
[ "$series" = 6.12 ] || lock=$VB13_CACHE/kunit-$series.lock
exec 9>"$lock"
flock 9

if [ "$series" = 6.12 ]; then
	ver=$(dpkg-query -W -f='${Version}' "$pkg")
	tree=$VB13_CACHE/$pkg-$ver
else
	tree=$KSRC
	ver=${KSRC##*/linux-source-7.2-}
fi
# Builds are named for the Debian version (6.12.x-..., 7.2.x-...).
build=$VB13_CACHE/kunit-build-$ver
if [ ${#kadd[@]} -gt 0 ]; then
	build=$build-$(printf '%s\n' "${kadd[@]}" | sort | sha256sum | cut -c1-12)
fi

t0=$SECONDS
if [ "$series" = 6.12 ] && [ ! -f "$tree/.vb13-extracted" ]; then
	vb13_log "extracting /usr/src/$pkg.tar.xz into $tree"
	rm -rf "$tree" "$tree.tmp"
	mkdir -p "$tree.tmp"
	tar -xJf "/usr/src/$pkg.tar.xz" -C "$tree.tmp" --strip-components=1
	touch "$tree.tmp/.vb13-extracted"
	mv "$tree.tmp" "$tree"
	# Trees and builds of older Debian versions of this series are dead
	# weight now.
	for old in "$VB13_CACHE/$pkg-"* "$VB13_CACHE/kunit-build-6.12."*; do
		case $old in
		"$tree"|"$VB13_CACHE/kunit-build-$ver"|"$VB13_CACHE/kunit-build-$ver-"*) ;;
		*) if [ -f "$old/.vb13-extracted" ] || [ -f "$old/.kunitconfig" ]; then
			rm -rf "$old"
		   fi ;;
		esac
	done
fi

# The driver's files go where they are in the repository, which mirrors the
# kernel tree: drivers/virtio/ and include/uapi/linux/.  Only changed files
# are rewritten, and they get a fresh mtime, so make rebuilds them even
# when their content went back to an older version.
rm -rf "$tree/drivers/virtio/balloon13"	# the layout before drivers/virtio/
rsync -r --checksum --exclude='*.mod.c' \
	--include='/drivers/' --include='/drivers/virtio/' \
	--include='/drivers/virtio/virtio_balloon13*' \
	--include='/drivers/virtio/tests/' --include='/drivers/virtio/tests/*' \
	--include='/include/' --include='/include/uapi/' \
	--include='/include/uapi/linux/' \
	--include='/include/uapi/linux/virtio_balloon13.h' \
	--exclude='*' "$VB13_TOP/" "$tree/"
# The repository's drivers/virtio/Kconfig and Makefile hold what the
# kernel's gain: hook them in (idempotent).
# Kernels before mainline's balloon rework call the balloon core
# MEMORY_BALLOON.
kconfig=$(cat "$VB13_TOP/drivers/virtio/Kconfig")
if ! grep -q '^config BALLOON$' "$tree/mm/Kconfig"; then
	kconfig=$(printf '%s\n' "$kconfig" | sed 's/^\tselect BALLOON$/\tselect MEMORY_BALLOON/')
fi
[ "$(cat "$tree/drivers/virtio/Kconfig.balloon13" 2>/dev/null)" = "$kconfig" ] ||
	printf '%s\n' "$kconfig" >"$tree/drivers/virtio/Kconfig.balloon13"
hook() { grep -qxF "$2" "$1" || printf '%s\n' "$2" >>"$1"; }
for f in Kconfig Makefile; do	# hooks of the layout before drivers/virtio/
	if grep -q 'balloon13/' "$tree/drivers/virtio/$f"; then
		sed -i '/balloon13\//d' "$tree/drivers/virtio/$f"
	fi
done
hook "$tree/drivers/virtio/Kconfig" 'source "drivers/virtio/Kconfig.balloon13"'
grep -v '^#' "$VB13_TOP/drivers/virtio/Makefile" | while IFS= read -r line; do
	[ -n "$line" ] && hook "$tree/drivers/virtio/Makefile" "$line"
done
vb13_log "source tree ready in $((SECONDS - t0))s: $tree"
if [ "$prepare_only" -eq 1 ]; then
	echo "$tree"
	exit 0
fi

mkdir -p "$out" "$build"
out=$(cd "$out" && pwd)
rm -f "$build/test.log" "$out/kunit.ktap" "$out/console.log" "$out/kunit.json"

args=(run --arch=x86_64 --kunitconfig="$VB13_TOP/drivers/virtio/tests/.kunitconfig"
	--build_dir="$build" --jobs="$jobs" --timeout="$timeout"
	--qemu_args='-smp 2' --json="$out/kunit.json")
for k in "${kadd[@]}"; do
	args+=(--kconfig_add="$k")
done
[ -z "$filter" ] || args+=("$filter")

# Debian's QEMU, whatever else is on PATH, under TCG: kunit.py of 7.x asks
# for -accel kvm first, and where /dev/kvm exists but can't run a guest
# (this project's machines) the kernel never boots.  A wrapper passes
# every argument but the -accel options other than tcg.
qwrap=$VB13_CACHE/kunit-qemu
mkdir -p "$qwrap"
cat >"$qwrap/qemu-system-x86_64.tmp" <<'WRAP'
#!/bin/sh
# Written by scripts/kunit.sh: Debian's QEMU, TCG only.
n=$#
while [ "$n" -gt 0 ]; do
	a=$1
	shift
	n=$((n - 1))
	if [ "$a" = -accel ] && [ "$n" -gt 0 ]; then
		[ "$1" = tcg ] && set -- "$@" -accel tcg
		shift
		n=$((n - 1))
		continue
	fi
	set -- "$@" "$a"
done
exec /usr/bin/qemu-system-x86_64 "$@"
WRAP
chmod +x "$qwrap/qemu-system-x86_64.tmp"
mv "$qwrap/qemu-system-x86_64.tmp" "$qwrap/qemu-system-x86_64"

# The outer timeout bounds the whole build and run; kunit.py's own
# --timeout bounds the run alone.
rc=0
(cd "$tree" && PATH=$qwrap:/usr/bin:$PATH nice -n 10 \
	timeout -k 30 $((timeout + 5400)) python3 tools/testing/kunit/kunit.py "${args[@]}") || rc=$?

if [ -f "$build/test.log" ]; then
	cp "$build/test.log" "$out/console.log"
	python3 - "$tree/tools/testing/kunit" "$out/console.log" >"$out/kunit.ktap" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import kunit_parser
with open(sys.argv[2], encoding='utf-8', errors='replace') as f:
    for line in kunit_parser.extract_tap_lines(f):
        print(line)
PY
fi

# A kernel that complained fails the run even when every test passed: the
# one list of reports the e2e suite uses too (scripts/splat.py).
splat=0
if [ -f "$out/console.log" ]; then
	python3 "$VB13_TOP/scripts/splat.py" "$out/console.log" >"$out/splats.txt" || splat=1
fi
if [ "$splat" = 1 ]; then
	vb13_log "the kernel logged errors during the run (see $out/console.log):"
	cat "$out/splats.txt" >&2
	[ "$rc" -ne 0 ] || rc=1
fi

# Without any result the caller's count must still show the failure.
if ! grep -Eq '^\s*(not )?ok [0-9]' "$out/kunit.ktap" 2>/dev/null; then
	[ "$rc" -ne 0 ] || rc=1
	printf 'KTAP version 1\n1..1\nnot ok 1 kunit_build_or_boot\n' >"$out/kunit.ktap"
fi

# A splat or a kunit.py error with every case passed is one failure more;
# the exit status says so to make check too (scripts/tap.py counts).
if [ "$rc" -ne 0 ] && ! python3 "$VB13_TOP/scripts/tap.py" count "$out/kunit.ktap" >/dev/null; then
	:
elif [ "$rc" -ne 0 ]; then
	printf 'not ok 1 kunit_run_clean\n# a kernel splat or a kunit.py error\n' >>"$out/kunit.ktap"
fi
vb13_log "$(python3 "$VB13_TOP/scripts/tap.py" count "$out/kunit.ktap") in $((SECONDS - t0))s (KTAP: $out/kunit.ktap)"
[ "$rc" -eq 0 ] || exit 1
