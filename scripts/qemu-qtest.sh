#!/usr/bin/env bash
# Run the native device's qtest (tests/qtest/virtio-balloon13-test.c in
# 0003-*, built by scripts/build-qemu.sh next to the binary) against the
# project's QEMU and print TAP, each case as qemu/qtest/<case>.
#
# As root it also mounts a hugetlbfs of 2 MiB pages for the
# external-writer/hugetlb case that reserves what the case needs (min_size),
# growing the host's pool for it and giving the pages back afterwards
# (under scripts/vm.py's pool lock); without root, or without the pages,
# that case is skipped.
#
# Usage: qemu-qtest.sh [-m slow] [QEMU_BINARY [TEST_BINARY]]
#   -m slow   also the bench of a fragmented balloon (prints TAP comments)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

mode=()
if [ "${1:-}" = -m ]; then
	mode=(-m "$2")
	shift 2
fi
qemu=${1:-$(bash "$VB13_TOP/scripts/build-qemu.sh")}
test=${2:-$(dirname "$(readlink -f "$qemu")")/../../tests/virtio-balloon13-test}
if [ ! -x "$test" ]; then
	echo "TAP version 13"
	echo "1..1"
	echo "not ok 1 - qemu/qtest/build # $test is missing"
	exit 1
fi

huge=
added=0
# scripts/vm.py's handling of the host's pool of 2 MiB pages, the one the
# e2e VMs use: one lock, a mount that reserves its pages (min_size) for as
# long as it is mounted, a shrink that never makes in-use pages surplus.
#   hugetlbfs mount PATH BYTES     prints the pages added to the pool
#   hugetlbfs umount PATH ADDED
hugetlbfs() {
	python3 - "$VB13_TOP/scripts" "$@" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import vm
op, path, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
try:
    if op == "mount":
        print(vm.mount_hugetlbfs(path, n))
    else:
        vm.umount_hugetlbfs(path, n)
except vm.VMError as e:
    sys.exit("qemu-qtest.sh: %s" % e)
EOF
}
cleanup() {
	if [ -n "$huge" ]; then
		hugetlbfs umount "$huge" "$added" && rmdir "$huge"
	fi
}
trap cleanup EXIT
if [ "$(id -u)" = 0 ] && [ -d /sys/kernel/mm/hugepages/hugepages-2048kB ]; then
	huge=$(mktemp -d /tmp/vb13-hugetlbfs.XXXXXX)
	# Two 128 MiB guests, one after the other, their files side by side.
	if added=$(hugetlbfs mount "$huge" $((256 << 20))); then
		export VB13_HUGETLBFS=$huge
	else
		echo "qemu-qtest.sh: the hugetlb case skips" >&2
		rmdir "$huge"
		huge=
	fi
fi

# glib's TAP names each case by its path, /x86_64/virtio-balloon13/<case>.
set +e
QTEST_QEMU_BINARY=$qemu QTEST_QEMU_STORAGE_DAEMON_BINARY=/bin/false \
	"$test" --tap -k "${mode[@]}" 2>&1 |
	sed -E 's@^((not )?ok [0-9]+) (- )?/(x86_64/)?virtio-balloon13/@\1 - qemu/qtest/@'
status=${PIPESTATUS[0]}
exit "$status"
