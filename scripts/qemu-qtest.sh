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
hp=/sys/kernel/mm/hugepages/hugepages-2048kB
# Shared with scripts/vm.py: the project's every grow, mount, unmount and
# shrink of the host's pool of 2 MiB pages holds it.
lock=$VB13_CACHE/hugetlb-pool.lock
pool_avail() { # pages free and reserved for no one
	echo $(($(cat $hp/free_hugepages) - $(cat $hp/resv_hugepages)))
}
pool_shrink() { # N: give back N pages added, never below those in use or
	# reserved (the kernel would make in-use pages surplus ones, which a
	# later fault can't replace: SIGBUS)
	local nr target floor
	nr=$(cat $hp/nr_hugepages)
	floor=$((nr - $(pool_avail)))
	target=$((nr - $1))
	if [ "$target" -lt "$floor" ]; then
		target=$floor
	fi
	if [ "$target" -lt "$nr" ]; then
		echo "$target" >/proc/sys/vm/nr_hugepages
	fi
}
cleanup() {
	if [ -n "$huge" ]; then
		exec 9>"$lock"
		flock 9
		umount "$huge" && rmdir "$huge"
		pool_shrink "$added"
	fi
}
trap cleanup EXIT
if [ "$(id -u)" = 0 ] && [ -d $hp ]; then
	want=128		# two 128 MiB guests, one after the other
	exec 9>"$lock"
	flock 9
	total=$(cat $hp/nr_hugepages)
	for compact in 0 1; do
		short=$((want - $(pool_avail)))
		[ "$short" -gt 0 ] || break
		[ $compact = 0 ] || echo 1 >/proc/sys/vm/compact_memory
		echo $(($(cat $hp/nr_hugepages) + short)) >/proc/sys/vm/nr_hugepages
	done
	added=$(($(cat $hp/nr_hugepages) - total))
	huge=$(mktemp -d /tmp/vb13-hugetlbfs.XXXXXX)
	# min_size: the mount keeps its pages reserved while the cases run,
	# also the ones a discard punched out, whoever else uses the pool.
	if mount -t hugetlbfs -o pagesize=2M,min_size=$((want * 2))M,mode=0700 \
		vb13-qtest "$huge"; then
		export VB13_HUGETLBFS=$huge
	else
		echo "qemu-qtest.sh: no hugetlbfs reserving $want 2 MiB pages" \
			"($(grep ^HugePages_ /proc/meminfo | tr -s ' \n' ' ')):" \
			"the hugetlb case skips" >&2
		rmdir "$huge"
		huge=
		pool_shrink "$added"
	fi
	exec 9>&-
fi

# glib's TAP names each case by its path, /x86_64/virtio-balloon13/<case>.
set +e
QTEST_QEMU_BINARY=$qemu QTEST_QEMU_STORAGE_DAEMON_BINARY=/bin/false \
	"$test" --tap -k "${mode[@]}" 2>&1 |
	sed -E 's@^((not )?ok [0-9]+) (- )?/(x86_64/)?virtio-balloon13/@\1 - qemu/qtest/@'
status=${PIPESTATUS[0]}
exit "$status"
