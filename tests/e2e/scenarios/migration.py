"""Live migration of a guest with the native device 13 (virtio-balloon13-pci)
to a second QEMU on the same host, over a UNIX socket (scripts/vm.py
destination() and migrate()).  balloon13d's vhost-user device can't
migrate, so these run on the native device only.

After each scenario the guest carries on in the destination QEMU (the VM
object takes it over), so the next scenario of the group finds it there.
"""

import time

from e2elib import F_WITHDRAW, MiB, check, check_eq, group, mib, say, scenario

group("migrate", mem="1536M")
# Withdrawal by access only, and no timer scans: the device learns of
# withdrawals during a migration from its dirty bitmap syncs alone.
group("migrate-nowd", mem="1536M",
      native_props=("withdraw=off", "withdrawal-scan-ms=0",
                    "free-page-reporting=off"))

DATA_MIB = 256
# Host memory of guest RAM beyond RAM - balloon that a migrated side may
# hold: pages QEMU itself touches (firmware, ROM copies) and rounding.
RSS_TOLERANCE = 32 * MiB


def ensure_data(g):
    """256 MiB of data in tmpfs (16 copies of 16 MiB from /dev/urandom) and
    its sha256, taken once."""
    out = g.sh("[ -f /tmp/mig/sum ] && cat /tmp/mig/sum || true")
    if out.strip():
        return out.split()[0]
    out = g.sh("mkdir -p /tmp/mig && cd /tmp/mig && "
               "dd if=/dev/urandom of=r bs=1M count=16 2>/dev/null && "
               "for i in $(seq %d); do cat r; done > data && rm r && "
               "sha256sum data > sum && cat sum" % (DATA_MIB // 16),
               timeout=300)
    return out.split()[0]


def data_sum(g):
    return g.sh("sha256sum /tmp/mig/data", timeout=300).split()[0]


def wait_reached(g, nbytes, timeout=120):
    check(g.resize(nbytes, wait=True, timeout=timeout),
          "balloon of %s not reached in %d s" % (mib(nbytes), timeout))
    return g.wait_size(nbytes, timeout)


def start_migration(vm, dst, bandwidth):
    """Start migrating vm to dst at bandwidth bytes/s and wait until it is
    active (past its setup), for a scenario that acts while it runs."""
    vm.qmp("migrate-set-parameters", _args={"max-bandwidth": bandwidth})
    vm.qmp("migrate", uri=dst.incoming_uri)
    deadline = time.monotonic() + 30
    while vm.qmp("query-migrate").get("status") != "active":
        check(time.monotonic() < deadline, "migration not active in 30 s")
        time.sleep(0.05)


@scenario("migrate", "migrate", devices=("native",))
def t_migrate(g):
    """512 MiB ballooned + 256 MiB of data migrate; balloon not re-populated on either side."""
    vm, ram, balloon = g.vm, g.vm.mem_bytes, 512 * MiB
    g.empty()
    sum0 = ensure_data(g)
    wait_reached(g, balloon)
    g.dev.stats()                      # stats state to carry over
    stats0 = g.dev.get("guest-stats")
    src0 = g.resident()
    c0 = g.dev.counters()
    dst = vm.destination()
    try:
        dst0 = dst.guest_ram_resident()
        info = vm.migrate(dst)
        src1 = vm.guest_ram_resident()
        dst1 = dst.guest_ram_resident()
        vm.take_over(dst)
    finally:
        dst.close()
    ram_info = info["ram"]
    pages = ram_info["normal"] + ram_info["duplicate"]
    say("migrate: %.2f s (QEMU total %d ms, downtime %d ms), %s sent in %d "
        "pages (%d zero); host-resident guest RAM: source %s -> %s, "
        "destination %s -> %s"
        % (info["host_seconds"], info["total-time"], info["downtime"],
           mib(ram_info["transferred"]), pages, ram_info["duplicate"],
           mib(src0), mib(src1), mib(dst0), mib(dst1)))
    # The balloon was neither read nor sent...
    check(pages * 4096 <= ram - balloon + RSS_TOLERANCE,
          "%d pages (%s) migrated: the balloon was sent too",
          pages, mib(pages * 4096))
    # ... nor populated on either side.
    for side, rss in (("source", src1), ("destination", dst1)):
        check(rss <= ram - balloon + RSS_TOLERANCE,
              "%s holds %s of guest RAM after migrating, want <= %s "
              "(RAM - balloon + %s)", side, mib(rss),
              mib(ram - balloon + RSS_TOLERANCE), mib(RSS_TOLERANCE))
    check(dst1 >= ram - balloon - RSS_TOLERANCE,
          "destination holds only %s of guest RAM", mib(dst1))
    # Balloon and target unchanged, the device's state came along.
    st = g.state()
    check_eq(st["sys"]["size_bytes"], balloon, "guest size_bytes")
    check_eq(st["sys"]["target_bytes"], balloon, "guest target_bytes")
    check_eq(vm.qmp("query-balloon")["actual"], ram - balloon,
             "query-balloon on the destination")
    c1 = g.dev.counters()
    check_eq(c1["target"], balloon, "destination target")
    check_eq(c1["blocks-unpopulated"], balloon >> 12,
             "destination blocks in the balloon bitmap")
    check_eq(c1["blocks-received"], c0["blocks-received"],
             "blocks received (migrated counter)")
    check(c1["migration-skipped-bytes"] >= balloon,
          "source left only %s out of the migration",
          mib(c1["migration-skipped-bytes"]))
    check_eq(c1["discarded-on-load-bytes"], balloon,
             "bytes the destination discarded on load")
    check_eq(g.dev.get("guest-stats"), stats0, "guest-stats after migrating")
    check_eq(data_sum(g), sum0, "sha256 of the data after migrating")
    # RESIZE works both ways on the destination.
    r0 = g.resident()
    st = wait_reached(g, 768 * MiB)
    r1 = g.resident()
    check_eq(st["mem"]["MemTotal"], g.base_memtotal - 768 * MiB,
             "MemTotal at 768 MiB on the destination")
    check(r0 - r1 >= 240 * MiB, "inflating by 256 MiB on the destination "
          "freed only %s of host memory", mib(r0 - r1))
    g.resize(256 * MiB)
    st = g.wait_size(256 * MiB)
    check_eq(st["mem"]["MemTotal"], g.base_memtotal - 256 * MiB,
             "MemTotal at 256 MiB on the destination")
    check_eq(vm.qmp("query-balloon")["actual"], ram - 256 * MiB,
             "query-balloon at 256 MiB")
    g.sh("memtouch --verify 256", timeout=180)
    check_eq(data_sum(g), sum0, "sha256 of the data after resizing")
    say("migrate: destination inflated 512 -> 768 MiB (host -%s) and "
        "deflated to 256 MiB; checksums match" % mib(r0 - r1))


@scenario("migrate-inflating", "migrate", devices=("native",))
def t_migrate_inflating(g):
    """Migration while a 1 GiB inflate runs: the balloon finishes on the destination intact."""
    vm, ram, balloon = g.vm, g.vm.mem_bytes, 1024 * MiB
    g.empty()
    sum0 = ensure_data(g)
    g.sh("memtouch 700", timeout=120)    # the balloon takes touched memory
    dst = vm.destination()
    try:
        # Slow enough that the inflate runs while precopy iterates.
        start_migration(vm, dst, 64 << 20)
        g.resize(balloon)
        during, status = 0, "active"
        p0 = g.dev.counters()["page-lists"]
        while status not in ("completed", "failed", "cancelled"):
            status = vm.qmp("query-migrate")["status"]
            lists = g.dev.counters()["page-lists"]
            if status == "active":
                during = lists - p0
            time.sleep(0.05)
        check_eq(status, "completed", "migration status")
        info = vm.migrate(dst, started=True)
        vm.take_over(dst)
    finally:
        dst.close()
    say("migrate-inflating: %d page lists arrived while precopy ran; "
        "migration %d ms, downtime %d ms"
        % (during, info["total-time"], info["downtime"]))
    check(during > 0, "no page list arrived while the migration was active")
    st = wait_reached(g, balloon)
    check_eq(st["sys"]["size_bytes"], balloon, "guest size_bytes")
    check_eq(st["mem"]["MemTotal"], g.base_memtotal - balloon, "MemTotal")
    check_eq(vm.qmp("query-balloon")["actual"], ram - balloon,
             "query-balloon on the destination")
    res = g.resident()
    check(res <= ram - balloon + RSS_TOLERANCE,
          "destination holds %s of guest RAM with 1 GiB ballooned", mib(res))
    c = g.dev.counters()
    check_eq(c["rejected-messages"], 0, "rejected messages")
    check_eq(c["discard-errors"], 0, "discard errors")
    check_eq(data_sum(g), sum0, "sha256 of the data after migrating")
    # Memory works after the move: with the balloon given back first, as
    # a host that offers no pressure release must (the guest would
    # rightly OOM-kill a workload that needs the balloon's memory).
    g.resize(0)
    g.wait_size(0)
    g.sh("memtouch --verify 128", timeout=180)
    say("migrate-inflating: 1 GiB reached on the destination, which holds "
        "%s of guest RAM; checksums match" % mib(res))


@scenario("migrate-withdrawing", "migrate-nowd", devices=("native",),
          series=("6.12",))
def t_migrate_withdrawing(g):
    """No WITHDRAW, no timer scan: memory the balloon frees during a migration is written, and the data arrives."""
    vm, ram = g.vm, g.vm.mem_bytes
    g.empty()
    check(F_WITHDRAW not in g.features(), "WITHDRAW negotiated")
    sum0 = ensure_data(g)
    g.sh("memtouch 700", timeout=120)    # the balloon takes touched memory
    st = wait_reached(g, 1024 * MiB)
    free0 = st["mem"]["MemFree"]
    c0 = g.dev.counters()
    dst = vm.destination()
    try:
        start_migration(vm, dst, 16 << 20)
        # The guest takes 768 MiB back without a word and fills 384 MiB:
        # at least 384 MiB - free0 of it in blocks of the balloon.
        g.resize(256 * MiB)
        g.wait_size(256 * MiB)
        late = g.sh("dd if=/dev/urandom of=/tmp/mig/late bs=1M count=384 "
                    "2>/dev/null && sha256sum /tmp/mig/late",
                    timeout=300).split()[0]
        status = vm.qmp("query-migrate")["status"]
        vm.qmp("migrate-set-parameters", _args={"max-bandwidth": 8 << 30})
        info = vm.migrate(dst, started=True)
        vm.take_over(dst)
    finally:
        dst.close()
    say("migrate-withdrawing: the guest wrote 384 MiB while the migration "
        "was %s; downtime %d ms" % (status, info["downtime"]))
    check_eq(status, "active", "migration status after the guest wrote")
    check_eq(g.sh("sha256sum /tmp/mig/late", timeout=300).split()[0], late,
             "sha256 of the data written during the migration")
    check_eq(data_sum(g), sum0, "sha256 of the data after migrating")
    c = g.dev.counters()
    # The stop did not scan the balloon; the syncs saw the withdrawals.
    check_eq(c["scans"], c0["scans"], "residency scans (none on a timer)")
    check(c["blocks-withdrawn"] - c0["blocks-withdrawn"]
          >= (384 * MiB - free0) >> 12,
          "the device saw %d blocks withdrawn; the guest wrote at least %d "
          "(384 MiB, %s free before)", c["blocks-withdrawn"]
          - c0["blocks-withdrawn"], (384 * MiB - free0) >> 12, mib(free0))
    st = g.state()
    check_eq(st["sys"]["size_bytes"], 256 * MiB, "guest size_bytes")
    check_eq(vm.qmp("query-balloon")["actual"], ram - 256 * MiB,
             "query-balloon on the destination")
    g.resize(0)
    g.wait_size(0)
    g.sh("rm /tmp/mig/late && memtouch --verify 512", timeout=300)
    check_eq(data_sum(g), sum0, "sha256 of the data at the end")
    say("migrate-withdrawing: %d blocks seen withdrawn during the "
        "migration, checksums match"
        % (c["blocks-withdrawn"] - c0["blocks-withdrawn"]))
