"""Issue 17: the driver as a citizen of Linux memory management.

kdump       a guest booted as a crash kernel (elfcorehdr= on its command
            line makes is_kdump_kernel() true, as kexec does) binds the
            device and answers it, but never inflates, whatever the
            target: the memory belongs to makedumpfile
movable     a guest whose memory is mostly ZONE_MOVABLE (movablecore=)
            reaches a target larger than its kernel zones, from
            ZONE_MOVABLE, without squeezing the kernel's zones
offline-block  a ZONE_MOVABLE memory block holding ballooned pages goes
            offline (before the hotplug notifier: -EBUSY), the balloon
            refills to its target from the rest, sizes exact, and the
            block comes back online
"""

import time

from e2elib import MiB, check, check_eq, group, say, scenario

# The crash kernel's view of the first kernel's ELF core header.  The
# address need not hold one: the vmcore setup just fails ("vmcore not
# initialized"), and the kernel stays a kdump kernel all the same.
group("kdump", mem="768M", vm={"append": "elfcorehdr=0x3000000"})


@scenario("kdump", "kdump", devices=("vu", "native"))
def t_kdump(g):
    """A kdump kernel binds the device but never inflates: size 0 after
    RESIZE 256 MiB, nothing sent, MemTotal unchanged."""
    base = g.base_memtotal
    st = g.modprobe()
    check(any("kdump kernel: the balloon stays empty" in ln
              for ln in g.new_dmesg()),
          "no 'kdump kernel: the balloon stays empty' line in dmesg")
    s0 = g.status()
    g.resize(256 * MiB)
    # Give the driver time to act on it, had it meant to.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        st = g.state()
        check_eq(st["sys"]["size_bytes"], 0, "size_bytes in a kdump kernel")
        time.sleep(0.5)
    check_eq(st["sys"]["target_bytes"], 256 * MiB, "target_bytes (as asked)")
    check_eq(st["cnt"]["requests_resize"], 1, "RESIZE requests received")
    check_eq(st["cnt"]["blocks_inflated"], 0, "blocks_inflated")
    check_eq(st["mem"]["MemTotal"], base, "MemTotal")
    s1 = g.status()
    check_eq(s1["bytes_received"] - s0["bytes_received"], 0,
             "bytes the device received")
    g.resize(0)
    say("kdump: RESIZE 256 MiB received, balloon stayed empty, "
        "MemTotal %d MiB unchanged" % (base // MiB))


def zoneinfo(g):
    """{zone name: {"free", "low", "managed"}} in pages, from /proc/zoneinfo
    (node 0; these guests have one node)."""
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


# Most of this guest's memory is ZONE_MOVABLE, as with virtio-mem, DIMMs
# onlined movable, movable_node or movablecore=: only the kernel's zones
# (about 512 MiB here) can hold kernel allocations.
group("movable", mem="2G", vm={"append": "movablecore=1536M"})


@scenario("movable", "movable", devices=("vu", "native"))
def t_movable(g):
    """A guest whose memory is mostly ZONE_MOVABLE: the balloon reaches a
    target larger than the kernel's zones from ZONE_MOVABLE, no OOM, the
    kernel's zones keep their watermarks."""
    base = g.base_memtotal
    g.modprobe()
    z0 = zoneinfo(g)
    movable = z0.get("Movable", {}).get("managed", 0) * 4096
    check(movable >= 1024 * MiB, "ZONE_MOVABLE has %d MiB (movablecore= not "
          "honoured?)", movable // MiB)
    # Beyond what the kernel's zones have: only ZONE_MOVABLE can give it.
    target = (movable - 128 * MiB) // 4096 * 4096
    g.resize(target)
    st = g.wait_size(target, timeout=180)
    check_eq(st["mem"]["MemTotal"], base - target, "MemTotal")
    c = st["cnt"]
    check(c["movable_blocks"] * 4096 >= target - 64 * MiB,
          "only %d MiB of %d MiB ballooned from ZONE_MOVABLE",
          c["movable_blocks"] * 4096 // MiB, target // MiB)
    check_eq(c["held_by_zones"], 0, "held_by_zones")
    z1 = zoneinfo(g)
    for name in ("Normal", "DMA32"):
        zone = z1.get(name)
        if zone and zone.get("managed", 0) > 16384:
            check(zone["free"] >= zone["low"],
                  "zone %s free %d pages, below its low watermark %d",
                  name, zone["free"], zone["low"])
    oom = g.sh("grep '^oom_kill ' /proc/vmstat || echo 'oom_kill 0'").split()
    check_eq(int(oom[1]), 0, "oom_kill")
    g.resize(0)
    g.wait_size(0, timeout=120)
    say("movable: %d MiB ballooned, %d MiB of it from ZONE_MOVABLE (%d MiB "
        "there); kernel zones kept their watermarks"
        % (target // MiB, c["movable_blocks"] * 4096 // MiB, movable // MiB))


def offlinable_block(g):
    """The highest ZONE_MOVABLE memory block that goes offline while the
    balloon is empty (and is put back online).  Which blocks can't is the
    kernel's business: with movablecore= its early (memblock) allocations
    may land in what becomes ZONE_MOVABLE, and the top block holds firmware
    tables; those stay busy with or without the balloon."""
    blocks = g.sh("cd /sys/devices/system/memory && for m in memory*; do "
                  "[ \"$(cat $m/state)\" = online ] && "
                  "grep -q Movable $m/valid_zones && echo ${m#memory}; done | "
                  "sort -rn").split()
    for blk in blocks[:8]:
        out = g.sh("cd /sys/devices/system/memory/memory%s && "
                   "echo offline > state 2>/dev/null; echo rc=$?" % blk,
                   timeout=120)
        if "rc=0" in out:
            back = g.sh("echo online_movable > /sys/devices/system/memory/"
                        "memory%s/state 2>&1; echo rc=$?" % blk, timeout=120)
            check("rc=0" in back, "onlining memory%s again failed: %s", blk,
                  back.strip())
            return blk
    check(False, "none of memory%s offlines with the balloon empty",
          ",".join(blocks[:8]))


@scenario("offline-block", "movable", devices=("vu", "native"))
def t_offline_block(g):
    """Memory holding ballooned pages goes offline (the driver gives its
    blocks back first), sizes stay exact, the balloon returns to its
    target from the rest, and the memory comes back online."""
    base = g.base_memtotal
    g.modprobe()
    movable = zoneinfo(g).get("Movable", {}).get("managed", 0) * 4096
    check(movable >= 1024 * MiB, "ZONE_MOVABLE has %d MiB", movable // MiB)
    bs = int(g.sh("cat /sys/devices/system/memory/block_size_bytes"), 16)
    blk = offlinable_block(g)
    # Nearly all of ZONE_MOVABLE: every block of it holds ballooned pages.
    target = (movable - 64 * MiB) // 4096 * 4096
    g.resize(target)
    g.wait_size(target, timeout=180)
    c0 = g.state()["cnt"]
    out = g.sh("echo offline > /sys/devices/system/memory/memory%s/state "
               "2>&1; echo rc=$?; cat /sys/devices/system/memory/memory%s/state"
               % (blk, blk), timeout=120)
    check("rc=0" in out and out.strip().endswith("offline"),
          "offlining memory%s failed: %s", blk, " ".join(out.split())[-120:])
    st = g.wait_size(target, timeout=180)
    c = st["cnt"]
    given = (c["hotplug_blocks"] - c0["hotplug_blocks"]) * 4096
    check(0 < given <= bs, "the balloon gave back %d MiB for a %d MiB block",
          given // MiB, bs // MiB)
    check_eq(st["mem"]["MemTotal"], base - bs - target,
             "MemTotal with the block offline")
    out = g.sh("echo online_movable > /sys/devices/system/memory/memory%s/state"
               " 2>&1; echo rc=$?" % blk, timeout=120)
    check("rc=0" in out, "onlining memory%s failed: %s", blk, out.strip())
    st = g.wait_size(target, timeout=120)
    check_eq(st["mem"]["MemTotal"], base - target, "MemTotal back online")
    g.resize(0)
    g.wait_size(0, timeout=120)
    check_eq(g.state()["mem"]["MemTotal"], base, "MemTotal empty")
    say("offline-block: memory%s (%d MiB) offlined with %d MiB of it in the "
        "balloon, which went back to %d MiB from the rest; online again"
        % (blk, bs // MiB, given // MiB, target // MiB))
