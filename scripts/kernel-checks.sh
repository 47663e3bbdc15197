#!/usr/bin/env bash
# Kernel code checks: W=1 builds with sparse (C=2) against Debian's 6.1,
# 6.12 and 7.2 kernels, dkms builds for each, and checkpatch --strict (from
# the newest series' tree) on every kernel source file.
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
SERIES="6.1 6.12 7.2"
for series in $SERIES; do
	if ko=$(bash scripts/build-module.sh "$series" W=1 C=2 2>/dev/null); then
		log=${ko%/src/*}/build.log	# out/<kver>/build.log
		[ -f "$log" ] || { result "build-$series-W=1-C=2" 1; continue; }
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
# What a source package ships: the out-of-tree build files and the kernel
# sources at their tree paths.
git ls-files -z Kbuild Makefile dkms.conf drivers/virtio include/uapi/linux |
	grep -zv '^drivers/virtio/tests/' | xargs -0 cp --parents -t "$src"
dkms add "virtio_balloon13/$ver" >/dev/null 2>&1
for series in $SERIES; do
	KSRC=
	# shellcheck disable=SC1090
	. "$VB13_CACHE/kernels/$series.env"
	# A series without installed headers (7.2) builds in its prepared tree.
	if dkms build "virtio_balloon13/$ver" -k "$KVER" \
		${KSRC:+--kernelsourcedir "$KDIR"} >/tmp/vb13-dkms.$$ 2>&1 &&
		ls "/var/lib/dkms/virtio_balloon13/$ver/$KVER/x86_64/module/"virtio_balloon13.ko* >/dev/null 2>&1; then
		result "dkms-build-$series" 0
	else
		result "dkms-build-$series" 1 /tmp/vb13-dkms.$$
	fi
	rm -f /tmp/vb13-dkms.$$
done
dkms remove "virtio_balloon13/$ver" --all >/dev/null 2>&1 || true
rm -rf "$src"

# checkpatch.pl --strict as for a kernel submission: run from a whole kernel
# tree (Debian unstable's linux-source-7.2, today's mainline), so it knows
# the kernel's own identifiers.  The compat header exists only out of tree
# and is by nature code for older versions: there, and only there, the
# checks about LINUX_VERSION_CODE, and the old kernels' CamelCase names it
# maps onto, are not findings.
tree=$(. "$VB13_CACHE/kernels/7.2.env" && echo "$KSRC")
if [ ! -f "$tree/scripts/checkpatch.pl" ]; then
	result "checkpatch-tree" 1
	exit 1
fi
files=$(git ls-files drivers include Kbuild Makefile | grep -E '(^|/)(Kbuild|Kconfig|Makefile)$|\.[ch]$')
for f in $files; do
	ignore=
	case $f in
	*_compat.h) ignore=--ignore=LINUX_VERSION_CODE,CONSTANT_COMPARISON,CAMELCASE ;;
	esac
	out=$(cd "$tree" && perl scripts/checkpatch.pl --strict --terse $ignore -f "$VB13_TOP/$f" 2>&1)
	if printf '%s\n' "$out" | grep -qE '(ERROR|WARNING|CHECK):'; then
		printf '%s\n' "$out" >/tmp/vb13-checkpatch.$$
		result "checkpatch-$f" 1 /tmp/vb13-checkpatch.$$
		rm -f /tmp/vb13-checkpatch.$$
	else
		result "checkpatch-$f" 0
	fi
done
exit $fail
