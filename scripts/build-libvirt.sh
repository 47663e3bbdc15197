#!/usr/bin/env bash
# Build libvirt $LIBVIRT_VERSION from Debian's orig tarball with the patch
# series in scripts/libvirt-patches/ (the virtio-balloon13 memballoon model),
# run libvirt's own tests of what the series changes, and print the install
# prefix.
#
# Only what the project uses is built: the QEMU driver, the virtqemud daemon
# (with the remote driver it serves), virsh, the libraries they link and
# libvirt_iohelper (save and restore); no docs, no other drivers or
# daemons.  The tests run are qemuxmlconftest, qemuxmlactivetest,
# virschematest, qemucapabilitiestest, qemucaps2xmltest, domaincapstest,
# qemumonitorjsontest, qemuhotplugtest and the QEMU replies check; a failure
# fails the build.  Their results are kept as TAP in <prefix>/unit-tests.tap
# (ids libvirt/unit/<test>).
#
# The result is cached in $VB13_CACHE/libvirt-$LIBVIRT_VERSION-<hash>/, the
# hash covering this script, fetch-libvirt-src.sh and the patches.  The
# prefix is that directory: sbin/virtqemud, bin/virsh, lib/ (run them with
# LD_LIBRARY_PATH=<prefix>/lib), libexec/, share/libvirt/, build.log,
# build-seconds.  Configuration and state are under /run/vb13-libvirt/etc
# and /run/vb13-libvirt/var (tests/libvirt/run.py mounts private ones).
#
# Build dependencies come from bookworm and are installed here if missing,
# with python3-libvirt for tests/libvirt/run.py.
#
# Usage: [LIBVIRT_VERSION=11.3.0] build-libvirt.sh [--force]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

force=0
case "${1:-}" in
"") ;;
--force) force=1 ;;
*) echo "usage: build-libvirt.sh [--force]" >&2; exit 2 ;;
esac

export LIBVIRT_VERSION=${LIBVIRT_VERSION:-11.3.0}
state=/run/vb13-libvirt
patchdir=$VB13_TOP/scripts/libvirt-patches
key=$(cat "$VB13_TOP/scripts/build-libvirt.sh" \
	"$VB13_TOP/scripts/fetch-libvirt-src.sh" "$patchdir"/*.patch |
	sha256sum | cut -c1-12)
out=$VB13_CACHE/libvirt-$LIBVIRT_VERSION-$key

unit_tests=(qemuxmlconftest qemuxmlactivetest virschematest
	qemucapabilitiestest qemucaps2xmltest domaincapstest
	qemumonitorjsontest qemuhotplugtest)
# From bookworm (meson from bookworm-backports, as setup.sh installs it);
# python3-libvirt is for tests/libvirt/run.py.
build_deps=(build-essential pkg-config meson ninja-build python3 perl
	xsltproc libxml2-utils libxml2-dev libglib2.0-dev libgnutls28-dev
	libtirpc-dev libjson-c-dev libnl-3-dev libnl-route-3-dev python3-libvirt)

# Print the prefix if it is there and works.
check() {
	[ -f "$out/.complete" ] && [ -x "$out/sbin/virtqemud" ] &&
		[ -s "$out/unit-tests.tap" ] || return 1
	LD_LIBRARY_PATH=$out/lib "$out/bin/virsh" --version >/dev/null 2>&1 &&
		LD_LIBRARY_PATH=$out/lib "$out/sbin/virtqemud" --version >/dev/null 2>&1
}

if [ "$force" = 0 ] && check; then
	echo "$out"
	exit 0
fi

# One build at a time, even from several worktrees.
exec 9>"$VB13_CACHE/build-libvirt.lock"
flock 9
if [ "$force" = 0 ] && check; then
	echo "$out"
	exit 0
fi

if ! dpkg -s "${build_deps[@]}" >/dev/null 2>&1; then
	bash "$VB13_TOP/scripts/setup.sh" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends "${build_deps[@]}" >/dev/null
fi
tarball=$(bash "$VB13_TOP/scripts/fetch-libvirt-src.sh")
tmp=$out.tmp
rm -rf "$tmp" "$out"
mkdir -p "$tmp/src"
start=$(date +%s)
vb13_log "building libvirt $LIBVIRT_VERSION in $tmp (log: $tmp/build.log)"
tar -xf "$tarball" -C "$tmp/src" --strip-components=1

# Everything the QEMU driver does not need is off.  libnl stays on: 11.3
# does not build on Linux without it.  Configuration and state live under
# $VB13_LIBVIRT_STATE (short: QEMU's monitor socket path must fit in
# sun_path); tests/libvirt/run.py mounts a private etc/ and var/ there.
meson_opts=(
	--prefix="$out" --libdir=lib --sysconfdir="$state/etc"
	--localstatedir="$state/var" -Drunstatedir="$state/var/run" --buildtype=plain
	-Dc_args=-O2 -Dwerror=false
	-Ddriver_qemu=enabled -Ddriver_libvirtd=enabled -Ddriver_remote=enabled
	-Dqemu_user=root -Dqemu_group=root
	-Dtests=enabled -Dexpensive_tests=disabled -Ddocs=disabled -Dnls=disabled
	-Dinit_script=none -Dlibnl=enabled -Djson_c=enabled
)
for o in driver_ch driver_bhyve driver_esx driver_hyperv driver_interface \
	driver_libxl driver_lxc driver_network driver_openvz driver_secrets \
	driver_test driver_vbox driver_vmware driver_vz \
	storage_dir storage_disk storage_fs storage_gluster storage_iscsi \
	storage_iscsi_direct storage_lvm storage_mpath storage_rbd storage_scsi \
	storage_vstorage storage_zfs \
	apparmor apparmor_profiles attr audit bash_completion blkid capng curl \
	dtrace firewalld firewalld_zone fuse glusterfs host_validate libiscsi \
	libpcap libssh libssh2 login_shell nbdkit nss numactl pciaccess polkit \
	readline sanlock sasl secdriver_apparmor secdriver_selinux selinux \
	ssh_proxy sysctl_config udev userfaultfd_sysctl wireshark_dissector; do
	meson_opts+=("-D$o=disabled")
done

(
	cd "$tmp/src"
	for p in "$patchdir"/*.patch; do
		patch -p1 --quiet <"$p"
	done
	meson setup "$tmp/build" "${meson_opts[@]}"
	cd "$tmp/build"
	mocks=$(ninja -t targets all | grep -oE '^tests/lib[a-z0-9_]+mock\.so' |
		sort -u)
	# shellcheck disable=SC2086
	nice -n 10 ninja -j2 src/virtqemud tools/virsh src/libvirt_driver_qemu.so \
		src/libvirt_iohelper "${unit_tests[@]/#/tests/}" $mocks
	echo "build-seconds $(($(date +%s) - start))"
	nice -n 10 meson test --no-rebuild --num-processes 2 \
		--timeout-multiplier 5 --print-errorlogs \
		"${unit_tests[@]}" "qemu replies check"
) >"$tmp/build.log" 2>&1 || {
	tail -n 40 "$tmp/build.log" >&2
	vb13_die "libvirt build or its tests failed; full log in $tmp/build.log"
}

# libvirt's own tests as TAP, one line each.
python3 - "$tmp/build/meson-logs/testlog.json" >"$tmp/unit-tests.tap" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
# "libvirt:bin / qemuxmlconftest" -> qemuxmlconftest
rows.sort(key=lambda r: r["name"].split(" / ")[-1])
print("1..%d" % len(rows))
for i, r in enumerate(rows, 1):
    name = r["name"].split(" / ")[-1].replace(" ", "-")
    ok = r["result"] == "OK"
    print("%s %d - libvirt/unit/%s" % ("ok" if ok else "not ok", i, name))
    print("# %s: %s in %.1f s" % (name, r["result"], r.get("duration", 0)))
EOF

b=$tmp/build
s=$tmp/src
mkdir -p "$tmp/bin" "$tmp/sbin" "$tmp/lib/libvirt/connection-driver" \
	"$tmp/libexec" "$tmp/share/libvirt"
install -m 0755 "$b/src/virtqemud" "$tmp/sbin/"
install -m 0755 "$b/tools/virsh" "$tmp/bin/"
install -m 0755 "$b/src/libvirt_iohelper" "$tmp/libexec/"
# libvirt runs its helpers with a clean environment: their run path
# ($ORIGIN) must find this libvirt.so.0, not Debian's.
ln -s ../lib/libvirt.so.0 "$tmp/libexec/libvirt.so.0"
install -m 0755 "$b/src/libvirt_driver_qemu.so" \
	"$tmp/lib/libvirt/connection-driver/"
find "$b/src" -maxdepth 1 \( -type f -o -type l \) \
	\( -name 'libvirt.so*' -o -name 'libvirt-qemu.so*' -o -name 'libvirt-lxc.so*' \) \
	-exec cp -P {} "$tmp/lib/" \;
cp -r "$s/src/cpu_map" "$tmp/share/libvirt/cpu_map"
cp -r "$s/src/conf/schemas" "$tmp/share/libvirt/schemas"
rm -f "$tmp/share/libvirt/cpu_map/meson.build" \
	"$tmp/share/libvirt/schemas/meson.build"
rm -rf "$tmp/src" "$tmp/build"
echo "$(($(date +%s) - start))" >"$tmp/build-seconds"
touch "$tmp/.complete"
rm -rf "$out"
mv "$tmp" "$out"
check || vb13_die "$out/sbin/virtqemud or $out/bin/virsh does not run"
vb13_log "built and tested in $(cat "$out/build-seconds") s"
echo "$out"
