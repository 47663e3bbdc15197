#!/usr/bin/env bash
# Command-line tests of balloon13d and balloon13ctl: bad command lines exit 2
# with a one-line reason on stderr naming the problem; a missing daemon is
# exit 1; --help and --version are exit 0.  Prints TAP: one
# "ok N - host/cli/NAME" per case (B13_TAP_SUITE replaces host/cli).
set -uo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
D=$here/balloon13d
C=$here/balloon13ctl
tmp=$(mktemp -d /tmp/b13cli.XXXXXX)
suite=${B13_TAP_SUITE:-host/cli}
n=0
echo "TAP version 13"
trap 'rm -rf "$tmp"; echo "1..$n"' EXIT

pass() { n=$((n + 1)); echo "ok $n - $suite/$1"; }
fail() {
	n=$((n + 1))
	echo "not ok $n - $suite/$1"
	echo "# FAIL $1: $2" | tr -d '\n'
	echo
}

# expect NAME CODE PATTERN -- CMD...: exit CODE, stderr one line matching
# PATTERN (grep -E), nothing left behind running.
expect() {
	local name=$1 code=$2 pat=$3 rc lines
	shift 4
	timeout 5 "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	lines=$(wc -l <"$tmp/err")
	if [ "$rc" -eq "$code" ] && [ "$lines" -eq 1 ] &&
		grep -qE -- "$pat" "$tmp/err"; then
		pass "$name"
	else
		fail "$name" "(exit $rc, want $code; stderr: $(head -c 300 "$tmp/err"))"
	fi
}

S="--socket-path $tmp/vhu.sock --control $tmp/ctl.sock"

expect d_no_socket 2 'socket-path.*required' -- "$D"
expect d_unknown_opt 2 "unknown option '--frobnicate'" -- "$D" $S --frobnicate
expect d_missing_value 2 "'--page-bits' needs a value" -- "$D" $S --page-bits
expect d_page_bits_64 2 "--page-bits '64'.*range.*0\.\.63" -- "$D" $S --page-bits 64
expect d_page_bits_neg 2 "--page-bits '-1'" -- "$D" $S --page-bits -1
expect d_page_bits_junk 2 "--page-bits '12x'" -- "$D" $S --page-bits 12x
expect d_page_bits_empty 2 "--page-bits ''" -- "$D" $S --page-bits ''
expect d_hold_junk 2 "--hold-ms 'soon'" -- "$D" $S --hold-ms soon
expect d_hold_big 2 "--hold-ms '600001'.*range" -- "$D" $S --hold-ms 600001
expect d_stall_zero 2 "--stall-after-ms '0'.*range" -- "$D" $S --stall-after-ms 0
expect d_extra_arg 2 "unexpected argument 'extra'" -- "$D" $S extra
expect d_same_paths 2 "must differ" -- "$D" --socket-path "$tmp/x" --control "$tmp/x"
expect d_empty_socket 2 'socket-path.*required' -- "$D" --socket-path '' --control "$tmp/c"
expect d_bad_dir 1 "vhu.sock: No such file or directory" -- "$D" --socket-path "$tmp/nodir/vhu.sock" --control "$tmp/c"
expect d_control_mode_junk 2 "--control-mode '0689'.*octal" -- "$D" $S --control-mode 0689
expect d_control_mode_big 2 "--control-mode '1777'.*octal" -- "$D" $S --control-mode 1777
expect d_control_mode_owner 2 "--control-mode '0466'.*owner" -- "$D" $S --control-mode 0466
expect d_socket_mode_empty 2 "--socket-mode ''.*octal" -- "$D" $S --socket-mode ''
expect d_control_group_none 2 "--control-group 'no-such-group-b13'.*no such group" -- "$D" $S --control-group no-such-group-b13
expect d_socket_group_empty 2 "--socket-group needs a group" -- "$D" $S --socket-group ''
expect d_control_clients_0 2 "--control-clients '0'.*range" -- "$D" $S --control-clients 0
expect d_control_idle_small 2 "--control-idle-ms '99'.*range" -- "$D" $S --control-idle-ms 99

# Valid extremes are accepted (the device may advertise what a guest rejects).
for pb in 0 5 40 63; do
	"$D" $S --page-bits $pb >"$tmp/out" 2>"$tmp/err" &
	pid=$!
	sleep 0.3
	if kill -0 $pid 2>/dev/null && kill -TERM $pid && wait $pid; then
		pass "d_page_bits_$pb"
	else
		fail "d_page_bits_$pb" "($(head -c 300 "$tmp/err"))"
	fi
	rm -f "$tmp"/*.sock
done

# A second daemon on a live socket refuses (exit 1), the first survives.
"$D" $S 2>"$tmp/first.err" &
pid=$!
sleep 0.3
expect d_socket_in_use 1 "another process is listening" -- "$D" $S
if kill -0 $pid 2>/dev/null; then pass "d_first_survives"; else fail "d_first_survives" ""; fi
kill -TERM $pid; wait $pid
rc=$?
if [ $rc -eq 0 ] && [ ! -e "$tmp/vhu.sock" ] && [ ! -e "$tmp/ctl.sock" ]; then
	pass "d_sigterm_cleans_up"
else
	fail "d_sigterm_cleans_up" "(exit $rc; $(ls "$tmp"))"
fi

# Stale socket files (daemon killed hard) are replaced.
"$D" $S 2>/dev/null &
pid=$!
sleep 0.3
kill -KILL $pid; wait $pid 2>/dev/null
"$D" $S 2>"$tmp/err" &
pid=$!
sleep 0.3
if kill -0 $pid 2>/dev/null; then pass "d_stale_socket_replaced"; else fail "d_stale_socket_replaced" "($(cat "$tmp/err"))"; fi
kill -INT $pid; wait $pid
[ $? -eq 0 ] && pass "d_sigint_exit_0" || fail "d_sigint_exit_0" ""

if "$D" --help | grep -q -- '--hold-ms' &&
	"$D" --help | grep -q -- '--no-discard .*never discard' &&
	"$D" --help >/dev/null; then
	pass "d_help"
else
	fail "d_help" ""
fi

# --help carries a whole QEMU command line: shared guest RAM, the generic
# device under its 10.2+ name and the older one (qemu-smoke.sh runs it).
help=$("$D" --help)
if grep -q 'memory-backend-memfd,id=mem,size=4G,share=on' <<<"$help" &&
	grep -q 'machine q35,memory-backend=mem' <<<"$help" &&
	grep -q -- '-device vhost-user-test-device-pci,chardev=b13,virtio-id=13,num_vqs=2,config_size=4' <<<"$help" &&
	grep -q 'vhost-user-device-pci (same properties)' <<<"$help" &&
	grep -q -- '-chardev socket,id=b13,path=/run/balloon13d.sock' <<<"$help" &&
	grep -q 'balloon13d -s /run/balloon13d.sock -c /run/balloon13d.ctl' <<<"$help"; then
	pass "d_help_qemu_line"
else
	fail "d_help_qemu_line" "$(grep -n qemu <<<"$help" | head -3)"
fi
v=$("$D" --version 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -qE '^balloon13d [0-9]+\.[0-9]+' <<<"$v" &&
	[ "$("$D" -V)" = "$v" ] && [ "$("$C" --version | cut -d' ' -f2-)" = "$(cut -d' ' -f2- <<<"$v")" ]; then
	pass "d_version"
else
	fail "d_version" "exit $rc: $v"
fi
expect d_features_bad 2 "--features 'reporting': unknown feature" -- "$D" $S --features reporting
expect d_features_empty_name 2 "--features 'withdraw,': empty name" -- "$D" $S -f withdraw,
expect d_short_missing 2 "option '-b' needs a value" -- "$D" -s "$tmp/x" -b
expect d_short_unknown 2 "unknown option '-x'" -- "$D" -s "$tmp/x" -x
# Short options do what the long ones do.
"$D" -s "$tmp/vhu.sock" -c "$tmp/ctl.sock" -b 21 -f withdraw,full-stats 2>"$tmp/err" &
pid=$!
for _ in $(seq 50); do [ -S "$tmp/ctl.sock" ] && break; sleep 0.05; done
if "$C" -c "$tmp/ctl.sock" -j status >"$tmp/out" 2>>"$tmp/err" &&
	python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["page_bits"] == 21 and s["device_features"]["offered"] == ["withdraw", "full-stats"], s' "$tmp/out" 2>>"$tmp/err"; then
	pass "d_short_options"
else
	fail "d_short_options" "$(head -c 300 "$tmp/err")"
fi
kill -TERM $pid; wait $pid

K="--control $tmp/none.sock"
expect c_no_command 2 'missing command' -- "$C" $K
expect c_unknown_command 2 "unknown command 'inflate'" -- "$C" $K inflate
expect c_resize_no_size 2 'resize: expected one SIZE' -- "$C" $K resize
expect c_resize_garbage 2 "bad SIZE 'lots'" -- "$C" $K resize lots
expect c_resize_suffix 2 "bad SIZE '5X'.*suffix" -- "$C" $K resize 5X
expect c_resize_fraction 2 "bad SIZE '1.5G'.*fractional" -- "$C" $K resize 1.5G
expect c_resize_negative 2 "unknown option '-5'" -- "$C" $K resize -5
expect c_resize_huge 2 "bad SIZE '9000000T'.*too large" -- "$C" $K resize 9000000T
expect c_resize_two 2 'resize: expected one SIZE' -- "$C" $K resize 1M 2M
expect c_wait_not_resize 2 'wait only goes with resize' -- "$C" $K status --wait
expect c_timeout_bad 2 "bad --timeout 'x'" -- "$C" $K resize 1M --wait --timeout x
expect c_timeout_zero 2 "bad --timeout '0'" -- "$C" $K stats --timeout 0
expect c_timeout_alone 2 'timeout only goes with' -- "$C" $K status --timeout 3
expect c_inject_kind 2 "bad KIND 'nasty'" -- "$C" $K inject nasty 1
expect c_inject_count 2 "bad COUNT '0'" -- "$C" $K inject short 0
expect c_inject_args 2 'inject: expected KIND COUNT' -- "$C" $K inject short
expect c_status_args 2 'status: expected no arguments' -- "$C" $K status now
expect c_unknown_opt 2 "unknown option '--bogus'" -- "$C" $K --bogus status
expect c_no_daemon 1 "cannot reach balloon13d at $tmp/none.sock" -- "$C" $K status
expect c_no_daemon_resize 1 'cannot reach balloon13d' -- "$C" $K resize 64M
expect c_env_control 1 "cannot reach balloon13d at $tmp/env.sock" -- env BALLOON13_CONTROL="$tmp/env.sock" "$C" status
if "$C" --help | grep -q 'resize SIZE'; then pass "c_help"; else fail "c_help" ""; fi
expect c_interval_args 2 'stats-interval: expected one MS' -- "$C" $K stats-interval
expect c_interval_bad 2 "bad MS '1s'" -- "$C" $K stats-interval 1s
expect c_interval_big 2 "bad MS '86400001'.*range" -- "$C" $K stats-interval 86400001
expect c_interval_no_daemon 1 'cannot reach balloon13d' -- "$C" -c "$tmp/none.sock" stats-interval 100

# balloon13ctl does not trust what answers on the socket either: a fake
# daemon sends one line per connection, as told.
fake() { # LINE-PYTHON-EXPR
	rm -f "$tmp/fake.sock"
	/usr/bin/python3 - "$tmp/fake.sock" "$1" <<'PY' &
import json, socket, sys
path, expr = sys.argv[1], sys.argv[2]
NL = b"\n"
js = lambda o: json.dumps(o).encode() + NL
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.bind(path)
s.listen(1)
c, _ = s.accept()
c.recv(65536)
try:
    c.sendall(eval(expr))
except OSError:
    pass
c.close()
PY
	for _ in $(seq 50); do [ -S "$tmp/fake.sock" ] && break; sleep 0.02; done
}
F="--control $tmp/fake.sock"
fake 'b"[" * 100000 + NL'
expect c_answer_deep 1 "bad answer.*nested too deep" -- "$C" $F status
wait
fake 'b"{" * 20 + NL'
expect c_answer_deep_objects 1 "bad answer.*nested too deep" -- "$C" $F status
wait
fake 'b"x" * (17 << 20)'
expect c_answer_huge 1 "bad answer.*longer than 16 MiB" -- "$C" $F status
wait
fake 'js({"ok": "yes", "error": 5})'
expect c_answer_types 1 "balloon13ctl: request failed" -- "$C" $F status
wait
fake 'js({"ok": True, "ranges": [], "truncated": True, "next": 0})'
expect c_ranges_stuck 1 "ranges do not go on" -- "$C" $F ranges
wait
