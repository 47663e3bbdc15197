#!/usr/bin/env bash
# Download the orig tarball of Debian unstable's qemu source package,
# version $QEMU_VERSION (scripts/lib.sh), into the cache and print its path.
#
# Unstable is reached without adding it to the machine's sources: a
# separate apt configuration under $VB13_CACHE/apt-unstable (its own
# sources.list, lists and cache, no dpkg status) serves `apt-get source
# --download-only`, which checks the tarball against the signed index.
# The .dsc and the Debian tarball are not needed; apt's error about them
# is tolerated as long as the orig tarball arrived.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if [ -s "$QEMU_TARBALL" ]; then
	echo "$QEMU_TARBALL"
	exit 0
fi

apt_dir=$VB13_CACHE/apt-unstable
exec 8>"$VB13_CACHE/.apt-unstable.lock"
flock 8
if [ -s "$QEMU_TARBALL" ]; then
	echo "$QEMU_TARBALL"
	exit 0
fi
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
cat >"$apt_dir/sources.list" <<EOF
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $(vb13_debian_uri) unstable main
EOF
apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list"
	-o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$apt_dir/lists"
	-o "Dir::Cache=$apt_dir/cache" -o Dir::State::status=/dev/null
	-o APT::Sandbox::User=root)

# The exact Debian version of upstream $QEMU_VERSION, e.g. 1:10.2.2+ds-1.
debver() {
	apt-cache "${apt_opts[@]}" showsrc qemu 2>/dev/null |
		sed -n 's/^Version: //p' | grep -F ":$QEMU_VERSION+ds-" |
		sort -V | tail -n1 || true
}
ver=$(debver)
if [ -z "$ver" ]; then
	vb13_log "updating the index of Debian unstable's sources"
	apt-get "${apt_opts[@]}" -qq update >&2 ||
		vb13_die "apt-get update of Debian unstable's sources failed"
	ver=$(debver)
fi
[ -n "$ver" ] || vb13_die "Debian unstable has no qemu $QEMU_VERSION source package"

vb13_log "downloading qemu $ver's orig tarball"
(cd "$VB13_CACHE/src" &&
	apt-get "${apt_opts[@]}" -qq source --download-only "qemu=$ver" \
		>/dev/null 2>"$apt_dir/source.log") || true
[ -s "$QEMU_TARBALL" ] || {
	cat "$apt_dir/source.log" >&2
	vb13_die "could not download $(basename "$QEMU_TARBALL") (qemu $ver)"
}
echo "$QEMU_TARBALL"
