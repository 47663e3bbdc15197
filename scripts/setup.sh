#!/usr/bin/env bash
# Install everything virtio_balloon13's build, tests, demo and benchmarks need
# on a Debian bookworm machine, as root.  Idempotent: a second run only checks.
#
# Adds bookworm-backports and deb-src entries that reuse the archive URIs the
# machine's own Debian sources already name, then installs packages by name.
set -euo pipefail

[ "$(id -u)" -eq 0 ] || { echo "setup.sh: must run as root" >&2; exit 1; }

stamp=/var/lib/virtio_balloon13-setup.v2
# Each package and what uses it (tests/readme/run.py's `needs` check
# keeps the README's runtime list honest; nothing here may go unused).
pkgs=(
	# Compiling: the module (scripts/build-module.sh, DKMS), host/, QEMU.
	build-essential
	# Kernel builds (the debug kernel, KUnit, preparing 7.2's source in
	# fetch-kernels.sh): bc, kconfig's bison and flex, objtool's libelf,
	# certs/extract-cert's libssl, pahole for the debug kernel's BTF.
	bc bison flex libelf-dev libssl-dev dwarves
	# depmod and modprobe (fetch-kernels.sh, mkinitramfs.sh), cpio
	# (mkinitramfs.sh), rsync (build-module.sh, build-debug-kernel.sh),
	# xz (QEMU's and libvirt's .orig.tar.xz, linux-source-*.tar.xz).
	kmod cpio rsync xz-utils
	# Everything in Python; sparse for 6.1 and 6.12 (kernel-checks.sh);
	# git (lib.sh's file lists); pkg-config (host/Makefile, QEMU).
	python3 sparse git pkg-config
	# QEMU's build (build-qemu.sh, qemu-fuzz.sh, build-libvhost-user.sh):
	# ninja, glib, libslirp (user networking), libfdt (found and used),
	# zlib, ccache.  json-glib: host/ (balloon13d, balloon13ctl).
	ninja-build libglib2.0-dev libjson-glib-dev libslirp-dev ccache
	libfdt-dev zlib1g-dev
	# Guests: the busybox initramfs (mkinitramfs.sh); Debian's QEMU for
	# KUnit (kunit.sh); firmware for every QEMU (seabios, qemu-system-data;
	# ipxe-qemu's ROM for the README's virtio-net NIC; OVMF for the S3
	# VMs of lifecycle.py).
	busybox-static bash-static qemu-system-x86 qemu-system-data seabios
	ipxe-qemu ovmf
	# make kunit and the debug kernel's source.
	linux-source-6.12
	# tests/readme/run.py: qemu-img makes the README's vm1.qcow2, socat
	# sends its QMP commands.
	qemu-utils socat
	# DKMS (kernel-checks.sh's dkms build, the package); bench plots.
	dkms python3-matplotlib
	# host/fuzz: libFuzzer with ASan and UBSan (clang 14's runtime).
	clang libclang-rt-14-dev
	# unshare and flock (tests/libvirt/run.py, the scripts' locks).
	util-linux
	# make deb (scripts/make-deb.sh).
	debhelper dh-dkms
)
# From bookworm-backports: QEMU's build needs meson >= 1.5, and pycotap
# for its Python venv.
bp_pkgs=(meson python3-pycotap)

main_uri() {
	# The URI the machine's existing Debian sources use for the main archive.
	local u
	u=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		grep -v -- '-security' | grep -oE '(https?|file)://[^ ]+' |
		grep -i debian | head -n1 || true)
	echo "${u:-http://deb.debian.org/debian}"
}

add_sources() {
	local uri f=/etc/apt/sources.list.d/virtio-balloon13.sources
	uri=$(main_uri)
	local want
	want=$(cat <<SRC
Types: deb deb-src
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: $uri
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
)
	if [ ! -f "$f" ] || [ "$(cat "$f")" != "$want" ]; then
		printf '%s\n' "$want" >"$f"
		rm -f "$stamp"
	fi
}

add_sources
if [ -f "$stamp" ] && dpkg -s "${pkgs[@]}" "${bp_pkgs[@]}" >/dev/null 2>&1; then
	exit 0
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
apt-get install -y -qq --no-install-recommends -t bookworm-backports "${bp_pkgs[@]}" >/dev/null
touch "$stamp"
echo "setup: packages installed"
