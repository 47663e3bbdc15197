"""Scenarios only the debug kernel (series 6.12-debug, scripts/build-debug-kernel.sh)
can run: its memory leak detector over the driver's whole life.

Every scenario on every series already fails on a kernel report (KASAN,
lockdep, DEBUG_LIST, ... all print lines BAD_DMESG matches); what the
debug kernel adds beyond reports is kmemleak.  It is built in but off by
default (it doubles the cost of everything under TCG), so this group boots
its own VM with kmemleak=on.  tests/debug-kernel/check.py proves that
these checks are on and reach out-of-tree modules.
"""

import re
import time

from e2elib import MiB, check, group, say, scenario

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
