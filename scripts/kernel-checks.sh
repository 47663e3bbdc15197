#!/usr/bin/env bash
# Kernel code checks, reported in TAP (scripts/tap.py):
#   lint/build/<series>        W=1 build with sparse (C=2) against Debian's
#                              headers of each kernel series: no warning,
#                              no sparse finding
#   lint/dkms/<series>         `dkms build` of the package's DKMS source
#                              (scripts/dkms-source.sh) in a DKMS tree of
#                              its own under out/: never the machine's
#                              /var/lib/dkms or /usr/src
#   lint/checkpatch/<file>     checkpatch.pl --strict, every kernel source
#                              file (scripts/lib.sh: vb13_kernel_files)
# A missing tool (sparse, dkms, checkpatch.pl) fails the checks that need
# it.  Exit status 1 if any check failed.
#
#   scripts/kernel-checks.sh [--tap FILE]   (default: $VB13_TAP, else stdout)
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$VB13_TOP" || exit 1
tap=${VB13_TAP:-/dev/stdout}	# make check sets VB13_TAP
[ "$tap" = /dev/stdout ] || mkdir -p "$(dirname "$tap")"
case ${1:-} in
--tap) [ $# -eq 2 ] || { echo "usage: kernel-checks.sh [--tap FILE]" >&2; exit 2; }
	tap=$2; mkdir -p "$(dirname "$tap")" ;;
"") ;;
*) echo "usage: kernel-checks.sh [--tap FILE]" >&2; exit 2 ;;
esac
exec 3>"$tap"
n=0 fail=0
ok() { n=$((n + 1)); echo "ok $n - $1" >&3; [ "$tap" = /dev/stdout ] || echo "ok $n - $1"; }
not_ok() { # id reason [detail-file]
	n=$((n + 1)) fail=1
	{ echo "not ok $n - $1"; echo "# $2"
	  [ -n "${3:-}" ] && [ -s "$3" ] && head -n 40 "$3" | sed 's/^/# /'; } >&3
	[ "$tap" = /dev/stdout ] || echo "not ok $n - $1: $2"
}

mapfile -t files < <(vb13_kernel_files | grep -E '\.(c|h)$|(^|/)(Kconfig|Kbuild|Makefile)$')
series=("${VB13_SERIES[@]}")
echo "TAP version 14" >&3
echo "1..$((2 * ${#series[@]} + ${#files[@]}))" >&3

bash scripts/fetch-kernels.sh "${series[@]}" >/dev/null 2>&1 ||
	echo "# fetch-kernels.sh failed: the checks of a series without its kernel fail" >&3
scratch=$VB13_TOP/out/kernel-checks
rm -rf "$scratch"
mkdir -p "$scratch"

# W=1 and sparse.
have_sparse=$(command -v sparse || true)
for s in "${series[@]}"; do
	if [ -z "$have_sparse" ]; then
		not_ok "lint/build/$s" "sparse is not installed (scripts/setup.sh installs it)"
	elif ko=$(bash scripts/build-module.sh "$s" W=1 C=2 2>"$scratch/build-$s.err"); then
		log=${ko%/src/*}/build.log	# out/<kver>/build.log
		# Anything the compiler or sparse says is a finding; BTF skip is not.
		grep -E 'warning:|error:|: sparse:|\[-W' "$log" >"$scratch/build-$s.findings" || true
		if [ -s "$scratch/build-$s.findings" ]; then
			not_ok "lint/build/$s" "$(grep -c . "$scratch/build-$s.findings") findings" \
				"$scratch/build-$s.findings"
		else
			ok "lint/build/$s"
		fi
	else
		not_ok "lint/build/$s" "build failed" "$scratch/build-$s.err"
	fi
done

# DKMS: the package's source tree, built in a DKMS tree of our own
# (--dkmstree/--sourcetree/--installtree), so a user's install of the
# package (/usr/src, /var/lib/dkms, /lib/modules) is never touched.
dk=$scratch/dkms
if ! command -v dkms >/dev/null; then
	for s in "${series[@]}"; do not_ok "lint/dkms/$s" "dkms is not installed"; done
elif ! ver=$(vb13_version) || ! bash scripts/dkms-source.sh "$dk/src/virtio-balloon13-$ver" \
		>/dev/null 2>"$scratch/dkms-source.err"; then
	for s in "${series[@]}"; do
		not_ok "lint/dkms/$s" "scripts/dkms-source.sh failed" "$scratch/dkms-source.err"
	done
else
	mkdir -p "$dk/tree" "$dk/install"
	dkms_() { dkms --dkmstree "$dk/tree" --sourcetree "$dk/src" --installtree "$dk/install" "$@"; }
	dkms_ add "virtio-balloon13/$ver" >"$scratch/dkms-add.log" 2>&1
	for s in "${series[@]}"; do
		# shellcheck disable=SC1090
		kver=$( . "$VB13_CACHE/kernels/$s.env" 2>/dev/null && echo "$KVER")
		# A series without installed headers (7.2) builds in its prepared tree.
		ksrc=$( . "$VB13_CACHE/kernels/$s.env" 2>/dev/null && [ -n "${KSRC:-}" ] && echo "$KDIR")
		mod=$dk/tree/virtio-balloon13/$ver/${kver:-none}/x86_64/module
		if [ -z "$kver" ]; then
			not_ok "lint/dkms/$s" "no kernel for series $s"
		elif dkms_ build "virtio-balloon13/$ver" -k "$kver" \
			${ksrc:+--kernelsourcedir "$ksrc"} >"$scratch/dkms-$s.log" 2>&1 &&
			ls "$mod"/virtio_balloon13.ko* >/dev/null 2>&1; then
			ok "lint/dkms/$s"
		else
			cat "$dk/tree/virtio-balloon13/$ver/build/make.log" >>"$scratch/dkms-$s.log" 2>/dev/null
			not_ok "lint/dkms/$s" "dkms build for $kver failed" "$scratch/dkms-$s.log"
		fi
	done
fi

# checkpatch.pl --strict as for a kernel submission: run from a whole kernel
# tree (Debian unstable's linux-source-7.2, today's mainline), so it knows
# the kernel's own identifiers.  The compat header exists only out of tree
# and is by nature code for older versions: there, and only there, the
# checks about LINUX_VERSION_CODE, and the old kernels' CamelCase names it
# maps onto, are not findings.
tree=$( . "$VB13_CACHE/kernels/7.2.env" 2>/dev/null && echo "${KSRC:-}")
for f in "${files[@]}"; do
	if [ -z "$tree" ] || [ ! -f "$tree/scripts/checkpatch.pl" ]; then
		not_ok "lint/checkpatch/$f" "checkpatch.pl is missing (no prepared 7.2 tree: scripts/fetch-kernels.sh 7.2)"
		continue
	fi
	ignore=
	case $f in
	*_compat.h) ignore=--ignore=LINUX_VERSION_CODE,CONSTANT_COMPARISON,CAMELCASE ;;
	esac
	out=$scratch/checkpatch.out
	(cd "$tree" && perl scripts/checkpatch.pl --strict $ignore -f "$VB13_TOP/$f") >"$out" 2>&1
	rc=$?
	# checkpatch exits 0 only when it found nothing; what it says must
	# agree (a crash or a perl error is not "no problems").
	if [ "$rc" = 0 ] && grep -qE "^total: 0 errors, 0 warnings, 0 checks, [0-9]+ lines checked" "$out"; then
		ok "lint/checkpatch/$f"
	else
		not_ok "lint/checkpatch/$f" "checkpatch.pl --strict exited $rc" "$out"
	fi
done
exit $fail
