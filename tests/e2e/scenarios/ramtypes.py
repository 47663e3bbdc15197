"""Device 13 on each kind of guest RAM users run (issue 16 item 4).

One VM per RAM kind (scripts/vm.py mem_backend): private anonymous memory
(QEMU's default, native device only: a vhost-user back end needs shared
RAM), a memfd, a shared file on hugetlbfs with 2 MiB pages (each VM
reserves its RAM in the host's pool for its life and gives the pages
back), and a shared regular file.  Each scenario inflates, deflates,
withdraws by touching and, on the native device, migrates and touches the
memory free page reporting discarded on the destination, with checksums
of 64 MiB of guest data throughout, and asserts the host memory given
back.

Kept lean for make check: 768 MiB guests, one VM per kind and device.
"""

import time

from e2elib import MiB, check, check_eq, group, mib, say, scenario

KINDS = ("anon", "memfd", "hugetlb", "file")
MEM = 768 * MiB
BALLOON = 256 * MiB
DATA_MIB = 64
# Host memory a migrated or ballooned side may hold beyond what the guest
# keeps: firmware, ROM copies, page tables, rounding to huge pages.
SLACK = 48 * MiB

for kind in KINDS:
    group("ram-" + kind, mem="%dM" % (MEM // MiB),
          # hugetlbfs can only give back whole 2 MiB pages.
          page_bits=21 if kind == "hugetlb" else 12,
          vm={"mem_backend": kind})


def _data(g):
    out = g.sh("[ -f /tmp/ram/sum ] && cat /tmp/ram/sum || true")
    if out.strip():
        return out.split()[0]
    out = g.sh("mkdir -p /tmp/ram && cd /tmp/ram && "
               "dd if=/dev/urandom of=data bs=1M count=%d 2>/dev/null && "
               "sha256sum data > sum && cat sum" % DATA_MIB, timeout=120)
    return out.split()[0]


def _sum(g):
    return g.sh("sha256sum /tmp/ram/data", timeout=120).split()[0]


def _settle(g, nbytes):
    check(g.resize(nbytes, wait=True, timeout=180),
          "balloon of %s not reached", mib(nbytes))
    return g.wait_size(nbytes, 180)


def _ram_scenario(g, kind):
    vm = g.vm
    sum0 = _data(g)
    g.empty()
    g.sh("memtouch %d" % (MEM // MiB // 2), timeout=180)
    r0 = g.resident()
    t0 = time.monotonic()
    st = _settle(g, BALLOON)
    t_inflate = time.monotonic() - t0
    r1 = g.resident()
    check_eq(st["sys"]["size_bytes"], BALLOON, "guest size_bytes")
    check_eq(st["mem"]["MemTotal"], g.base_memtotal - BALLOON, "MemTotal")
    # The device gave the balloon back to the host: what was resident of
    # it (the guest touched half its RAM first) is gone.
    check(r1 <= MEM - BALLOON + SLACK,
          "%s: host holds %s of guest RAM with %s ballooned (want <= %s)",
          kind, mib(r1), mib(BALLOON), mib(MEM - BALLOON + SLACK))
    s = g.status()
    check_eq(s["rejected"], 0, "rejected messages")
    check_eq(s["discard_errors"], 0, "discard errors")

    # Deflate: MemTotal back; touching the memory withdraws it.
    s0 = g.status()
    g.resize(0)
    st = g.wait_size(0)
    check_eq(st["mem"]["MemTotal"], g.base_memtotal, "MemTotal after deflate")
    # Nearly all free memory, as basic.py's deflate: the allocator hands
    # out at least half of the freed blocks again.
    touch = (st["mem"]["MemAvailable"] - 32 * MiB) // MiB
    g.sh("memtouch %d" % touch, timeout=180)
    s1 = g.status()
    r2 = g.resident()
    withdrawn = s0["bytes_in_balloon"] - s1["bytes_in_balloon"]
    # balloon13d learns of a withdrawal on hugetlbfs only from mincore()
    # on its own mapping, which the guest's writes (through QEMU's) never
    # populate: it sees none until the driver says so (explicit
    # withdrawal).  The native device asks QEMU's own mapping.
    if not (kind == "hugetlb" and g.dev.kind == "vu"):
        check(withdrawn >= BALLOON // 2,
              "%s: only %s of %s seen withdrawn after touching %d MiB",
              kind, mib(withdrawn), mib(BALLOON), touch)
    check(r2 >= r1 + BALLOON // 2,
          "%s: touching the memory again brought back only %s",
          kind, mib(r2 - r1))
    check_eq(_sum(g), sum0, "sha256 after deflate")
    say("ram-%s: inflate %s in %.2f s, host %s -> %s -> %s after touching "
        "%d MiB (%s seen withdrawn)" % (kind, mib(BALLOON), t_inflate,
                                        mib(r0), mib(r1), mib(r2), touch,
                                        mib(withdrawn)))

    if g.dev.kind != "native":
        return
    # Migration with the balloon inflated: data intact both ways.
    _settle(g, BALLOON)
    # Migration reads what the source does not skip, and on hugetlbfs the
    # blocks free page reporting punched out fault back in on the source
    # while the destination fills its own RAM: each VM's hugetlbfs
    # reserves all of its RAM in the host's pool for the VM's life
    # (vm.py mount_hugetlbfs(), min_size), so both fit, whoever else
    # uses the pool.
    dst = vm.destination()
    try:
        info = vm.migrate(dst)
        dst_res = dst.guest_ram_resident()
        vm.take_over(dst)
    finally:
        dst.close()
    c = g.dev.counters()
    say("ram-%s: migrated in %d ms, downtime %d ms, %s sent, destination "
        "holds %s, left out %s, discarded on load %s"
        % (kind, info["total-time"], info["downtime"],
           mib(info["ram"]["transferred"]), mib(dst_res),
           mib(c["migration-skipped-bytes"]),
           mib(c["discarded-on-load-bytes"])))
    st = g.state()
    check_eq(st["sys"]["size_bytes"], BALLOON, "guest size_bytes after "
             "migrating")
    check_eq(vm.qmp("query-balloon")["actual"], MEM - BALLOON,
             "query-balloon on the destination")
    check_eq(_sum(g), sum0, "sha256 after migrating")
    g.resize(0)
    g.wait_size(0)
    g.sh("memtouch --verify %d" % (MEM // MiB // 2), timeout=180)
    check_eq(_sum(g), sum0, "sha256 after deflating on the destination")
    # The destination's RAM must stay the guest's for the VM's whole life:
    # blocks free page reporting discards there fault back in when the
    # guest touches them again.  On hugetlbfs each fault takes a page from
    # the host's pool; a pool shrunk under the VM made it a SIGBUS.
    _touch_after_reporting(g, kind, c["report-discarded-bytes"])
    check_eq(_sum(g), sum0, "sha256 after touching reported memory on "
             "the destination")


def _touch_after_reporting(g, kind, reported0):
    """Wait until free page reporting has discarded at least 64 MiB more
    than reported0, then touch nearly all free memory."""
    deadline = time.monotonic() + 120
    while True:
        reported = g.dev.counters()["report-discarded-bytes"] - reported0
        if reported >= 64 * MiB:
            break
        check(time.monotonic() < deadline, "free page reporting discarded "
              "only %s in 120 s after deflating", mib(reported))
        time.sleep(1)
    st = g.state()
    touch = (st["mem"]["MemAvailable"] - 32 * MiB) // MiB
    r0 = g.resident()
    g.sh("memtouch %d" % touch, timeout=180)
    say("ram-%s: touched %d MiB after reporting discarded %s; host %s -> %s"
        % (kind, touch, mib(reported), mib(r0), mib(g.resident())))


for _kind in KINDS:
    def _make(kind):
        devices = ("native",) if kind == "anon" else ("vu", "native")

        @scenario("ram-" + kind, "ram-" + kind, devices=devices)
        def t_ram(g):
            """Inflate, deflate, withdrawal and (native) migration on this RAM kind."""
            _ram_scenario(g, kind)
        t_ram.__doc__ = ("%s RAM: inflate, deflate, withdrawal and (native) "
                         "migration with checksums." % kind)
        return t_ram
    _make(_kind)
