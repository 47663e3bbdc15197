"""Scenarios only the debug kernel (series 6.12-debug, scripts/build-debug-kernel.sh)
can run: its memory leak detector over the driver's whole life, and its
DMA-API debugging with the device behind an emulated IOMMU.

Every scenario on every series already fails on a kernel report (KASAN,
lockdep, DEBUG_LIST, ... all print lines BAD_DMESG matches); what the
debug kernel adds beyond reports is kmemleak.  It is built in but off by
default (it doubles the cost of everything under TCG), so this group boots
its own VM with kmemleak=on.  tests/debug-kernel/check.py proves that
these checks are on and reach out-of-tree modules.
"""

import re
import time

from e2elib import SYS_GLOB, MiB, check, check_eq, group, say, scenario

KMEMLEAK = "/sys/kernel/debug/kmemleak"

group("kmemleak", mem="1024M", vm={"append": "kmemleak=on"})


def kmemleak_scan(g, times):
    """Scan `times` times (a pointer held only in a register can make an
    object look unreferenced once); the report so far."""
    t0 = time.monotonic()
    g.sh(" && ".join(["echo scan > %s" % KMEMLEAK] * times), timeout=600)
    say("kmemleak: %d scan%s in %.1f s" % (times, "s" if times > 1 else "",
                                          time.monotonic() - t0))
    return g.sh("cat %s" % KMEMLEAK)


@scenario("kmemleak", "kmemleak", devices=("vu", "native"), series=("6.12-debug",))
def t_kmemleak(g):
    """load, 256 MiB inflate and deflate, 64 MiB unload, 3 cycles: kmemleak finds nothing."""
    out = g.sh("test -w %s && echo on" % KMEMLEAK, ok=None)
    check("on" in out, "kmemleak is off (%s missing): is kmemleak=on on the "
          "command line?", KMEMLEAK)
    # Objects the boot left unreferenced are not the driver's: nor is the
    # "suspected memory leaks" line this scan may log (scripts/splat.py
    # fails a scenario on it), so the scenario's log starts after it.
    kmemleak_scan(g, 1)
    g.sh("echo clear > %s" % KMEMLEAK)
    g.dmesg_mark = g.kmsg_mark()
    if g.sh("grep -q '^virtio_balloon13 ' /proc/modules && echo loaded",
            ok=None).strip():
        g.sh("rmmod virtio_balloon13")
    for cycle in range(3):
        g.modprobe()
        size = (256 if cycle == 0 else 64) * MiB
        check(g.resize(size, wait=True, timeout=300),
              "cycle %d: resize to %d MiB not reached", cycle + 1, size // MiB)
        g.wait_size(size, timeout=300)
        if cycle == 0:
            check(g.resize(0, wait=True, timeout=300), "resize to 0 not reached")
            g.wait_size(0, timeout=300)
        g.sh("rmmod virtio_balloon13")     # the last two with a full balloon
    leaks = kmemleak_scan(g, 2)
    objs = re.findall(r"unreferenced object 0x[0-9a-f]+ \(size (\d+)\)", leaks)
    check(not leaks.strip(), "kmemleak: %d unreferenced objects (sizes %s): %s",
          len(objs), ",".join(objs[:8]), " | ".join(leaks.strip().splitlines()[:12]))


# ---- DMA through an IOMMU ----------------------------------------------------

DMA_API = "/sys/kernel/debug/dma-api"
# VIRTIO_F_ACCESS_PLATFORM: the device reaches memory through the platform's
# DMA translation, so the driver's rings and buffers go through the DMA API.
F_ACCESS_PLATFORM = 33

# The native device behind QEMU's emulated Intel IOMMU (DMA remapping only:
# interrupt remapping would need a split irqchip, which TCG lacks).  balloon13d
# is left out: a vhost-user back end behind a vIOMMU needs the device IOTLB
# protocol, which it does not implement.
group("iommu", mem="1024M", native_props=("iommu_platform=on",),
      vm={"qemu_args": ["-device", "intel-iommu,intremap=off"],
          "append": "intel_iommu=on"})


def dma_api(g, name):
    return int(g.sh("cat %s/%s" % (DMA_API, name)).strip())


def dma_mappings(g, pci):
    """The DMA-API debug entries (mappings live now) of PCI device pci."""
    out = g.sh("grep -c ' %s ' %s/dump || true" % (pci, DMA_API))
    return int(out.strip() or 0)


@scenario("iommu", "iommu", devices=("native",), series=("6.12-debug",))
def t_iommu(g):
    """The native device with iommu_platform=on behind intel-iommu: the
    driver negotiates ACCESS_PLATFORM, maps its rings and request buffers
    through the DMA API, inflates, sends stats, deflates and unloads, and
    DMA-API debugging reports nothing (no overlapping cacheline mappings,
    no mapping left after unload)."""
    g.empty()
    check_eq(g.sh("cat %s/disabled" % DMA_API).strip(), "N",
             "DMA-API debugging disabled")
    check_eq(dma_api(g, "error_count"), 0, "DMA-API errors before the "
             "scenario")
    feats = g.features()
    check(F_ACCESS_PLATFORM in feats, "VIRTIO_F_ACCESS_PLATFORM not "
          "negotiated (features %s)", sorted(feats))
    # The PCI function under the virtio device, in the IOMMU's group.
    pci = g.sh("for d in %s; do basename $(readlink -f $d/..); break; done"
               % SYS_GLOB).strip()
    check(re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", pci),
          "no PCI function under the balloon: %r", pci)
    grp = g.sh("readlink /sys/bus/pci/devices/%s/iommu_group || echo none"
               % pci).strip()
    check(grp != "none", "%s has no IOMMU group: the device is not behind "
          "the IOMMU", pci)
    dmar = g.sh("ls /sys/class/iommu 2>/dev/null | tr '\\n' ' '").strip()
    check(dmar, "no IOMMU in /sys/class/iommu")
    maps0 = dma_mappings(g, pci)
    # Rings (2 queues) and the posted requests at least.
    check(maps0 >= 3, "%d DMA mappings of %s with the driver bound: its "
          "buffers do not go through the DMA API", maps0, pci)

    size = 256 * MiB
    check(g.resize(size, wait=True, timeout=300), "resize to %d MiB not "
          "reached", size // MiB)
    g.wait_size(size, timeout=300)
    dev = g.status()
    check_eq(dev["bytes_received"], size, "device bytes_received")
    check_eq(dev["bytes_in_balloon"], size,
             "device bytes_in_balloon (host memory given back)")
    stats = g.dev.stats()
    check(stats, "no statistics from the guest")
    check(g.resize(0, wait=True, timeout=300), "resize to 0 not reached")
    g.wait_size(0, timeout=300)
    maps1 = dma_mappings(g, pci)
    check_eq(maps1, maps0, "DMA mappings of %s after 256 MiB in and out "
             "(as many as before)" % pci)
    g.sh("rmmod virtio_balloon13")
    maps2 = dma_mappings(g, pci)
    check_eq(maps2, 0, "DMA mappings of %s after rmmod" % pci)
    check_eq(dma_api(g, "error_count"), 0, "DMA-API errors")
    g.modprobe()
    say("iommu: %s in IOMMU group %s (%s), ACCESS_PLATFORM negotiated; "
        "%d DMA mappings bound (as many after 256 MiB in and out), 0 after "
        "rmmod; 256 MiB ballooned and given back to the host, stats "
        "received; DMA-API errors 0" % (pci, grp.rsplit("/", 1)[-1], dmar,
                                         maps0))
