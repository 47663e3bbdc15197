"""What every end-to-end scenario module shares: assertions, progress
output, the Guest a scenario drives, and the scenario/VM-group registry.

A scenario module (tests/e2e/scenarios/<topic>.py) declares VM groups and
scenarios:

    from e2elib import group, scenario, check, check_eq, say, MiB

    group("main", mem="1536M")                      # balloon13d defaults
    group("blocks2m", mem="768M", page_bits=21)

    @scenario("probe", "main", devices=("vu", "native"))
    def t_probe(g):
        ...

Scenarios of one group share one VM per (series, device), in the order
they were registered; each sets up its own preconditions, so `-k` can run
any of them alone.  Python 3 standard library only.
"""

import json
import os
import re
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "scripts"))
import vm as vmlib  # noqa: E402,F401  (scripts/vm.py)
from splat import SPLAT  # noqa: E402  (scripts/splat.py: the one list)

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
MODULE_PARAMS = ("floor_mib", "pressure_release", "shrinker")
# The hold-off after the last release under pressure (admin guide), s.
PRESSURE_HOLD_S = 5.0
# Free page reporting counts as paused after this long without a REPORT
# ending (the page reporting core reports in bursts 2 s apart), s.
REPORT_QUIET_S = 1.0
# Kernel messages that must never appear: scripts/splat.py's list, the
# one KUnit and the debug kernel's checks use too.
BAD_DMESG = SPLAT
AUTO_FLOOR_MIN = 128 * MiB      # the driver's automatic floor (admin guide)
# Device 13's feature bits (include/uapi/linux/virtio_balloon13.h).
F_WITHDRAW = 0
F_REPORTING = 1
F_FULL_STATS = 2
F_PRESSURE_RELEASE = 3

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


class Skip(Exception):
    """The scenario does not apply to this VM (e.g. the device does not
    offer a feature bit it needs); the message says why."""


def check(cond, fmt, *args):
    if not cond:
        raise Fail(fmt % args if args else fmt)


def check_eq(actual, expected, what):
    if actual != expected:
        raise Fail("%s is %r, want %r" % (what, actual, expected))


# ---- the guest and its daemon ----------------------------------------------

class Guest:
    """One booted VM with device 13 attached, and what scenarios need.

    vm      the scripts/vm.py VM
    dev     the host side of device 13 (devices.py): g.dev.resize(),
            g.dev.status(), g.dev.stats(), ... work the same for every
            device kind; g.ctl() is balloon13d's own control socket
    series  kernel series ("6.1", "6.12", "6.12-debug")
    label   series, plus the device's suffix ("6.12-native")
    cfg     the VM group's configuration (see group())
    """

    def __init__(self, vm, dev, series, cfg):
        self.vm = vm
        self.dev = dev
        self.series = series
        self.label = series + dev.suffix
        self.cfg = cfg
        self.mem = cfg["mem"]
        self.page_bits = cfg["page_bits"]
        self.ctl_path = vm.path("ctl.sock")
        self.base_memtotal = None   # MemTotal with the balloon empty
        self.dmesg_mark = None      # kmsg_mark() when the scenario started
        self.seed = None

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

    def kasan_quarantine(self):
        """The most KASAN's quarantine of freed slab objects may hold on
        this guest's kernel: 1/32 of RAM (MemTotal with the balloon empty)
        on the debug kernel, a bound it computes again only once it
        reaches the last one; 0 on kernels without KASAN."""
        if not self.series.endswith("-debug"):
            return 0
        return self.base_memtotal // 32

    def features(self):
        """The feature bits negotiated with device 13, as a set of bit
        numbers (the virtio core's sysfs 'features': one 0/1 per bit)."""
        out = self.sh("for d in %s; do cat $d/features; break; done" % SYS_GLOB)
        bits = out.strip()
        check(re.fullmatch(r"[01]+", bits), "features file reads %r", bits)
        return {i for i, c in enumerate(bits) if c == "1"}

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
        self.resize(0)
        return self.wait_size(0, timeout)

    def report_state(self):
        """(free page reporting active, REPORT messages ended so far: sent
        and returned, or aborted; bytes the returned ones named; how many
        were aborted) from the driver's debugfs counters; an older driver
        without them reads (False, 0, 0, 0)."""
        c = self.state()["cnt"]
        return (bool(c.get("reporting_active")),
                c.get("messages_report", 0) + c.get("report_aborted", 0),
                c.get("report_bytes", 0), c.get("report_aborted", 0))

    def without_reports(self, measure, attempts=8, timeout=120,
                        widen=False):
        """Run measure() until no free page report ended while it ran, and
        return what it returned.

        While a REPORT message is on the device, the free pages it names
        are off the guest's free lists (the page reporting core takes up
        to 32 blocks of up to 4 MiB at a time): MemFree and MemAvailable
        dip by up to 128 MiB for as long as the device takes.  A STATS
        answer built in such a dip disagrees with /proc/meminfo read just
        before and after it, which both missed the dip.  measure() reads
        meminfo, asks for STATS and reads meminfo again; it counts only if
        no REPORT ended from before its first reading to after its last.
        A report that started meanwhile and is still on the device at the
        last reading keeps its pages off the free lists then too, so that
        reading shows the dip; one on the device throughout lowers every
        reading alike.  (The core puts a report's pages back right after
        its last REPORT ends, in the same kernel work item: a first
        reading in the microseconds between, in these one-vCPU guests
        only on a preemptible kernel, is not guarded against.)  Before
        attempt i + 1: a pause of i s in reporting, which runs in bursts
        2 s apart.

        With widen, a guest that reports through every attempt (the debug
        kernel frees pages all the time: KASAN's quarantine) does not
        fail: the return is (result, bytes), where bytes is 0 for a clean
        attempt and otherwise the bytes named by the REPORTs that ended
        during the last attempt.  No reading in that attempt can be off
        from another by more than those bytes on account of reporting, so
        the caller widens its bounds on free memory by them.  An aborted
        report (the device stopping) is never widened over."""
        active, n0, b0, a0 = self.report_state()
        for i in range(attempts):
            if i and active:
                # Longer each time: past a burst's end at the latest.
                self.reports_quiet(REPORT_QUIET_S * i, timeout)
                active, n0, b0, a0 = self.report_state()
            result = measure()
            active, n1, b1, a1 = self.report_state()
            if n1 == n0:
                return (result, 0) if widen else result
            say("free page reporting: %d REPORT message(s) ended during "
                "the readings (attempt %d of %d)" % (n1 - n0, i + 1,
                                                     attempts))
            if widen and i == attempts - 1 and a1 == a0:
                say("free page reporting: bounds on free memory widened by "
                    "the %s those REPORTs named" % mib(b1 - b0))
                return result, b1 - b0
            n0, b0, a0 = n1, b1, a1
        raise Fail("free page reporting ran during each of %d attempts to "
                   "read statistics" % attempts)

    def reports_quiet(self, quiet_s=REPORT_QUIET_S, timeout=120):
        """Wait until no REPORT message ended for quiet_s seconds (guest
        time); return the count of those that did."""
        out = self.sh(r"""
c=; for f in %s; do c=$f; break; done
now() { read -r u _ < /proc/uptime; echo "${u%%.*}${u#*.}"; }
cnt() { awk '$1 == "messages_report" || $1 == "report_aborted" { s += $2 }
  END { print s + 0 }' "$c"; }
t0=$(now); n=$(cnt); since=$t0
while :; do
  t=$(now); m=$(cnt)
  [ "$m" != "$n" ] && { n=$m; since=$t; }
  [ $((t - since)) -ge %d ] && { echo "quiet $n"; exit 0; }
  [ $((t - t0)) -ge %d ] && { echo "busy $n"; exit 0; }
  sleep 0.2
done""" % (DBG_GLOB, int(quiet_s * 100), timeout * 100),
                      timeout=timeout + 30)
        word, n = out.split()[-2:]
        check(word == "quiet", "free page reporting still sending REPORT "
              "messages after %d s (%s so far)", timeout, n)
        return int(n)

    def dmesg(self):
        return self.vm.dmesg().splitlines()

    def kmsg(self, mark=None):
        """The kernel log since mark -> (messages, new mark); see
        kmsg_since()."""
        return kmsg_since(self.sh, mark)

    def kmsg_mark(self):
        """Where the kernel log stands now: (boot id, next sequence
        number), for kmsg() and new_dmesg()."""
        return kmsg_since(self.sh, KMSG_NOW)[1]

    def new_dmesg(self, mark=None):
        """Kernel log messages since mark (default: since the current
        scenario started); see kmsg()."""
        return self.kmsg(mark or self.dmesg_mark)[0]

    def check_dmesg_clean(self, lines=None):
        lines = self.new_dmesg() if lines is None else lines
        bad = [ln for ln in lines if BAD_DMESG.search(ln)]
        check(not bad, "kernel log: %s", bad[0].strip()[:150] if bad else "")

    # -- the device --

    def resize(self, nbytes, wait=False, timeout=120):
        """Ask device 13 for a balloon of nbytes; with wait, until the
        device reports it reached (returns whether it was)."""
        return self.dev.resize(nbytes, wait=wait, timeout=timeout)

    def status(self):
        """The device's view, with the keys every device kind provides
        (devices.py: STATUS_KEYS) and its own besides."""
        return self.dev.status()

    def ctl(self, *args, timeout=60, ok=True):
        """balloon13ctl --json ARGS -> balloon13d's answer (a dict).
        Only for scenarios that run against balloon13d."""
        if self.dev.kind != "vu":
            raise Fail("balloon13ctl %s: this VM's device 13 is %s, not balloon13d"
                       % (" ".join(map(str, args)), self.dev.kind))
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

    def resident(self):
        """Host memory the guest RAM memfd holds, bytes."""
        return self.vm.guest_ram_resident()


# ---- the kernel log -----------------------------------------------------------

KMSG_NOW = (None, 1 << 62)      # a mark past the end: kmsg_since() -> the mark now


def kmsg_since(sh, mark=None):
    """The guest kernel log since mark -> (messages, new mark).

    sh(cmd) runs a guest shell command and returns its output; mark is a
    (boot id, sequence number) an earlier call returned, or None for the
    whole log of the current boot.  The log is read by sequence number
    (scripts/guest/kmsg), so the window cannot slide when the ring buffer
    wraps: records overwritten before they were read raise Fail, since a
    report among them could not be seen.  A mark from an earlier boot
    reads the current boot's whole log."""
    boot, seq = mark if mark else (None, 0)
    for _ in range(2):
        out = sh("kmsg %d" % seq)
        head = {}
        lines = []
        for ln in out.splitlines():
            if ln.startswith("@"):
                k, _, v = ln[1:].partition(" ")
                head[k] = v
            else:
                n, _, text = ln.partition(" ")
                if n.isdigit():
                    lines.append(text)
        check(all(k in head for k in ("boot", "next", "lost")),
              "kmsg printed no frame: %r", out[-200:])
        if boot is None or head["boot"] == boot:
            break
        boot, seq = head["boot"], 0     # rebooted since the mark
    check(int(head["lost"]) == 0,
          "kernel log: %s records since sequence number %d were overwritten "
          "before they were read (the log buffer wrapped; the oldest left is "
          "%s): a report among them could not be seen",
          head["lost"], seq, head.get("first"))
    return lines, (head["boot"], int(head["next"]))


# ---- scenario and VM-group registry ------------------------------------------

SCENARIOS = []      # (name, group, func, devices, series)
GROUPS = {}         # name -> configuration
DEVICE_KINDS = ("vu", "native")


def zoneinfo(g):
    """{zone name: {"free", "min", "low", "high", "managed"}} in pages,
    from /proc/zoneinfo (node 0; these guests have one node).  The kernel
    prints min, low and high with the watermark boost added, as the
    allocator uses them."""
    zones, cur = {}, None
    for line in g.sh("cat /proc/zoneinfo").splitlines():
        p = line.split()
        if line.startswith("Node") and len(p) >= 4 and p[2] == "zone":
            cur = zones.setdefault(p[3], {})
        elif cur is not None and len(p) == 2 and p[0] in (
                "min", "low", "high", "managed") and p[1].isdigit():
            cur[p[0]] = int(p[1])
        elif cur is not None and p[:2] == ["pages", "free"]:
            cur["free"] = int(p[2])
    return zones


# Free pages on the per-cpu lists (/proc/zoneinfo's pagesets' count:),
# which buddyinfo and MemFree do not show: a guest shell command.
PCP_PAGES_SH = ("awk '$1 == \"count:\" { s += $2 } END { print s + 0 }' "
                "/proc/zoneinfo")


def pcp_pages(g):
    """Free pages on the guest's per-cpu lists (PCP_PAGES_SH)."""
    return int(g.sh(PCP_PAGES_SH).split()[-1])


def group(name, mem, page_bits=12, vu_args=(), native_props=(), vm=None,
          requires=None):
    """Declare a VM configuration that scenarios share.

    mem           guest RAM, e.g. "1536M"
    page_bits     the device's block size (balloon13d --page-bits, the
                  native device's page-bits property)
    vu_args       further balloon13d options, e.g. ("--chaos",)
    native_props  further properties of the native device, e.g.
                  ("x-foo=1",)
    vm            further scripts/vm.py VM() keyword arguments
    requires      requires(kind, qemu) -> None, or why this configuration
                  can't be had here (its scenarios are then skipped)
    """
    if name in GROUPS:
        raise ValueError("VM group %r declared twice" % name)
    GROUPS[name] = {"name": name, "mem": mem, "page_bits": int(page_bits),
                    "vu_args": list(vu_args), "native_props": list(native_props),
                    "vm": dict(vm or {}), "requires": requires}


def scenario(name, group_name, devices=("vu",), series=None):
    """Register a scenario run in VM group group_name.

    devices  the device kinds it applies to ("vu": balloon13d over
             vhost-user, "native": QEMU's virtio-balloon13-pci)
    series   kernel series it runs on (None: every series run.py is given)
    """
    bad = [d for d in devices if d not in DEVICE_KINDS]
    if bad:
        raise ValueError("scenario %s: unknown device kind %s" % (name, bad))

    def register(func):
        if any(s[0] == name for s in SCENARIOS):
            raise ValueError("scenario %r registered twice" % name)
        SCENARIOS.append((name, group_name, func, tuple(devices),
                          tuple(series) if series else None))
        return func
    return register


def parse_sums(out):
    """'sum HASH NAME' lines -> {NAME: HASH}."""
    sums = {}
    for line in out.splitlines():
        p = line.split()
        if len(p) == 3 and p[0] == "sum" and re.fullmatch(r"[0-9a-f]{64}", p[1]):
            sums[p[2]] = p[1]
    return sums
