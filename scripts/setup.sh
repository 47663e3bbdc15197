#!/usr/bin/env bash
# Install everything virtio_balloon13's build, tests, demo and benchmarks need
# on a Debian bookworm machine, as root.  Idempotent: a second run only checks.
#
# Adds bookworm-backports and deb-src entries that reuse the archive URIs the
# machine's own Debian sources already name, then installs packages by name.
set -euo pipefail

[ "$(id -u)" -eq 0 ] || { echo "setup.sh: must run as root" >&2; exit 1; }

stamp=/var/lib/virtio_balloon13-setup.v2
pkgs=(
	build-essential bc bison flex libelf-dev libssl-dev dwarves kmod cpio
	rsync xz-utils zstd python3 sparse git pkg-config
	ninja-build libglib2.0-dev libpixman-1-dev libjson-glib-dev libslirp-dev ccache
	libfdt-dev zlib1g-dev
	busybox-static bash-static qemu-system-x86 qemu-system-data seabios ipxe-qemu ovmf
	linux-source-6.12
	qemu-utils socat jq dkms gnuplot-nox python3-matplotlib
	clang libclang-rt-14-dev util-linux
	debhelper dh-dkms
)
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
