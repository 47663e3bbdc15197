# Common settings for virtio_balloon13's scripts.  Source it; don't run it.
#
# Everything built or downloaded lives outside the work tree under $VB13_CACHE
# so that a clean clone reuses it; every script also works with it empty.
VB13_CACHE=${VB13_CACHE:-/var/cache/virtio_balloon13}
VB13_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QEMU_VERSION=10.0.2
QEMU_TARBALL=$VB13_CACHE/src/qemu_${QEMU_VERSION}+ds.orig.tar.xz
mkdir -p "$VB13_CACHE/src"

vb13_log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
vb13_die() { vb13_log "$*"; exit 1; }
