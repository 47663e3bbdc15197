"""QEMU's native device 13 (virtio-balloon13-pci): its QMP face, what it
refuses at -device time, a hostile guest, and churn on the native device.

The hostile guest is tests/e2e/guest/vb13_fault.c, a test driver that binds
device 13 instead of virtio_balloon13 and sends malformed messages; it
runs against balloon13d too, and both devices must count the same.
"""

import json
import os
import re
import subprocess
import time

from e2elib import (MiB, TOP, Fail, check, check_eq, group, mib, say,
                    scenario, vmlib)
from scenarios import basic

# The native device's guest-stats names: virtio-balloon's (tags 0-15 of
# the same meaning) and PSI's.
NATIVE_STAT_NAMES = (
    "stat-swap-in", "stat-swap-out", "stat-major-faults", "stat-minor-faults",
    "stat-free-memory", "stat-total-memory", "stat-available-memory",
    "stat-disk-caches", "stat-htlb-pgalloc", "stat-htlb-pgfail",
    "stat-oom-kills", "stat-alloc-stalls", "stat-async-scans",
    "stat-direct-scans", "stat-async-reclaims", "stat-direct-reclaims",
    "stat-psi-some-us", "stat-psi-full-us")

group("qmp", mem="1024M")
# QEMU logs guest errors (rate limited) into the VM's qemu.log.
group("fault", mem="512M", vm={"qemu_args": ["-d", "guest_errors"]})

U64_UNSET = (1 << 64) - 1


def balloon_events(vm, since=0):
    return [e["data"]["actual"] for e in vm.events[since:]
            if e["event"] == "BALLOON_CHANGE"]


def wait_actual(vm, want, timeout=60):
    """Poll query-balloon until actual == want; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        actual = vm.qmp("query-balloon")["actual"]
        if actual == want or time.monotonic() > deadline:
            return actual
        time.sleep(0.05)


@scenario("qmp", "qmp", devices=("native",))
def t_qmp(g):
    """QMP balloon/query-balloon/BALLOON_CHANGE, info balloon, guest-stats, counters."""
    vm, ram = g.vm, g.vm.mem_bytes
    st = g.empty()
    c0 = g.dev.counters()
    check_eq(vm.qmp("query-balloon")["actual"], ram, "query-balloon at 0")
    g.sh("memtouch 600", timeout=120)
    n0 = len(vm.events)
    # Guest memory wanted 768 MiB: a RESIZE to 256 MiB.
    vm.qmp("balloon", value=768 * MiB)
    actual = wait_actual(vm, 768 * MiB)
    check_eq(actual, 768 * MiB, "query-balloon actual after balloon 768M")
    st = g.wait_size(256 * MiB)
    check_eq(st["sys"]["target_bytes"], 256 * MiB, "guest target_bytes")
    check_eq(st["mem"]["MemTotal"], g.base_memtotal - 256 * MiB, "MemTotal")
    check_eq(g.dev.get("target-size"), 256 * MiB, "target-size property")
    check_eq(g.dev.get("size"), 256 * MiB, "size property")
    hmp = vm.hmp("info balloon").strip()
    check_eq(hmp, "balloon: actual=768", "info balloon")
    # BALLOON_CHANGE: the monitor passes one a second, the last one stands.
    deadline = time.monotonic() + 5
    while 768 * MiB not in balloon_events(vm, n0):
        check(time.monotonic() < deadline,
              "no BALLOON_CHANGE with actual 768 MiB: %s",
              balloon_events(vm, n0))
        vm.qmp("query-status")      # collects events
        time.sleep(0.2)
    ev = balloon_events(vm, n0)
    check(all(768 * MiB <= a < ram for a in ev),
          "BALLOON_CHANGE values outside [768 MiB, RAM): %s", ev)
    check(ev == sorted(ev, reverse=True),
          "BALLOON_CHANGE values not shrinking while inflating: %s", ev)
    # guest-stats, virtio-balloon's semantics: seconds, -1 when unknown.
    check_eq(g.dev.get("guest-stats")["last-update"], 0,
             "guest-stats last-update before any poll")
    g.dev.set("guest-stats-polling-interval", 2)
    check_eq(g.dev.get("guest-stats-polling-interval"), 2,
             "guest-stats-polling-interval")
    deadline = time.monotonic() + 20
    while not g.dev.get("guest-stats")["last-update"]:
        check(time.monotonic() < deadline, "no guest-stats within 20 s")
        time.sleep(0.2)
    t1 = time.monotonic()
    while g.dev.counters()["stats-messages"] < c0["stats-messages"] + 2:
        check(time.monotonic() - t1 < 20, "guest-stats not polled again")
        time.sleep(0.2)
    g.dev.set("guest-stats-polling-interval", 0)
    gs = g.dev.get("guest-stats")
    mem = g.meminfo()
    stats = gs["stats"]
    # virtio-balloon's names (the six of the base protocol, and those of
    # VIRTIO_BALLOON13_F_FULL_STATS, which stay at -1 until a driver that
    # negotiates it sends them) and two of our own for PSI.
    check(set(stats) >= {"stat-swap-in", "stat-swap-out", "stat-major-faults",
                         "stat-minor-faults", "stat-free-memory",
                         "stat-total-memory"} and
          set(stats) <= set(NATIVE_STAT_NAMES),
          "guest-stats names: %s", sorted(stats))
    check(abs(stats["stat-total-memory"] - mem["MemTotal"]) <= mem["MemTotal"] // 100,
          "stat-total-memory %d vs MemTotal %d", stats["stat-total-memory"],
          mem["MemTotal"])
    check(0 < stats["stat-free-memory"] <= stats["stat-total-memory"],
          "stat-free-memory %d", stats["stat-free-memory"])
    check(abs(gs["last-update"] - time.time()) < 30,
          "guest-stats last-update %d is not now", gs["last-update"])
    try:
        g.dev.set("guest-stats-polling-interval", -1)
        raise Fail("guest-stats-polling-interval -1 accepted")
    except vmlib.QMPError as e:
        check("greater than zero" in e.desc, "odd error: %s", e.desc)
    try:
        g.dev.set("target-size", 2 * ram)
        raise Fail("target-size beyond guest RAM accepted")
    except vmlib.QMPError as e:
        check("exceeds" in e.desc, "odd error: %s", e.desc)
    # Back: all guest memory wanted.
    n1 = len(vm.events)
    vm.qmp("balloon", value=ram)
    st = g.wait_size(0)
    check_eq(wait_actual(vm, ram), ram, "query-balloon after balloon RAM")
    check_eq(st["mem"]["MemTotal"], g.base_memtotal, "MemTotal after deflate")
    deadline = time.monotonic() + 5
    while ram not in balloon_events(vm, n1):
        check(time.monotonic() < deadline, "no BALLOON_CHANGE back to RAM")
        vm.qmp("query-status")
        time.sleep(0.2)
    # More than RAM wanted is a balloon of 0, as for virtio-balloon.
    vm.qmp("balloon", value=4 * ram)
    check_eq(g.dev.get("target-size"), 0, "target-size after balloon 4 x RAM")
    c = g.dev.counters()
    check_eq(c["resize-requests"] - c0["resize-requests"], 3,
             "RESIZE requests sent")
    check_eq(c["blocks-received"] - c0["blocks-received"], 256 * MiB >> 12,
             "blocks received")
    check_eq(c["rejected-messages"], 0, "rejected messages")
    check_eq(sum(c["guest-errors"].values()), 0, "guest errors")
    check_eq(c["discard-errors"], 0, "discard errors")
    say("qmp: balloon 768M -> actual %s, %d BALLOON_CHANGE (%s); "
        "guest-stats total %s free %s; %d stats answers"
        % (mib(actual), len(ev), ", ".join(mib(a) for a in ev),
           mib(stats["stat-total-memory"]), mib(stats["stat-free-memory"]),
           c["stats-messages"] - c0["stats-messages"]))


def qemu_refuses(qemu, props, extra=()):
    """Start QEMU with -device virtio-balloon13-pci,PROPS: the error it
    gives (it must refuse before running anything)."""
    argv = [qemu] + vmlib._firmware_args() + [
        "-nodefaults", "-display", "none", "-machine", "q35", "-m", "512M",
        "-S", "-monitor", "none"] + list(extra) + [
        "-device", "virtio-balloon13-pci" + ("," + props if props else "")]
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise Fail("QEMU accepted -device virtio-balloon13-pci,%s" % props)
    check(p.returncode == 1, "QEMU exited %d with %s: %s", p.returncode,
          props, p.stdout.strip()[-200:])
    return p.stdout.strip()


@scenario("refuse", "qmp", devices=("native",))
def t_refuse(g):
    """Bad page-bits and a second balloon are refused at -device time, clearly."""
    q = g.vm.qemu
    cases = [("page-bits=5", (), "page-bits=5 out of range"),
             ("page-bits=40", (), "page-bits=40 out of range"),
             ("page-bits=31", (), "page-bits=31 out of range"),
             ("", ("-device", "virtio-balloon-pci"),
              "Only one balloon device is supported"),
             ("target-size=1G", (), "exceeds the 536870912 bytes of guest RAM")]
    for props, extra, want in cases:
        err = qemu_refuses(q, props, extra)
        check(want in err, "-device ...,%s: %r lacks %r", props, err, want)
    # Beside virtio-balloon, with qmp-balloon=off, it starts; QMP balloon
    # stays virtio-balloon's.
    argv = [q] + vmlib._firmware_args() + [
        "-nodefaults", "-display", "none", "-machine", "q35", "-m", "512M",
        "-S", "-qmp", "stdio", "-device", "virtio-balloon-pci",
        "-device", "virtio-balloon13-pci,id=b13,qmp-balloon=off,page-bits=21"]
    cmds = [{"execute": "qmp_capabilities"},
            {"execute": "qom-get", "arguments": {"path": "/machine/peripheral/b13",
                                                 "property": "page-bits"}},
            {"execute": "query-balloon"}, {"execute": "quit"}]
    p = subprocess.run(argv, input="\n".join(json.dumps(c) for c in cmds),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=30)
    answers = [json.loads(ln) for ln in p.stdout.splitlines()
               if ln.startswith("{") and '"return"' in ln]
    check(len(answers) == 4, "QEMU with both balloons: %s", p.stdout[-300:])
    check_eq(answers[1]["return"], 21, "page-bits beside virtio-balloon")
    check_eq(answers[2]["return"]["actual"], 512 * MiB,
             "query-balloon (virtio-balloon's) beside it")
    say("refuse: %d bad configurations refused with a clear error; "
        "qmp-balloon=off runs beside virtio-balloon" % len(cases))


# ---- a hostile guest -------------------------------------------------------

_FAULT = {}


def fault_module(series):
    """Build tests/e2e/guest/vb13_fault.ko for a series (once per run);
    returns the path of a copy without debug info."""
    if series in _FAULT:
        return _FAULT[series]
    env = vmlib.kernel_env(series)
    out = os.path.join(TOP, "out", env["KVER"], "vb13_fault")
    os.makedirs(out, exist_ok=True)
    src = os.path.join(TOP, "tests", "e2e", "guest")
    for f in ("vb13_fault.c", "Kbuild"):
        with open(os.path.join(src, f)) as a, open(os.path.join(out, f), "w") as b:
            b.write(a.read())
    p = subprocess.run(["make", "-C", env["KDIR"], "M=" + out, "W=1",
                        "modules"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0 or "warning:" in p.stdout:
        raise Fail("building vb13_fault.ko for %s: %s" % (
            series, p.stdout.strip().splitlines()[-1:]))
    ko = os.path.join(out, "vb13_fault-stripped.ko")
    subprocess.run(["strip", "--strip-debug", "-o", ko,
                    os.path.join(out, "vb13_fault.ko")], check=True)
    _FAULT[series] = ko
    return ko


def load_fault(g):
    """insmod vb13_fault.ko in the guest (copied over the command channel)."""
    if g.sh("[ -d /sys/kernel/debug/vb13_fault ] && echo yes || true").strip() == "yes":
        return
    import base64
    with open(fault_module(g.series), "rb") as f:
        data = base64.b64encode(f.read()).decode()
    g.sh("base64 -d > /tmp/vb13_fault.ko <<'EOF'\n%s\nEOF\n"
         "insmod /tmp/vb13_fault.ko" % data, timeout=120)
    out = g.sh("cat /sys/kernel/debug/vb13_fault/status")
    check("page_bits 12" in out, "vb13_fault did not bind: %s", out)


def fault_status(g):
    out = g.sh("cat /sys/kernel/debug/vb13_fault/status")
    return {k: int(v) for k, v in (ln.split() for ln in out.splitlines())}


def device_errors(g):
    """Guest mistakes the device counted, by kind, named as the native
    device names them."""
    if g.dev.kind == "native":
        c = g.dev.counters()
        out = dict(c["guest-errors"])
        out["accepted"] = c["page-lists"] + c["stats-messages"]
        out["rejected"] = c["rejected-messages"]
        return out
    s = g.status()
    out = {k.replace("_", "-"): v for k, v in s["rejects"].items()}
    out["reserved-nonzero"] = s["guest_errors"]["reserved_nonzero"]
    out["bad-input-buffer"] = s["guest_errors"]["input_buffer_too_small"]
    out["duplicate-block"] = s["duplicate_blocks"]
    out["repeated-in-message"] = s["repeated_in_message"]
    out["accepted"] = s["messages"]["pages"] + s["messages"]["stats"]
    out["rejected"] = s["messages"]["rejected"]
    return out


# What each vb13_fault command must add to the device's counts.
FAULTS = (
    ("short", {"short": 1, "rejected": 1}),
    ("header", {"bad-length": 1, "rejected": 1}),
    ("badlen", {"bad-length": 1, "rejected": 1}),
    ("type", {"unknown-type": 1, "rejected": 1}),
    ("stats-len", {"bad-length": 1, "rejected": 1}),
    ("unaligned", {"unaligned": 1, "rejected": 1}),
    ("overflow", {"overflow": 1, "rejected": 1}),
    ("beyond", {"out-of-ram": 1, "rejected": 1}),
    ("hole", {"out-of-ram": 1, "rejected": 1}),
    ("writable", {"writable-descriptor": 1, "rejected": 1}),
    ("oversize", {"oversize": 1, "rejected": 1}),
    ("good", {"accepted": 1}),
    ("reserved", {"reserved-nonzero": 1, "accepted": 1}),
    ("repeat", {"repeated-in-message": 1, "accepted": 1}),
    ("duplicate", {"duplicate-block": 1, "accepted": 2}),
    ("stats", {"accepted": 1}),
    ("flood 50", {"unaligned": 50, "rejected": 50}),
)


@scenario("hostile-guest", "fault", devices=("vu", "native"))
def t_hostile_guest(g):
    """A hostile driver's malformed messages are each counted, nothing breaks."""
    load_fault(g)
    fs0 = fault_status(g)
    for cmd, want in FAULTS:
        e0 = device_errors(g)
        g.sh("echo %s > /sys/kernel/debug/vb13_fault/cmd" % cmd, timeout=60)
        e1 = device_errors(g)
        got = {k: e1[k] - e0.get(k, 0) for k in e1 if e1[k] != e0.get(k, 0)}
        check_eq(got, want, "device counts after '%s'" % cmd)
    # Random bytes: every message answered, each either accepted or
    # rejected, QEMU and the guest unharmed.
    e0 = device_errors(g)
    n = 300
    g.sh("echo random %d %d > /sys/kernel/debug/vb13_fault/cmd"
         % (n, g.seed % 100000), timeout=120)
    e1 = device_errors(g)
    check_eq((e1["accepted"] - e0["accepted"]) + (e1["rejected"] - e0["rejected"]),
             n, "random messages accepted + rejected")
    fs = fault_status(g)
    check_eq(fs["timeouts"], 0, "messages the device never returned")
    check_eq(fs["returned"] - fs0["returned"], fs["sent"] - fs0["sent"],
             "messages returned")
    # inputq buffers too small or readable: returned unused, counted; the
    # request waits for a good buffer.
    e0 = device_errors(g)
    g.sh("echo input-small > /sys/kernel/debug/vb13_fault/cmd && "
         "echo input-readable > /sys/kernel/debug/vb13_fault/cmd")
    g.resize(7 * MiB)
    deadline = time.monotonic() + 10
    while fault_status(g)["inputs_returned"] < fs0["inputs_returned"] + 2:
        check(time.monotonic() < deadline, "bad inputq buffers not returned")
        time.sleep(0.1)
    fs = fault_status(g)
    check_eq(fs["last_input_len"], 0, "used length of a bad inputq buffer")
    g.sh("echo input-ok > /sys/kernel/debug/vb13_fault/cmd")
    deadline = time.monotonic() + 10
    while fault_status(g)["inputs_returned"] < fs0["inputs_returned"] + 3:
        check(time.monotonic() < deadline, "good inputq buffer not used")
        time.sleep(0.1)
    fs = fault_status(g)
    check_eq((fs["last_req_type"], fs["last_req_value"], fs["last_input_len"]),
             (0, 7 * MiB, 16), "request in the good buffer (type, value, len)")
    e1 = device_errors(g)
    check_eq(e1["bad-input-buffer"] - e0["bad-input-buffer"], 2,
             "bad inputq buffers counted")
    g.sh("memtouch --verify 128", timeout=120)
    check_eq(g.vm.qmp("query-status")["status"], "running", "VM status")
    logged = ""
    if g.dev.kind == "native":
        with open(g.vm.path("qemu.log"), errors="replace") as f:
            logged = f.read()
        lines = logged.count("virtio-balloon13: unaligned:")
        # At most 10 lines per kind and minute (the scenario takes less
        # than two), the last of a burst saying so.
        check(lines <= 20, "%d 'unaligned' lines logged, want at most 20",
              lines)
        check("unaligned: page list of 16 bytes rejected at address" in logged
              and re.search(r"\(further ones (this minute )?are counted, "
                            r"not logged\)", logged),
              "guest errors not logged as expected: %s", logged[-300:])
    total = sum(v for k, v in e1.items() if k not in ("accepted", "rejected"))
    say("hostile-guest: %d commands and %d random messages, %d guest errors "
        "counted, all buffers returned%s"
        % (len(FAULTS), n, total, ", QEMU log rate limited" if logged else ""))


@scenario("churn-native", "churn", devices=("native",), series=("6.12",))
def t_churn_native(g):
    """churn against the native device, its outputq held while the guest works."""
    basic.t_churn(g)
