#!/usr/bin/env bash
# Build the "6.12-debug" test guest kernel: Debian's linux-source-6.12 with
# KASAN, lockdep, DEBUG_PAGEALLOC, KFENCE, DEBUG_LIST, SLUB debugging and
# more (scripts/debug-kernel.config, on top of allnoconfig), and write
# $VB13_CACHE/kernels/6.12-debug.env like scripts/fetch-kernels.sh does for
# Debian's kernels:
#   KVER     kernel release, 6.12.<n>-vb13dbg-<key>
#   VMLINUZ  its bzImage
#   MODROOT  the directory holding lib/modules/<KVER> (modules_install)
#   KDIR     the build directory itself (for out-of-tree modules)
# so scripts/build-module.sh, scripts/mkinitramfs.sh and scripts/vm.py take
# "6.12-debug" like any other series.  Prints the .env path.
#
# The source is the tree scripts/kunit.sh unpacks into the cache, taken as a
# hard-linked snapshot without the driver's files (kunit.sh may change those
# at any time).  The build goes to $VB13_CACHE/debug-kernel-<debver>-<key>/,
# <key> a hash of the config fragment and this script, under a lock, and is
# reused once it has its .complete marker.  A new key starts from a copy of
# the newest complete build of the same source, so a config change rebuilds
# only what it touches.  The two newest builds are kept.
#
# Usage: build-debug-kernel.sh [--jobs N] [--force]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() { echo "usage: build-debug-kernel.sh [--jobs N] [--force]" >&2; exit 2; }
jobs=$(nproc)
force=0
while [ $# -gt 0 ]; do
	case $1 in
	--jobs) [ $# -ge 2 ] || usage; jobs=$2; shift 2 ;;
	--jobs=*) jobs=${1#*=}; shift ;;
	--force) force=1; shift ;;
	*) usage ;;
	esac
done
[[ $jobs =~ ^[1-9][0-9]*$ ]] || usage

series=6.12-debug
pkg=linux-source-6.12
frag=$VB13_TOP/scripts/debug-kernel.config
key=$(cat "$frag" "$VB13_TOP/scripts/build-debug-kernel.sh" | sha256sum | cut -c1-12)
envf=$VB13_CACHE/kernels/$series.env

ver=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)
if [ -z "$ver" ]; then
	bash "$VB13_TOP/scripts/setup.sh" >&2
	ver=$(dpkg-query -W -f='${Version}' "$pkg")
fi
build=$VB13_CACHE/debug-kernel-$ver-$key
src=$VB13_CACHE/debug-kernel-src-$ver

# KVER, VMLINUZ, MODROOT, KDIR of a complete build, or nothing.
env_of() {
	local b=$1 kver
	[ -f "$b/.complete" ] || return 1
	kver=$(cat "$b/.kernelrelease" 2>/dev/null) || return 1
	[ -f "$b/arch/x86/boot/bzImage" ] && [ -d "$b/modroot/lib/modules/$kver" ] &&
		[ -f "$b/Module.symvers" ] || return 1
	printf 'KVER=%s\nVMLINUZ=%s\nMODROOT=%s\nKDIR=%s\n' "$kver" \
		"$b/arch/x86/boot/bzImage" "$b/modroot" "$b"
}

publish() {
	local want
	want=$(env_of "$build") || vb13_die "no complete build in $build"
	mkdir -p "$VB13_CACHE/kernels"
	if [ ! -f "$envf" ] || [ "$(cat "$envf")" != "$want" ]; then
		printf '%s\n' "$want" >"$envf.tmp.$$"
		mv "$envf.tmp.$$" "$envf"
	fi
	vb13_log "$series: $(sed -n 's/^KVER=//p' "$envf") ($envf)"
	echo "$envf"
}

if [ "$force" = 0 ] && env_of "$build" >/dev/null; then
	publish
	exit 0
fi

mkdir -p "$VB13_CACHE"
# One build at a time, even from several worktrees.
exec 9>"$VB13_CACHE/debug-kernel.lock"
flock 9
if [ "$force" = 0 ] && env_of "$build" >/dev/null; then
	publish
	exit 0
fi
[ "$(id -u)" -eq 0 ] || vb13_die "must run as root (installs Debian packages)"
t0=$SECONDS

# ---- source: a snapshot of kunit.sh's unpacked tree ---------------------------
if [ ! -f "$src/.vb13-snapshot" ]; then
	tree=$VB13_CACHE/$pkg-$ver
	# kunit.sh holds its lock for whole KUnit runs: take it only to unpack.
	if [ ! -f "$tree/.vb13-extracted" ]; then
		tree=$(bash "$VB13_TOP/scripts/kunit.sh" --prepare | tail -n1)
		[ -f "$tree/.vb13-extracted" ] || vb13_die "kunit.sh --prepare gave no source tree ($tree)"
	fi
	vb13_log "snapshotting $tree into $src"
	rm -rf "$src" "$src.tmp"
	# Hard links are safe: kunit.sh never rewrites the tree's files in place,
	# except the driver's directory (left out) and two files it appends its
	# hook lines to (copied below without them).
	rsync -a --link-dest="$tree" --exclude=/drivers/virtio/balloon13 \
		--exclude=/.vb13-extracted "$tree/" "$src.tmp/"
	for f in drivers/virtio/Kconfig drivers/virtio/Makefile; do
		grep -v -e 'drivers/virtio/balloon13/Kconfig' -e '^obj-y += balloon13/$' \
			"$tree/$f" >"$src.tmp/$f.new"
		rm -f "$src.tmp/$f"
		mv "$src.tmp/$f.new" "$src.tmp/$f"
	done
	touch "$src.tmp/.vb13-snapshot"
	mv "$src.tmp" "$src"
fi

# ---- build directory: resume, or seed from the newest complete build -----------
if [ ! -d "$build" ]; then
	seed=$(ls -td "$VB13_CACHE/debug-kernel-$ver"-*/.complete 2>/dev/null | head -n1 || true)
	if [ -n "$seed" ]; then
		seed=$(dirname "$seed")
		vb13_log "seeding $build from $seed"
		cp -a "$seed" "$build.tmp"
		rm -rf "$build.tmp/.complete" "$build.tmp/modroot" "$build.tmp/build.log"
		# objtool's build records absolute paths, and every object depends
		# on objtool: with the old paths, make would rebuild it all.
		grep -rlIZF -- "$seed" "$build.tmp/tools" |
			xargs -r0 sed -i "s|$seed|$build|g"
		mv "$build.tmp" "$build"
	fi
fi
mkdir -p "$build"
rm -f "$build/.complete"
log=$build/build.log
vb13_log "building the debug kernel in $build (log: $log)"

# allnoconfig with the fragment's values preset; the release names the key,
# so modules and cached initramfs images never mix two configurations.
{
	cat "$frag"
	printf '# CONFIG_LOCALVERSION_AUTO is not set\nCONFIG_LOCALVERSION="-vb13dbg-%s"\n' \
		"${key:0:8}"
} >"$build/vb13-fragment.config"
mk() { nice -n 10 make -C "$src" O="$build" ARCH=x86_64 "$@"; }
if ! mk KCONFIG_ALLCONFIG="$build/vb13-fragment.config" allnoconfig >"$log" 2>&1; then
	tail -n 30 "$log" >&2
	vb13_die "configuring the debug kernel failed; full log in $log"
fi

# Every line of the fragment must have taken effect.
missing=()
while IFS= read -r line; do
	case $line in
	CONFIG_*=*)
		grep -qxF -- "$line" "$build/.config" || missing+=("$line") ;;
	"# CONFIG_"*" is not set")
		sym=${line#\# }
		sym=${sym%% *}
		! grep -q "^$sym=" "$build/.config" || missing+=("$line") ;;
	esac
done <"$build/vb13-fragment.config"
if [ ${#missing[@]} -gt 0 ]; then
	vb13_log "the kernel configuration does not have (unmet dependencies?):"
	printf '  %s\n' "${missing[@]}" >&2
	vb13_die "fix scripts/debug-kernel.config"
fi

tb=$SECONDS
if ! mk -j"$jobs" all >>"$log" 2>&1; then
	grep -E 'error|Error' "$log" | tail -n 20 >&2 || true
	tail -n 20 "$log" >&2
	vb13_die "building the debug kernel failed; full log in $log"
fi
rm -rf "$build/modroot"
if ! mk INSTALL_MOD_PATH="$build/modroot" modules_install >>"$log" 2>&1; then
	tail -n 20 "$log" >&2
	vb13_die "modules_install failed; full log in $log"
fi
kver=$(mk -s kernelrelease 2>/dev/null)
printf '%s\n' "$kver" >"$build/.kernelrelease"
printf 'make all + modules_install: %ss\n' "$((SECONDS - tb))" >>"$log"
touch "$build/.complete"
vb13_log "debug kernel $kver built in $((SECONDS - t0))s"

# ---- prune: keep this build and the newest other complete one ------------------
keep=$(ls -td "$VB13_CACHE"/debug-kernel-*/.complete 2>/dev/null |
	xargs -r -n1 dirname | grep -vxF "$build" | grep -F "/debug-kernel-$ver-" | head -n1 || true)
for d in "$VB13_CACHE"/debug-kernel-*; do
	[ -d "$d" ] || continue
	case $d in
	"$build" | "$keep" | "$src") ;;
	"$VB13_CACHE"/debug-kernel-src-*) rm -rf "$d" ;;
	*) if [ -f "$d/vb13-fragment.config" ] || [[ $d == *.tmp ]]; then
		rm -rf "$d"
	   fi ;;
	esac
done
publish
