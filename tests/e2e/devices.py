"""The host side of device 13, one class per implementation, behind the
interface every scenario uses as g.dev.

  "vu"      balloon13d, the vhost-user reference device, attached through
            QEMU's generic vhost-user device and driven with balloon13ctl
  "native"  QEMU's own virtio-balloon13-pci (issue 10), driven over QMP

A device object is made once per VM group; the runner asks it for the
VM() arguments that attach it, then attaches it to the booted VM.

Interface (every kind):
    kind, suffix          "vu" / "native"; suffix of the test label
    available(qemu)       None, or why this kind can't run here
    vm_kwargs(cfg)        scripts/vm.py VM() arguments for a VM group
    attach(vm)            after boot
    resize(nbytes, wait=False, timeout=120) -> bool
                          ask for a balloon of nbytes (a RESIZE); with
                          wait, until the device has received that much
                          (returns whether it did in time)
    status() -> dict      the device's own view, with at least STATUS_KEYS
    stats(timeout=10) -> dict
                          a fresh STATS answer: {"seq", "age_ms",
                          "values": {memtot, memfree, swap_in, swap_out,
                          majflt, minflt}} (a value the guest left out is
                          missing)
    freeze() / thaw()     stop and resume the device's processing of
                          outputq (page lists stay unanswered meanwhile)

Python 3 standard library only.
"""

import os
import signal

from e2elib import DAEMON, Fail

# Keys status() always has, whatever the device.
STATUS_KEYS = (
    "driver_ready",       # the driver set DRIVER_OK
    "page_bits",          # the device's block size, log2
    "block_size",         # 2^page_bits
    "target_bytes",       # the last RESIZE value
    "bytes_received",     # bytes named by accepted page lists, cumulative
    "bytes_in_balloon",   # what the device counts as still in the balloon
    "bytes_in_bitmap",    # ballooned and not re-ballooned since, withdrawn
                          # or not: bytes_in_balloon + withdrawn
    "blocks_withdrawn",   # blocks the guest took back by touching them
    "rejected",           # messages rejected as malformed
    "discard_errors",     # discards (punches) that failed
)


class Balloon13d:
    """balloon13d over vhost-user, with its control socket in the VM's
    temp dir."""

    kind = "vu"
    suffix = ""

    def __init__(self):
        self.g = None

    @staticmethod
    def available(qemu):
        import vm as vmlib
        if not vmlib.vhost_user_device_name(qemu):
            return "%s has no generic vhost-user device" % qemu
        if not os.access(DAEMON, os.X_OK):
            return "%s is not built" % DAEMON
        return None

    @staticmethod
    def vm_kwargs(cfg):
        args = ["--control", "{tmpdir}/ctl.sock"]
        if cfg["page_bits"] != 12:
            args += ["--page-bits", str(cfg["page_bits"])]
        return {"backend": DAEMON, "backend_args": args + cfg["vu_args"]}

    def attach(self, g):
        self.g = g

    def resize(self, nbytes, wait=False, timeout=120):
        if not wait:
            self.g.ctl("resize", nbytes)
            return False
        answer = self.g.ctl("resize", nbytes, "--wait", "--timeout", timeout,
                            timeout=timeout + 30)
        return answer.get("reached") is True

    def status(self):
        s = self.g.ctl("status")
        s["rejected"] = s["messages"]["rejected"]
        s["discard_errors"] = s["punch"]["errors"]
        return s

    def stats(self, timeout=10):
        return self.g.ctl("stats", "--timeout", timeout,
                          timeout=timeout + 30)["stats"]

    def freeze(self):
        os.kill(self.g.vm.backend_pid, signal.SIGSTOP)

    def thaw(self):
        os.kill(self.g.vm.backend_pid, signal.SIGCONT)


class Native:
    """QEMU's native virtio-balloon13-pci device (issue 10): not built yet."""

    kind = "native"
    suffix = "-native"

    def __init__(self):
        self.g = None

    @staticmethod
    def available(qemu):
        return "the native virtio-balloon13-pci device does not exist yet"

    @staticmethod
    def vm_kwargs(cfg):
        raise Fail("no native device 13")

    def attach(self, g):
        self.g = g

    def _missing(self, *args, **kwargs):
        raise Fail("no native device 13")

    resize = status = stats = freeze = thaw = _missing


KINDS = {"vu": Balloon13d, "native": Native}


def make(kind):
    return KINDS[kind]()
