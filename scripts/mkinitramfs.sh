#!/usr/bin/env bash
# Build the test guests' initramfs for a kernel series and print its path.
#
# Contents: busybox-static, bash-static as the shell, kmod's module tools
# with their libraries, scripts/guest/init (PID 1 and vm.py's command
# channel), the tools in scripts/guest/*.c (memtouch, memstep, stressor, memfrag;
# static), pmsuspend (suspend to RAM or idle, with an RTC wake alarm), the
# kernel's own
# modules the tests use (virtio_pci with the virtio core where they are
# modules, virtio_balloon, virtio_console) with their dependencies, and the
# EXTRA modules given, installed under /lib/modules/<kver>/extra.  depmod
# runs over that tree, so in the guest `modprobe NAME` loads an extra
# module and whatever it depends on, as on a real system.
#
# The result is an uncompressed cpio (cheapest to unpack under TCG), cached
# in $VB13_CACHE/initramfs/ keyed by everything that goes into it (the 16
# newest per kernel are kept).
#
# Usage: mkinitramfs.sh SERIES [EXTRA.ko ...]      e.g. mkinitramfs.sh 6.1 ./virtio_balloon13.ko
set -euo pipefail
. "$(dirname "$0")/lib.sh"

usage() { echo "usage: mkinitramfs.sh SERIES [EXTRA.ko ...]" >&2; exit 2; }
[ $# -ge 1 ] || usage
series=$1
shift
[[ $series =~ ^[0-9]+\.[0-9]+(-debug)?$ ]] || usage
extras=()
for ko in "$@"; do
	case "$ko" in
	*.ko | *.ko.xz | *.ko.zst | *.ko.gz) ;;
	*) echo "mkinitramfs.sh: '$ko' is not a kernel module (.ko)" >&2; exit 2 ;;
	esac
	[ -f "$ko" ] || { echo "mkinitramfs.sh: no such file: $ko" >&2; exit 2; }
	extras+=("$(realpath "$ko")")
done

envf=$VB13_CACHE/kernels/$series.env
[ -f "$envf" ] || bash "$VB13_TOP/scripts/fetch-kernels.sh" "$series" >&2
# shellcheck disable=SC1090
. "$envf"
[ -d "$MODROOT/lib/modules/$KVER" ] || {
	bash "$VB13_TOP/scripts/fetch-kernels.sh" "$series" >&2
	# shellcheck disable=SC1090
	. "$envf"
}
[ -x /bin/busybox ] && [ -x /bin/bash-static ] && command -v cpio >/dev/null && command -v depmod >/dev/null &&
	command -v gcc >/dev/null || bash "$VB13_TOP/scripts/setup.sh" >&2

# Modules of the kernel itself (names; dependencies are added).
base_mods=(virtio_pci virtio_balloon virtio_console)

guest=$VB13_TOP/scripts/guest
key=$( {
	cat "$VB13_TOP/scripts/mkinitramfs.sh" "$guest/init" "$guest"/*.c \
		"$guest/pmsuspend"
	echo "$KVER"
	sha256sum /bin/busybox /bin/bash-static "$(readlink -f /bin/kmod)"
	ldd /bin/kmod | awk '{ print $1, $3 }'
	for ko in "${extras[@]}"; do
		printf '%s ' "$(basename "$ko")"
		sha256sum <"$ko"
	done
} | sha256sum | cut -c1-16)
outdir=$VB13_CACHE/initramfs
out=$outdir/$KVER-$key.cpio
if [ -s "$out" ]; then
	echo "$out"
	exit 0
fi

mkdir -p "$outdir"
stage=$(mktemp -d "$outdir/.stage.XXXXXX")
trap 'rm -rf "$stage" "$stage.cpio"' EXIT
cd "$stage"
mkdir -p bin sbin usr/bin usr/sbin etc proc sys dev tmp root run lib/modules
install -m 0755 /bin/busybox bin/busybox
# The shell is bash: busybox's sh runs its own applets before anything in
# PATH, so it would never run kmod's modprobe below.
install -m 0755 /bin/bash-static bin/bash
ln -s bash bin/sh
# Module tools are Debian's kmod, as on a real system: busybox's modprobe
# loads a .ko.xz only after the kernel has rejected it ("Invalid ELF header
# magic" in dmesg), where kmod hands it to the kernel's decompressor.
kmod_tools=(modprobe insmod rmmod lsmod modinfo depmod)
for applet in $(/bin/busybox --list); do
	[[ " ${kmod_tools[*]} " == *" $applet "* ]] && continue
	[ -e "bin/$applet" ] || ln -s busybox "bin/$applet"
done
install -m 0755 "$(readlink -f /bin/kmod)" bin/kmod
for t in "${kmod_tools[@]}"; do
	ln -s ../bin/kmod "sbin/$t"
done
for lib in $(ldd /bin/kmod | awk '$2 == "=>" { print $3 } $1 ~ /^\// { print $1 }'); do
	mkdir -p ".$(dirname "$lib")"
	cp -L "$lib" ".$lib"
done
install -m 0755 "$guest/init" init
# Every tool in scripts/guest/ (memtouch, memstep, stressor, ...), static.
for src in "$guest"/*.c; do
	tool=$(basename "$src" .c)
	gcc -static -O2 -Wall -Wextra -Werror -o "bin/$tool" "$src"
	strip "bin/$tool"
done
install -m 0755 "$guest/pmsuspend" bin/pmsuspend
printf 'root:x:0:0:root:/root:/bin/sh\n' >etc/passwd
printf 'root:x:0:\n' >etc/group

# Kernel modules and what they depend on, at their paths in the image.
kmods=lib/modules/$KVER
mkdir -p "$kmods"
cp "$MODROOT/$kmods"/modules.order "$MODROOT/$kmods"/modules.builtin \
	"$MODROOT/$kmods"/modules.builtin.modinfo "$kmods/"
deps=$(modprobe -d "$MODROOT" -S "$KVER" --show-depends -a "${base_mods[@]}") ||
	vb13_die "modules ${base_mods[*]} not all found for $KVER"
while read -r verb path _; do
	[ "$verb" = insmod ] || continue
	rel=${path#"$MODROOT"/}
	mkdir -p "$(dirname "$rel")"
	cp "$path" "$rel"
done <<<"$deps"
if [ ${#extras[@]} -gt 0 ]; then
	mkdir -p "$kmods/extra"
	for ko in "${extras[@]}"; do
		cp "$ko" "$kmods/extra/"
	done
fi
depmod -b "$stage" "$KVER"
# Every extra module must resolve inside the image.
for ko in "${extras[@]}"; do
	name=$(basename "$ko")
	name=${name%%.ko*}
	modprobe -d "$stage" -S "$KVER" --show-depends "$name" >/dev/null ||
		vb13_die "$name: dependencies not found in the image"
done

find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0 >"$stage.cpio"
mv "$stage.cpio" "$out"
# Each rebuilt extra module makes a new image: keep the 16 newest per kernel.
ls -t "$outdir/$KVER"-*.cpio | tail -n +17 | xargs -r rm -f --
echo "$out"
