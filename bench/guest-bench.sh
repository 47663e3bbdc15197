# Guest half of bench/bench.py: sourced by the commands it runs in a test
# guest (copied to /tmp/bench.sh).  bash only, and no forks inside the
# measured windows: every poll is a builtin `read` of one small file.
#
# Markers go straight to the command channel's serial port (/dev/ttyS1) as
# "@@BENCH <tag> <guest EPOCHREALTIME>" lines, so the host learns within a
# millisecond or two that the guest is ready or done; vm.py skips them.

[ -p /tmp/.bfifo ] || mkfifo /tmp/.bfifo
exec 9<>/tmp/.bfifo

# nap SECONDS: sleep without forking (a read that never gets data).
nap() { read -r -t "$1" -u 9 _; return 0; }

mark() { printf '@@BENCH %s %s\n' "$1" "$EPOCHREALTIME" >/dev/ttyS1; }

# snap: KW = ns the kworker and ksoftirqd threads have run (schedstat);
# SYS, USR, IDLE = /proc/stat ticks (system+irq+softirq, user+nice,
# idle+iowait; 100 per second).
snap() {
	local p c a r s=0 us ni sy id io ir si
	for p in /proc/[0-9]*; do
		{ read -r c <"$p/comm"; } 2>/dev/null || continue
		case $c in
		kworker* | ksoftirqd*)
			{ read -r a r <"$p/schedstat"; } 2>/dev/null && s=$((s + a)) ;;
		esac
	done
	read -r c us ni sy id io ir si r </proc/stat
	KW=$s SYS=$((sy + ir + si)) USR=$((us + ni)) IDLE=$((id + io))
}

# field FILE N: V = the Nth word of FILE's first line.
field() {
	local w
	read -r -a w <"$1"
	V=${w[$(($2 - 1))]}
}

# waiter SEEN_FILE SEEN_N SEEN_VAL FILE N OP WANT INTERVAL TIMEOUT SETTLE
#   Snapshot CPU counters, mark R (ready: the host may send its request),
#   wait until word SEEN_N of SEEN_FILE is SEEN_VAL (skipped if SEEN_FILE
#   is -), then until word N of FILE OP WANT (OP: -eq -ge -le), polling
#   every INTERVAL seconds; mark D, wait SETTLE seconds, snapshot again and
#   print one RESULT line.  Gives up after TIMEOUT seconds (status 1).
waiter() {
	local sf=$1 sn=$2 sv=$3 f=$4 n=$5 op=$6 want=$7 iv=$8 to=$9 settle=${10}
	local end=$((SECONDS + to)) tr ts=0 td k0 s0 u0 i0
	snap
	k0=$KW s0=$SYS u0=$USR i0=$IDLE
	tr=$EPOCHREALTIME
	mark R
	if [ "$sf" != - ]; then
		while field "$sf" "$sn"; [ "$V" != "$sv" ]; do
			[ $SECONDS -lt $end ] || { echo "RESULT timeout waiting for $sf = $sv (last $V)"; return 1; }
			nap "$iv"
		done
		ts=$EPOCHREALTIME
	fi
	while field "$f" "$n"; ! [ "$V" "$op" "$want" ]; do
		[ $SECONDS -lt $end ] || { echo "RESULT timeout waiting for $f $op $want (last $V)"; return 1; }
		nap "$iv"
	done
	td=$EPOCHREALTIME
	mark D
	nap "$settle"
	snap
	echo "RESULT ok t_ready=$tr t_seen=$ts t_done=$td kw_ns=$((KW - k0))" \
		"sys_ticks=$((SYS - s0)) usr_ticks=$((USR - u0))" \
		"idle_ticks=$((IDLE - i0)) last=$V"
}
