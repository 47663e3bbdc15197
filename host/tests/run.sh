#!/usr/bin/env bash
# Run balloon13d's host-only tests: unit tests of the logic (C), command-line
# tests, the vhost-user integration tests (a fake front end and guest in
# Python) and the same front end, guest and local clients at their most
# hostile (abuse.py).  Every suite prints "PASS name" / "FAIL name..." lines; this
# script echoes them and ends with "N passed, N failed".
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
test_logic=${1:-$here/../build/test_logic}
log=$(mktemp /tmp/b13test.XXXXXX)
trap 'rm -f "$log"' EXIT

suite() {
	local name=$1 start rc
	shift
	start=$(date +%s.%N)
	"$@" 2>&1 | tee -a "$log"
	rc=${PIPESTATUS[0]}
	printf '# %s: %.1f s%s\n' "$name" "$(echo "$(date +%s.%N) - $start" | bc)" \
		"$([ "$rc" -eq 0 ] || echo ", exit $rc")"
	# A suite that dies early must not pass silently.
	[ "$rc" -eq 0 ] || grep -q '^FAIL' "$log" || echo "FAIL $name (exit $rc)" | tee -a "$log"
}

suite unit "$test_logic"
suite cli "$here/cli.sh"
suite vhost-user /usr/bin/python3 "$here/frontend.py"
suite abuse /usr/bin/python3 "$here/abuse.py"

passed=$(grep -c '^PASS' "$log")
failed=$(grep -c '^FAIL' "$log")
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
