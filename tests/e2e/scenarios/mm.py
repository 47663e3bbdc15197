"""Issue 17: the driver as a citizen of Linux memory management.

kdump       a guest booted as a crash kernel (elfcorehdr= on its command
            line makes is_kdump_kernel() true, as kexec does) binds the
            device and answers it, but never inflates, whatever the
            target: the memory belongs to makedumpfile
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
