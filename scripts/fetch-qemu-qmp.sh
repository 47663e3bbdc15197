#!/usr/bin/env bash
# Fetch QEMU's own QMP library, the qemu.qmp Python package, and print the
# directory to put on sys.path (scripts/vm.py does).
#
# QEMU 10.0 still carried it in its tree (python/qemu/qmp); upstream then
# deleted that copy (the series "python: delete qemu.qmp", 2025) in favour
# of the standalone package it points to (qemu.qmp, gitlab.com/qemu-project/
# python-qemu-qmp), and Debian's qemu 11.1 build-depends on that package:
# python3-qemu-qmp.  Bookworm has no such package, so this unpacks Debian
# unstable's (architecture all, pure Python, depends on python3 only) with
# scripts/sid-apt.sh (an apt configuration of its own): bookworm's apt state is not touched and
# nothing from unstable is installed.
#
# A python3-qemu-qmp installed on the machine wins (nothing is fetched).
# Cached under $VB13_CACHE/python3-qemu-qmp-<version>/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if python3 -c 'import qemu.qmp' 2>/dev/null; then
	python3 -c 'import os, qemu.qmp; print(os.path.dirname(os.path.dirname(os.path.dirname(qemu.qmp.__file__))))'
	exit 0
fi
for d in $(ls -d "$VB13_CACHE"/python3-qemu-qmp-*/.complete 2>/dev/null | sort -V -r); do
	echo "$(dirname "$d")/usr/lib/python3/dist-packages"
	exit 0
done

exec 9>"$VB13_CACHE/python3-qemu-qmp.lock"
flock 9
bash "$VB13_TOP/scripts/sid-apt.sh" update >&2
tmp=$(mktemp -d "$VB13_CACHE/.qemu-qmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && bash "$VB13_TOP/scripts/sid-apt.sh" apt-get download python3-qemu-qmp >&2 2>/dev/null) ||
	vb13_die "apt-get download python3-qemu-qmp (Debian unstable) failed"
deb=$(ls "$tmp"/python3-qemu-qmp_*_all.deb)
ver=$(dpkg-deb -f "$deb" Version)
dest=$VB13_CACHE/python3-qemu-qmp-$ver
rm -rf "$dest"
dpkg-deb -x "$deb" "$dest"
[ -f "$dest/usr/lib/python3/dist-packages/qemu/qmp/__init__.py" ] ||
	vb13_die "$deb has no qemu/qmp package"
touch "$dest/.complete"
vb13_log "qemu.qmp $ver from Debian unstable in $dest"
echo "$dest/usr/lib/python3/dist-packages"
