#!/usr/bin/env bash
# make check: every test of the project, from a fresh bookworm machine.
# Stages print their own results; each stage's counts are added up and the
# run ends with one line "N passed, N failed, N skipped".
set -uo pipefail
. "$(dirname "$0")/lib.sh"
cd "$VB13_TOP"
mkdir -p out/check
passed=0 failed=0 skipped=0
t0=$(date +%s)

stage() { printf '\n=== %s (%ss elapsed)\n' "$1" "$(($(date +%s) - t0))"; }

# Count PASS/FAIL/SKIP lines of a stage log.
count_lines() {
	local p f s
	p=$(grep -c '^PASS ' "$1" || true)
	f=$(grep -c '^FAIL ' "$1" || true)
	s=$(grep -c '^SKIP ' "$1" || true)
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

# count_lines, and one more failure when the stage exited non-zero
# without a FAIL line of its own (a crashed runner, a broken build).
count_stage() { # rc log
	count_lines "$2"
	if [ "$1" != 0 ] && ! grep -q '^FAIL ' "$2"; then
		echo "FAIL stage $2: exit $1 with no FAIL line of its own"
		failed=$((failed + 1))
	fi
}

# A stage that crashed without reporting its tests counts as one failure.
run_stage() { # name log cmd...
	local name=$1 log=$2 rc
	shift 2
	stage "$name"
	"$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	printf '%s: exit %s after %ss\n' "$name" "$rc" "$(($(date +%s) - t0))"
	return "$rc"
}

stage setup
bash scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

# Everything the VM stages share, built once up front (cached afterwards):
# the patched QEMU, Debian's kernels, balloon13d and balloon13ctl.
stage "build QEMU, fetch kernels, build host tools"
if ! { bash scripts/build-qemu.sh && bash scripts/fetch-kernels.sh &&
	make -s --no-print-directory host; } >out/check/prepare.log 2>&1; then
	tail -n 40 out/check/prepare.log
	echo "FAIL prepare: see out/check/prepare.log"
	failed=$((failed + 1))
fi
# The 6.12-debug guest kernel (KASAN, lockdep, ...): built from source, so
# minutes cold (see scripts/build-debug-kernel.sh), cached afterwards.
if ! bash scripts/build-debug-kernel.sh >out/check/prepare-debug.log 2>&1; then
	tail -n 40 out/check/prepare-debug.log
	echo "FAIL prepare-debug-kernel: see out/check/prepare-debug.log"
	failed=$((failed + 1))
fi
printf 'prepare: done after %ss\n' "$(($(date +%s) - t0))"

run_stage "kernel checks" out/check/kernel.log bash scripts/kernel-checks.sh
count_lines out/check/kernel.log

if [ -f host/Makefile ]; then
	run_stage "host unit tests" out/check/host.log make -s --no-print-directory host-test
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' out/check/host.log | tail -n1)
	if [ -n "$line" ]; then
		passed=$((passed + $(echo "$line" | awk '{print $1}')))
		failed=$((failed + $(echo "$line" | awk '{print $3}')))
	else
		failed=$((failed + 1))
	fi
fi

# balloon13d's unit tests again under ASan+UBSan, then its libFuzzer
# harnesses: their corpora replayed and a few seconds of fuzzing each.
if [ -x host/fuzz/run.sh ]; then
	run_stage "host sanitizers and fuzz replay" out/check/fuzz.log \
		make -s --no-print-directory -C host fuzz-check
	rc=$?
	count_lines out/check/fuzz.log
	grep -q '^\(PASS\|FAIL\) ' out/check/fuzz.log || [ "$rc" = 0 ] ||
		failed=$((failed + 1))
fi

# KUnit under QEMU: every case (each parameter too) counts.  A run that
# fails without a failed case (kernel splat, crash, timeout) counts once more.
# KUnit on today's kernel (7.2); `make kunit` runs it on 6.12 as well.
run_stage KUnit out/check/kunit.log bash scripts/kunit.sh --series 7.2 --out out/check/kunit
rc=$?
if [ -s out/check/kunit/kunit.ktap ]; then
	read -r p f s < <(python3 scripts/ktap-count.py out/check/kunit/kunit.ktap)
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
	[ "$rc" != 0 ] && [ "$f" = 0 ] && failed=$((failed + 1))
else
	failed=$((failed + 1))
fi

# The end-to-end scenarios, the debug kernel's checks and the bench smoke
# run in two workers, each one QEMU (TCG, one vCPU) at a time, so each host
# core carries one VM.  On the debug kernel (KASAN, lockdep, ...; kmemleak
# in its own scenario) they run on balloon13d only, without the scenarios
# that take longest there (2.5-5x slower than on Debian's kernels under
# TCG) and whose paths others cover (DEBUG_SKIP), split between the
# workers by VM (DEBUG_A, DEBUG_B).  `make check-debug` runs them all.
DEBUG_SKIP=unload,churn,bad-page-bits-40,offline-2m,suspend,stress,smallest,soak-short,poweroff
DEBUG_A=probe,inflate,stats,deflate,pressure,blocks-2m,bad-page-bits-5,hostile,kmemleak
DEBUG_B=hotplug,reboot,hostile-guest,offline,floor,kdump,movable,offline-block
# Debian's kernels: every scenario on 7.2 (today's API, the driver's main
# target); on 6.12 and 6.1 what their compat paths or their own kernel
# (6.1's modular virtio core) can change, leaving out the long runs whose
# driver paths are the same on every kernel (the life cycle, churn,
# migration).
SKIP_6_12=churn,churn-native,soak-short,stress,suspend,smallest,migrate-inflating
ONLY_6_1=probe,inflate,stats,deflate,unload,blocks-2m,bad-page-bits-5,hostile,pressure,offline,floor,hotplug,reboot
worker() { # name cmd...: run cmd with its log and exit status under out/check
	local name=$1
	shift
	"$@" >"out/check/$name.log" 2>&1
	echo $? >"out/check/$name.rc"
	printf '  %s: exit %s after %ss\n' "$name" "$(cat "out/check/$name.rc")" \
		"$(($(date +%s) - t0))"
}
stage "end-to-end (QEMU VMs), debug kernel checks, bench smoke: two workers"
rm -f out/check/e2e-*.log out/check/e2e-*.rc
jobs_a=(e2e-7.2 e2e-6.12-debug-a debug-kernel bench)
jobs_b=(e2e-6.12 e2e-6.1 e2e-6.12-debug-b)
(
	worker e2e-7.2 python3 tests/e2e/run.py --series 7.2
	worker e2e-6.12-debug-a python3 tests/e2e/run.py --series 6.12-debug \
		--devices vu --skip "$DEBUG_SKIP,$DEBUG_B"
	# The debug kernel's checks are really on and reach out-of-tree modules.
	worker debug-kernel python3 tests/debug-kernel/check.py
	worker bench bash bench/run.sh --smoke
) &
(
	worker e2e-6.12 python3 tests/e2e/run.py --series 6.12 --skip "$SKIP_6_12"
	worker e2e-6.1 python3 tests/e2e/run.py --series 6.1 --only "$ONLY_6_1"
	worker e2e-6.12-debug-b python3 tests/e2e/run.py --series 6.12-debug \
		--devices vu --skip "$DEBUG_SKIP,$DEBUG_A"
) &
wait
for name in "${jobs_a[@]}" "${jobs_b[@]}"; do
	printf '\n--- %s\n' "$name"
	cat "out/check/$name.log"
	count_stage "$(cat "out/check/$name.rc" 2>/dev/null || echo 1)" \
		"out/check/$name.log"
done

printf '\ntotal time %ss\n' "$(($(date +%s) - t0))"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
