#!/usr/bin/env bash
# Fetch Debian's stock guest kernels: for each series (default "6.1 6.12"),
# the newest linux-image-<kver>-amd64-unsigned the archive offers (bookworm,
# bookworm-security, bookworm-backports), unpacked into
# $VB13_CACHE/kernels/<kver>/root, and the matching linux-headers-<kver>
# installed (for building modules against it).  Writes
# $VB13_CACHE/kernels/<series>.env with KVER, VMLINUZ, MODROOT (the directory
# that holds lib/modules) and KDIR (the headers), and prints its path.
#
# The series "6.12-debug" is no Debian package: scripts/build-debug-kernel.sh
# builds it from linux-source-6.12 and writes its .env the same way.
#
# Usage: fetch-kernels.sh [SERIES...]      e.g. fetch-kernels.sh 6.12
set -euo pipefail
. "$(dirname "$0")/lib.sh"

series=("$@")
[ ${#series[@]} -gt 0 ] || series=(6.1 6.12)
debug=0
stock=()
for s in "${series[@]}"; do
	if [ "$s" = 6.12-debug ]; then
		debug=1
		continue
	fi
	[[ $s =~ ^[0-9]+\.[0-9]+$ ]] || {
		echo "fetch-kernels.sh: bad series '$s' (want e.g. 6.1, 6.12 or 6.12-debug)" >&2
		exit 2
	}
	stock+=("$s")
done
if [ "$debug" = 1 ]; then
	bash "$VB13_TOP/scripts/build-debug-kernel.sh"
fi
series=("${stock[@]}")
[ ${#series[@]} -gt 0 ] || exit 0

kdir=$VB13_CACHE/kernels
mkdir -p "$kdir"
# One fetch at a time, even from several worktrees.
exec 9>"$kdir/.lock"
flock 9
export DEBIAN_FRONTEND=noninteractive
updated=0

apt_update() {
	[ "$updated" = 1 ] && return 0
	apt-get update -qq -o DPkg::Lock::Timeout=900
	updated=1
}

# Newest stock amd64 kernel release of a series known to apt, e.g.
# 6.1.0-56-amd64 or 6.12.117+deb12-amd64 (no cloud or rt flavours).
newest() {
	local re=${1//./\\.}
	apt-cache search --names-only "^linux-image-$re\\.[^ ]*-amd64-unsigned\$" |
		awk '{print $1}' | grep -Ev -- '-(cloud|rt)-amd64-unsigned$' |
		sed -e 's/^linux-image-//' -e 's/-unsigned$//' | sort -V | tail -n1
}

fetch_one() {
	local s=$1 kver root tmp deb
	kver=$(newest "$s")
	if [ -z "$kver" ]; then
		apt_update
		kver=$(newest "$s")
	fi
	[ -n "$kver" ] || vb13_die "no linux-image-$s.*-amd64-unsigned in the archive"
	root=$kdir/$kver/root

	if [ ! -f "$kdir/$kver/.complete" ]; then
		vb13_log "fetching linux-image-$kver-unsigned"
		tmp=$(mktemp -d "$kdir/.dl.XXXXXX")
		(cd "$tmp" && apt-get download -q "linux-image-$kver-unsigned" >/dev/null 2>&1) || {
			apt_update
			(cd "$tmp" && apt-get download -q "linux-image-$kver-unsigned" >/dev/null)
		}
		deb=$(ls "$tmp"/*.deb)
		rm -rf "$kdir/$kver"
		mkdir -p "$root"
		dpkg-deb -x "$deb" "$root"
		rm -rf "$tmp"
		[ -f "$root/boot/vmlinuz-$kver" ] && [ -d "$root/lib/modules/$kver" ] ||
			vb13_die "linux-image-$kver-unsigned has no vmlinuz or modules"
		# The package's postinst would generate modules.dep; do it here.
		depmod -b "$root" -F "$root/boot/System.map-$kver" "$kver"
		touch "$kdir/$kver/.complete"
	fi

	if ! dpkg -s "linux-headers-$kver" >/dev/null 2>&1; then
		vb13_log "installing linux-headers-$kver"
		apt-get install -y -qq -o DPkg::Lock::Timeout=900 --no-install-recommends "linux-headers-$kver" >/dev/null 2>&1 || {
			apt_update
			apt-get install -y -qq -o DPkg::Lock::Timeout=900 --no-install-recommends "linux-headers-$kver" >/dev/null
		}
	fi
	[ -f "/usr/src/linux-headers-$kver/Makefile" ] ||
		vb13_die "/usr/src/linux-headers-$kver is missing"

	local env=$kdir/$s.env want
	want=$(printf 'KVER=%s\nVMLINUZ=%s\nMODROOT=%s\nKDIR=%s\n' "$kver" \
		"$root/boot/vmlinuz-$kver" "$root" "/usr/src/linux-headers-$kver")
	if [ ! -f "$env" ] || [ "$(cat "$env")" != "$want" ]; then
		printf '%s\n' "$want" >"$env.tmp"
		mv "$env.tmp" "$env"
	fi
	vb13_log "$s: $kver ($env)"
	echo "$env"
}

for s in "${series[@]}"; do
	fetch_one "$s"
done
