#!/usr/bin/python3
"""Prove that the 6.12-debug test guest really checks what it claims to.

    python3 tests/debug-kernel/check.py [-v] [--keep] [--tap FILE]

A debug kernel that boots but has KASAN, lockdep or kmemleak quietly off
would let the end-to-end suite pass with "0 reports" while checking nothing.
One VM on the 6.12-debug kernel (scripts/build-debug-kernel.sh), booted with
kmemleak=on, with vb13_dbgprobe in its initramfs (a module of deliberate
bugs, built out of tree exactly like virtio_balloon13):

  active          the boot log shows KASAN, lockdep and KFENCE starting, and
                  no report; /proc/lockdep, /proc/config.gz, kmemleak, slab
                  red zones and poisoning, KFENCE and debug_pagealloc are on
  report-*        each deliberate bug of vb13_dbgprobe (lockdep inversion,
                  might_sleep with preemption off, DEBUG_LIST double add,
                  slab out-of-bounds read, use after free, leaked objects) is
                  reported, and the e2e suite's BAD_DMESG matches the report
                  (kmemleak's: the scan lists the objects)

The driver's own leak check on this kernel is e2e/6.12-debug/kmemleak.

Reports in TAP 14 (scripts/tap.py), on stdout or in FILE: the plan, then
one result per check, id debug/6.12-debug/NAME, a failure's reason on the
"# " line after it.  Exit status 0 when all pass.
"""

import argparse
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "scripts"))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))
import vm as vmlib  # noqa: E402

import tap  # noqa: E402  (scripts/tap.py)
from e2elib import BAD_DMESG, KMSG_NOW, kmsg_since  # noqa: E402

SERIES = "6.12-debug"
KMEMLEAK = "/sys/kernel/debug/kmemleak"
# Options whose absence would make the suite blind; /proc/config.gz must
# have each (scripts/debug-kernel.config sets them).
REQUIRED_CONFIG = (
    "KASAN", "KASAN_GENERIC", "KFENCE", "PROVE_LOCKING", "DEBUG_ATOMIC_SLEEP",
    "DEBUG_PAGEALLOC", "DEBUG_PAGEALLOC_ENABLE_DEFAULT", "DEBUG_LIST",
    "SLUB_DEBUG", "SLUB_DEBUG_ON", "DEBUG_VM", "DEBUG_OBJECTS_WORK",
    "DEBUG_KMEMLEAK")
BOOT_BANNERS = (
    ("KASAN", r"KernelAddressSanitizer initialized"),
    ("lockdep", r"Lock dependency validator: Copyright"),
    ("KFENCE", r"kfence: initialized"),
)
# The report each deliberate bug must produce (on top of BAD_DMESG).
PROBES = (
    # lockdep first: any later report turns lock debugging off.
    ("lockdep", r"WARNING: possible circular locking dependency detected"),
    ("atomic_sleep", r"BUG: sleeping function called from invalid context"),
    ("list", r"list_add double add"),
    ("kasan_oob", r"BUG: KASAN: slab-out-of-bounds in probe_kasan_oob"),
    ("kasan_uaf", r"BUG: KASAN: slab-use-after-free in probe_kasan_uaf"),
)
# vb13_dbgprobe's "kmemleak" loses pointers to objects of this size.
PROBE_LEAK_SIZE = 192
VERBOSE = False


class Fail(Exception):
    pass


def say(msg):
    print("  " + msg, flush=True)


def check(cond, fmt, *args):
    if not cond:
        raise Fail(fmt % args if args else fmt)


def script_output(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, check=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise Fail("%s failed: %s" % (" ".join(argv), (
            proc.stderr.strip().splitlines() or ["?"])[-1]))
    return lines[-1]


def build():
    """vb13_dbgprobe.ko for the debug kernel, built like the driver."""
    script_output(["bash", os.path.join(TOP, "scripts", "build-debug-kernel.sh")])
    env = vmlib.kernel_env(SERIES)
    out = os.path.join(TOP, "out", env["KVER"], "dbgprobe")
    os.makedirs(out, exist_ok=True)
    for name in ("Kbuild", "vb13_dbgprobe.c"):
        with open(os.path.join(HERE, name)) as src, \
                open(os.path.join(out, name), "w") as dst:
            dst.write(src.read())
    proc = subprocess.run(["make", "-C", env["KDIR"], "M=" + out, "modules"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False)
    if proc.returncode != 0:
        raise Fail("vb13_dbgprobe build failed:\n" + proc.stdout[-2000:])
    return os.path.join(out, "vb13_dbgprobe.ko")


class Checks:
    def __init__(self, vm, out):
        self.vm = vm
        self.out = out          # tap.Writer
        self.results = []

    def sh(self, cmd, timeout=120, ok=(0,)):
        t0 = time.monotonic()
        status, out = self.vm.run(cmd, timeout=timeout)
        if VERBOSE:
            say(". (%.1f s, %d) %s -> %s" % (time.monotonic() - t0, status,
                                             cmd[:60], out.strip()[:200]))
        if ok is not None and status not in ok:
            raise Fail("guest command %r exited %d: %s"
                       % (cmd[:60], status, out.strip()[-200:]))
        return out

    def dmesg_lines(self):
        """The whole boot's kernel log; Fail if part of it was lost."""
        return kmsg_since(self.sh, None)[0]

    def kmemleak_scan(self, times=2):
        """Scan (twice by default: a pointer only in a register can make
        an object look unreferenced once); returns the report text."""
        t0 = time.monotonic()
        self.sh(" && ".join(["echo scan > %s" % KMEMLEAK] * times), timeout=600)
        say("kmemleak: %d scans in %.1f s" % (times, time.monotonic() - t0))
        return self.sh("cat %s" % KMEMLEAK)

    def run(self, name, func):
        t0 = time.monotonic()
        try:
            func()
        except (Fail, vmlib.VMError, OSError, subprocess.SubprocessError) as e:
            reason = " ".join(str(e).split())[:400]
            self.out.not_ok("debug/%s/%s" % (SERIES, name), reason)
            self.results.append(False)
        else:
            self.out.ok("debug/%s/%s" % (SERIES, name))
            self.results.append(True)
        say("%s: %.1f s" % (name, time.monotonic() - t0))

    # ---- the checks -----------------------------------------------------------

    def active(self):
        log = self.dmesg_lines()
        text = "\n".join(log)
        for what, pat in BOOT_BANNERS:
            check(re.search(pat, text), "%s did not start: no %r in the boot log",
                  what, pat)
        bad = [ln for ln in log if BAD_DMESG.search(ln)]
        check(not bad, "the boot log has a report: %s", bad[0][:200] if bad else "")
        out = self.sh("grep -q . /proc/lockdep && echo lockdep-ok; "
                      "zcat /proc/config.gz | grep '=y$'; "
                      "test -e %s && echo kmemleak-ok; "
                      "echo red_zone $(cat /sys/kernel/slab/kmalloc-64/red_zone); "
                      "echo poison $(cat /sys/kernel/slab/kmalloc-64/poison); "
                      "grep -i '^enabled' /sys/kernel/debug/kfence/stats; "
                      "modprobe vb13_dbgprobe && "
                      "cat /sys/kernel/debug/vb13_dbgprobe/status" % KMEMLEAK)
        check("lockdep-ok" in out, "/proc/lockdep is missing or empty")
        check("kmemleak-ok" in out, "%s is missing", KMEMLEAK)
        for sym in REQUIRED_CONFIG:
            check(re.search(r"^CONFIG_%s=y$" % sym, out, re.M),
                  "/proc/config.gz has no CONFIG_%s=y", sym)
        check(re.search(r"^red_zone 1$", out, re.M), "kmalloc-64 has no red zone")
        check(re.search(r"^poison 1$", out, re.M), "kmalloc-64 is not poisoned")
        check(re.search(r"^enabled: 1$", out, re.M | re.I), "KFENCE is not enabled")
        status = dict(ln.split() for ln in out.splitlines()
                      if re.fullmatch(r"[a-z_]+ \d+", ln))
        for key in ("kasan", "prove_locking", "debug_list", "debug_atomic_sleep",
                    "kfence", "kmemleak", "debug_pagealloc_enabled",
                    "debug_locks"):
            check(status.get(key) == "1",
                  "vb13_dbgprobe status: %s is %s, want 1", key, status.get(key))

    def report(self, trigger, pattern):
        # By sequence number: a report the ring buffer dropped fails, it
        # is not mistaken for no report.
        mark = kmsg_since(self.sh, KMSG_NOW)[1]
        self.sh("echo %s > /sys/kernel/debug/vb13_dbgprobe/trigger" % trigger)
        new = kmsg_since(self.sh, mark)[0]
        text = "\n".join(new)
        check(re.search(pattern, text), "no %r in the kernel log after trigger %s",
              pattern, trigger)
        check(any(BAD_DMESG.search(ln) for ln in new),
              "the e2e suite's BAD_DMESG does not match the %s report", trigger)

    def report_kmemleak(self):
        self.sh("echo kmemleak > /sys/kernel/debug/vb13_dbgprobe/trigger")
        self.sh("sleep 6")   # kmemleak ignores objects younger than 5 s
        leaks = self.kmemleak_scan()
        check(re.search(r"unreferenced object .*\(size %d\)" % PROBE_LEAK_SIZE, leaks)
              and "probe_kmemleak" in leaks,
              "kmemleak did not report the leaked object: %s", leaks.strip()[:300])


def main():
    global VERBOSE
    p = argparse.ArgumentParser(prog="tests/debug-kernel/check.py",
                                description=__doc__.split("\n\n")[1])
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the VM's temp dir")
    p.add_argument("--tap", metavar="FILE", default=os.environ.get("VB13_TAP"),
                   help="write the TAP results to FILE (and show them on "
                   "stdout); default $VB13_TAP (make check sets it)")
    a = p.parse_args()
    VERBOSE = a.verbose
    names = ["active"] + ["report-" + t for t, _ in PROBES] + [
        "report-kmemleak"]
    out = tap.Writer(a.tap, echo=sys.stdout) if a.tap else tap.Writer(sys.stdout)
    out.plan(len(names))
    t_start = time.monotonic()
    try:
        probe = build()
    except (Fail, vmlib.VMError) as e:
        for n in names:
            out.not_ok("debug/%s/%s" % (SERIES, n), "build: %s" % e)
        out.close()
        return 1
    say("vb13_dbgprobe built in %.1f s" % (time.monotonic() - t_start))
    vm = vmlib.VM(series=SERIES, mem="512M", modules=[probe],
                  append="kasan_multi_shot kmemleak=on", boot_timeout=600,
                  keep_tmp=a.keep)
    checks = Checks(vm, out)
    try:
        vm.start()
        say("%s booted in %.1f s" % (vm.kver, vm.boot_seconds))
    except vmlib.VMError as e:
        for n in names:
            out.not_ok("debug/%s/%s" % (SERIES, n),
                       "VM did not start: %s" % str(e)[:300])
        out.close()
        return 1
    try:
        checks.run("active", checks.active)
        for trigger, pattern in PROBES:
            checks.run("report-" + trigger,
                       lambda t=trigger, pat=pattern: checks.report(t, pat))
        checks.run("report-kmemleak", checks.report_kmemleak)
    finally:
        vm.close()
        out.close()
    passed = sum(checks.results)
    failed = len(checks.results) - passed
    say("%d passed, %d failed in %.1f s" % (passed, failed,
                                            time.monotonic() - t_start))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
