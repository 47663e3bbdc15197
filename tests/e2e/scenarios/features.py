"""Issue 15: device 13's feature bits end to end, and their negotiation.

Two VM groups per kernel and device kind, one per device configuration:

feat-all   the device offers every bit (balloon13d's and the native
           device's default).  The driver negotiates what it implements;
           free page reporting gives freed guest memory back to the host,
           full statistics carry virtio-balloon's tags and PSI and follow a
           push interval.  Then the driver as of commit 6120bd4 (before any
           feature bit; built from git) replaces it against the same
           device: it negotiates nothing and passes the base scenarios.
feat-none  the device offers none (balloon13d --features none; the native
           device with withdraw, free-page-reporting, full-stats and
           pressure-release off): the new driver negotiates nothing, none
           of the bits' behaviour shows, and it passes the base scenarios
           (probe, inflate, stats, deflate of basic.py).

The native device's groups run once QEMU's virtio-balloon13-pci has the
feature properties (the qemu branch); before, they SKIP with that reason.
"""

import base64
import os
import re
import subprocess
import time

from e2elib import (F_FULL_STATS, F_PRESSURE_RELEASE, F_REPORTING, F_WITHDRAW,
                    TOP, Fail, MiB, Skip, check, check_eq, group, mib, say,
                    scenario, vmlib)
from scenarios import basic

# The device 13 bits the driver implements: all four.
ALL_BITS = {F_WITHDRAW, F_REPORTING, F_FULL_STATS, F_PRESSURE_RELEASE}
DRIVER_BITS = set(ALL_BITS)
# balloon13d's --features names, the native device's property names.
NAMES = {F_WITHDRAW: "withdraw", F_REPORTING: "free-page-reporting",
         F_FULL_STATS: "full-stats", F_PRESSURE_RELEASE: "pressure-release"}
VIRTIO_F_VERSION_1 = 32
# The driver as it was before any feature bit (README: "make check took 17
# minutes warm"), and the files its module was built from.
OLD_COMMIT = "6120bd4"
OLD_FILES = ("Kbuild", "virtio_balloon13_main.c", "pagelist.c", "stats.c",
             "virtio_balloon13.h")
OLD_PARAMS = ("floor_mib", "oom_release", "oom_release_mib", "oom_hold_ms",
              "page_list_kib", "shrinker")
# The old driver's oom_release defaults to Y: it would give memory back
# under pressure with no F_PRESSURE_RELEASE negotiated (it knows no bits),
# which B13-DRV-PRESS-01 forbids.  Loaded with it off (its shrinker is off
# by default), it is a driver the contract allows.
OLD_OPTIONS = "oom_release=0"
OLD_CONF = "/etc/modprobe.d/virtio_balloon13-old.conf"
# Statistics names (balloon13ctl stats, devices.py) of tags 0-17.
BASE_STATS = ("swap_in", "swap_out", "majflt", "minflt", "memfree", "memtot")
FULL_STATS = ("avail", "caches", "htlb_pgalloc", "htlb_pgfail", "oom_kill",
              "alloc_stall", "async_scan", "direct_scan", "async_reclaim",
              "direct_reclaim", "psi_some_us", "psi_full_us")
# The driver's shortest push interval (REQ_STATS_INTERVAL), ms.
STATS_MIN_MS = 100


def native_has_feature_props(qemu):
    """None if this QEMU's native device has the four feature properties,
    else why not."""
    out = subprocess.run([qemu, "-device", "%s,help" % vmlib.NATIVE_DEVICE],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, check=False).stdout
    missing = [n for n in NAMES.values()
               if not re.search(r"^\s*%s=" % re.escape(n), out, re.M)]
    if missing:
        return ("%s has no feature properties (%s): the qemu branch adds "
                "them" % (vmlib.NATIVE_DEVICE, ", ".join(missing)))
    return None


def requires(kind, qemu):
    return native_has_feature_props(qemu) if kind == "native" else None


group("feat-all", mem="1536M", requires=requires)
# A guest that poisons free pages (and runs without PSI).
group("feat-poison", mem="512M", vm={"append": "page_poison=1 psi=0"})
group("feat-none", mem="1536M", vu_args=("--features", "none"),
      native_props=tuple("%s=off" % n for n in NAMES.values()),
      requires=requires)


# ---- what was negotiated --------------------------------------------------

def device_bits(g):
    """Device 13 bits the device side says were negotiated."""
    if g.dev.kind == "vu":
        names = g.status()["device_features"]["negotiated"]
        inv = {v: k for k, v in NAMES.items()}
        unknown = [n for n in names if n not in inv]
        check(not unknown, "balloon13d negotiated unknown features %s", unknown)
        return {inv[n] for n in names}
    vst = g.vm.qmp("x-query-virtio-status",
                   path="/machine/peripheral/%s/virtio-backend"
                   % vmlib.NATIVE_ID)
    f = vst["guest-features"]
    bits = {b for b in range(64) if f.get("unknown-dev-features", 0) >> b & 1}
    for name in f.get("dev-features", []):
        for b, n in NAMES.items():
            if n.upper().replace("-", "_") in name.upper().replace("-", "_"):
                bits.add(b)
    return bits & ALL_BITS


def driver_bits(g):
    """The bits the loaded (new) driver implements."""
    check("messages_withdraw" in g.state()["cnt"],
          "debugfs has no messages_withdraw: not the new driver")
    return DRIVER_BITS


def check_negotiated(g, offered, driver=None):
    """The guest and the device agree that offered & the driver's bits
    were negotiated, and nothing else of device 13's bits."""
    want = offered & (driver_bits(g) if driver is None else driver)
    bits = g.features()
    check(VIRTIO_F_VERSION_1 in bits, "VIRTIO_F_VERSION_1 not negotiated")
    check_eq(bits & ALL_BITS, want, "device 13 bits negotiated (guest sysfs)")
    check_eq(device_bits(g), want, "device 13 bits negotiated (device)")
    return want


def names(bits):
    return ",".join(NAMES[b] for b in sorted(bits)) or "none"


# ---- guest readings ----------------------------------------------------------

VMSTAT_KEYS = ("oom_kill", "pgscan_kswapd", "pgscan_direct", "pgsteal_kswapd",
               "pgsteal_direct", "htlb_buddy_alloc_success",
               "htlb_buddy_alloc_fail")


def readings(g):
    """/proc/vmstat counters the full statistics come from, meminfo, and
    the PSI totals (None while PSI is off)."""
    out = g.sh("cat /proc/vmstat; echo @meminfo; cat /proc/meminfo; "
               "echo @psi; cat /proc/pressure/memory 2>/dev/null; true")
    vm, mem, psi = {}, {}, {}
    sec = "vm"
    for line in out.splitlines():
        if line.startswith("@"):
            sec = line[1:]
            continue
        p = line.replace(":", " ").split()
        if sec == "vm" and len(p) == 2:
            vm[p[0]] = int(p[1])
        elif sec == "meminfo" and len(p) >= 2:
            mem[p[0]] = int(p[1]) * 1024
        elif sec == "psi" and p and p[0] in ("some", "full"):
            m = re.search(r"total=(\d+)", line)
            if m:
                psi[p[0]] = int(m.group(1))
    vm["alloc_stall"] = sum(v for k, v in vm.items()
                            if k.startswith("allocstall_"))
    return {"vm": vm, "mem": mem, "psi": psi if len(psi) == 2 else None}


def debugfs(g):
    return g.state()["cnt"]


# Native guest-stats names (virtio-balloon's) -> balloon13ctl's names.
NATIVE_FULL = {"stat-available-memory": "avail", "stat-disk-caches": "caches",
               "stat-htlb-pgalloc": "htlb_pgalloc",
               "stat-htlb-pgfail": "htlb_pgfail", "stat-oom-kills": "oom_kill",
               "stat-alloc-stalls": "alloc_stall",
               "stat-async-scans": "async_scan",
               "stat-direct-scans": "direct_scan",
               "stat-async-reclaims": "async_reclaim",
               "stat-direct-reclaims": "direct_reclaim"}


def stats_values(g):
    """One fresh STATS answer, by balloon13ctl's names (the native device's
    PSI names are mapped by what they contain)."""
    if g.dev.kind == "vu":
        return g.dev.stats(timeout=10)["values"]
    vals = dict(g.dev.stats(timeout=10)["values"])
    gs = g.dev.get("guest-stats")["stats"]
    for k, v in gs.items():
        if v == (1 << 64) - 1:
            continue
        if k in NATIVE_FULL:
            vals[NATIVE_FULL[k]] = v
        elif "psi" in k or "pressure" in k or "stall" in k and "alloc" not in k:
            vals["psi_full_us" if "full" in k else "psi_some_us"] = v
    return vals


# ---- feat-all: the driver of 6120bd4, then the new one, same device ---------

# The old driver first, on a device nothing was ballooned on yet (basic's
# inflate compares the native device's cumulative counts with what the
# balloon holds); the feature scenarios put the new driver back.

_OLD = {}


def old_driver(series):
    """virtio_balloon13.ko as of OLD_COMMIT, built from git for a series
    (once per run); a copy without debug info."""
    if series in _OLD:
        return _OLD[series]
    env = vmlib.kernel_env(series)
    out = os.path.join(TOP, "out", env["KVER"], "old-" + OLD_COMMIT)
    os.makedirs(out, exist_ok=True)
    for f in OLD_FILES:
        p = subprocess.run(["git", "-C", TOP, "show", "%s:%s" % (OLD_COMMIT, f)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise Fail("git show %s:%s: %s" % (OLD_COMMIT, f,
                                                p.stderr.decode().strip()))
        path = os.path.join(out, f)
        old = None
        if os.path.exists(path):
            with open(path, "rb") as fh:
                old = fh.read()
        if old != p.stdout:
            with open(path, "wb") as fh:
                fh.write(p.stdout)
    p = subprocess.run(["nice", "-n", "10", "make", "-C", env["KDIR"],
                        "M=" + out, "CONFIG_VIRTIO_BALLOON13=m", "modules"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        raise Fail("building the %s driver for %s: %s" % (
            OLD_COMMIT, series, p.stdout.strip().splitlines()[-1:]))
    ko = os.path.join(out, "virtio_balloon13-stripped.ko")
    subprocess.run(["strip", "--strip-debug", "-o", ko,
                    os.path.join(out, "virtio_balloon13.ko")], check=True)
    _OLD[series] = ko
    return ko


def install_old_driver(g):
    """Put the 6120bd4 module where modprobe finds virtio_balloon13, in
    place of the new one, which is kept aside (restore_new_driver()),
    with OLD_OPTIONS for modprobe."""
    if g.sh("[ -f /lib/modules/$(uname -r)/extra/.old ] && echo yes || true"
            ).strip() == "yes":
        return
    with open(old_driver(g.series), "rb") as f:
        data = base64.b64encode(f.read()).decode()
    g.sh("if grep -q '^virtio_balloon13 ' /proc/modules; then "
         "rmmod virtio_balloon13; fi\n"
         "d=/lib/modules/$(uname -r)/extra\n"
         "cp $d/virtio_balloon13.ko /tmp/vb13-new.ko\n"
         "base64 -d > $d/virtio_balloon13.ko <<'EOF'\n%s\nEOF\n"
         "mkdir -p /etc/modprobe.d && "
         "echo 'options virtio_balloon13 %s' > %s\n"
         "touch $d/.old && depmod -a" % (data, OLD_OPTIONS, OLD_CONF),
         timeout=120)


def restore_new_driver(g):
    """The new driver back where modprobe finds it, after the old one."""
    g.sh("d=/lib/modules/$(uname -r)/extra\n"
         "if [ -f $d/.old ]; then\n"
         "  if grep -q '^virtio_balloon13 ' /proc/modules; then "
         "rmmod virtio_balloon13; fi\n"
         "  cp /tmp/vb13-new.ko $d/virtio_balloon13.ko && rm -f $d/.old %s && "
         "depmod -a\n"
         "fi" % OLD_CONF)


@scenario("old-probe", "feat-all", devices=("vu", "native"))
def t_old_probe(g):
    """The driver of 6120bd4 against a device offering every bit: it binds,
    negotiates none of them, the device runs without them."""
    install_old_driver(g)
    g.sh("if grep -q '^virtio_balloon13 ' /proc/modules; then "
         "rmmod virtio_balloon13; fi; modprobe virtio_balloon13")
    st = g.state()
    check_eq(len(st["devs"]), 1, "devices bound to the old driver")
    params = g.sh("ls /sys/module/virtio_balloon13/parameters").split()
    check_eq(sorted(params), sorted(OLD_PARAMS),
             "module parameters (the old driver's six)")
    check_eq(g.sh("cat /sys/module/virtio_balloon13/parameters/oom_release "
                  "/sys/module/virtio_balloon13/parameters/shrinker").split(),
             ["N", "0"], "old driver's oom_release, shrinker (%s)" % OLD_OPTIONS)
    check_eq(st["sys"].get("page_bits"), 12, "sysfs page_bits")
    check_eq(st["sys"].get("size_bytes"), 0, "sysfs size_bytes")
    check_eq(st["mem"]["MemTotal"], g.base_memtotal, "MemTotal")
    check_negotiated(g, ALL_BITS, driver=set())
    check("reporting_active" not in st["cnt"],
          "debugfs has reporting_active: not the old driver")
    s = g.status()
    check(s["driver_ready"], "device: driver_ready is false")
    say("old-probe: the %s driver bound, negotiated none of the four bits"
        % OLD_COMMIT)


@scenario("old-inflate", "feat-all", devices=("vu", "native"))
def t_old_inflate(g):
    """basic inflate, with the driver of 6120bd4."""
    install_old_driver(g)
    basic.t_inflate(g)


@scenario("old-stats", "feat-all", devices=("vu", "native"))
def t_old_stats(g):
    """basic stats, with the driver of 6120bd4: the base six only."""
    install_old_driver(g)
    basic.t_stats(g)
    v = stats_values(g)
    check_eq(sorted(k for k in v if k in FULL_STATS), [],
             "tags beyond the base six from the old driver")


@scenario("old-deflate", "feat-all", devices=("vu", "native"))
def t_old_deflate(g):
    """basic deflate, with the driver of 6120bd4."""
    install_old_driver(g)
    basic.t_deflate(g)



@scenario("features", "feat-all", devices=("vu", "native"))
def t_features(g):
    """A device offering every bit: the driver takes the bits it implements,
    both sides agree; reporting registered at max(pageblock, block) order."""
    restore_new_driver(g)
    g.empty()
    got = check_negotiated(g, ALL_BITS)
    c = debugfs(g)
    check_eq(c.get("reporting_active"), 1, "debugfs reporting_active")
    check_eq(c.get("reporting_order"), 9, "debugfs reporting_order "
             "(max(pageblock_order 9, block order 0))")
    check_eq(c.get("stats_interval_ms"), 0, "debugfs stats_interval_ms")
    if g.dev.kind == "vu":
        s = g.status()
        check_eq(set(s["device_features"]["offered"]),
                 set(NAMES.values()), "balloon13d offered")
    say("features: offered all four, negotiated %s" % names(got))


@scenario("full-stats", "feat-all", devices=("vu", "native"))
def t_full_stats(g):
    """Tags 6-17 with virtio-balloon's meanings and units: each value lies
    between the guest's own readings taken around the answer."""
    restore_new_driver(g)
    g.modprobe()
    if F_FULL_STATS not in g.features():
        raise Fail("full-stats not negotiated with a device offering it")
    # Something for the counters to count: asking for as many 2 MiB hugetlb
    # pages as MemFree holds makes the allocator stall and compact (PSI,
    # allocation stalls) and fail some; they go back at once.  (Reclaim
    # scans stay 0 in these guests: nothing on disk to reclaim.)  A kernel
    # without hugetlb (the debug kernel) has no such counters: the driver
    # leaves tags 8 and 9 out.
    htlb = g.sh("[ -e /proc/sys/vm/nr_hugepages ] && echo y || echo n"
                ).strip() == "y"
    if htlb:
        g.sh("f=$(awk '/^MemFree/ { print $2 }' /proc/meminfo); "
             "echo $((f / 2048)) > /proc/sys/vm/nr_hugepages; "
             "echo 0 > /proc/sys/vm/nr_hugepages", timeout=240)

    # Freeing those huge pages sets free page reporting going: readings
    # with no REPORT ending between them, or bounds on free memory wider
    # by what the REPORTs that ended named (see Guest.without_reports()).
    def measure():
        c0 = debugfs(g)
        r0 = readings(g)
        v = stats_values(g)
        return c0, r0, v, readings(g), debugfs(g)

    (c0, r0, v, r1, c1), over = g.without_reports(measure, widen=True)
    want = [k for k in BASE_STATS + FULL_STATS[:10]
            if htlb or not k.startswith("htlb")]
    missing = [k for k in want if k not in v]
    check(not missing, "stats lack %s (have %s)", missing, sorted(v))
    if not htlb:
        extra = [k for k in v if k.startswith("htlb")]
        check(not extra, "stats carry %s from a kernel without hugetlb", extra)
    if kernel_config(g, "PSI") is False:
        # No PSI in this kernel (the debug kernel): left out, never 0.
        psi = [k for k in v if k.startswith("psi")]
        check(not psi, "STATS carry %s from a kernel without PSI", psi)
    elif g.dev.kind == "vu" or any(k.startswith("psi") for k in v):
        check(r0["psi"] is not None, "PSI is off in this guest "
              "(/proc/pressure/memory missing)")
        for k in ("psi_some_us", "psi_full_us"):
            check(k in v, "stats lack %s with PSI on", k)
        check(r0["psi"]["some"] <= v["psi_some_us"] <= r1["psi"]["some"],
              "psi_some_us %d not within %d..%d", v["psi_some_us"],
              r0["psi"]["some"], r1["psi"]["some"])
        check(r0["psi"]["full"] <= v["psi_full_us"] <= r1["psi"]["full"],
              "psi_full_us %d not within %d..%d", v["psi_full_us"],
              r0["psi"]["full"], r1["psi"]["full"])
    else:
        say("full-stats: the native device shows no PSI names in guest-stats")
    # Counters: between the readings before and after, in their units.
    pages = {"async_scan": "pgscan_kswapd", "direct_scan": "pgscan_direct",
             "async_reclaim": "pgsteal_kswapd",
             "direct_reclaim": "pgsteal_direct"}
    counts = {"oom_kill": "oom_kill", "alloc_stall": "alloc_stall",
              "htlb_pgalloc": "htlb_buddy_alloc_success",
              "htlb_pgfail": "htlb_buddy_alloc_fail"}
    if not htlb:
        del counts["htlb_pgalloc"], counts["htlb_pgfail"]
    for k, src in list(pages.items()) + list(counts.items()):
        unit = 4096 if k in pages else 1
        lo, hi = r0["vm"][src] * unit, r1["vm"][src] * unit
        check(lo <= v[k] <= hi, "%s %d not within %d..%d (/proc/vmstat %s)",
              k, v[k], lo, hi, src)
    if htlb:
        check(v["htlb_pgalloc"] >= 100, "htlb_pgalloc %d after asking for "
              "MemFree in huge pages", v["htlb_pgalloc"])
    # Bytes of memory: as /proc/meminfo says just before and after.
    av = [r["mem"]["MemAvailable"] for r in (r0, r1)]
    check(0.97 * (min(av) - over) <= v["avail"] <= 1.03 * (max(av) + over),
          "avail %s not within 3%% of MemAvailable %s..%s (+/- %s reported "
          "meanwhile)", mib(v["avail"]), mib(min(av)), mib(max(av)),
          mib(over))
    # NR_FILE_PAGES is what meminfo splits into Cached, Buffers and
    # SwapCached.
    ca = [r["mem"]["Cached"] + r["mem"]["Buffers"] + r["mem"]["SwapCached"]
          for r in (r0, r1)]
    check(min(ca) - 4 * MiB <= v["caches"] <= max(ca) + 4 * MiB,
          "caches %s not within 4 MiB of Cached+Buffers+SwapCached %s..%s",
          mib(v["caches"]), mib(min(ca)), mib(max(ca)))
    check(v["avail"] <= v["memtot"] and v["caches"] <= v["memtot"],
          "avail/caches above memtot")
    check_eq(c1["messages_stats"] - c0["messages_stats"], 1,
             "STATS messages for one request")
    say("full-stats: %d values; avail %s, caches %s, htlb %d/%d, oom %d, "
        "stalls %d, scans %d/%d, psi some/full %s/%s us" % (
            len(v), mib(v["avail"]), mib(v["caches"]),
            v.get("htlb_pgalloc", -1), v.get("htlb_pgfail", -1), v["oom_kill"], v["alloc_stall"],
            v["async_scan"], v["direct_scan"], v.get("psi_some_us", "-"),
            v.get("psi_full_us", "-")))


def stats_seq(g):
    if g.dev.kind == "vu":
        st = g.status()["stats"]
        return st["seq"] if st else 0
    return g.dev.counters()["stats-messages"]


def push_rate(g, secs):
    """STATS messages the device received per second over `secs`."""
    n0, t0 = stats_seq(g), time.monotonic()
    time.sleep(secs)
    n1, t1 = stats_seq(g), time.monotonic()
    return (n1 - n0) / (t1 - t0)


def set_interval(g, ms):
    """Ask for STATS every ms (0: stop), the device's way; wait until the
    driver took it and return its debugfs counters."""
    if g.dev.kind == "vu":
        g.ctl("stats-interval", ms)
    else:
        g.dev.set("guest-stats-polling-interval", ms // 1000)
    want = 0 if not ms else max(ms, STATS_MIN_MS)
    deadline = time.monotonic() + 10
    while True:
        c = debugfs(g)
        if c.get("stats_interval_ms") == want:
            return c
        check(time.monotonic() < deadline,
              "debugfs stats_interval_ms %s, want %d after asking for %d ms",
              c.get("stats_interval_ms"), want, ms)
        time.sleep(0.1)


@scenario("stats-interval", "feat-all", devices=("vu", "native"))
def t_stats_interval(g):
    """REQ_STATS_INTERVAL: the driver pushes STATS at the interval, at least
    100 ms apart, and stops at 0; none of them asked for."""
    restore_new_driver(g)
    g.modprobe()
    c0 = debugfs(g)
    first = 250 if g.dev.kind == "vu" else 1000
    set_interval(g, first)
    r1 = push_rate(g, 3.0)
    want1 = 1000.0 / first
    check(0.5 * want1 <= r1 <= 1.25 * want1 + 0.5,
          "%.1f STATS/s at %d ms (want about %.1f)", r1, first, want1)
    # Requests are still answered while pushes run (the native device
    # has no request besides its polling interval).
    if g.dev.kind == "vu":
        c_mid = debugfs(g)
        for _ in range(2):
            check("memtot" in g.dev.stats(timeout=10)["values"],
                  "no answer to a STATS request while pushing")
        c_after = debugfs(g)
        check_eq(c_after["requests_stats"] - c_mid["requests_stats"], 2,
                 "STATS requests while pushing")
        c0["requests_stats"] += 2
    r2 = None
    if g.dev.kind == "vu":
        # 20 ms is raised to the driver's 100 ms.
        set_interval(g, 20)
        r2 = push_rate(g, 2.0)
        check(4.0 <= r2 <= 14.0, "%.1f STATS/s asked every 20 ms (the "
              "driver's minimum is 100 ms: want about 10)", r2)
    set_interval(g, 0)
    time.sleep(0.5)
    r0 = push_rate(g, 1.5)
    check(r0 == 0, "%.1f STATS/s after interval 0", r0)
    c1 = debugfs(g)
    # QEMU's device also asks for fresh statistics (one STATS request)
    # whenever it sets a new interval other than 0.
    asked = 1 if g.dev.kind == "native" else 0
    check_eq(c1["requests_stats"] - c0["requests_stats"], asked,
             "STATS requests besides the pushes")
    check(c1["stats_pushed"] - c0["stats_pushed"] >= 3,
          "stats_pushed grew by %d", c1["stats_pushed"] - c0["stats_pushed"])
    check_eq(c1["requests_unknown"], c0["requests_unknown"], "unknown requests")
    say("stats-interval: %.1f/s at %d ms%s, 0/s after 0; %d pushed" % (
        r1, first, ", %.1f/s asked every 20 ms" % r2 if r2 is not None else "",
        c1["stats_pushed"] - c0["stats_pushed"]))


def reported_bytes(s):
    """Bytes the device took in REPORT messages, from status()."""
    if isinstance(s.get("report"), dict):
        return s["report"]["bytes"]             # balloon13d
    return s["counters"]["reported-bytes"]      # the native device


def quiet_resident(g, settle=5.0, tol=8 * MiB, timeout=90):
    """Wait until host-resident guest RAM has stayed within tol for
    settle seconds."""
    t0 = time.monotonic()
    last, since = g.resident(), t0
    while True:
        time.sleep(0.5)
        r, now = g.resident(), time.monotonic()
        if abs(r - last) > tol:
            last, since = r, now
        elif now - since >= settle:
            return now - t0
        check(now - t0 < timeout, "host-resident guest RAM still moving "
              "after %d s", timeout)


def wait_reported(g, touched, res_peak, goal=0.9, timeout=60):
    """Sample host-resident guest RAM until `goal` of what the guest
    touched and freed has gone back; returns (fraction at 5 s, seconds to
    the goal or None, final fraction)."""
    t0 = time.monotonic()
    at5 = reached = None
    frac = 0.0
    while True:
        t = time.monotonic() - t0
        frac = (res_peak - g.resident()) / touched
        if at5 is None and t >= 5.0:
            at5 = frac
        if reached is None and frac >= goal:
            reached = t
        if (reached is not None and at5 is not None) or t > timeout:
            return at5 if at5 is not None else frac, reached, frac
        time.sleep(0.25)


@scenario("reporting", "feat-all", devices=("vu", "native"))
def t_reporting(g):
    """Free page reporting: memory the guest frees goes back to the host
    (90% of 600 MiB within 60 s; the bench measures the 5 s goal), nothing
    enters the balloon, the pages are reusable, inflation works alongside."""
    restore_new_driver(g)
    st = g.empty()
    if F_REPORTING not in g.features():
        raise Fail("free-page-reporting not negotiated with a device offering it")
    base = g.base_memtotal
    # Memory freed by earlier scenarios goes back first (the kernel
    # reports a share of it every 2 s): what memtouch takes next must be
    # memory the host no longer backs.
    quiet_resident(g)
    # Free memory the kernel never reports (below the reporting order, or
    # under its threshold of 32 pages per order) stays backed and is
    # allocated first; after the group's earlier scenarios it can be a few
    # hundred MiB (252 MiB once on the debug kernel).  Touching all free
    # memory but 160 MiB has to reach memory that was reported and
    # discarded.
    n = max(600, (g.meminfo()["MemFree"] - 160 * MiB) // MiB)
    c0 = g.state()["cnt"]
    s0 = g.status()
    res0 = g.resident()
    g.sh("memtouch %d" % n, timeout=240)
    res1 = g.resident()
    touched = res1 - res0
    say("reporting: memtouch %d MiB raised host-resident guest RAM by %s"
        % (n, mib(touched)))
    check(touched >= 400 * MiB, "memtouch %d raised host-resident guest RAM "
          "by only %s (reported memory not discarded before?)", n,
          mib(touched))
    at5, t90, frac = wait_reported(g, touched, res1)
    check(t90 is not None, "only %.0f%% of the %s the guest freed went back "
          "to the host within 60 s" % (100 * frac, mib(touched)))
    # Both sides count the same reports once none is in flight: the rest
    # of what was freed is reported in passes 2 s apart, and a sample
    # (guest debugfs, then the device) can straddle one, so wait for the
    # passes to end first.
    g.reports_quiet(quiet_s=3.0, timeout=150)
    deadline = time.monotonic() + 30
    while True:
        c1 = debugfs(g)
        s1 = g.status()
        dev = reported_bytes(s1) - reported_bytes(s0)
        if dev == c1["report_bytes"] - c0["report_bytes"]:
            break
        check(time.monotonic() < deadline, "device reported bytes +%d, "
              "driver +%d", dev, c1["report_bytes"] - c0["report_bytes"])
        time.sleep(0.5)
    got = c1["report_bytes"] - c0["report_bytes"]
    check(got >= 0.9 * touched, "the driver reported %s, the guest freed %s",
          mib(got), mib(touched))
    check_eq(c1["report_aborted"], c0["report_aborted"], "report_aborted")
    check_eq(c1["num_blocks"], 0, "balloon blocks (reported memory is not "
             "ballooned)")
    check_eq(s1["rejected"], s0["rejected"], "device rejected messages")
    check_eq(s1["discard_errors"], 0, "device discard errors")
    check_eq(s1["bytes_in_bitmap"], s0["bytes_in_bitmap"],
             "device bytes in the balloon bitmap")
    if g.dev.kind == "vu":
        check_eq(s1["guest_errors"]["report_ballooned"], 0,
                 "balloon13d guest_errors.report_ballooned")
    check_eq(g.meminfo()["MemTotal"], base, "MemTotal")
    # Reported memory is reused at once, with the guest's data intact.
    g.sh("memtouch --verify 600", timeout=180)
    # Inflation alongside: exact as ever.
    s2 = g.status()
    check(g.resize(256 * MiB, wait=True, timeout=120), "resize 256M: not reached")
    st = g.wait_size(256 * MiB)
    s3 = g.status()
    check_eq(st["mem"]["MemTotal"], base - 256 * MiB, "MemTotal at 256 MiB")
    check_eq(s3["bytes_received"] - s2["bytes_received"], 256 * MiB,
             "device bytes_received")
    g.resize(0)
    st = g.wait_size(0)
    check_eq(st["mem"]["MemTotal"], base, "MemTotal after resize 0")
    say("reporting: %.0f%% back at 5 s, 90%% after %.1f s; the driver "
        "reported %s in %d messages (%d pages below a block skipped)" % (
            100 * at5, t90, mib(got),
            c1["messages_report"] - c0["messages_report"],
            c1["report_skipped"] - c0["report_skipped"]))


@scenario("withdraw", "feat-all", devices=("vu", "native"))
def t_withdraw(g):
    """Explicit withdrawal: a deflate names the blocks it takes back, the
    device's count drops at once (balloon13d: no residency walk)."""
    restore_new_driver(g)
    g.empty()
    check(F_WITHDRAW in g.features(), "VIRTIO_BALLOON13_F_WITHDRAW not "
          "negotiated")
    base = g.base_memtotal
    check(g.resize(256 * MiB, wait=True, timeout=120), "resize 256M: not reached")
    g.wait_size(256 * MiB)
    s0 = g.status()
    g.resize(0)
    st = g.wait_size(0)
    s1 = g.status()
    check_eq(st["mem"]["MemTotal"], base, "MemTotal after resize 0")
    check_eq(s1["bytes_in_balloon"], 0, "device bytes_in_balloon right after "
             "the deflate (withdrawn by message, not by access)")
    if g.dev.kind == "vu":
        check_eq(s1["device_features"]["accounting"], "messages",
                 "balloon13d accounting")
        check_eq(s1["withdraw"]["blocks"] - s0["withdraw"]["blocks"],
                 256 * MiB // 4096, "balloon13d withdrawn blocks")
        check_eq(s1["guest_errors"]["withdraw_invalid"] +
                 s1["guest_errors"]["withdraw_not_in_balloon"], 0,
                 "balloon13d withdraw guest errors")
    g.sh("memtouch --verify 400", timeout=180)


def kernel_config(g, name):
    """Is CONFIG_<name>=y in the guest kernel's build config?  (None when
    the config can't be read.)"""
    path = os.path.join(vmlib.kernel_env(g.series)["KDIR"], ".config")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return bool(re.search(r"^CONFIG_%s=y$" % name, f.read(), re.M))


@scenario("poison", "feat-poison")
def t_poison(g):
    """page_poison=1: the driver refuses free-page-reporting (a discarded
    page would fail the poison check) and takes the other bits; psi=0: no
    PSI tags in STATS."""
    if kernel_config(g, "PAGE_POISONING") is False:
        raise Skip("the %s kernel has no CONFIG_PAGE_POISONING: "
                   "page_poison=1 does nothing there" % g.series)
    g.modprobe()
    out = g.sh("dmesg | grep -i 'poison' || true")
    got = check_negotiated(g, ALL_BITS, driver_bits(g) - {F_REPORTING})
    c = debugfs(g)
    check_eq(c.get("reporting_active"), 0, "debugfs reporting_active")
    v = stats_values(g)
    check(g.sh("[ -e /proc/pressure/memory ] && echo on || echo off").strip()
          == "off", "psi=0 left /proc/pressure/memory")
    psi = [k for k in v if k.startswith("psi")]
    check(not psi, "STATS carry %s with PSI off", psi)
    check("avail" in v, "STATS lack avail (full-stats negotiated)")
    say("poison: negotiated %s; %s" % (names(got), out.strip().splitlines()[0]
                                       if out.strip() else "no poison line"))


# ---- feat-none: nothing offered ------------------------------------------------

# The base scenarios first, in a fresh VM: basic's inflate counts on guest
# memory the host backs (none-pressure leaves much of it discarded).
@scenario("none-probe", "feat-none", devices=("vu", "native"))
def t_none_probe(g):
    """basic probe, against a device offering nothing."""
    basic.t_probe(g)


@scenario("none-inflate", "feat-none", devices=("vu", "native"))
def t_none_inflate(g):
    """basic inflate, against a device offering nothing."""
    basic.t_inflate(g)


@scenario("none-stats", "feat-none", devices=("vu", "native"))
def t_none_stats(g):
    """basic stats, against a device offering nothing."""
    basic.t_stats(g)


@scenario("none-deflate", "feat-none", devices=("vu", "native"))
def t_none_deflate(g):
    """basic deflate, against a device offering nothing."""
    basic.t_deflate(g)


@scenario("none-features", "feat-none", devices=("vu", "native"))
def t_none_features(g):
    """A device offering nothing: nothing negotiated; STATS of the base six
    only, no push interval (balloon13d refuses to send one), no reporting
    however much memory the guest frees."""
    st = g.empty()
    check_negotiated(g, set())
    c0 = st["cnt"]
    check_eq(c0.get("reporting_active"), 0, "debugfs reporting_active")
    s0 = g.status()
    res0 = g.resident()
    g.sh("memtouch 400", timeout=120)
    t_free = time.monotonic()
    res1 = g.resident()
    v = stats_values(g)
    check_eq(sorted(k for k in v if k in FULL_STATS), [],
             "tags beyond the base six without full-stats")
    for k in BASE_STATS:
        check(k in v, "stats lack %s", k)
    if g.dev.kind == "vu":
        r = g.ctl("stats-interval", 200, ok=False)
        check(not r.get("ok") and "full-stats" in (r.get("error") or ""),
              "balloon13d stats-interval with a driver without full-stats: %s"
              % r)
    else:
        # The device polls with STATS requests instead.
        g.dev.set("guest-stats-polling-interval", 1)
        time.sleep(2.5)
        g.dev.set("guest-stats-polling-interval", 0)
    # The kernel's reporting would have started 2 s after the free.
    time.sleep(max(0.0, 5.0 - (time.monotonic() - t_free)))
    c1 = debugfs(g)
    s1 = g.status()
    res2 = g.resident()
    check_eq(c1["stats_interval_ms"], 0, "debugfs stats_interval_ms")
    check_eq(c1["requests_interval"], 0, "REQ_STATS_INTERVAL requests")
    check_eq(c1["stats_pushed"], 0, "stats_pushed")
    check_eq(c1["messages_report"], 0, "REPORT messages")
    check_eq(s1["rejected"], s0["rejected"], "device rejected messages")
    if g.dev.kind == "vu":
        check_eq(s1["messages"]["report"], s0["messages"]["report"],
                 "balloon13d REPORT messages")
    else:
        check(c1["requests_stats"] - c0["requests_stats"] >= 2,
              "the native device polled %d times in 2.5 s at 1 s",
              c1["requests_stats"] - c0["requests_stats"])
    check(res2 >= res1 - 16 * MiB, "host-resident guest RAM fell by %s "
          "without reporting" % mib(res1 - res2))
    say("none-features: nothing negotiated; memtouch 400 MiB: host-resident "
        "%s -> %s -> %s 5 s later (no reporting)" % (mib(res0), mib(res1),
                                                      mib(res2)))


def log_mark(g):
    """Where the guest's kernel log stands (either e2elib's kmsg marks or
    line counts)."""
    return g.kmsg_mark() if hasattr(g, "kmsg_mark") else len(g.dmesg())


def log_since(g, mark):
    return g.new_dmesg(mark) if hasattr(g, "kmsg_mark") else g.dmesg()[mark:]


# Kernel messages an OOM kill writes, a trace among them.
OOM_OK = re.compile(r"WARNING:|BUG:|Oops|general protection|KASAN|UBSAN|"
                    r"kernel BUG|soft lockup|blocked for more than")


@scenario("none-pressure", "feat-none", devices=("vu",))
def t_none_pressure(g):
    """Without pressure-release the balloon stays at its target when the
    guest runs out of memory: the workload is OOM-killed, nothing is given
    back."""
    g.empty()
    base = g.base_memtotal
    target = (base - 320 * MiB) // 4096 * 4096
    g.resize(target)
    st = g.wait_size(target, timeout=240)
    c0 = st["cnt"]
    oom0 = readings(g)["vm"]["oom_kill"]
    steps = max(2, round(0.4 * base / (50 * MiB)))
    g.check_dmesg_clean()
    mark = log_mark(g)
    out = g.sh("memstep 50 %d" % steps, timeout=600, ok=None)
    bad = [ln for ln in log_since(g, mark) if OOM_OK.search(ln)]
    check(not bad, "kernel log: %s", bad[0].strip()[:150] if bad else "")
    g.dmesg_mark = log_mark(g)     # the OOM report is expected here
    st = g.state()
    c = st["cnt"]
    kills = readings(g)["vm"]["oom_kill"] - oom0
    m = re.search(r"memstep: (.*)", out)
    check(kills >= 1, "no OOM kill: memstep %s",
          m.group(1) if m else out.strip()[-150:])
    check_eq(c["pressure_releases"], c0["pressure_releases"],
             "pressure releases")
    check_eq(st["sys"]["size_bytes"], target, "balloon size under pressure")
    check_eq(st["mem"]["MemTotal"], base - target, "MemTotal")
    g.resize(0)
    g.wait_size(0, timeout=180)
    say("none-pressure: %d OOM kill(s), the balloon stayed at %s (%s)"
        % (kills, mib(target), m.group(1) if m else "memstep killed"))
