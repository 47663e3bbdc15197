#!/usr/bin/env bash
# Kernel code checks: W=1 builds with sparse (C=2) against Debian's 6.1 and
# 6.12 headers, and checkpatch --strict on every kernel source file.
# Prints one "PASS name" / "FAIL name" line per check; exits 1 on any failure.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$VB13_TOP"
fail=0
result() { # name status detail-file
	if [ "$2" = 0 ]; then echo "PASS $1"; else
		echo "FAIL $1"; [ -n "${3:-}" ] && sed 's/^/    /' "$3" | head -40
		fail=1
	fi
}

bash scripts/fetch-kernels.sh >/dev/null || vb13_die "kernel fetch failed"
for series in 6.1 6.12; do
	if ko=$(bash scripts/build-module.sh "$series" W=1 C=2 2>/dev/null); then
		log=$(dirname "$ko")/build.log
		# Anything the compiler or sparse says is a finding; BTF skip is not.
		grep -E 'warning:|error:|: sparse:|\[-W' "$log" >"$log.findings" || true
		result "build-$series-W=1-C=2" "$([ -s "$log.findings" ] && echo 1 || echo 0)" "$log.findings"
	else
		result "build-$series-W=1-C=2" 1
	fi
done

# dkms.conf: `dkms build` for both kernels from a scratch source copy.
ver=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' dkms.conf)
src=/usr/src/virtio_balloon13-$ver
dkms remove "virtio_balloon13/$ver" --all >/dev/null 2>&1 || true
rm -rf "$src" && mkdir -p "$src"
cp Kbuild Makefile dkms.conf ./*.c ./*.h "$src/"
dkms add "virtio_balloon13/$ver" >/dev/null 2>&1
for series in 6.1 6.12; do
	# shellcheck disable=SC1090
	. "$VB13_CACHE/kernels/$series.env"
	if dkms build "virtio_balloon13/$ver" -k "$KVER" >/tmp/vb13-dkms.$$ 2>&1 &&
		[ -f "/var/lib/dkms/virtio_balloon13/$ver/$KVER/x86_64/module/virtio_balloon13.ko" ] ||
		ls "/var/lib/dkms/virtio_balloon13/$ver/$KVER/x86_64/module/"virtio_balloon13.ko* >/dev/null 2>&1; then
		result "dkms-build-$series" 0
	else
		result "dkms-build-$series" 1 /tmp/vb13-dkms.$$
	fi
	rm -f /tmp/vb13-dkms.$$
done
dkms remove "virtio_balloon13/$ver" --all >/dev/null 2>&1 || true
rm -rf "$src"

# checkpatch.pl and its data files come from Debian's linux-source-6.12.
cp_dir=$VB13_CACHE/checkpatch
if [ ! -x "$cp_dir/scripts/checkpatch.pl" ]; then
	tarball=$(ls /usr/src/linux-source-6.12.tar.* 2>/dev/null | head -n1 || true)
	if [ -z "$tarball" ]; then
		apt-get install -y -qq --no-install-recommends linux-source-6.12 >/dev/null
		tarball=$(ls /usr/src/linux-source-6.12.tar.* | head -n1)
	fi
	mkdir -p "$cp_dir.tmp"
	tar -xf "$tarball" -C "$cp_dir.tmp" --strip-components=1 --wildcards \
		'*/scripts/checkpatch.pl' '*/scripts/spelling.txt' \
		'*/scripts/const_structs.checkpatch'
	rm -rf "$cp_dir" && mv "$cp_dir.tmp" "$cp_dir"
fi
files=$(git ls-files '*.c' '*.h' Kconfig Kbuild | grep -v '^host/' | grep -v '^scripts/' | grep -v '^tests/')
for f in $files; do
	out=$(perl "$cp_dir/scripts/checkpatch.pl" --strict --no-tree --terse -f "$f" 2>&1)
	tot=$(printf '%s\n' "$out" | grep -E '^total:|has no obvious style problems' | tail -n1)
	if printf '%s\n' "$out" | grep -qE '(ERROR|WARNING|CHECK):'; then
		printf '%s\n' "$out" >/tmp/vb13-checkpatch.$$
		result "checkpatch-$f" 1 /tmp/vb13-checkpatch.$$
		rm -f /tmp/vb13-checkpatch.$$
	else
		result "checkpatch-$f" 0
	fi
	: "$tot"
done
exit $fail
