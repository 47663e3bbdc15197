#!/usr/bin/env bash
# Download the orig tarball of Debian unstable's qemu source package,
# version $QEMU_VERSION (scripts/lib.sh), into the cache and print its path.
#
# Unstable is reached without adding it to the machine's sources, through
# scripts/sid-apt.sh (its own sources.list, lists and cache, no dpkg
# status): `apt-get source --download-only` checks the tarball against the
# signed index.
# The .dsc and the Debian tarball are not needed; apt's error about them
# is tolerated as long as the orig tarball arrived.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if [ -s "$QEMU_TARBALL" ]; then
	echo "$QEMU_TARBALL"
	exit 0
fi

exec 8>"$VB13_CACHE/.fetch-qemu-src.lock"
flock 8
if [ -s "$QEMU_TARBALL" ]; then
	echo "$QEMU_TARBALL"
	exit 0
fi
sid() { bash "$VB13_TOP/scripts/sid-apt.sh" "$@"; }

# The exact Debian version of upstream $QEMU_VERSION, e.g. 1:10.2.2+ds-1.
debver() {
	sid apt-cache showsrc qemu 2>/dev/null |
		sed -n 's/^Version: //p' | grep -F ":$QEMU_VERSION+ds-" |
		sort -V | tail -n1 || true
}
ver=$(debver)
if [ -z "$ver" ]; then
	vb13_log "updating the index of Debian unstable's sources"
	sid update >&2 ||
		vb13_die "apt-get update of Debian unstable's sources failed"
	ver=$(debver)
fi
[ -n "$ver" ] || vb13_die "Debian unstable has no qemu $QEMU_VERSION source package"

vb13_log "downloading qemu $ver's orig tarball"
log=$VB13_CACHE/src/qemu-source.log
(cd "$VB13_CACHE/src" &&
	sid apt-get -qq source --download-only "qemu=$ver" >/dev/null 2>"$log") || true
[ -s "$QEMU_TARBALL" ] || {
	cat "$log" >&2
	vb13_die "could not download $(basename "$QEMU_TARBALL") (qemu $ver)"
}
echo "$QEMU_TARBALL"
