#!/usr/bin/python3
"""End-to-end scenarios of virtio_balloon13 in real QEMU VMs (TCG).

    python3 tests/e2e/run.py [--series 6.1,6.12] [-k NAME[,NAME]] [--seed N] [-v]

Builds what it needs (the module for each kernel with
scripts/build-module.sh, balloon13d and balloon13ctl with `make -s host`),
boots guests with scripts/vm.py (Debian's stock kernels, the module
installed under /lib/modules/<kver>/extra and loaded with `modprobe`,
balloon13d as the vhost-user device 13) and runs every scenario on every
kernel series.  Each scenario prints exactly one line

    PASS e2e/<series>/<scenario>
    FAIL e2e/<series>/<scenario>: <one-line reason>

and a failure is followed by the guest's dmesg tail and the daemon's log
tail.  Progress, measurements and timings go on other lines (never
starting with PASS/FAIL).  Exit status: 0 all passed, 1 a scenario
failed, 2 bad command line.

Scenarios sharing a daemon configuration share one VM, in order; each
sets up its own preconditions, so `-k` can run any of them alone.
Python 3 standard library only.
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import traceback

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "scripts"))
import vm as vmlib  # noqa: E402  (scripts/vm.py)

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30
SYS_GLOB = "/sys/bus/virtio/drivers/virtio_balloon13/virtio*"
DBG_GLOB = "/sys/kernel/debug/virtio_balloon13/virtio*/counters"
DAEMON = os.path.join(TOP, "host", "balloon13d")
CTL = os.path.join(TOP, "host", "balloon13ctl")
# Counters the interface contract promises in debugfs.
CONTRACT_COUNTERS = (
    "requests_resize requests_stats requests_unknown requests_malformed "
    "spurious_callbacks targets_clamped blocks_inflated blocks_withdrawn "
    "messages_pages messages_stats alloc_failures pressure_releases "
    "backoff_ms held_by_floor in_flight_blocks").split()
MODULE_PARAMS = ("floor_mib", "oom_release", "oom_release_mib", "oom_hold_ms")
# Kernel messages that must never appear.
BAD_DMESG = re.compile(
    r"WARNING:|BUG:|Oops|general protection|KASAN|UBSAN|Call Trace|"
    r"kernel BUG|soft lockup|blocked for more than|Out of memory|oom-kill")
AUTO_FLOOR_MIN = 128 * MiB      # the driver's automatic floor (admin guide)

VERBOSE = False


def say(msg):
    """A progress line (never starts with PASS/FAIL)."""
    print("  " + msg, flush=True)


def debug(msg):
    if VERBOSE:
        print("    . " + msg, flush=True)


def mib(n):
    return "%.1f MiB" % (n / MiB)


class Fail(Exception):
    """A scenario assertion failed; the message is the one-line reason."""


def check(cond, fmt, *args):
    if not cond:
        raise Fail(fmt % args if args else fmt)


def check_eq(actual, expected, what):
    if actual != expected:
        raise Fail("%s is %r, want %r" % (what, actual, expected))


# ---- the guest and its daemon ----------------------------------------------

class Guest:
    """One booted VM with balloon13d attached, and what scenarios need."""

    def __init__(self, vm, series, mem, page_bits):
        self.vm = vm
        self.series = series
        self.mem = mem
        self.page_bits = page_bits
        self.ctl_path = vm.path("ctl.sock")
        self.base_memtotal = None   # MemTotal with the balloon empty
        self.dmesg_mark = 0

    # -- guest commands --

    def sh(self, cmd, timeout=60, ok=(0,)):
        """Run a guest shell command; Fail unless its status is in ok."""
        t0 = time.monotonic()
        status, out = self.vm.run(cmd, timeout=timeout)
        debug("guest (%.2f s, status %d): %s -> %s" % (
            time.monotonic() - t0, status, cmd.strip().splitlines()[0][:70],
            out.strip().replace("\n", " | ")[:160]))
        if ok is not None and status not in ok:
            last = out.strip().splitlines()[-1] if out.strip() else ""
            raise Fail("guest command %r exited %d%s" % (
                cmd.strip().splitlines()[0][:60], status,
                (": " + last[:120]) if last else ""))
        return out

    def state(self):
        """Guest view: sysfs ('sys'), debugfs counters ('cnt'), /proc/meminfo
        in bytes ('mem'), balloon lines of /proc/vmstat ('vmstat') and the
        bound devices ('devs')."""
        out = self.sh(r"""
echo @devs; for d in %s; do [ -d "$d" ] && echo "${d##*/}"; done
echo @sys; for d in %s; do [ -d "$d" ] || continue
  for f in size_bytes target_bytes page_bits num_blocks floor_bytes; do
    echo "$f $(cat $d/$f)"; done; break; done
echo @cnt; for c in %s; do [ -f "$c" ] && cat "$c"; break; done
echo @mem; cat /proc/meminfo
echo @vmstat; grep '^balloon' /proc/vmstat
true""" % (SYS_GLOB, SYS_GLOB, DBG_GLOB))
        st = {"devs": [], "sys": {}, "cnt": {}, "mem": {}, "vmstat": {}}
        sec = None
        for line in out.splitlines():
            if line.startswith("@"):
                sec = line[1:]
                continue
            parts = line.replace(":", " ").split()
            if not parts or sec is None:
                continue
            if sec == "devs":
                st["devs"].append(parts[0])
            elif len(parts) >= 2 and re.fullmatch(r"-?\d+", parts[1]):
                value = int(parts[1])
                if sec == "mem" and parts[2:3] == ["kB"]:
                    value *= KiB
                st[sec][parts[0]] = value
        return st

    def meminfo(self):
        return self.state()["mem"]

    def wait_size(self, expected, timeout=120):
        """Wait until the balloon holds `expected` bytes with no block in
        flight; returns state().  Fail on timeout."""
        out = self.sh(r"""
SECONDS=0
while :; do
  s=; f=
  for d in %s; do read -r s < "$d/size_bytes"; break; done
  for c in %s; do while read -r k v; do
    [ "$k" = in_flight_blocks ] && f=$v; done < "$c"; break; done
  [ "$s" = %d ] && [ "$f" = 0 ] && { echo "ok $SECONDS"; exit 0; }
  [ $SECONDS -ge %d ] && { echo "size_bytes ${s:-none} in_flight_blocks ${f:-none}"; exit 0; }
  sleep 0.05
done""" % (SYS_GLOB, DBG_GLOB, expected, timeout), timeout=timeout + 30)
        if not out.startswith("ok"):
            raise Fail("balloon did not settle at %d bytes (%s) within %d s: %s"
                       % (expected, mib(expected), timeout, out.strip()))
        return self.state()

    def modprobe(self):
        """Load the module if it is not loaded; the device must bind."""
        self.sh("grep -q '^virtio_balloon13 ' /proc/modules || "
                "modprobe virtio_balloon13")
        st = self.state()
        check(len(st["devs"]) == 1,
              "after modprobe %d devices are bound (%s), want 1",
              len(st["devs"]), " ".join(st["devs"]))
        return st

    def empty(self, timeout=120):
        """Module loaded, balloon at 0."""
        self.modprobe()
        self.ctl("resize", "0")
        return self.wait_size(0, timeout)

    def dmesg(self):
        return self.vm.dmesg().splitlines()

    def new_dmesg(self):
        """Kernel log lines since the current scenario started."""
        lines = self.dmesg()
        return lines[self.dmesg_mark:]

    def check_dmesg_clean(self, lines=None):
        lines = self.new_dmesg() if lines is None else lines
        bad = [ln for ln in lines if BAD_DMESG.search(ln)]
        check(not bad, "kernel log: %s", bad[0].strip()[:150] if bad else "")

    # -- the daemon --

    def ctl(self, *args, timeout=60, ok=True):
        """balloon13ctl --json ARGS -> the daemon's answer (a dict)."""
        argv = [CTL, "--control", self.ctl_path, "--json"] + [str(a) for a in args]
        t0 = time.monotonic()
        try:
            proc = subprocess.run(argv, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Fail("balloon13ctl %s did not answer in %d s"
                       % (" ".join(map(str, args)), timeout))
        debug("ctl (%.2f s, exit %d): %s -> %s" % (
            time.monotonic() - t0, proc.returncode, " ".join(map(str, args)),
            proc.stdout.strip()[:160]))
        try:
            answer = json.loads(proc.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise Fail("balloon13ctl %s exited %d printing no JSON: %s" % (
                " ".join(map(str, args)), proc.returncode,
                (proc.stderr.strip() or proc.stdout.strip())[:150]))
        if ok and (proc.returncode != 0 or not answer.get("ok")):
            raise Fail("balloon13ctl %s exited %d: %s" % (
                " ".join(map(str, args)), proc.returncode,
                answer.get("error") or proc.stderr.strip()[:150]))
        return answer

    def status(self):
        return self.ctl("status")

    def resident(self):
        """Host memory the guest RAM memfd holds, bytes."""
        return self.vm.guest_ram_resident()


# ---- scenarios ----------------------------------------------------------------

SCENARIOS = []


def scenario(name, group):
    def register(func):
        SCENARIOS.append((name, group, func))
        return func
    return register


# VM configurations: guest RAM and balloon13d options.
GROUPS = {
    "main": {"mem": "1536M", "daemon": []},
    "blocks2m": {"mem": "768M", "daemon": ["--page-bits", "21"]},
    "pb5": {"mem": "384M", "daemon": ["--page-bits", "5"]},
    "pb40": {"mem": "384M", "daemon": ["--page-bits", "40"]},
    "chaos": {"mem": "512M", "daemon": ["--chaos"]},
    "churn": {"mem": "1536M", "daemon": ["--hold-ms", "30"]},
}


@scenario("probe", "main")
def t_probe(g):
    """modprobe binds the device; sysfs page_bits 12, size 0; debugfs counters."""
    g.sh("if grep -q '^virtio_balloon13 ' /proc/modules; then "
         "rmmod virtio_balloon13; fi; modprobe virtio_balloon13")
    st = g.state()
    check(len(st["devs"]) == 1, "%d devices bound to virtio_balloon13 (%s), want 1",
          len(st["devs"]), " ".join(st["devs"]))
    sysfs = st["sys"]
    check_eq(sysfs.get("page_bits"), 12, "sysfs page_bits")
    check_eq(sysfs.get("size_bytes"), 0, "sysfs size_bytes")
    check_eq(sysfs.get("num_blocks"), 0, "sysfs num_blocks")
    check_eq(sysfs.get("target_bytes"), 0, "sysfs target_bytes")
    total = st["mem"]["MemTotal"]
    check_eq(total, g.base_memtotal, "MemTotal after modprobe")
    floor = max(AUTO_FLOOR_MIN, total // 16) // 4096 * 4096
    check_eq(sysfs.get("floor_bytes"), floor, "sysfs floor_bytes")
    missing = [k for k in CONTRACT_COUNTERS if k not in st["cnt"]]
    check(not missing, "debugfs counters lack %s", " ".join(missing))
    for k in ("blocks_inflated", "blocks_withdrawn", "requests_malformed",
              "requests_unknown", "targets_clamped", "in_flight_blocks",
              "alloc_failures", "num_blocks"):
        check_eq(st["cnt"].get(k, 0), 0, "counter " + k)
    params = g.sh("ls /sys/module/virtio_balloon13/parameters").split()
    missing = [p for p in MODULE_PARAMS if p not in params]
    check(not missing, "module parameters lack %s", " ".join(missing))
    ready = [ln for ln in g.new_dmesg() if "balloon ready" in ln]
    check(ready and "4096-byte blocks" in ready[-1],
          "no 'balloon ready: 4096-byte blocks' line in dmesg")
    s = g.status()
    check(s["driver_ready"], "balloon13d: driver_ready is false")
    check_eq(s["page_bits"], 12, "balloon13d page_bits")
    say("probe: %s bound, page_bits 12, floor %s, %d counters"
        % (st["devs"][0], mib(floor), len(st["cnt"])))


@scenario("inflate", "main")
def t_inflate(g):
    """inflate 512 MiB after memtouch: exact sizes, MemTotal, daemon bytes, host RAM freed."""
    g.empty()
    g.sh("memtouch 1100", timeout=120)
    st = g.state()
    free = st["mem"]["MemFree"]
    check(free > 700 * MiB, "only %s free after memtouch", mib(free))
    s0 = g.status()
    res0 = g.resident()
    rss0 = g.vm.qemu_rss().get("RssShmem", 0)
    t0 = time.monotonic()
    w = g.ctl("resize", 512 * MiB, "--wait", "--timeout", 120)
    check(w.get("reached") is True, "resize 512M --wait: reached is %r", w.get("reached"))
    st = g.wait_size(512 * MiB, timeout=60)
    secs = time.monotonic() - t0
    res1 = g.resident()
    rss1 = g.vm.qemu_rss().get("RssShmem", 0)
    s1 = g.status()
    check_eq(st["sys"]["size_bytes"], 512 * MiB, "sysfs size_bytes")
    check_eq(st["sys"]["num_blocks"], 512 * MiB >> 12, "sysfs num_blocks")
    check_eq(st["sys"]["target_bytes"], 512 * MiB, "sysfs target_bytes")
    check_eq(st["mem"]["MemTotal"], g.base_memtotal - 512 * MiB,
             "MemTotal (base %d - 512 MiB)" % g.base_memtotal)
    check_eq(s1["bytes_received"] - s0["bytes_received"], 512 * MiB,
             "balloon13d bytes_received increase")
    check_eq(s1["bytes_in_balloon"], s1["bytes_in_bitmap"],
             "balloon13d bytes_in_balloon (vs bytes_in_bitmap)")
    check_eq(s1["messages"]["rejected"], 0, "balloon13d rejected messages")
    check_eq(s1["punch"]["errors"], 0, "balloon13d punch errors")
    reclaimed = res0 - res1
    say("inflate: 512 MiB in %.2f s; host-resident guest RAM %s -> %s: "
        "reclaimed %s (QEMU RssShmem %s -> %s)"
        % (secs, mib(res0), mib(res1), mib(reclaimed), mib(rss0), mib(rss1)))
    check(reclaimed >= 500 * MiB,
          "host-resident guest RAM dropped by only %s (%s -> %s), want >= 500 MiB"
          % (mib(reclaimed), mib(res0), mib(res1)))


@scenario("stats", "main")
def t_stats(g):
    """balloon13ctl stats: MEMTOT/MEMFREE match /proc/meminfo, fresh."""
    st0 = g.modprobe()
    c0 = st0["cnt"]
    # MemFree moves on its own (per-cpu page lists drain over seconds after
    # a big free): compare with readings taken just before and just after.
    mem0 = g.meminfo()
    r1 = g.ctl("stats", "--timeout", 10)
    mem1 = g.meminfo()
    r2 = g.ctl("stats", "--timeout", 10)
    time.sleep(1.0)
    s = g.status()
    c1 = g.state()["cnt"]
    v1, v2 = r1["stats"]["values"], r2["stats"]["values"]
    for k in ("memtot", "memfree", "swap_in", "swap_out", "majflt", "minflt"):
        check(k in v1, "stats lack %s: %s", k, json.dumps(v1))
    total = mem1["MemTotal"]
    check(abs(v1["memtot"] - total) <= total / 100,
          "MEMTOT %d not within 1%% of MemTotal %d", v1["memtot"], total)
    check(0 < v1["memfree"] <= v1["memtot"],
          "MEMFREE %d not in (0, MEMTOT %d]", v1["memfree"], v1["memtot"])
    lo = min(mem0["MemFree"], mem1["MemFree"])
    hi = max(mem0["MemFree"], mem1["MemFree"])
    check(0.97 * lo <= v1["memfree"] <= 1.03 * hi,
          "MEMFREE %d not within 3%% of MemFree (%d before, %d after)",
          v1["memfree"], mem0["MemFree"], mem1["MemFree"])
    check_eq(v1["swap_in"], 0, "SWAP_IN (no swap)")
    check_eq(v1["swap_out"], 0, "SWAP_OUT (no swap)")
    for r in (r1, r2):
        check(r["stats"]["age_ms"] <= 2000, "stats age_ms %d > 2000",
              r["stats"]["age_ms"])
    check(r2["stats"]["seq"] > r1["stats"]["seq"],
          "second stats not newer: seq %d then %d",
          r1["stats"]["seq"], r2["stats"]["seq"])
    check(v2["minflt"] >= v1["minflt"], "MINFLT went back: %d then %d",
          v1["minflt"], v2["minflt"])
    check_eq(s["stats"]["seq"], r2["stats"]["seq"], "status stats seq")
    check(s["stats"]["age_ms"] >= 900,
          "status stats age_ms %d 1 s after the last stats (want >= 900)",
          s["stats"]["age_ms"])
    check_eq(c1["requests_stats"] - c0["requests_stats"], 2,
             "guest requests_stats increase")
    check_eq(c1["messages_stats"] - c0["messages_stats"], 2,
             "guest messages_stats increase")
    say("stats: MEMTOT %d (MemTotal %d), MEMFREE %d (MemFree %d/%d), seq %d -> %d"
        % (v1["memtot"], total, v1["memfree"], mem0["MemFree"], mem1["MemFree"],
           r1["stats"]["seq"], r2["stats"]["seq"]))


@scenario("deflate", "main")
def t_deflate(g):
    """deflate 512 MiB -> 0: MemTotal exact; touching memory withdraws it."""
    st = g.modprobe()
    if st["sys"]["size_bytes"] != 512 * MiB or st["cnt"]["in_flight_blocks"]:
        g.ctl("resize", 512 * MiB)
        st = g.wait_size(512 * MiB)
    check_eq(st["mem"]["MemTotal"], g.base_memtotal - 512 * MiB,
             "MemTotal at 512 MiB")
    s0 = g.status()
    res0 = g.resident()
    t0 = time.monotonic()
    g.ctl("resize", 0)
    st = g.wait_size(0, timeout=60)
    secs = time.monotonic() - t0
    check_eq(st["sys"]["size_bytes"], 0, "sysfs size_bytes")
    check_eq(st["sys"]["num_blocks"], 0, "sysfs num_blocks")
    check_eq(st["mem"]["MemTotal"], g.base_memtotal, "MemTotal after deflate")
    c = st["cnt"]
    check_eq(c["blocks_inflated"] - c["blocks_withdrawn"], 0,
             "blocks_inflated - blocks_withdrawn")
    # Use (almost) all free memory: the freed blocks get touched again.
    touch = (st["mem"]["MemFree"] - 48 * MiB) // MiB
    g.sh("memtouch %d" % touch, timeout=180)
    s1 = g.status()
    res1 = g.resident()
    withdrawn = s0["bytes_in_balloon"] - s1["bytes_in_balloon"]
    say("deflate: 512 MiB -> 0 in %.2f s; after touching %d MiB the daemon "
        "counts %s withdrawn, %s still in the balloon; host-resident +%s"
        % (secs, touch, mib(withdrawn), mib(s1["bytes_in_balloon"]),
           mib(res1 - res0)))
    check(withdrawn >= 384 * MiB,
          "only %s of 512 MiB withdrawn after touching %d MiB"
          % (mib(withdrawn), touch))
    check_eq(s1["bytes_in_balloon"] + s1["blocks_withdrawn"] * s1["block_size"],
             s1["bytes_in_bitmap"], "daemon in_balloon + withdrawn")
    check(res1 - res0 >= 384 * MiB,
          "host-resident guest RAM grew by only %s" % mib(res1 - res0))


@scenario("unload", "main")
def t_unload(g):
    """rmmod of a full balloon, then 20 modprobe/inflate/rmmod cycles leak nothing."""
    base = g.base_memtotal
    g.modprobe()
    g.ctl("resize", 256 * MiB)
    st = g.wait_size(256 * MiB)
    dev = st["devs"][0]
    check_eq(st["mem"]["MemTotal"], base - 256 * MiB, "MemTotal at 256 MiB")
    g.sh("rmmod virtio_balloon13")
    st = g.state()
    check_eq(st["mem"]["MemTotal"], base, "MemTotal after rmmod of a 256 MiB balloon")
    check_eq(st["devs"], [], "devices bound after rmmod")
    g.sh("! grep -q '^virtio_balloon13 ' /proc/modules && "
         "! [ -e /sys/kernel/debug/virtio_balloon13 ]")
    vm0 = st["vmstat"]
    check_eq(vm0.get("balloon_inflate"), vm0.get("balloon_deflate"),
             "balloon_deflate (vs balloon_inflate) after rmmod")

    def usage():
        # Free pages on the per-cpu lists are not in MemFree; on 6.12 they
        # can amount to tens of MiB: count them (/proc/zoneinfo) as free.
        out = g.sh("sync; echo 3 > /proc/sys/vm/drop_caches; sleep 0.5; "
                   "cat /proc/meminfo; awk '$1 == \"count:\" { n += $2 } "
                   "END { print \"PcpFree:\", n * 4, \"kB\" }' /proc/zoneinfo")
        m = {}
        for line in out.splitlines():
            p = line.replace(":", " ").split()
            if len(p) >= 2:
                m[p[0]] = int(p[1]) * KiB
        return {"free+caches": (m["MemFree"] + m["PcpFree"] + m["Buffers"]
                                + m["Cached"]),
                "Slab": m["Slab"], "SUnreclaim": m["SUnreclaim"],
                "MemTotal": m["MemTotal"]}

    cycles = 20
    size = 64 * MiB
    g.ctl("resize", size)      # delivered when the driver posts its buffers
    u0 = usage()
    t0 = time.monotonic()
    slowest = (0.0, 0, [])
    for i in range(cycles):
        steps = [time.monotonic()]
        g.sh("modprobe virtio_balloon13")
        steps.append(time.monotonic())
        w = g.ctl("resize", size, "--wait", "--timeout", 60)
        check(w.get("reached") is True, "cycle %d: resize --wait not reached", i + 1)
        steps.append(time.monotonic())
        st = g.wait_size(size, timeout=60)
        check_eq(st["devs"], [dev], "cycle %d: bound device" % (i + 1))
        check_eq(st["mem"]["MemTotal"], base - size,
                 "cycle %d: MemTotal with 64 MiB ballooned" % (i + 1))
        steps.append(time.monotonic())
        out = g.sh("rmmod virtio_balloon13 && grep MemTotal /proc/meminfo")
        steps.append(time.monotonic())
        total = int(out.split()[1]) * KiB
        check_eq(total, base, "cycle %d: MemTotal after rmmod" % (i + 1))
        if steps[-1] - steps[0] > slowest[0]:
            slowest = (steps[-1] - steps[0], i + 1,
                       [b - a for a, b in zip(steps, steps[1:])])
    secs = time.monotonic() - t0
    say("unload: %d cycles in %.1f s; slowest, cycle %d: %.1f s (modprobe %.1f, "
        "resize --wait %.1f, settle %.1f, rmmod %.1f)"
        % ((cycles, secs, slowest[1], slowest[0]) + tuple(slowest[2])))
    vm1 = g.state()["vmstat"]
    check_eq(vm1.get("balloon_inflate"), vm1.get("balloon_deflate"),
             "balloon_deflate (vs balloon_inflate)")
    check_eq(vm1["balloon_inflate"] - vm0["balloon_inflate"],
             cycles * size // 4096, "pages inflated in %d cycles" % cycles)
    # Tolerances (noise measured over 20 cycles: up to ~40 KiB of slab,
    # mostly objects still waiting for RCU, and under 100 KiB of free
    # memory once the per-cpu lists are counted): a leaked slab object of
    # 4 KiB or more per cycle shows in SUnreclaim, a leaked page-list
    # buffer (64 KiB) or balloon chunk per cycle in free+caches.  Transient
    # noise recedes, a leak does not: measure again for a few seconds
    # before calling it a leak.
    tol = {"SUnreclaim": 64 * KiB, "Slab": 128 * KiB, "free+caches": 1 * MiB}
    for attempt in range(5):
        u1 = usage()
        delta = {k: u1[k] - u0[k] for k in u0}
        over = [k for k in ("SUnreclaim", "Slab") if abs(delta[k]) > tol[k]]
        if -delta["free+caches"] > tol["free+caches"]:
            over.append("free+caches")
        if not over:
            break
        time.sleep(1.0)
    say("unload: after - before (%d measurement%s): %s" % (
        attempt + 1, "s" if attempt else "",
        ", ".join("%s %+d KiB (tolerance %d)" % (k, delta[k] // KiB, tol[k] // KiB)
                  for k in ("free+caches", "Slab", "SUnreclaim"))))
    for k in ("SUnreclaim", "Slab"):
        check(abs(delta[k]) <= tol[k],
              "%s changed by %+d KiB over %d cycles (tolerance %d KiB)"
              % (k, delta[k] // KiB, cycles, tol[k] // KiB))
    check(-delta["free+caches"] <= tol["free+caches"],
          "MemFree+per-cpu free+Buffers+Cached dropped by %d KiB over %d cycles "
          "(tolerance %d KiB)" % (-delta["free+caches"] // KiB, cycles,
                                  tol["free+caches"] // KiB))


@scenario("blocks-2m", "blocks2m")
def t_blocks_2m(g):
    """--page-bits 21: 256 MiB in 2 MiB aligned blocks, sizes agree."""
    st = g.empty()
    check_eq(st["sys"]["page_bits"], 21, "sysfs page_bits")
    s0 = g.status()
    size = 256 * MiB
    w = g.ctl("resize", size, "--wait", "--timeout", 120)
    check(w.get("reached") is True, "resize --wait: reached is %r", w.get("reached"))
    st = g.wait_size(size)
    s1 = g.status()
    rng = g.ctl("ranges")
    bs = 2 * MiB
    check_eq(st["sys"]["size_bytes"], size, "sysfs size_bytes")
    check_eq(st["sys"]["num_blocks"] * bs, size, "num_blocks * 2 MiB")
    check_eq(st["mem"]["MemTotal"], g.base_memtotal - size, "MemTotal")
    check_eq(s1["block_size"], bs, "balloon13d block_size")
    check_eq(s1["bytes_received"] - s0["bytes_received"], size,
             "balloon13d bytes_received increase")
    check_eq(s1["bytes_in_bitmap"], size, "balloon13d bytes_in_bitmap")
    check_eq(s1["messages"]["rejected"], 0, "balloon13d rejected messages")
    bad = {k: v for k, v in s1["rejects"].items() if v}
    check(not bad, "balloon13d rejects: %s", bad)
    check_eq(rng["block_size"], bs, "ranges block_size")
    starts = [r["start"] for r in rng["ranges"]]
    unaligned = [hex(a) for a in starts if a % bs]
    check(not unaligned, "unaligned ranges: %s", " ".join(unaligned[:5]))
    check_eq(sum(r["blocks"] for r in rng["ranges"]) * bs, size,
             "bytes in the ranges listing")
    check_eq(rng["blocks"] * bs, size, "ranges blocks * 2 MiB")
    regions = s1["regions"]
    for r in rng["ranges"]:
        end = r["start"] + r["blocks"] * bs
        check(any(x["gpa"] <= r["start"] and end <= x["gpa"] + x["size"]
                  for x in regions),
              "range %#x+%d blocks outside guest RAM", r["start"], r["blocks"])
    g.ctl("resize", 0)
    st = g.wait_size(0)
    check_eq(st["mem"]["MemTotal"], g.base_memtotal, "MemTotal after resize 0")
    say("blocks-2m: 256 MiB as %d blocks in %d ranges, all 2 MiB aligned"
        % (rng["blocks"], len(rng["ranges"])))


def bad_page_bits(g, bits):
    out = g.sh("modprobe virtio_balloon13; echo modprobe=$?", ok=None)
    st = g.state()
    check_eq(st["devs"], [], "devices bound with page_bits %d" % bits)
    # The device is there (ID 13) but has no driver.
    out = g.sh(r"""for d in /sys/bus/virtio/devices/*; do
  [ "$(cat $d/device)" = 0x000d ] || continue
  echo "dev ${d##*/} driver=$([ -e $d/driver ] && basename $(readlink $d/driver) || echo none)"
done""")
    devs = [ln.split() for ln in out.splitlines() if ln.startswith("dev ")]
    check(len(devs) == 1, "%d virtio devices with ID 13, want 1", len(devs))
    check_eq(devs[0][2], "driver=none", "driver of %s" % devs[0][1])
    lines = g.new_dmesg()
    named = [ln for ln in lines if re.search(r"page_bits %d\b" % bits, ln)]
    check(named, "no dmesg line naming page_bits %d", bits)
    check("unsupported" in named[0], "dmesg line not clear: %s", named[0].strip())
    g.check_dmesg_clean(lines)
    # Healthy: runs commands, allocates memory, nothing ballooned.
    g.sh("memtouch --verify 128 && echo alive | grep -q alive", timeout=60)
    check_eq(g.meminfo()["MemTotal"], g.base_memtotal, "MemTotal")
    s = g.status()
    check(not s["driver_ready"], "balloon13d sees the driver ready")
    check_eq(s["blocks_received"], 0, "balloon13d blocks_received")
    g.sh("rmmod virtio_balloon13")
    say("bad-page-bits-%d: %s" % (bits, named[0].strip()))


@scenario("bad-page-bits-5", "pb5")
def t_bad_page_bits_5(g):
    """--page-bits 5: probe refused with a clear message, guest healthy."""
    bad_page_bits(g, 5)


@scenario("bad-page-bits-40", "pb40")
def t_bad_page_bits_40(g):
    """--page-bits 40: probe refused with a clear message, guest healthy."""
    bad_page_bits(g, 40)


@scenario("hostile", "chaos")
def t_hostile(g):
    """--chaos: malformed/unknown/absurd requests counted exactly, resize still works."""
    st = g.empty()
    c0 = st["cnt"]
    s0 = g.status()
    sent = (("short", 3), ("long", 2), ("unknown", 4), ("huge", 1), ("overram", 2))
    for kind, n in sent:
        a = g.ctl("inject", kind, n)
        check_eq(a.get("queued"), n, "inject %s %d: queued" % (kind, n))
    want_d = {k: s0["injected"][k] + n for k, n in sent}
    n = dict(sent)
    want_g = {"requests_malformed": n["short"] + n["long"],
              "requests_unknown": n["unknown"],
              "targets_clamped": n["huge"] + n["overram"]}
    deadline = time.monotonic() + 60
    while g.status()["injected"] != want_d:
        check(time.monotonic() < deadline,
              "balloon13d delivered %s in 60 s, want %s",
              g.status()["injected"], want_d)
        time.sleep(0.5)
    deadline = time.monotonic() + 15
    while True:
        c = g.state()["cnt"]
        got_g = {k: c[k] - c0[k] for k in want_g}
        if got_g == want_g or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    time.sleep(1.0)        # nothing more may trickle in
    c = g.state()["cnt"]
    for k, v in want_g.items():
        check_eq(c[k] - c0[k], v, "guest %s increase" % k)
    check_eq(c["requests_resize"] - c0["requests_resize"],
             n["huge"] + n["overram"], "guest requests_resize increase")
    g.sh("echo alive")
    g.check_dmesg_clean()
    # The clamped targets sent the balloon toward its maximum; a normal
    # resize must take over.
    g.ctl("resize", 64 * MiB)
    st = g.wait_size(64 * MiB, timeout=120)
    check_eq(st["mem"]["MemTotal"], g.base_memtotal - 64 * MiB, "MemTotal at 64 MiB")
    g.ctl("resize", 0)
    st = g.wait_size(0, timeout=60)
    check_eq(st["mem"]["MemTotal"], g.base_memtotal, "MemTotal after resize 0")
    g.sh("memtouch --verify 128", timeout=60)
    s = g.status()
    check_eq(s["messages"]["rejected"], 0, "balloon13d rejected messages")
    say("hostile: sent %s; guest counted malformed %d, unknown %d, clamped %d"
        % (", ".join("%s %d" % kv for kv in sent),
           *(c[k] - c0[k] for k in ("requests_malformed", "requests_unknown",
                                     "targets_clamped"))))


def parse_sums(out):
    """'sum HASH NAME' lines -> {NAME: HASH}."""
    sums = {}
    for line in out.splitlines():
        p = line.split()
        if len(p) == 3 and p[0] == "sum" and re.fullmatch(r"[0-9a-f]{64}", p[1]):
            sums[p[2]] = p[1]
    return sums


@scenario("churn", "churn")
def t_churn(g):
    """256 MiB of checksummed data survive 50 random resizes (--hold-ms 30)."""
    seed = g.seed
    rng = random.Random(seed)
    say("churn: seed %d (rerun with --seed %d)" % (seed, seed))
    g.empty()

    def write(name, size_mib):
        """Shell: fill /tmp/churn/NAME from /dev/urandom and print the
        sha256 computed while writing it."""
        return ("h=$(dd if=/dev/urandom bs=1M count=%d 2>/dev/null | "
                "tee /tmp/churn/%s | sha256sum) && echo \"sum ${h%%%% *} %s\""
                % (size_mib, name, name))

    # The data held all along: 16 files of 16 MiB.
    nfiles, fmib = 16, 16
    t0 = time.monotonic()
    out = g.sh("mkdir -p /tmp/churn && cd /tmp/churn && "
               + " && ".join(write("f%d" % i, fmib) for i in range(nfiles)),
               timeout=600)
    sums = parse_sums(out)
    check_eq(len(sums), nfiles, "files written")
    say("churn: %d MiB of random data in %d tmpfs files written in %.1f s"
        % (nfiles * fmib, nfiles, time.monotonic() - t0))
    n, smib = 50, 2
    free = g.meminfo()["MemFree"]
    top = free - 320 * MiB - n * smib * MiB   # room for the workload below
    check(top > 256 * MiB, "only %s free after writing the files", mib(free))
    inflight_seen = bounces = 0
    t0 = time.monotonic()
    for i in range(n):
        target = rng.randrange(0, top)
        g.ctl("resize", target)
        bounce = rng.random() < 0.3
        if bounce:
            # Turn round while inflating, and freeze the device while the guest
            # works: blocks named by messages the device has not processed
            # are in flight and must not be freed (and reused) before it
            # has; a driver that did would get them discarded under its feet.
            time.sleep(rng.uniform(0.05, 0.3))
            target = rng.randrange(0, target + 1)
            g.ctl("resize", target)
            bounces += 1
            os.kill(g.vm.backend_pid, signal.SIGSTOP)
        # Meanwhile the guest writes a new file (kept to the end) and uses
        # fresh memory (blocks the balloon may just have freed), checking
        # what it wrote.
        try:
            out = g.sh("cd /tmp/churn && c=$(grep '^in_flight_blocks ' %s) && "
                       "echo \"inflight=${c##* }\" && %s && "
                       "memtouch --verify 32 >/dev/null"
                       % (DBG_GLOB, write("s%d" % i, smib)), timeout=120)
        finally:
            if bounce:
                os.kill(g.vm.backend_pid, signal.SIGCONT)
        m = re.search(r"inflight=(\d+)", out)
        new = parse_sums(out)
        check(m and list(new) == ["s%d" % i],
              "churn step %d: unexpected output %r", i, out[:100])
        inflight_seen += int(m.group(1)) > 0
        sums.update(new)
        if i % 5 == 4:
            g.wait_size(target // 4096 * 4096, timeout=120)
        else:
            time.sleep(rng.uniform(0, 0.2))
    secs = time.monotonic() - t0
    g.ctl("resize", 0)
    st = g.wait_size(0, timeout=120)
    out = g.sh("cd /tmp/churn && for f in *; do h=$(sha256sum < $f) && "
               "echo \"sum ${h%% *} $f\"; done", timeout=300)
    got = parse_sums(out)
    bad = sorted(f for f in sums if got.get(f) != sums[f])
    check(not bad, "checksum mismatch after churn: %s", " ".join(bad))
    check_eq(sorted(got), sorted(sums), "files in /tmp/churn")
    check_eq(st["mem"]["MemTotal"], g.base_memtotal, "MemTotal after resize 0")
    c = st["cnt"]
    check_eq(c["blocks_inflated"] - c["blocks_withdrawn"], 0,
             "blocks_inflated - blocks_withdrawn")
    check_eq(c["num_blocks"], 0, "counter num_blocks")
    check_eq(st["sys"]["num_blocks"], 0, "sysfs num_blocks")
    s = g.status()
    check_eq(s["messages"]["rejected"], 0, "balloon13d rejected messages")
    g.sh("rm -rf /tmp/churn")
    say("churn: %d resizes (%d turned round mid-inflation, device frozen meanwhile) in %.1f s, targets up "
        "to %s, hold 30 ms; blocks in flight at %d steps; %d blocks inflated "
        "and withdrawn; %d checksums match"
        % (n, bounces, secs, mib(top), inflight_seen, c["blocks_inflated"],
           len(sums)))


# ---- runner ---------------------------------------------------------------------

def indent(text, n):
    lines = text.rstrip().splitlines()[-n:]
    return "\n".join("    | " + ln for ln in lines)


class Runner:
    def __init__(self, args):
        self.args = args
        self.results = []          # (series, name, ok, seconds)

    def report(self, series, name, ok, secs, reason=None, details=""):
        self.results.append((series, name, ok, secs))
        say("%s: %.1f s" % (name, secs))
        if ok:
            print("PASS e2e/%s/%s" % (series, name), flush=True)
        else:
            reason = " ".join(str(reason).split())[:300]
            print("FAIL e2e/%s/%s: %s" % (series, name, reason), flush=True)
            if details:
                print(details, flush=True)

    def failure_details(self, g, vm, exc):
        parts = []
        if VERBOSE and not isinstance(exc, Fail):
            parts.append("    --- traceback:\n" + indent(
                "".join(traceback.format_exception(type(exc), exc,
                                                   exc.__traceback__)), 30))
        text = None
        if vm is not None and vm._cmd is not None and not vm._broken:
            try:
                text = vm.dmesg()
            except vmlib.VMError:
                text = None
        if text is not None:
            parts.append("    --- guest dmesg (tail):\n" + indent(text, 25))
        elif vm is not None and vm.tmpdir:
            parts.append("    --- guest console (tail):\n"
                         + indent(vm.console_log(), 25))
        if vm is not None and vm.tmpdir:
            parts.append("    --- balloon13d log (tail):\n"
                         + indent(vm.backend_log() or "(empty)", 15))
        return "\n".join(parts)

    def run_group(self, series, ko, group, scenarios):
        cfg = GROUPS[group]
        page_bits = 12
        if "--page-bits" in cfg["daemon"]:
            page_bits = int(cfg["daemon"][cfg["daemon"].index("--page-bits") + 1])
        daemon_args = ["--control", "{tmpdir}/ctl.sock"] + cfg["daemon"]
        t0 = time.monotonic()
        vm = vmlib.VM(series=series, mem=cfg["mem"], modules=[ko],
                      backend=DAEMON, backend_args=daemon_args,
                      keep_tmp=self.args.keep)
        try:
            vm.start()
        except (vmlib.VMError, OSError) as e:
            reason = "VM (%s, balloon13d %s) did not start: %s" % (
                cfg["mem"], " ".join(cfg["daemon"]), str(e).splitlines()[0])
            for name, _ in scenarios:
                self.report(series, name, False, 0.0, reason,
                            indent(str(e), 30) if name == scenarios[0][0] else "")
            return
        try:
            say("%s: VM '%s' (%s, balloon13d %s) booted in %.1f s%s"
                % (vm.kver, group, cfg["mem"], " ".join(cfg["daemon"]) or "defaults",
                   vm.boot_seconds, " (kept: %s)" % vm.tmpdir if self.args.keep else ""))
            g = Guest(vm, series, cfg["mem"], page_bits)
            g.seed = self.args.seed
            broken = None
            try:
                g.base_memtotal = g.meminfo()["MemTotal"]
            except (Fail, vmlib.VMError) as e:
                broken = "guest unusable after boot: %s" % str(e).splitlines()[0]
            for name, func in scenarios:
                if broken:
                    self.report(series, name, False, 0.0, broken)
                    continue
                t1 = time.monotonic()
                try:
                    g.dmesg_mark = len(g.dmesg())
                    func(g)
                    g.check_dmesg_clean()
                except Fail as e:
                    self.report(series, name, False, time.monotonic() - t1, e,
                                self.failure_details(g, vm, e))
                except (vmlib.VMError, OSError) as e:
                    # OSError: the command channel broke (QEMU went away).
                    first = (str(e).splitlines() or [type(e).__name__])[0]
                    if isinstance(e, OSError):
                        first = "%s: %s" % (type(e).__name__, first)
                        try:
                            vm.qemu_proc.wait(5)
                        except subprocess.TimeoutExpired:
                            pass
                        vm._broken = vm._broken or first
                    if vm.qemu_proc.poll() is not None:
                        if "QEMU exited" not in first:
                            first += " (QEMU exited with status %d)" % (
                                vm.qemu_proc.returncode)
                        panic = re.findall(r"Kernel panic - not syncing: .*|"
                                           r"BUG: .*|Oops: .*", vm.console_log())
                        if panic:
                            first += " (guest: %s)" % panic[0].strip()
                    self.report(series, name, False, time.monotonic() - t1,
                                "VM: " + first, self.failure_details(g, vm, e))
                    if vm._broken or vm.qemu_proc.poll() is not None:
                        broken = "VM unusable after %s: %s" % (name, first)
                except Exception as e:  # a bug in this script: still report
                    self.report(series, name, False, time.monotonic() - t1,
                                "%s: %s" % (type(e).__name__, e),
                                indent(traceback.format_exc(), 30))
                else:
                    self.report(series, name, True, time.monotonic() - t1)
        finally:
            vm.close()
        say("VM '%s' done in %.1f s" % (group, time.monotonic() - t0))


def build(series_list):
    """make -s host, and the module for each series -> {series: ko or error}."""
    t0 = time.monotonic()
    proc = subprocess.run(["make", "-s", "-C", TOP, "host"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    host_err = None
    if proc.returncode != 0:
        host_err = "make host failed: " + (proc.stdout.strip().splitlines() or ["?"])[-1]
        print(indent(proc.stdout, 20), flush=True)
    say("make host: %.1f s" % (time.monotonic() - t0))
    kos = {}
    for series in series_list:
        t0 = time.monotonic()
        proc = subprocess.run(["bash", os.path.join(TOP, "scripts", "build-module.sh"),
                               series], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines or not os.path.isfile(lines[-1]):
            kos[series] = "module build for %s failed: %s" % (
                series, (proc.stderr.strip().splitlines() or ["?"])[-1])
            print(indent(proc.stderr, 20), flush=True)
        else:
            kos[series] = lines[-1]
        say("module for %s: %.1f s" % (series, time.monotonic() - t0))
        if host_err:
            kos[series] = host_err
    return kos


def main():
    global VERBOSE

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            self.exit(2, "run.py: %s (see --help)\n" % message)

    p = Parser(prog="tests/e2e/run.py",
               description="virtio_balloon13 end-to-end scenarios in QEMU VMs")
    p.add_argument("--series", default="6.1,6.12",
                   help="kernel series, comma separated (default 6.1,6.12)")
    p.add_argument("-k", dest="names", default="",
                   help="run only scenarios whose name contains one of these "
                   "comma-separated strings")
    p.add_argument("--seed", type=int, default=None,
                   help="PRNG seed of the churn scenario (default: random)")
    p.add_argument("--keep", action="store_true", help="keep the VMs' temp dirs")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show every guest command and daemon request")
    p.add_argument("--list", action="store_true", help="list the scenarios")
    a = p.parse_args()
    VERBOSE = a.verbose
    if a.list:
        for name, group, func in SCENARIOS:
            doc = (func.__doc__ or "").strip().splitlines()
            print("%-18s VM %-9s %s" % (name, group, doc[0] if doc else ""))
        return 0
    series_list = [s for s in a.series.split(",") if s]
    for s in series_list:
        if not re.fullmatch(r"\d+\.\d+(-debug)?", s):
            p.error("bad series %r (want e.g. 6.1,6.12)" % s)
    keys = [k for k in a.names.split(",") if k]
    chosen = [(n, grp, f) for n, grp, f in SCENARIOS
              if not keys or any(k in n for k in keys)]
    if not chosen:
        p.error("no scenario matches -k %s (--list shows them)" % a.names)
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 31)

    t_start = time.monotonic()
    print("e2e: %d scenarios on %s, churn seed %d"
          % (len(chosen), ", ".join(series_list), a.seed), flush=True)
    kos = build(series_list)
    runner = Runner(a)
    for series in series_list:
        t0 = time.monotonic()
        print("== e2e %s" % series, flush=True)
        groups = []
        for n, grp, f in chosen:
            if grp not in groups:
                groups.append(grp)
        for grp in groups:
            scen = [(n, f) for n, g2, f in chosen if g2 == grp]
            if not os.path.isfile(kos[series]):
                for name, _ in scen:
                    runner.report(series, name, False, 0.0, kos[series])
                continue
            runner.run_group(series, kos[series], grp, scen)
        say("series %s: %.1f s" % (series, time.monotonic() - t0))

    failed = [r for r in runner.results if not r[2]]
    print("e2e timings (s):", flush=True)
    names = [n for n, _, _ in chosen]
    print("  %-18s %s" % ("scenario", " ".join("%8s" % s for s in series_list)))
    for name in names:
        row = []
        for s in series_list:
            t = [r[3] for r in runner.results if r[0] == s and r[1] == name]
            row.append("%8.1f" % t[0] if t else "%8s" % "-")
        print("  %-18s %s" % (name, " ".join(row)))
    print("e2e: %d passed, %d failed in %.1f s" % (
        len(runner.results) - len(failed), len(failed), time.monotonic() - t_start),
        flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
