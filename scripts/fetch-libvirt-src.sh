#!/usr/bin/env bash
# Download the orig tarball of Debian's libvirt source package, version
# $LIBVIRT_VERSION, into the cache and print its path.
#
# The machine's own apt sources are asked first (setup.sh adds deb-src for
# bookworm and bookworm-backports: libvirt 9.0.0 and 11.3.0), then Debian
# unstable through scripts/sid-apt.sh (an apt configuration of its own), so
# nothing from unstable is ever installed.
# Like QEMU's, the .dsc and debian tarball are sometimes missing from the
# archive while the orig tarball downloads fine: apt's error is tolerated as
# long as the tarball arrived (apt checks it against the Sources index).
#
# Usage: [LIBVIRT_VERSION=12.8.0] fetch-libvirt-src.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"

LIBVIRT_VERSION=${LIBVIRT_VERSION:-11.3.0}
tarball=$VB13_CACHE/src/libvirt_${LIBVIRT_VERSION}.orig.tar.xz
if [ -s "$tarball" ]; then
	echo "$tarball"
	exit 0
fi

exec 9>"$VB13_CACHE/fetch-libvirt-src.lock"
flock 9
if [ -s "$tarball" ]; then
	echo "$tarball"
	exit 0
fi

log=
# Download the source package whose Debian version is $LIBVIRT_VERSION-*
# with apt, run through the command given (none: the machine's own apt);
# apt's complaints go to $log.
fetch() {
	local ver
	ver=$("$@" apt-cache showsrc libvirt 2>/dev/null | awk -v v="$LIBVIRT_VERSION-" \
		'$1 == "Version:" && index($2, v) == 1 && !n++ { print $2 }')
	if [ -z "$ver" ]; then
		log="no libvirt $LIBVIRT_VERSION source package listed"
		return 0
	fi
	log=$(cd "$VB13_CACHE/src" &&
		"$@" apt-get source --download-only "libvirt=$ver" 2>&1 || true)
}

# The machine's sources (bookworm, bookworm-backports).
bash "$VB13_TOP/scripts/setup.sh" >&2
fetch

# Debian unstable, through scripts/sid-apt.sh.
if [ ! -s "$tarball" ]; then
	bash "$VB13_TOP/scripts/sid-apt.sh" update >&2 ||
		vb13_log "apt-get update of Debian unstable's sources failed"
	fetch bash "$VB13_TOP/scripts/sid-apt.sh"
fi

[ -s "$tarball" ] || vb13_die "could not download $(basename "$tarball")" \
	"(bookworm, bookworm-backports, unstable): $(grep -m1 -E 'orig|no libvirt' <<<"$log")"
rm -f "$VB13_CACHE/src/libvirt_${LIBVIRT_VERSION}"*.dsc \
	"$VB13_CACHE/src/libvirt_${LIBVIRT_VERSION}"*.asc
echo "$tarball"
