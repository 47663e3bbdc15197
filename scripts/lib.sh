# Common settings for virtio_balloon13's scripts.  Source it; don't run it.
#
# Everything built or downloaded lives outside the work tree under $VB13_CACHE
# so that a clean clone reuses it; every script also works with it empty.
VB13_CACHE=${VB13_CACHE:-/var/cache/virtio_balloon13}
VB13_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Debian's tools first (a pyenv or venv python3 lacks the apt-installed
# python3-libvirt and python3-qemu-qmp the tests import).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
# The QEMU the project builds (scripts/build-qemu.sh) and takes libvhost-user
# from: the newest upstream release whose source Debian unstable's archive
# serves (scripts/fetch-qemu-src.sh).  Unstable's index lists 11.1.3, but
# its orig tarball (and 11.1.2's) answered 404 on 2026-12-03; 10.2.2 is the
# newest that downloads.  Override to try another: QEMU_VERSION=11.1.3.
QEMU_VERSION=${QEMU_VERSION:-10.2.2}
QEMU_TARBALL=$VB13_CACHE/src/qemu_${QEMU_VERSION}+ds.orig.tar.xz
mkdir -p "$VB13_CACHE/src"

vb13_log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
vb13_die() { vb13_log "$*"; exit 1; }

# Where the driver's kernel sources are: git pathspecs relative to the top,
# the one place that says so for the Debian package, the DKMS checks and
# checkpatch.  It names both layouts (the sources at the top with kunit/,
# and the kernel tree's drivers/virtio/ with include/uapi/): paths that
# don't exist match nothing.
VB13_KERNEL_PATHS=(Kbuild Kconfig ':(glob)*.c' ':(glob)*.h' kunit
	drivers/virtio include/uapi/linux/virtio_balloon13.h)

# The kernel series the project builds for and tests on.
VB13_SERIES=(6.1 6.12 7.2)

# vb13_kernel_files: the kernel source files, one per line, relative to the
# top (tracked, or new and not ignored).
vb13_kernel_files() {
	git -C "$VB13_TOP" ls-files --cached --others --exclude-standard -- \
		"${VB13_KERNEL_PATHS[@]}" | sort -u |
		while IFS= read -r f; do [ -f "$VB13_TOP/$f" ] && echo "$f"; done
}

# vb13_module_dir: where kbuild leaves virtio_balloon13.ko, relative to the
# top: the directory of the kbuild file that names the module.
vb13_module_dir() {
	local f
	f=$(vb13_kernel_files | grep -E '(^|/)(Kbuild|Makefile)$' |
		while IFS= read -r f; do
			grep -qE '^obj-.*\+=[[:space:]]*virtio_balloon13\.o' "$VB13_TOP/$f" && echo "$f"
		done | head -n1)
	[ -n "$f" ] || return 1
	dirname "$f"
}

# The Debian package's upstream version (debian/changelog): the version the
# packaged module's modinfo shows.
vb13_version() {
	dpkg-parsechangelog -l "$VB13_TOP/debian/changelog" -S Version | sed 's/-[^-]*$//'
}

# The URI the machine's own Debian sources use for the main archive.
vb13_debian_uri() {
	local u
	u=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources \
		/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		grep -v -- '-security' | grep -oE '(https?|file)://[^ ]+' |
		grep -i debian | head -n1 || true)
	echo "${u:-http://deb.debian.org/debian}"
}
