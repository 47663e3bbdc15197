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
# Series newer than bookworm's (7.2: today's mainline API) come from Debian
# unstable through scripts/sid-apt.sh, installing nothing from it: the
# image (linux-binary-<kver>) and its modules are unpacked the same way,
# but unstable's headers need unstable's compiler (gcc-16) and glibc.  So
# KDIR is linux-source-<series> of the same Debian version, prepared with
# bookworm's gcc for exactly that kernel: Debian's .config (compiler
# capabilities re-evaluated by olddefconfig) and Module.symvers from
# linux-headers-<kver>, and KERNELRELEASE <kver>, so the modules it builds
# load in Debian's image.  The source tree stays in the cache for KUnit and
# checkpatch (KSRC in the .env), and sparse is built from unstable's source
# package too (CHECK in the .env): bookworm's is too old for 7.x headers.
#
# Usage: fetch-kernels.sh [SERIES...]      e.g. fetch-kernels.sh 6.12 7.2
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The series newer than bookworm's come from Debian unstable.
SID_SERIES=" 7.2 "
series=("$@")
[ ${#series[@]} -gt 0 ] || series=(6.1 6.12 7.2)
debug=0
stock=()
for s in "${series[@]}"; do
	if [ "$s" = 6.12-debug ]; then
		debug=1
		continue
	fi
	[[ $s =~ ^[0-9]+\.[0-9]+$ ]] || {
		echo "fetch-kernels.sh: bad series '$s' (want e.g. 6.1, 6.12, 7.2 or 6.12-debug)" >&2
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

sid() { bash "$VB13_TOP/scripts/sid-apt.sh" "$@"; }

# Download Debian unstable packages into the current directory.
sid_download() {
	sid apt-get download -q "$@" >/dev/null 2>&1 || {
		sid update
		sid apt-get download -q "$@" >/dev/null
	}
}

# The source package's upstream tarball of linux-source-<series>, extracted
# once into $VB13_CACHE/linux-source-<series>-<version>; prints the path.
sid_source() {
	local s=$1 ver tree tmp
	ver=$(sid apt-cache show "linux-source-$s" | sed -n 's/^Version: //p' | sort -V | tail -n1)
	[ -n "$ver" ] || vb13_die "no linux-source-$s in Debian unstable"
	tree=$VB13_CACHE/linux-source-$s-$ver
	if [ ! -f "$tree/.vb13-extracted" ]; then
		vb13_log "fetching linux-source-$s $ver"
		tmp=$(mktemp -d "$VB13_CACHE/.src.XXXXXX")
		(cd "$tmp" && sid_download "linux-source-$s=$ver" && dpkg-deb -x ./*.deb x)
		rm -rf "$tree" "$tree.tmp"
		mkdir -p "$tree.tmp"
		tar -xf "$tmp"/x/usr/src/linux-source-"$s".tar.* -C "$tree.tmp" --strip-components=1
		rm -rf "$tmp"
		touch "$tree.tmp/.vb13-extracted"
		mv "$tree.tmp" "$tree"
	fi
	echo "$tree"
}

# sparse from Debian unstable's source package, built once (the kernel
# wants __typeof_unqual__, which bookworm's 0.6.4 lacks); prints its path.
sid_sparse() {
	local ver dir tmp
	ver=$(sid apt-cache showsrc sparse | sed -n 's/^Version: //p' | sort -V | tail -n1)
	[ -n "$ver" ] || vb13_die "no sparse source in Debian unstable"
	dir=$VB13_CACHE/sparse-$ver
	if [ ! -x "$dir/sparse" ]; then
		vb13_log "building sparse $ver"
		tmp=$(mktemp -d "$VB13_CACHE/.sparse.XXXXXX")
		(cd "$tmp" && sid apt-get source -q --download-only "sparse=$ver" >/dev/null 2>&1 &&
			tar -xf sparse_*.orig.tar.* && cd sparse-*/ &&
			nice make -s -j2 sparse HAVE_LLVM=no HAVE_SQLITE=no HAVE_GTK=no \
				HAVE_LIBXML=no >/dev/null 2>&1) ||
			vb13_die "building sparse $ver failed"
		rm -rf "$dir" && mkdir -p "$dir"
		cp "$tmp"/sparse-*/sparse "$dir/"
		rm -rf "$tmp"
	fi
	echo "$dir/sparse"
}

fetch_sid() {
	local s=$1 kver root tmp tree build hdr env want check
	kver=$(sid apt-cache search --names-only "^linux-binary-${s//./\\.}\\.[^ ]*-amd64\$" |
		awk '{print $1}' | grep -Ev -- '-(cloud|rt)-amd64$' |
		sed 's/^linux-binary-//' | sort -V | tail -n1)
	[ -n "$kver" ] || vb13_die "no linux-binary-$s.*-amd64 in Debian unstable"
	root=$kdir/$kver/root

	if [ ! -f "$kdir/$kver/.complete" ]; then
		vb13_log "fetching linux-binary-$kver, linux-modules-$kver and linux-base-$kver (unstable)"
		tmp=$(mktemp -d "$kdir/.dl.XXXXXX")
		(cd "$tmp" && sid_download "linux-binary-$kver" "linux-modules-$kver" \
			"linux-base-$kver")
		rm -rf "$root"
		mkdir -p "$root/lib"
		for deb in "$tmp"/*.deb; do
			dpkg-deb -x "$deb" "$root"
		done
		rm -rf "$tmp"
		# Merged /usr: the modules (and vmlinuz) are under usr/lib.
		[ -d "$root/lib/modules" ] || mv "$root/usr/lib/modules" "$root/lib/modules"
		[ -f "$root/lib/modules/$kver/vmlinuz" ] ||
			vb13_die "linux-binary-$kver has no vmlinuz"
		depmod -b "$root" "$kver"
		touch "$kdir/$kver/.complete"
	fi

	tree=$(sid_source "$s")
	build=$kdir/$kver/build
	if [ "$(cat "$build/include/config/kernel.release" 2>/dev/null)" != "$kver" ] ||
		[ ! -f "$build/.vb13-prepared" ]; then
		vb13_log "preparing $tree for $kver modules (bookworm's gcc)"
		tmp=$(mktemp -d "$kdir/.dl.XXXXXX")
		(cd "$tmp" && sid_download "linux-headers-$kver" && dpkg-deb -x ./*.deb x)
		hdr=$tmp/x/usr/src/linux-headers-$kver
		rm -rf "$build" && mkdir -p "$build"
		cp "$hdr/.config" "$hdr/Module.symvers" "$build/"
		rm -rf "$tmp"
		# KERNELRELEASE: the upstream version, then LOCALVERSION.
		if ! { nice make -s -C "$tree" O="$build" ARCH=x86 olddefconfig &&
			nice make -s -C "$tree" O="$build" ARCH=x86 -j2 \
				LOCALVERSION="${kver#"$(make -s -C "$tree" kernelversion)"}" \
				modules_prepare; } >"$kdir/$kver/prepare.log" 2>&1; then
			tail -n 30 "$kdir/$kver/prepare.log" >&2
			vb13_die "modules_prepare for $kver failed"
		fi
		[ "$(cat "$build/include/config/kernel.release")" = "$kver" ] ||
			vb13_die "prepared tree says $(cat "$build/include/config/kernel.release"), want $kver"
		touch "$build/.vb13-prepared"
	fi
	check=$(sid_sparse)

	env=$kdir/$s.env
	want=$(printf 'KVER=%s\nVMLINUZ=%s\nMODROOT=%s\nKDIR=%s\nKSRC=%s\nCHECK=%s\n' \
		"$kver" "$root/lib/modules/$kver/vmlinuz" "$root" "$build" "$tree" "$check")
	if [ ! -f "$env" ] || [ "$(cat "$env")" != "$want" ]; then
		printf '%s\n' "$want" >"$env.tmp"
		mv "$env.tmp" "$env"
	fi
	vb13_log "$s: $kver ($env)"
	echo "$env"
}

for s in "${series[@]}"; do
	case $SID_SERIES in
	*" $s "*) fetch_sid "$s" ;;
	*) fetch_one "$s" ;;
	esac
done
