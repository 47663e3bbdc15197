#!/usr/bin/env bash
# Build QEMU $QEMU_VERSION (scripts/lib.sh) from Debian's orig tarball with
# the patch series made from qemu/ (scripts/qemu-series.sh) and the device
# set in qemu/devices.mak, and print the path of its qemu-system-x86_64.
#
# The build is one a user can run real VMs with: KVM (where /dev/kvm
# exists) and TCG, q35, virtio-blk on raw and qcow2 images, virtio-net with
# user networking (libslirp) or vhost-net, virtio-rng and virtio-serial,
# hot-pluggable PCIe root ports, virtio-balloon, and device 13 twice: the
# native virtio-balloon13-pci and the generic vhost-user device for
# balloon13d (upstream's vhost-user-test-device-pci).  No display.
#
# The device's qtest is built too, into tests/ beside root/
# (scripts/qemu-qtest.sh).
#
# The result is installed (meson install) into a prefix in the cache,
#   $VB13_CACHE/qemu-$QEMU_VERSION-<hash>/root/{bin,share}
# keyed by a hash of this script and of qemu/ (the series' inputs), so it is
# rebuilt only when one of them (or the version) changes;
# $VB13_CACHE/qemu-$QEMU_VERSION-<hash>/qemu-system-x86_64 links to the
# binary.  QEMU is relocatable: the tree can be copied to any prefix
# (--install PREFIX; `make install-qemu PREFIX=/usr/local`).  Firmware is
# not built: the binary looks in Debian's qemu-system-data, seabios and
# ipxe-qemu (--firmwarepath), so no -L is needed.
#
# Usage: build-qemu.sh [--force] [--install PREFIX]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

force=0
install_prefix=
while [ $# -gt 0 ]; do
	case $1 in
	--force) force=1 ;;
	--install) install_prefix=${2:?--install needs a prefix}; shift ;;
	*) echo "usage: build-qemu.sh [--force] [--install PREFIX]" >&2; exit 2 ;;
	esac
	shift
done

key=$( (cat "$VB13_TOP/scripts/build-qemu.sh"
	bash "$VB13_TOP/scripts/qemu-series.sh" key) | sha256sum | cut -c1-12)
out=$VB13_CACHE/qemu-$QEMU_VERSION-$key
bin=$out/root/bin/qemu-system-x86_64
firmware_path=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu

# What the build must offer; check() fails if any is missing.
want_devices=(virtio-balloon13-pci virtio-balloon-pci vhost-user-test-device-pci
	virtio-blk-pci virtio-net-pci virtio-rng-pci virtio-serial-pci
	pcie-root-port intel-iommu)

# Succeeds if the binary is there and offers everything above.
check() {
	[ -x "$bin" ] && [ -f "$out/.complete" ] &&
		[ -x "$out/tests/virtio-balloon13-test" ] || return 1
	local devs d q=("$bin" -machine none)	# no default machine: no pc
	devs=$("${q[@]}" -device help 2>&1) || return 1
	for d in "${want_devices[@]}"; do
		grep -q "^name \"$d\"" <<<"$devs" || { vb13_log "$bin lacks $d"; return 1; }
	done
	"${q[@]}" -accel help 2>&1 | grep -qx kvm || { vb13_log "$bin lacks KVM"; return 1; }
	"${q[@]}" -accel help 2>&1 | grep -qx tcg || { vb13_log "$bin lacks TCG"; return 1; }
	"${q[@]}" -netdev help 2>&1 | grep -qx user || { vb13_log "$bin lacks user networking"; return 1; }
	"${q[@]}" -object help 2>&1 | grep -q memory-backend-memfd ||
		{ vb13_log "$bin lacks memory-backend-memfd"; return 1; }
}

install_to() {
	local prefix=$1
	mkdir -p "$prefix"
	cp -a "$out/root/." "$prefix/"
	vb13_log "installed QEMU $QEMU_VERSION in $prefix ($prefix/bin/qemu-system-x86_64)"
	echo "$prefix/bin/qemu-system-x86_64"
}

done_() {
	if [ -n "$install_prefix" ]; then
		install_to "$install_prefix"
	else
		echo "$out/qemu-system-x86_64"
	fi
	exit 0
}

if [ "$force" = 0 ] && check 2>/dev/null; then
	done_
fi

# One build at a time, even from several worktrees.
exec 9>"$VB13_CACHE/build-qemu.lock"
flock 9
if [ "$force" = 0 ] && check 2>/dev/null; then
	done_
fi

bash "$VB13_TOP/scripts/setup.sh" >&2
tarball=$(bash "$VB13_TOP/scripts/fetch-qemu-src.sh")
tmp=$out.tmp
# The tree is built at one path whatever the hash, so that ccache finds
# what an earlier build with other patches compiled.
src=$VB13_CACHE/qemu-build-$QEMU_VERSION
rm -rf "$tmp" "$out" "$src"
mkdir -p "$tmp" "$src"
start=$(date +%s)
vb13_log "building QEMU $QEMU_VERSION in $tmp (log: $tmp/build.log)"
tar -xf "$tarball" -C "$src" --strip-components=1 --no-same-owner
patchdir=$tmp/series
bash "$VB13_TOP/scripts/qemu-series.sh" generate "$patchdir"
# Compile through ccache (setup.sh installs it): a new patch rebuilds only
# the files it changes.  (QEMU's configure hands meson the compiler it is
# given, so meson's own ccache detection does not apply.)
cc=cc
if command -v ccache >/dev/null; then
	cc="ccache cc"
	export CCACHE_DIR=$VB13_CACHE/ccache
fi
# (Each step checked: `set -e` does not apply inside a `... || {` list.)
(
	cd "$src" || exit 1
	for p in "$patchdir"/*.patch; do
		echo "applying $(basename "$p")"
		patch -p1 --quiet --no-backup-if-mismatch <"$p" || exit 1
	done
	cp "$VB13_TOP/qemu/devices.mak" configs/devices/x86_64-softmmu/vb13.mak &&
		mkdir build && cd build || exit 1
	CC=$cc ../configure --python=/usr/bin/python3 --prefix=/usr/local \
		--firmwarepath="$firmware_path" --target-list=x86_64-softmmu \
		--disable-install-blobs --without-default-features \
		--without-default-devices --with-devices-x86_64=vb13 \
		--enable-kvm --enable-tcg --enable-slirp --enable-vhost-user \
		--enable-vhost-kernel --enable-vhost-net || exit 1
	# Only what `meson install` installs; the default target would also
	# build QEMU's unit tests and benchmarks.
	nice -n 10 ninja -j2 qemu-system-x86_64 trace/trace-events-all \
		tests/qtest/virtio-balloon13-test || exit 1
	meson install --no-rebuild --quiet --destdir "$tmp/stage"
) >"$tmp/build.log" 2>&1 || {
	tail -n 40 "$tmp/build.log" >&2
	vb13_die "QEMU build failed; full log in $tmp/build.log"
}
mv "$tmp/stage/usr/local" "$tmp/root"
ln -s root/bin/qemu-system-x86_64 "$tmp/qemu-system-x86_64"
cp "$src/build/config-host.h" "$src/build/x86_64-softmmu-config-devices.mak" "$tmp/"
# The device's qtest (scripts/qemu-qtest.sh runs it).
install -D -m 0755 "$src/build/tests/qtest/virtio-balloon13-test" \
	"$tmp/tests/virtio-balloon13-test"
# $out/series/ keeps the series this build applied (qemu-series.sh).
rm -rf "$src" "$tmp/stage"
echo "$(($(date +%s) - start))" >"$tmp/build-seconds"
touch "$tmp/.complete"
mv "$tmp" "$out"
check || vb13_die "$bin does not offer what it should (see above)"
vb13_log "built in $(cat "$out/build-seconds") s"
done_
