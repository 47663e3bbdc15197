#!/usr/bin/env bash
# make bench: device 13 (virtio_balloon13 + balloon13d) against QEMU's
# virtio-balloon (device 5) with Linux's virtio_balloon, in TCG test VMs.
#
#   bench/run.sh [--reps N] [--scale-reps N] [--configs A,B] [--no-profile]
#       Full run (about 25 minutes on 2 busy cores): writes
#       bench/results/{results.json,summary.json,results.md,throughput.png,
#       scaling.png} and devices.{json,md} (bench/devices.py, also
#       make bench-devices); the last line printed gives the ratios.  With
#       --configs, those configurations replace theirs in the results
#       there, and the run is also kept as bench/results/runs/configs-*.json.
#   bench/run.sh --smoke [--out DIR]
#       One repetition of 64 MiB in a 512 MiB guest, both balloons, no
#       plots (about 20 s once everything is built); results go to DIR
#       (default out/bench-smoke), never to bench/results.  Prints
#       "PASS bench/smoke: ..." or "FAIL bench/smoke: reason".
#       Asserts sane numbers only, never wall-clock targets.
set -euo pipefail
. "$(dirname "$0")/../scripts/lib.sh"

usage() {
	sed -n '4,17p' "$0" | sed 's/^# \{0,1\}//'
	exit "${1:-2}"
}

smoke=0 out="" args=() partial=0
while [ $# -gt 0 ]; do
	case $1 in
	--smoke) smoke=1 ;;
	--out)
		[ $# -ge 2 ] || { echo "run.sh: --out needs a directory" >&2; exit 2; }
		out=$2
		shift
		;;
	--reps | --scale-reps | --configs)
		[ $# -ge 2 ] || { echo "run.sh: $1 needs a value" >&2; exit 2; }
		[ "$1" != --configs ] || partial=1
		args+=("$1" "$2")
		shift
		;;
	--no-profile) args+=("$1") ;;
	-h | --help) usage 0 ;;
	*) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done

fail() {
	if [ "$smoke" = 1 ]; then
		echo "FAIL bench/smoke: $*"
	else
		echo "bench: $*" >&2
	fi
	exit 1
}

cd "$VB13_TOP"
t0=$(date +%s)
bash scripts/setup.sh >&2 || fail "scripts/setup.sh failed"
make -s -C host >&2 || fail "building host/balloon13d failed"
ko=$(bash scripts/build-module.sh 6.12) || fail "building virtio_balloon13.ko failed"
ab=$(bash bench/build-allocbench.sh 6.12) || fail "building allocbench.ko failed"
# QEMU and the guest kernel are built/fetched on first use by scripts/vm.py;
# do it here so their time is not mistaken for the benchmark's.
/usr/bin/python3 -c 'import sys; sys.path.insert(0, "scripts"); import vm; print(vm.qemu_binary())' \
	>/dev/null || fail "building QEMU failed"
echo "bench: prerequisites ready after $(($(date +%s) - t0)) s (load: $(uptime))"

common=(--module "$ko" --allocbench "$ab" --daemon "$VB13_TOP/host/balloon13d")
if [ "$smoke" = 1 ]; then
	out=${out:-$VB13_TOP/out/bench-smoke}
	rm -rf "$out"
	mkdir -p "$out"
	# bench.py prints the PASS/FAIL line itself; make sure there is one.
	rc=0
	/usr/bin/python3 bench/bench.py --smoke --out "$out" "${common[@]}" \
		${args[@]+"${args[@]}"} 2>&1 | tee "$out/smoke.log" || true
	rc=${PIPESTATUS[0]}
	grep -qE '^(PASS|FAIL) bench/smoke' "$out/smoke.log" ||
		echo "FAIL bench/smoke: bench.py exited $rc without a verdict (see $out/smoke.log)"
	[ "$rc" = 0 ] || exit 1
	exit 0
fi

[ -z "$out" ] || { echo "run.sh: --out is for --smoke; full runs write bench/results" >&2; exit 2; }
stage=$VB13_TOP/out/bench-full
rm -rf "$stage"
mkdir -p "$stage"
echo "bench: full run, staging in $stage; host load: $(uptime)"
rc=0
/usr/bin/python3 bench/bench.py --out "$stage" "${common[@]}" ${args[@]+"${args[@]}"} || rc=$?
[ -s "$stage/results.json" ] || fail "no results written"
# Some configurations only: they replace theirs in bench/results, and the
# run is kept on its own in bench/results/runs/.
if [ "$partial" = 1 ] && [ -s bench/results/results.json ]; then
	run=bench/results/runs/configs-$(date -u +%F-%H%M)-$(git rev-parse --short HEAD 2>/dev/null || echo nogit).json
	/usr/bin/python3 bench/report.py --merge bench/results/results.json "$stage" "$run" ||
		fail "merging into bench/results/results.json failed"
	echo "bench: this run kept as $run"
fi
/usr/bin/python3 bench/report.py "$stage" >"$stage/ratios.txt" || fail "report failed"
mkdir -p bench/results
cp "$stage"/results.json "$stage"/summary.json "$stage"/results.md bench/results/
cp "$stage"/*.png bench/results/ 2>/dev/null || true
# The device side of a fragmented balloon (issue 16's row), with a full run.
if [ "$partial" = 0 ]; then
	/usr/bin/python3 bench/devices.py --out bench/results ||
		echo "bench: the device-side bench failed (bench/devices.py)"
fi
echo "bench: finished in $(($(date +%s) - t0)) s (load: $(uptime)); results in bench/results"
[ "$rc" = 0 ] || echo "bench: some configurations failed (see bench/results/results.md)"
cat "$stage/ratios.txt"
