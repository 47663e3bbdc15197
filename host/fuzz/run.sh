#!/usr/bin/env bash
# Run balloon13d's libFuzzer harnesses (built by host/Makefile into BUILD).
#
#   run.sh BUILD check SECONDS   make check: replay the corpus and the fuzz
#                                finds kept in the tree, then fuzz each
#                                harness for SECONDS in a scratch directory;
#                                TAP, one result per step:
#                                host/fuzz/HARNESS/replay, .../fuzz
#   run.sh BUILD fuzz SECONDS    make fuzz: fuzz each harness for SECONDS,
#                                new inputs kept in BUILD/corpus-NAME;
#                                a summary line per harness
#   run.sh BUILD merge           make fuzz-merge: fold BUILD/corpus-NAME into
#                                the corpus in the tree, minimised
#
# HARNESSES="pagelist message" limits the set.  A crash leaves its input in
# BUILD/artifacts/; keep it as fuzz/regressions/NAME/<what-it-found>.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1 mode=$2 secs=${3:-60}
harnesses=${HARNESSES:-pagelist message control vhost}
mkdir -p "$build/artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
n=0
tap() { # ok|not-ok ID [COMMENT]
	n=$((n + 1))
	if [ "$1" = ok ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi
	[ -z "${3:-}" ] || echo "# $3"
}
[ "$mode" = check ] && echo "TAP version 13"

opts() { # harness [fuzzing]
	local h=$1
	echo "-artifact_prefix=$build/artifacts/$h- -timeout=10 -rss_limit_mb=2048"
	echo "-max_len=8192"
	[ -f "$here/$h.dict" ] && echo "-dict=$here/$h.dict"
	# json-glib interns strings, so one input's mallocs and frees seldom
	# balance and libFuzzer would stop the world for a leak check after
	# most inputs (a third of the speed).  Replays still check for leaks.
	[ "$h" = control ] && [ -n "${2:-}" ] && echo "-detect_leaks=0"
	return 0
}

# "N execs, cov E, ft F, corpus C" from a libFuzzer log.
summary() {
	local log=$1 execs done
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
	done=$(grep -E '^#[0-9]+[[:space:]]+(DONE|INITED)' "$log" | tail -n1)
	printf '%s execs, cov %s, ft %s, corpus %s' "${execs:-?}" \
		"$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done")" \
		"$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done")" \
		"$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$done")"
}

for h in $harnesses; do
	bin=$build/fuzz_$h
	seeds=$here/corpus/$h
	regs=$here/regressions/$h
	log=$build/fuzz-$h.log
	[ -d "$regs" ] || regs=
	case $mode in
	check)
		# Every input in the tree, once.
		if [ -x "$bin" ] && "$bin" $(opts "$h") -runs=0 \
			-print_final_stats=1 "$seeds" $regs >"$log" 2>&1; then
			tap ok "host/fuzz/$h/replay" "$(ls "$seeds" $regs | grep -vc ':$\|^$') inputs; $(summary "$log")"
		else
			tap not-ok "host/fuzz/$h/replay" "see $log"
			tail -n 30 "$log" 2>/dev/null | sed 's/^/# /'
			failed=$((failed + 1))
		fi
		work=$(mktemp -d "$build/scratch-$h.XXXXXX")
		if [ -x "$bin" ] && "$bin" $(opts "$h" fuzzing) \
			-max_total_time="$secs" -print_final_stats=1 "$work" \
			"$seeds" >"$log" 2>&1; then
			tap ok "host/fuzz/$h/fuzz" "${secs} s: $(summary "$log")"
		else
			tap not-ok "host/fuzz/$h/fuzz" "see $log; input in $build/artifacts/"
			grep -E 'ERROR|SUMMARY|check failed|runtime error' "$log" 2>/dev/null |
				head -n 5 | sed 's/^/# /'
			failed=$((failed + 1))
		fi
		rm -rf "$work"
		;;
	fuzz)
		mkdir -p "$build/corpus-$h"
		if "$bin" $(opts "$h" fuzzing) -max_total_time="$secs" \
			-print_final_stats=1 "$build/corpus-$h" "$seeds" $regs \
			>"$log" 2>&1; then
			echo "fuzz_$h: ${secs} s, $(summary "$log")"
		else
			echo "fuzz_$h: FOUND A PROBLEM, see $log; input in $build/artifacts/"
			grep -E 'ERROR|SUMMARY|check failed|runtime error' "$log" | head -n 5
			failed=$((failed + 1))
		fi
		;;
	merge)
		new=$(mktemp -d "$build/merge-$h.XXXXXX")
		"$bin" $(opts "$h") -merge=1 "$new" "$seeds" "$build/corpus-$h" \
			>"$log" 2>&1 || { echo "merge $h failed: see $log"; exit 1; }
		cp "$seeds"/seed-* "$new"/ 2>/dev/null	# keep them by name
		rm -rf "$seeds" && mv "$new" "$seeds"
		echo "corpus/$h: $(ls "$seeds" | wc -l) inputs"
		;;
	*)
		echo "usage: run.sh BUILD check|fuzz|merge [SECONDS]" >&2
		exit 2
		;;
	esac
done
[ "$mode" = check ] && echo "1..$n"
[ "$failed" -eq 0 ]
