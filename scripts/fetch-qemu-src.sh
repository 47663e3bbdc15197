#!/usr/bin/env bash
# Download the orig tarball of Debian's bookworm-backports qemu source package
# into the cache and print its path.  The .dsc is sometimes missing from the
# archive while the orig tarball downloads fine, so apt's error is tolerated
# as long as the tarball arrived.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
if [ ! -s "$QEMU_TARBALL" ]; then
	bash "$VB13_TOP/scripts/setup.sh"
	(cd "$VB13_CACHE/src" &&
		apt-get source --download-only -t bookworm-backports \
			"qemu=1:${QEMU_VERSION}+ds-*" >/dev/null 2>&1 ||
		apt-get source --download-only -t bookworm-backports qemu \
			>/dev/null 2>&1 || true)
	[ -s "$QEMU_TARBALL" ] || vb13_die "could not download $(basename "$QEMU_TARBALL")"
fi
echo "$QEMU_TARBALL"
