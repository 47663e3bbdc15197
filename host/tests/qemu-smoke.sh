#!/usr/bin/env bash
# End-to-end smoke test of balloon13d behind real QEMU, with no guest driver:
# a busybox initramfs drives the virtio-pci device with devmem (config read,
# feature negotiation, two queues in memory reserved with memmap=), takes a
# RESIZE from inputq, sends a page list on outputq and touches a ballooned
# block again.  The host side checks the daemon's status at each step.
#
# usage: qemu-smoke.sh [QEMU [VMLINUZ]]   (or $QEMU, $KERNEL; by default the
# newest found in $VB13_CACHE).  Prints PASS/FAIL lines like the other
# suites; SKIP if QEMU or a kernel is missing.  KEEP_TMP=1 keeps the logs.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
host=$(cd "$here/.." && pwd)
. "$host/../scripts/lib.sh"

qemu=${1:-${QEMU:-}}
qemu=${qemu:-$(ls -d "$VB13_CACHE"/qemu-*/qemu-system-x86_64 2>/dev/null | tail -n1)}
kernel=${2:-${KERNEL:-}}
kernel=${kernel:-$(ls "$VB13_CACHE"/kernels/6.12*/root/boot/vmlinuz-* 2>/dev/null | tail -n1)}
busybox=$(command -v busybox || true)
if [ ! -x "$qemu" ] || [ ! -r "$kernel" ] || [ -z "$busybox" ]; then
	echo "SKIP qemu_smoke (need QEMU, a guest kernel and busybox)"
	exit 0
fi

tmp=$(mktemp -d /tmp/b13smoke.XXXXXX)
qpid= dpid=
cleanup() {
	[ -n "$qpid" ] && kill "$qpid" 2>/dev/null && wait "$qpid" 2>/dev/null
	[ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null
	if [ -n "${KEEP_TMP:-}" ]; then echo "# kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

# ---- the guest: /init drives the device by hand --------------------------
mkdir -p "$tmp/root/bin" "$tmp/root/proc" "$tmp/root/sys" "$tmp/root/dev"
cp "$busybox" "$tmp/root/bin/busybox"
cat >"$tmp/root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
log() { echo "B13: $*"; }
die() { log "FAIL $*"; poweroff -f; }
rd() { devmem "$(printf 0x%x "$1")" "$2"; }
wr() { devmem "$(printf 0x%x "$1")" "$2" "$3"; }
waitidx() {	# waitidx ADDR N: until the u16 at ADDR reaches N
	i=0
	while [ $(($(rd "$1" 16))) -lt "$2" ]; do
		i=$((i + 1)); [ $i -gt 600 ] && die "timeout at $1"
		sleep 0.1
	done
}
dev=
for d in /sys/bus/pci/devices/*; do
	[ "$(cat "$d/vendor")" = 0x1af4 ] && [ "$(cat "$d/device")" = 0x104d ] && dev=$d
done
[ -n "$dev" ] || die "no virtio device 13 on PCI"
bar=$(sed -n 5p "$dev/resource" | cut -d' ' -f1)
C=$((bar)); D=$((bar + 0x2000)); N=$((bar + 0x3000)); R=$((0x6000000))
log "device $(basename "$dev") bar4 $bar"
wr $((C + 0x14)) 8 0; wr $((C + 0x14)) 8 1; wr $((C + 0x14)) 8 3
wr $C 32 1; fhi=$(rd $((C + 4)) 32); wr $C 32 0; flo=$(rd $((C + 4)) 32)
log "features hi $fhi lo $flo"
wr $((C + 8)) 32 1; wr $((C + 12)) 32 1; wr $((C + 8)) 32 0; wr $((C + 12)) 32 0
wr $((C + 0x14)) 8 11
log "status $(rd $((C + 0x14)) 8) queues $(rd $((C + 0x12)) 16)"
log "page_bits $(rd $D 32)"
for q in 0 1; do
	b=$((R + q * 0x1000))
	wr $((b + 0x400)) 32 1; wr $((b + 0x800)) 32 0	# avail: NO_INTERRUPT
	wr $((C + 0x16)) 16 $q; wr $((C + 0x18)) 16 8
	wr $((C + 0x20)) 32 $b; wr $((C + 0x24)) 32 0
	wr $((C + 0x28)) 32 $((b + 0x400)); wr $((C + 0x2c)) 32 0
	wr $((C + 0x30)) 32 $((b + 0x800)); wr $((C + 0x34)) 32 0
	wr $((C + 0x1c)) 16 1
done
wr $((C + 0x14)) 8 15
log "driver ok, status $(rd $((C + 0x14)) 8)"
# inputq: two 16-byte device-writable buffers
for i in 0 1; do
	d=$((R + 16 * i))
	wr $d 32 $((R + 0x8000 + 32 * i)); wr $((d + 4)) 32 0
	wr $((d + 8)) 32 16; wr $((d + 12)) 16 2; wr $((d + 14)) 16 0
	wr $((R + 0x404 + 2 * i)) 16 $i
done
wr $((R + 0x402)) 16 2; wr $N 16 0
log "READY"
waitidx $((R + 0x802)) 1
log "request type $(rd $((R + 0x8000)) 32) value $(rd $((R + 0x8008)) 32) len $(rd $((R + 0x808)) 32)"
# outputq: a page list naming 4 blocks, written to first
P=$((R + 0x10000))
for i in 0 1 2 3; do wr $((P + 0x1000 * i)) 32 0x5a5a5a5a; done
M=$((R + 0x9000))
wr $M 32 0; wr $((M + 4)) 32 0
for i in 0 1 2 3; do wr $((M + 8 + 8 * i)) 32 $((P + 0x1000 * (3 - i))); wr $((M + 12 + 8 * i)) 32 0; done
Q=$((R + 0x1000))
wr $Q 32 $M; wr $((Q + 4)) 32 0; wr $((Q + 8)) 32 40; wr $((Q + 12)) 32 0
wr $((Q + 0x404)) 16 0; wr $((Q + 0x402)) 16 1; wr $((N + 4)) 16 1
waitidx $((Q + 0x802)) 1
log "PAGES_DONE"
waitidx $((R + 0x802)) 2
log "block reads $(rd $P 32) after discard"
log "TOUCHED"
sleep 30
INIT
chmod +x "$tmp/root/init"
(cd "$tmp/root" && find . | cpio -o -H newc --quiet >"$tmp/initrd")

# ---- the host -------------------------------------------------------------
ok() { echo "PASS $1"; }
bad() { echo "FAIL $1: $2"; }
until_grep() {	# until_grep FILE PATTERN SECONDS
	local i=0
	while ! grep -q -- "$2" "$1" 2>/dev/null; do
		i=$((i + 1)); [ $i -gt $(($3 * 10)) ] && return 1
		sleep 0.1
	done
}
st() { "$host/balloon13ctl" --control "$tmp/ctl" --json status; }
field() { st | python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

"$host/balloon13d" --socket-path "$tmp/vhu" --control "$tmp/ctl" 2>"$tmp/daemon.log" &
dpid=$!
until_grep "$tmp/daemon.log" listening 5 || { bad qemu_smoke "daemon did not start"; exit 1; }
t0=$(date +%s.%N)
# The QEMU command line is the one balloon13d --help gives users (so that
# it is shown working): its paths and size made the test's, its disk left
# out, the generic device under the name this QEMU knows, and this test's
# guest, console and firmware added.
if "$qemu" -device help 2>/dev/null | grep -q '"vhost-user-test-device-pci"'; then
	devname=vhost-user-test-device-pci
else
	devname=vhost-user-device-pci
fi
mapfile -t qcmd < <("$host/balloon13d" --help | python3 -c '
import shlex, sys
text = sys.stdin.read()
start = text.index("  qemu-system-x86_64")
line = ""
for l in text[start:].splitlines():
    line += l.strip().rstrip("\\") + " "
    if not l.rstrip().endswith("\\"):
        break
args = shlex.split(line)
out, skip = [], False
for a in args:
    if skip:
        skip = False
        continue
    if a == "-drive":            # the user disk: the test boots a kernel
        skip = True
        continue
    a = a.replace("/run/balloon13d.sock", sys.argv[1])
    a = a.replace("size=4G", "size=256M")
    a = a.replace("vhost-user-test-device-pci", sys.argv[2])
    out.append("256M" if a == "4G" else a)
print("\n".join(out[1:]))' "$tmp/vhu" "$devname")
if [ "${#qcmd[@]}" -lt 8 ] || ! printf '%s\n' "${qcmd[@]}" | grep -q share=on; then
	bad qemu_help_command_line "no QEMU command line in balloon13d --help"
	exit 1
fi
echo "# QEMU from --help: ${qcmd[*]}"
"$qemu" "${qcmd[@]}" -smp 1 -nic none -display none -monitor none \
	-L /usr/share/seabios -L /usr/share/qemu \
	-kernel "$kernel" -initrd "$tmp/initrd" -serial file:"$tmp/serial.log" \
	-append 'console=ttyS0 quiet iomem=relaxed memmap=2M$0x6000000 panic=-1' \
	-no-reboot 2>"$tmp/qemu.log" &
qpid=$!

if until_grep "$tmp/serial.log" 'B13: READY' 60; then
	ok qemu_help_command_line
	ok qemu_guest_ready
	printf '# guest ready after %.1f s\n' "$(echo "$(date +%s.%N) - $t0" | bc)"
else
	bad qemu_guest_ready "$(tail -n 5 "$tmp/serial.log"; cat "$tmp/qemu.log")"
	exit 1
fi
# VIRTIO_F_VERSION_1, and the four device bits balloon13d offers
# by default, through QEMU to the guest
grep -q 'B13: features hi 0x00000001 lo 0x0000000F' "$tmp/serial.log" &&
	ok qemu_features || bad qemu_features "$(grep features "$tmp/serial.log")"
grep -q 'B13: page_bits 0x0000000C' "$tmp/serial.log" &&
	ok qemu_config_read || bad qemu_config_read "$(grep page_bits "$tmp/serial.log")"
grep -q 'config read (4 bytes): page_bits 12' "$tmp/daemon.log" &&
	grep -q 'memory table: ' "$tmp/daemon.log" &&
	grep -q 'device started' "$tmp/daemon.log" &&
	ok qemu_daemon_log || bad qemu_daemon_log "$(cat "$tmp/daemon.log")"
[ "$(field '["driver_ready"]')" = True ] && [ "$(field '["guest_ram_bytes"]')" = $((256 << 20)) ] &&
	ok qemu_status || bad qemu_status "$(st)"

"$host/balloon13ctl" --control "$tmp/ctl" resize 64K >/dev/null
if until_grep "$tmp/serial.log" 'B13: PAGES_DONE' 60; then
	grep -q 'B13: request type 0x00000000 value 0x00010000 len 0x00000010' "$tmp/serial.log" &&
		ok qemu_resize_delivered || bad qemu_resize_delivered "$(grep request "$tmp/serial.log")"
else
	bad qemu_resize_delivered "no PAGES_DONE: $(tail -3 "$tmp/serial.log")"
fi
s=$(st)
echo "$s" | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert (s["blocks_in_balloon"], s["punch"]["calls"], s["reached"]) == (4, 1, False), s  # 16 KiB of a 64 KiB target' &&
	ok qemu_page_list_punched || bad qemu_page_list_punched "$s"
"$host/balloon13ctl" --control "$tmp/ctl" --json ranges | grep -q '"ranges":\[{"start":100728832,"blocks":4}\]' &&
	ok qemu_ranges || bad qemu_ranges "$("$host/balloon13ctl" --control "$tmp/ctl" --json ranges)"

"$host/balloon13ctl" --control "$tmp/ctl" resize 128K >/dev/null
if until_grep "$tmp/serial.log" 'B13: TOUCHED' 60; then
	grep -q 'B13: block reads 0x00000000 after discard' "$tmp/serial.log" &&
		ok qemu_block_discarded || bad qemu_block_discarded "$(grep 'block reads' "$tmp/serial.log")"
	[ "$(field '["blocks_withdrawn"]')" = 1 ] && [ "$(field '["blocks_in_balloon"]')" = 3 ] &&
		ok qemu_withdraw_by_access || bad qemu_withdraw_by_access "$(st)"
else
	bad qemu_block_discarded "no TOUCHED"
fi

kill "$qpid"; wait "$qpid" 2>/dev/null; qpid=
sleep 0.5
[ "$(field '["connected"]')" = False ] && kill -0 $dpid &&
	ok qemu_disconnect_survived || bad qemu_disconnect_survived "$(st)"
kill -TERM $dpid; wait $dpid; rc=$?; dpid=
[ $rc -eq 0 ] && [ ! -e "$tmp/vhu" ] && ok qemu_daemon_exit || bad qemu_daemon_exit "exit $rc"
