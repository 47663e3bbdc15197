#!/usr/bin/env bash
# Run the native device's qtest (tests/qtest/virtio-balloon13-test.c in
# 0003-*, built by scripts/build-qemu.sh next to the binary) against the
# project's QEMU and print TAP, each case as qemu/qtest/<case>.
#
# As root it also mounts a hugetlbfs of 2 MiB pages for the
# external-writer/hugetlb case, growing the host's pool by what the case
# needs and giving it back afterwards; without root that case is skipped.
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
hp=/sys/kernel/mm/hugepages/hugepages-2048kB
cleanup() {
	[ -n "$huge" ] && umount "$huge" 2>/dev/null && rmdir "$huge"
	if [ "$added" -gt 0 ]; then
		echo $(($(cat $hp/nr_hugepages) - added)) >/proc/sys/vm/nr_hugepages
	fi
}
trap cleanup EXIT
if [ "$(id -u)" = 0 ] && [ -d $hp ]; then
	want=128		# two 128 MiB guests, one after the other
	free=$(cat $hp/free_hugepages)
	if [ "$free" -lt $want ]; then
		total=$(cat $hp/nr_hugepages)
		echo $((total + want - free)) >/proc/sys/vm/nr_hugepages
		added=$(($(cat $hp/nr_hugepages) - total))
	fi
	huge=$(mktemp -d /tmp/vb13-hugetlbfs.XXXXXX)
	if mount -t hugetlbfs -o pagesize=2M,mode=0700 vb13-qtest "$huge"; then
		export VB13_HUGETLBFS=$huge
	else
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
