#!/usr/bin/env bash
# make check: every test of the project, from a fresh bookworm machine.
#
# Every stage writes its results as TAP (KUnit: KTAP) to a file under
# out/check/, and scripts/tap.py alone counts them all (`tap.py summary`):
# a stage whose file is missing, empty or has no plan, whose plan was not
# met, or that exited non-zero without a failed test of its own (a crash, a
# missing tool or script) counts as a failure; skips are counted; a test
# id reported twice (a scenario run twice) fails.  The run ends with one
# line "N passed, N failed, N skipped".
#
# A stage is one line:
#     stage ID TAPFILE[=PREFIX] COMMAND...
# COMMAND's output goes to out/check/ID.log; it finds its TAP file's path
# in $VB13_TAP (the project's producers default to it).  PREFIX goes before the ids of a file whose results don't
# carry their stage (KTAP: kunit/<suite>/<case>).  `lines PREFIX COMMAND`
# turns a producer's "PASS/FAIL/SKIP id" lines into TAP, for producers not
# converted yet.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$VB13_TOP" || exit 1
O=out/check
rm -rf "$O"
mkdir -p "$O"
: >"$O/stages.tsv"
t0=$(date +%s)
fg_log=1    # foreground stages show their log as they run

stage() { # ID TAPFILE[=PREFIX][,TAPFILE[=PREFIX]...] COMMAND...
	local id=$1 spec=$2 s rc f
	shift 2
	for f in ${spec//,/ }; do rm -f "${f%%=*}"; done
	f=${spec%%,*}
	s=$(date +%s)
	if [ "$fg_log" = 1 ]; then
		printf '\n=== %s (%ss elapsed)\n' "$id" "$((s - t0))"
		VB13_TAP=${f%%=*} "$@" 2>&1 | tee "$O/$id.log"
		rc=${PIPESTATUS[0]}
	else
		VB13_TAP=${f%%=*} "$@" >"$O/$id.log" 2>&1
		rc=$?
	fi
	printf '%s\t%s\t%s\t%s\n' "$id" "$spec" "$rc" "$(($(date +%s) - s))" >>"$O/stages.tsv"
	printf '  %s: exit %s after %ss\n' "$id" "$rc" "$(($(date +%s) - t0))"
	return 0
}

# `tapout COMMAND`: a producer that prints its TAP on stdout.
tapout() {
	"$@" | tee "$VB13_TAP"
	return "${PIPESTATUS[0]}"
}

lines() {
	local prefix=$1
	shift
	"$@" 2>&1 | python3 scripts/tap.py from-lines "$prefix" "$VB13_TAP"
	return "${PIPESTATUS[0]}"
}

# prepare: what every VM stage shares, built once up front (cached).
prepare() {
	# w ID COMMAND...: one prepare/ID result
	w() { # id command...
		local id=$1
		shift
		if "$@" >>"$O/prepare.log" 2>&1; then
			echo "ok - prepare/$id"
		else
			echo "not ok - prepare/$id"
			echo "# failed: see $O/prepare.log"
			tail -n 20 "$O/prepare.log" | sed 's/^/# /'
		fi
	}
	{
		echo "TAP version 14"
		echo "1..7"
		w qemu bash scripts/build-qemu.sh
		w qemu-fuzz bash scripts/qemu-fuzz.sh build
		w libvirt bash scripts/build-libvirt.sh
		w qemu-qmp bash scripts/fetch-qemu-qmp.sh
		w kernels bash scripts/fetch-kernels.sh "${VB13_SERIES[@]}"
		w host make -s --no-print-directory host
		# The 6.12-debug guest kernel (KASAN, lockdep, ...): built from
		# source, so minutes cold, cached afterwards.
		w debug-kernel bash scripts/build-debug-kernel.sh
	} >"$VB13_TAP"
	! grep -q '^not ok' "$VB13_TAP"
}

printf '=== setup\n'
if ! bash scripts/setup.sh; then
	echo "setup.sh failed: nothing else can run"
	echo "0 passed, 1 failed, 0 skipped"
	exit 1
fi

# On the debug kernel (KASAN, lockdep, ...; kmemleak in its own scenario)
# the scenarios run on balloon13d only, without those that take longest
# there (2.5-5x slower than on Debian's kernels under TCG) and whose paths
# others cover (the life cycle, the device side, the old driver and the
# device offering nothing: the driver's code under test is the same;
# pressure-floor, whose driver paths pressure takes; dimm-movable, whose
# memory notifier path offline-block takes (ACPI's eject aside, which is
# not the driver's); stats-interval, the stats path on a timer; kdump, a
# test of is_kdump_kernel(); compaction, which took 130 to 410 s there in
# two runs of one tree, while compacting took 1-8 s of it (KUnit migrates
# balloon pages under KASAN and lockdep, and 6.12 and 7.2 run it)); the
# rest is split in two shards of whole VM groups,
# balanced by earlier runs' times frozen for this run (run.py --shard:
# every scenario in exactly one).  `make check-debug` runs them all.
# floor: on the debug kernel KASAN's quarantine of freed slab objects,
# whose bound (1/32 of RAM) it computes again only once it reaches the
# one it had, keeps filling after the balloon reached its floor, past
# the memory left above the min watermarks: 3-5 OOM notifications give
# back 80-160 MiB (the scenario allows twice the quarantine there).
# Nothing of the driver's own: 6.1 and 7.2 run it, with 0 releases;
# `make check-debug` runs it on the debug kernel.  (stats and full-stats
# run here: where free page reports overlap all 8 of their attempts to
# read statistics, as KASAN's quarantine makes them on a loaded host,
# their bounds on free memory widen by the bytes those reports named;
# Guest.without_reports().)
DEBUG_SKIP=unload,churn,bad-page-bits-40,offline-2m,suspend,stress,smallest,soak-short,poweroff,reboot,hostile-guest,ram-memfd,ram-hugetlb,ram-file,old-probe,old-inflate,old-stats,old-deflate,none-probe,none-inflate,none-stats,none-deflate,none-features,none-pressure,poison,floor,pressure-floor,dimm-movable,stats-interval,kdump,compaction
cp "$VB13_CACHE/e2e-times.json" "$O/e2e-times.json" 2>/dev/null || echo '{}' >"$O/e2e-times.json"
debug_e2e() { # K: shard K of 2
	python3 tests/e2e/run.py --series 6.12-debug --devices vu --skip "$DEBUG_SKIP" \
		--shard "$1/2" --times "$O/e2e-times.json"
}

# Debian's kernels: each scenario runs where it says most, not everywhere,
# and on each device kind once or twice, not on every kernel (a stage per
# kernel and device kind).  7.2 (today's API, the driver's main target)
# runs every scenario of the driver's own paths on balloon13d: memory
# management (zones, hot-unplug, kdump, floor, offline pages), the
# features and their negotiation, hostile requests, churn, leaks; on the
# native device the same but unload (6.1 runs it there) and floor (6.1).
# 6.12 (bookworm's newest) runs the VM's life cycle (suspend, hot-unplug,
# reboot, poweroff, stress) and the device-side scenarios (migration, QMP,
# guest RAM kinds, a hostile driver), whose driver paths are the same on
# every kernel, besides the base scenarios and the features again; of the
# memory scenarios, balloon13d takes those where 6.12's mm differs from
# 7.2's (balloon compaction's API, hot-unplug, ZONE_MOVABLE, kdump), and
# the native device none (7.2 runs them on it); not the floor's (6.1 and
# 7.2), the old driver's negotiation, unload's 20 module cycles, 2 MiB
# blocks, page_poison nor bad page-bits (7.2 and 6.1 run those).
# 6.1 runs what its compat paths and its modular virtio core can change:
# unload on the native device (7.2 on balloon13d), reboot on balloon13d
# (6.12 on both).
SKIP_7_2=suspend,stress,smallest,soak-short,poweroff,reboot,hotplug,migrate,migrate-inflating,ram-anon,ram-memfd,ram-hugetlb,ram-file,hostile-guest,qmp,refuse,churn-native
SKIP_7_2_NATIVE=$SKIP_7_2,unload,floor
SKIP_6_12=churn,kmemleak,bad-page-bits-40,offline-2m,hostile,unload,old-probe,old-inflate,old-stats,old-deflate,floor,offline,pressure-floor,offline-block,blocks-2m,bad-page-bits-5,poison
SKIP_6_12_NATIVE=$SKIP_6_12,compaction,dimm-movable,movable,kdump
ONLY_6_1=probe,inflate,stats,deflate,blocks-2m,bad-page-bits-5,hostile,pressure,offline,floor,hotplug,reboot
ONLY_6_1_NATIVE=probe,inflate,stats,deflate,unload,blocks-2m,pressure,floor

# ---- the stages: ID, TAP file (=id prefix), command ----------------------
stage check        "$O/check.tap"                python3 tests/check/test_tap.py
stage prepare      "$O/prepare.tap"              prepare
# The host tests (one core, mostly: the ASan run and its fuzzing are
# single processes) beside the kernel builds, the native device's checks
# and KUnit (its QEMU).
(
	fg_log=0
	stage host         "host/build/tap/logic.tap,host/build/tap/cli.tap,host/build/tap/vhost-user.tap,host/build/tap/abuse.tap" \
		make -s --no-print-directory host-test
	stage host-asan    "host/build/tap/asan-logic.tap,host/build/tap/asan-vhost-user.tap,host/build/tap/asan-abuse.tap,host/build/tap/fuzz.tap" \
		make -s --no-print-directory -C host fuzz-check
) &
stage lint         "$O/lint.tap"                 bash scripts/kernel-checks.sh
stage qemu-header  "$O/qemu-header.tap"          tapout bash scripts/qemu-std-header.sh check
stage qemu-series  "$O/qemu-series.tap"          tapout bash scripts/qemu-series.sh check
stage qtest        "$O/qtest.tap"                tapout bash scripts/qemu-qtest.sh
stage qemu-fuzz    "$O/qemu-fuzz.tap"            tapout bash scripts/qemu-fuzz.sh replay
# KUnit on today's kernel (7.2); `make kunit` runs it on 6.12 as well.
stage kunit        "$O/kunit/kunit.ktap=kunit"   bash scripts/kunit.sh --series 7.2 --out "$O/kunit"
wait
for id in host host-asan; do printf '\n--- %s\n' "$id"; cat "$O/$id.log"; done

# The end-to-end scenarios, the debug kernel's checks, the package's test
# and the bench smoke in two workers, each one QEMU (TCG, one vCPU) at a
# time, so each host core carries one VM.
fg_log=0
worker_a() {
	stage e2e-7.2         "$O/e2e-7.2.tap"         python3 tests/e2e/run.py --series 7.2 --devices vu --skip "$SKIP_7_2"
	stage e2e-7.2-native  "$O/e2e-7.2-native.tap"  python3 tests/e2e/run.py --series 7.2 --devices native --skip "$SKIP_7_2_NATIVE"
	stage e2e-6.1         "$O/e2e-6.1.tap"         python3 tests/e2e/run.py --series 6.1 --devices vu --only "$ONLY_6_1"
	stage e2e-6.1-native  "$O/e2e-6.1-native.tap"  python3 tests/e2e/run.py --series 6.1 --devices native --only "$ONLY_6_1_NATIVE"
	stage e2e-debug-1     "$O/e2e-debug-1.tap"     debug_e2e 1
	# The native device behind an emulated IOMMU, with DMA-API debugging.
	stage e2e-iommu       "$O/e2e-iommu.tap"       python3 tests/e2e/run.py --series 6.12-debug --devices native --only iommu
	stage debug-kernel    "$O/debug-kernel.tap"    python3 tests/debug-kernel/check.py
	stage bench           "$O/bench.tap"           lines bench bash bench/run.sh --smoke
	stage libvirt         "$O/libvirt.tap"         tapout python3 tests/libvirt/run.py
}
worker_b() {
	stage e2e-6.12        "$O/e2e-6.12.tap"        python3 tests/e2e/run.py --series 6.12 --devices vu --skip "$SKIP_6_12"
	stage e2e-6.12-native "$O/e2e-6.12-native.tap" python3 tests/e2e/run.py --series 6.12 --devices native --skip "$SKIP_6_12_NATIVE"
	stage e2e-debug-2     "$O/e2e-debug-2.tap"     debug_e2e 2
	stage deb             "$O/deb.tap"             python3 tests/deb/test_deb.py
	# After deb, never beside it: both install and purge the package.
	stage readme          "$O/readme.tap"          python3 tests/readme/run.py
}
printf '\n=== end-to-end (QEMU VMs), debug kernel checks, package, bench smoke: two workers (%ss elapsed)\n' \
	"$(($(date +%s) - t0))"
worker_a &
worker_b &
wait
fg_log=1
for id in $(cut -f1 "$O/stages.tsv"); do
	case $id in e2e-*|debug-kernel|bench|deb|readme|libvirt) printf '\n--- %s\n' "$id"; cat "$O/$id.log" ;; esac
done

# Stages that read the others' results come here, after the workers.
# The spec's trace (issue 15): every MUST and SHOULD of spec/ has tests in
# spec/trace.tsv, and each of them ran and passed in this run; plus the
# spec sources' own checks (labels, table rows, measured figures named).
stage spec         "$O/spec.tap"                 tapout python3 scripts/spec-trace.py $(cut -f2 "$O/stages.tsv" | tr ',' '\n')

printf '\n=== count (total time %ss)\n' "$(($(date +%s) - t0))"
python3 scripts/tap.py summary "$O/stages.tsv" | tee "$O/summary.txt"
exit "${PIPESTATUS[0]}"
