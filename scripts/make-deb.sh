#!/usr/bin/env bash
# make deb: build the Debian package virtio-balloon13-dkms from the
# repository's kernel sources (scripts/dkms-source.sh) and debian/, in
# out/deb/, and print the .deb's path.  Needs debhelper and dh-dkms
# (scripts/setup.sh installs them).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ver=$(vb13_version)
out=$VB13_TOP/out/deb
src=$out/virtio-balloon13-$ver
rm -rf "$out"
mkdir -p "$out"
bash "$VB13_TOP/scripts/dkms-source.sh" "$src" >/dev/null
cp -a "$VB13_TOP/debian" "$src/debian"
rm -f "$src/debian/dkms.conf.in"	# made into dkms.conf already
(cd "$src" && dpkg-buildpackage -b --no-sign >"$out/build.log" 2>&1) || {
	tail -n 40 "$out/build.log" >&2
	vb13_die "dpkg-buildpackage failed (see $out/build.log)"
}
deb=$(ls "$out"/virtio-balloon13-dkms_"$ver"*_all.deb)
echo "$deb"
