#!/usr/bin/env bash
# balloon13d's host tests, in TAP: the unit tests of the logic and of the
# front-end checks (GLib's test framework), the command lines, the
# vhost-user integration tests (a fake front end and guest in Python) and
# the same at their most hostile (abuse.py).
#
#   run.sh [--asan] [TEST_LOGIC]
#
# Each suite writes OUT/SUITE.tap (OUT: $B13_TAP_DIR, default build/tap),
# every result named host/SUITE/CASE; with --asan the same suites run
# against the ASan+UBSan build (build/asan/: test_logic, balloon13d,
# balloon13ctl) and are named host/asan/SUITE/CASE, in OUT/asan-SUITE.tap.
# The last line is scripts/tap.py's count: "N passed, N failed, N
# skipped".  Exit status 1 if anything failed (a suite that dies before
# its plan counts as failed).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
host=$(cd "$here/.." && pwd)
top=$(cd "$host/.." && pwd)
asan=
if [ "${1:-}" = --asan ]; then
	asan=1
	shift
fi
out=${B13_TAP_DIR:-$host/build/tap}
mkdir -p "$out"

if [ -n "$asan" ]; then
	test_logic=${1:-$host/build/asan/test_logic}
	prefix=host/asan file=asan-
	export B13_DAEMON=$host/build/asan/balloon13d
	export B13_CTL=$host/build/asan/balloon13ctl
	export B13_SANITIZED=1
	# Leaks are reported at exit: a daemon that leaks fails its test.
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=23}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
else
	test_logic=${1:-$host/build/test_logic}
	prefix=host file=
fi

# suite NAME CMD...: CMD's TAP into OUT/[asan-]NAME.tap, echoed.
suite() {
	local name=$1 start rc
	shift
	start=$(date +%s.%N)
	B13_TAP_SUITE=$prefix/$name "$@" 2>&1 | tee "$out/$file$name.tap"
	rc=${PIPESTATUS[0]}
	printf '# %s: %.1f s%s\n' "$prefix/$name" \
		"$(echo "$(date +%s.%N) - $start" | bc)" \
		"$([ "$rc" -eq 0 ] || echo ", exit $rc")"
}

# GLib names cases /host/logic/CASE: the id is host/logic/CASE.
logic() {
	"$test_logic" --tap | sed -E "s@^((not )?ok [0-9]+) /host/logic/@\1 - $B13_TAP_SUITE/@"
	return "${PIPESTATUS[0]}"
}

suite logic logic
[ -n "$asan" ] || suite cli "$here/cli.sh"
suite vhost-user /usr/bin/python3 "$here/frontend.py"
suite abuse /usr/bin/python3 "$here/abuse.py"

files=()
for s in logic cli vhost-user abuse; do
	[ -n "$asan" ] && [ $s = cli ] && continue
	files+=("$out/$file$s.tap=")
done
python3 "$top/scripts/tap.py" count "${files[@]}"
