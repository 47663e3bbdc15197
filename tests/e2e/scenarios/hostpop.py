"""The host's own page population against the native device's count of the
balloon (issue 16, item 4: khugepaged, savevm/loadvm, dump-guest-memory).

Without VIRTIO_BALLOON13_F_WITHDRAW the native device learns that the
guest took a block back from residency (SEEK_DATA on a memfd, pagemap on
anonymous RAM).  QEMU itself populates guest RAM when it saves a snapshot
or dumps guest memory (it reads every page), and khugepaged fills the 4 KiB
holes of a 2 MiB range when it collapses it into a huge page.  None of that
is the guest withdrawing: afterwards the device's balloon must still equal
the guest's, the guest's data must be intact, and on a memfd the ballooned
memory must not stay resident on the host.  With WITHDRAW negotiated the
device counts from messages alone; the host memory check still applies.

Groups: memfd RAM (savevm, dump) and anonymous RAM with THP (khugepaged),
each with WITHDRAW offered and withheld; free page reporting is withheld
everywhere, so that no report lowers the host memory a check compares.
768 MiB guests, native device only, kernel 6.12 only (make check time).
"""

import contextlib
import fcntl
import os
import re
import time

from e2elib import (F_WITHDRAW, MiB, Skip, check, check_eq, group, mib, say, scenario,
                    vmlib)
from scenarios import features, ramtypes

MEM = 768 * MiB
BALLOON = 256 * MiB
# Host memory beyond RAM - balloon that a VM may hold with every other
# page populated: firmware and option ROM copies are in guest RAM already,
# so this is only the guest's own churn between two readings (its shell,
# page cache of the commands it runs).  A repopulated balloon is 256 MiB.
SLACK = 48 * MiB
SERIES = ("6.12",)

for _name, _props, _backend in (
        ("hostpop", (), "memfd"),
        ("hostpop-nowd", ("withdraw=off",), "memfd"),
        ("hostpop-anon", (), "anon"),
        ("hostpop-anon-nowd", ("withdraw=off",), "anon")):
    group(_name, mem="%dM" % (MEM // MiB),
          native_props=_props + ("free-page-reporting=off",),
          vm={"mem_backend": _backend}, requires=features.requires)


def _features(g, withdraw):
    check_eq(F_WITHDRAW in g.features(), withdraw, "WITHDRAW negotiated")


def _fill(g, withdraw):
    """Checksummed data, every free page populated, then BALLOON
    ballooned: returns (sha256, host memory of guest RAM)."""
    sum0 = ramtypes._data(g)
    st = g.empty()
    _features(g, withdraw)
    # Populate all but the balloon-to-be, so that the host memory the
    # guest RAM holds is RAM - balloon after inflating, and any block of
    # the balloon populated again shows.
    touch = (st["mem"]["MemAvailable"] - 32 * MiB) // MiB
    g.sh("memtouch %d" % touch, timeout=180)
    check(g.resize(BALLOON, wait=True, timeout=180),
          "balloon of %s not reached", mib(BALLOON))
    g.wait_size(BALLOON, 180)
    res = g.resident()
    if g.vm.mem_backend != "anon":
        check(res <= MEM - BALLOON + SLACK, "host holds %s of guest RAM with "
              "%s ballooned before the test (want <= %s)", mib(res),
              mib(BALLOON), mib(MEM - BALLOON + SLACK))
    _same_count(g, BALLOON, "after inflating")
    return sum0, res


def _same_count(g, want, when):
    """The guest's balloon is `want`, and the device's equals it."""
    st = g.state()
    s = g.status()          # after a whole residency scan (x-scan-now)
    c = s["counters"]
    bs = s["block_size"]
    guest = st["sys"]["size_bytes"]
    say("%s: guest %s (%d blocks), device %s in balloon (%d unpopulated, "
        "%d withdrawn so far), query-balloon %s" % (
            when, mib(guest), st["sys"]["num_blocks"],
            mib(c["blocks-in-balloon"] * bs), c["blocks-unpopulated"],
            c["blocks-withdrawn"], mib(g.vm.qmp("query-balloon")["actual"])))
    check_eq(guest, want, "guest size_bytes %s" % when)
    check_eq(st["sys"]["num_blocks"] * bs, guest, "guest num_blocks %s"
             % when)
    if "num_blocks" in st["cnt"]:
        check_eq(st["cnt"]["num_blocks"] * bs, guest,
                 "guest debugfs num_blocks %s" % when)
    check_eq(c["blocks-in-balloon"] * bs, guest,
             "device's blocks-in-balloon %s" % when)
    # Without WITHDRAW the device also keeps blocks the guest freed unused
    # after a deflate and never touched since (it can't see them go; the
    # target caps what it counts): only with WITHDRAW is its bitmap the
    # balloon exactly.
    if F_WITHDRAW in g.features():
        check_eq(s["bytes_in_balloon"], guest,
                 "device's bitmap %s" % when)
    check_eq(g.vm.qmp("query-balloon")["actual"], MEM - guest,
             "query-balloon %s" % when)
    check_eq(s["rejected"], 0, "rejected messages")
    check_eq(s["discard_errors"], 0, "discard errors")


def _host_kept(g, res0, when):
    """The ballooned memory is not resident again (memfd)."""
    res = g.resident()
    say("%s: guest RAM holds %s of host memory (%s before)"
        % (when, mib(res), mib(res0)))
    check(res <= MEM - BALLOON + SLACK,
          "%s: host holds %s of guest RAM with %s ballooned (want <= %s; "
          "%s before): the balloon was populated again", when, mib(res),
          mib(BALLOON), mib(MEM - BALLOON + SLACK), mib(res0))
    return res


def _finish(g, sum0):
    """Deflate; guest data and memory intact."""
    check_eq(ramtypes._sum(g), sum0, "sha256 of the guest's data")
    g.resize(0)
    st = g.wait_size(0)
    check_eq(st["mem"]["MemTotal"], g.base_memtotal, "MemTotal after deflate")
    g.sh("memtouch --verify %d" % (MEM // MiB // 2), timeout=180)
    check_eq(ramtypes._sum(g), sum0, "sha256 after deflating")


# ---- savevm / loadvm --------------------------------------------------------

def _snapshot_disk(vm):
    """A qcow2 image for the VM state, made and attached over QMP (node
    "snap"): no qemu-img needed, and the VM has no disk otherwise."""
    path = vm.path("snap.qcow2")
    if "snap" in [n.get("node-name") for n in
                  vm.qmp("query-named-block-nodes", flat=True)]:
        return
    for job, opts in (("mkfile", {"driver": "file", "filename": path,
                                  "size": 0}),
                      ("mkqcow2", {"driver": "qcow2", "file": "snapfile",
                                   "size": 64 * MiB})):
        if job == "mkqcow2":
            vm.qmp("blockdev-add", driver="file", filename=path,
                   _args={"node-name": "snapfile"})
        vm.qmp("blockdev-create", _args={"job-id": job, "options": opts})
        _wait_job(vm, job, 60)
    vm.qmp("blockdev-add", driver="qcow2", file="snapfile",
           _args={"node-name": "snap"})


def _wait_job(vm, job, timeout):
    deadline = time.monotonic() + timeout
    while True:
        for j in vm.qmp("query-jobs"):
            if j["id"] != job:
                continue
            if j["status"] == "concluded":
                vm.qmp("job-dismiss", id=job)
                check("error" not in j, "job %s: %s", job, j.get("error"))
                return
        check(time.monotonic() < deadline, "job %s not done in %d s", job,
              timeout)
        time.sleep(0.1)


def _snapshot(vm, cmd, tag):
    """snapshot-save or snapshot-load of tag on node snap; returns s."""
    t0 = time.monotonic()
    args = {"job-id": cmd, "tag": tag, "vmstate": "snap", "devices": ["snap"]}
    vm.qmp(cmd, _args=args)
    _wait_job(vm, cmd, 300)
    return time.monotonic() - t0


def _savevm(g, withdraw):
    vm = g.vm
    sum0, res0 = _fill(g, withdraw)
    _snapshot_disk(vm)
    c0 = g.dev.counters()
    secs = _snapshot(vm, "snapshot-save", "hostpop")
    check_eq(vm.qmp("query-status")["status"], "running",
             "run state after snapshot-save")
    say("snapshot-save in %.1f s; device skipped %s for migration "
        "meanwhile" % (secs, mib(g.dev.counters()["migration-skipped-bytes"]
                                - c0["migration-skipped-bytes"])))
    _same_count(g, BALLOON, "after snapshot-save")
    res1 = _host_kept(g, res0, "after snapshot-save")
    check_eq(ramtypes._sum(g), sum0, "sha256 after snapshot-save")

    # Move away from the snapshot: an empty balloon, other memory in use;
    # loading it must bring the balloon back on both sides.
    g.resize(0)
    g.wait_size(0)
    g.sh("memtouch 256", timeout=180)
    secs = _snapshot(vm, "snapshot-load", "hostpop")
    check_eq(vm.qmp("query-status")["status"], "running",
             "run state after snapshot-load")
    say("snapshot-load in %.1f s, device discarded %s on load"
        % (secs, mib(g.dev.counters()["discarded-on-load-bytes"])))
    _same_count(g, BALLOON, "after snapshot-load")
    check_eq(g.dev.get("target-size"), BALLOON, "target after snapshot-load")
    _host_kept(g, res1, "after snapshot-load")
    _finish(g, sum0)
    vm.qmp("snapshot-delete", _args={"job-id": "snapshot-delete",
                                     "tag": "hostpop", "devices": ["snap"]})
    _wait_job(vm, "snapshot-delete", 60)


@scenario("hostpop-savevm", "hostpop", devices=("native",), series=SERIES)
def t_savevm(g):
    """snapshot-save/-load (qcow2) with 256 MiB ballooned, WITHDRAW on."""
    _savevm(g, True)


@scenario("hostpop-savevm-nowd", "hostpop-nowd", devices=("native",),
          series=SERIES)
def t_savevm_nowd(g):
    """snapshot-save/-load (qcow2) with 256 MiB ballooned, WITHDRAW off."""
    _savevm(g, False)


# ---- dump-guest-memory ------------------------------------------------------

def _dump(g, withdraw):
    vm = g.vm
    sum0, res0 = _fill(g, withdraw)
    path = vm.path("dump.elf")
    t0 = time.monotonic()
    try:
        vm.qmp("dump-guest-memory", paging=False, protocol="file:" + path,
               timeout=300)
        size = os.path.getsize(path)
    finally:
        if os.path.exists(path):
            os.unlink(path)
    say("dump-guest-memory: %s in %.1f s" % (mib(size),
                                             time.monotonic() - t0))
    check(size >= MEM, "dump of %s, want all of RAM (%s)", mib(size),
          mib(MEM))
    check_eq(vm.qmp("query-status")["status"], "running",
             "run state after dump-guest-memory")
    _same_count(g, BALLOON, "after dump-guest-memory")
    _host_kept(g, res0, "after dump-guest-memory")
    _finish(g, sum0)


@scenario("hostpop-dump", "hostpop", devices=("native",), series=SERIES)
def t_dump(g):
    """dump-guest-memory (paging=false) with 256 MiB ballooned, WITHDRAW on."""
    _dump(g, True)


@scenario("hostpop-dump-nowd", "hostpop-nowd", devices=("native",),
          series=SERIES)
def t_dump_nowd(g):
    """dump-guest-memory (paging=false) with 256 MiB ballooned, WITHDRAW off."""
    _dump(g, False)


# ---- khugepaged -------------------------------------------------------------

THP = "/sys/kernel/mm/transparent_hugepage"
KHP = THP + "/khugepaged"


@contextlib.contextmanager
def _khugepaged_fast():
    """khugepaged scanning without pause, host-wide: its settings are
    restored afterwards, and one VB13_CACHE lock keeps two runs from
    restoring each other's."""
    os.makedirs(vmlib.CACHE, exist_ok=True)
    with open(os.path.join(vmlib.CACHE, "khugepaged.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        names = ("scan_sleep_millisecs", "alloc_sleep_millisecs",
                 "pages_to_scan")
        saved = {}
        for n in names:
            with open(os.path.join(KHP, n)) as f:
                saved[n] = f.read().strip()
        try:
            for n, v in zip(names, ("0", "0", str(1 << 20))):
                with open(os.path.join(KHP, n), "w") as f:
                    f.write(v)
            yield
        finally:
            for n in names:
                with open(os.path.join(KHP, n), "w") as f:
                    f.write(saved[n])


def _khp(name):
    with open(os.path.join(KHP, name)) as f:
        return int(f.read())


def _ram_smaps(vm):
    """Rss, AnonHugePages and THPeligible of QEMU's guest RAM mapping."""
    out, cur, size = {}, {}, None
    with open("/proc/%d/smaps" % vm.qemu_pid) as f:
        for line in f:
            m = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                if size == vm.mem_bytes and cur.get("Rss", 0) >= out.get(
                        "Rss", 0):
                    out = cur
                size = int(m.group(2), 16) - int(m.group(1), 16)
                cur = {}
                continue
            m = re.match(r"(\w+):\s+(\d+)", line)
            if m:
                cur[m.group(1)] = int(m.group(2)) * (
                    1024 if line.rstrip().endswith("kB") else 1)
    if size == vm.mem_bytes and cur.get("Rss", 0) >= out.get("Rss", 0):
        out = cur
    return out


def _khugepaged(g, withdraw):
    try:
        with open(os.path.join(THP, "enabled")) as f:
            enabled = f.read()
    except OSError:
        raise Skip("no transparent huge pages on this host (%s)" % THP)
    if "[never]" in enabled:
        raise Skip("transparent huge pages are off on this host: %s"
                   % enabled.strip())
    sm = _ram_smaps(g.vm)
    if not sm.get("THPeligible"):
        raise Skip("QEMU's guest RAM mapping is not THP-eligible (%s)" % sm)
    sum0, res0 = _fill(g, withdraw)
    sm0 = _ram_smaps(g.vm)
    collapsed0 = _khp("pages_collapsed")
    with _khugepaged_fast():
        scans0 = _khp("full_scans")
        deadline = time.monotonic() + 60
        while _khp("full_scans") < scans0 + 2:
            check(time.monotonic() < deadline, "khugepaged made %d full "
                  "scans in 60 s", _khp("full_scans") - scans0)
            time.sleep(0.2)
    sm1 = _ram_smaps(g.vm)
    collapsed = _khp("pages_collapsed") - collapsed0
    say("khugepaged: %d huge pages collapsed host-wide; guest RAM Rss %s -> "
        "%s, AnonHugePages %s -> %s" % (
            collapsed, mib(sm0.get("Rss", 0)), mib(sm1.get("Rss", 0)),
            mib(sm0.get("AnonHugePages", 0)),
            mib(sm1.get("AnonHugePages", 0))))
    # The test needs khugepaged to have filled holes in guest RAM: huge
    # pages that were not there before, and host memory given back to it.
    check(sm1.get("AnonHugePages", 0) > sm0.get("AnonHugePages", 0),
          "khugepaged collapsed nothing in guest RAM (AnonHugePages %s -> "
          "%s): the host populated nothing", mib(sm0.get("AnonHugePages", 0)),
          mib(sm1.get("AnonHugePages", 0)))
    _same_count(g, BALLOON, "after khugepaged")
    _finish(g, sum0)


@scenario("hostpop-khugepaged", "hostpop-anon", devices=("native",),
          series=SERIES)
def t_khugepaged(g):
    """khugepaged at full speed on anonymous RAM, 4 KiB blocks, WITHDRAW on."""
    _khugepaged(g, True)


@scenario("hostpop-khugepaged-nowd", "hostpop-anon-nowd", devices=("native",),
          series=SERIES)
def t_khugepaged_nowd(g):
    """khugepaged at full speed on anonymous RAM, 4 KiB blocks, WITHDRAW off."""
    _khugepaged(g, False)
