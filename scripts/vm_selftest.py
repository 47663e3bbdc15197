#!/usr/bin/python3
"""Check the VM infrastructure itself: boot, command channel, modprobe,
QMP and QEMU's legacy balloon, host memory accounting, and (with
--backend) the generic vhost-user device.

Usage: vm_selftest.py [--series 6.1,6.12] [--backend PATH [ARGS...]]
Prints one line per check and ends with "N passed, N failed".
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from vm import VM, CommandError  # noqa: E402

MIB = 1 << 20
results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print("%s - %s%s" % ("ok" if cond else "FAIL", name,
                         "" if cond or not detail else ": " + detail), flush=True)


def basic(series):
    with VM(series=series, mem="1024M", balloon=True,
            append="init_on_alloc=0") as vm:
        check("%s boots (%.1f s, %s)" % (series, vm.boot_seconds, vm.kver),
              vm.kver.startswith(series + "."))
        st, out = vm.run("echo out; echo err >&2; exit 3")
        check(series + " status and merged output", (st, out) == (3, "out\nerr\n"),
              repr((st, out)))
        st, out = vm.run("seq 1 10000")
        check(series + " 10k lines", st == 0 and
              out == "".join("%d\n" % i for i in range(1, 10001)))
        st, raw = vm.run_bytes("printf '\\000\\377\\r\\n@@VB13-END 9\\n'")
        check(series + " binary output", raw == b"\x00\xff\r\n@@VB13-END 9\n",
              repr(raw))
        st, out = vm.run("sleep 30", timeout=2)
        st2, out2 = vm.run("echo alive")
        check(series + " timeout kills (137) and channel survives",
              st == 137 and out2 == "alive\n", repr((st, out, st2, out2)))
        try:
            vm.run("false", check=True)
            check(series + " check=True raises", False)
        except CommandError as e:
            check(series + " check=True raises", e.status == 1)
        st, out = vm.run("mount | grep -c -E ' (/proc|/sys|/dev|/tmp|"
                         "/sys/kernel/debug) '")
        check(series + " proc, sysfs, devtmpfs, tmpfs, debugfs mounted",
              out.strip() == "5", out)
        st, out = vm.run("modprobe virtio_balloon && "
                         "ls /sys/bus/virtio/drivers/virtio_balloon")
        check(series + " modprobe virtio_balloon binds", st == 0 and "virtio" in out, out)
        st, out = vm.run("dmesg | grep -i -E 'invalid elf|unknown symbol'")
        check(series + " no module loading errors in dmesg", st == 1, out)
        st, out = vm.run("memtouch --verify 400")
        check(series + " memtouch 400 MiB", st == 0 and "0 of" in out, out)
        before = vm.guest_ram_resident()
        vm.qmp("balloon", value=300 * MIB)
        deadline = time.monotonic() + 120
        while vm.qmp("query-balloon")["actual"] > 300 * MIB:
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        after = vm.guest_ram_resident()
        check(series + " legacy balloon inflates and host memory drops "
              "(%d -> %d MiB)" % (before // MIB, after // MIB),
              vm.qmp("query-balloon")["actual"] <= 300 * MIB and
              after < before - 300 * MIB)
        vm.qmp("balloon", value=1024 * MIB)
        rss = vm.qemu_rss()
        check(series + " qemu_rss has RssShmem", rss.get("RssShmem", 0) > 0, repr(rss))


def vhost(series, backend):
    with VM(series=series, mem="512M", backend=backend[0],
            backend_args=backend[1:]) as vm:
        st, out = vm.run("cat /sys/bus/virtio/devices/*/device")
        check("%s vhost-user device 13 present (%s)" % (series, vm.device_name),
              "0x000d" in out.split(), out)


def main():
    args = sys.argv[1:]
    series = ["6.1", "6.12"]
    backend = None
    if "--backend" in args:
        i = args.index("--backend")
        args, backend = args[:i], args[i + 1:]
        if not backend:
            print("vm_selftest.py: --backend needs a PATH", file=sys.stderr)
            return 2
    if args[:1] == ["--series"] and len(args) == 2:
        series = args[1].split(",")
    elif args:
        print("usage: vm_selftest.py [--series 6.1,6.12] [--backend PATH ARGS...]",
              file=sys.stderr)
        return 2
    for s in series:
        basic(s)
        if backend:
            vhost(s, backend)
    passed = sum(results)
    print("%d passed, %d failed" % (passed, len(results) - passed))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
