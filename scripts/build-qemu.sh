#!/usr/bin/env bash
# Build QEMU $QEMU_VERSION from Debian's orig tarball with the patches in
# scripts/qemu-patches/ (the generic vhost-user device made creatable, with
# num_vqs + 1 MSI-X vectors; the native device 13, virtio-balloon13-pci)
# and a small device set, and print the path of the resulting
# qemu-system-x86_64.
#
# The result is cached in $VB13_CACHE/qemu-$QEMU_VERSION-<hash>/, the hash
# covering this script, the patches and the devices file, so it is rebuilt
# only when one of them (or the version) changes.  Firmware is not built:
# run the binary with -L /usr/share/qemu -L /usr/share/seabios (Debian's
# qemu-system-data and seabios packages).
#
# Usage: build-qemu.sh [--force]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

force=0
case "${1:-}" in
"") ;;
--force) force=1 ;;
*) echo "usage: build-qemu.sh [--force]" >&2; exit 2 ;;
esac

patchdir=$VB13_TOP/scripts/qemu-patches
key=$(cat "$VB13_TOP/scripts/build-qemu.sh" "$patchdir"/*.patch \
	"$patchdir"/vb13-devices.mak | sha256sum | cut -c1-12)
out=$VB13_CACHE/qemu-$QEMU_VERSION-$key
bin=$out/qemu-system-x86_64

# Print the binary if it is there and works.
check() {
	[ -x "$bin" ] && [ -f "$out/.complete" ] || return 1
	local devs objs
	devs=$("$bin" -L /usr/share/qemu -device help 2>&1) || return 1
	objs=$("$bin" -L /usr/share/qemu -object help 2>&1) || return 1
	grep -q '"vhost-user-device-pci"' <<<"$devs" &&
		grep -q '"virtio-balloon-pci"' <<<"$devs" &&
		grep -q '"virtio-balloon13-pci"' <<<"$devs" &&
		grep -q 'memory-backend-memfd' <<<"$objs"
}

if [ "$force" = 0 ] && check; then
	echo "$bin"
	exit 0
fi

# One build at a time, even from several worktrees.
exec 9>"$VB13_CACHE/build-qemu.lock"
flock 9
if [ "$force" = 0 ] && check; then
	echo "$bin"
	exit 0
fi

bash "$VB13_TOP/scripts/setup.sh" >&2
tarball=$(bash "$VB13_TOP/scripts/fetch-qemu-src.sh")
tmp=$out.tmp
rm -rf "$tmp" "$out"
mkdir -p "$tmp/src"
start=$(date +%s)
vb13_log "building QEMU $QEMU_VERSION in $tmp (log: $tmp/build.log)"
tar -xf "$tarball" -C "$tmp/src" --strip-components=1
(
	cd "$tmp/src"
	for p in "$patchdir"/*.patch; do
		patch -p1 --quiet <"$p"
	done
	cp "$patchdir/vb13-devices.mak" configs/devices/x86_64-softmmu/vb13.mak
	mkdir build
	cd build
	../configure --python=/usr/bin/python3 --target-list=x86_64-softmmu \
		--disable-install-blobs --without-default-features \
		--without-default-devices --with-devices-x86_64=vb13 \
		--enable-vhost-user --enable-tcg
	nice -n 10 ninja -j2 qemu-system-x86_64
) >"$tmp/build.log" 2>&1 || {
	tail -n 40 "$tmp/build.log" >&2
	vb13_die "QEMU build failed; full log in $tmp/build.log"
}
install -m 0755 "$tmp/src/build/qemu-system-x86_64" "$tmp/qemu-system-x86_64"
cp "$tmp/src/build/config-host.h" "$tmp/src/build/x86_64-softmmu-config-devices.mak" "$tmp/"
rm -rf "$tmp/src"
echo "$(($(date +%s) - start))" >"$tmp/build-seconds"
touch "$tmp/.complete"
mv "$tmp" "$out"
check || vb13_die "$bin lacks vhost-user-device-pci, virtio-balloon-pci, virtio-balloon13-pci or memory-backend-memfd"
vb13_log "built in $(cat "$out/build-seconds") s"
echo "$bin"
