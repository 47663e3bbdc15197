"""The host side of device 13, one class per implementation, behind the
interface every scenario uses as g.dev.

  "vu"      balloon13d, the vhost-user reference device, attached through
            QEMU's generic vhost-user device and driven with balloon13ctl
  "native"  QEMU's own virtio-balloon13-pci, driven over QMP

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
import time

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
    """QEMU's native virtio-balloon13-pci (id vm.NATIVE_ID), driven the way
    a management layer does: QMP balloon (the guest memory wanted) and
    query-balloon, the device's QOM properties (target-size, size,
    counters, guest-stats) for the rest.

    Its status() differs from balloon13d's in one way: a withdrawn block
    leaves the native device's bitmap when a residency scan sees it, so
    bytes_in_bitmap is what entered the balloon (blocks-ballooned, a block
    counted again each time it is ballooned after a withdrawal) and
    bytes_in_balloon + blocks_withdrawn * block_size always equals it."""

    kind = "native"
    suffix = "-native"
    # "guest-stats-polling-interval" long enough that setting it asks the
    # guest for statistics exactly once.
    ONE_SHOT_S = 3600

    def __init__(self):
        self.g = None

    @staticmethod
    def available(qemu):
        import vm as vmlib
        if vmlib.NATIVE_DEVICE not in vmlib.qemu_devices(qemu):
            return "%s has no %s (qemu/device/)" % (
                qemu, vmlib.NATIVE_DEVICE)
        return None

    @staticmethod
    def vm_kwargs(cfg):
        props = ["page-bits=%d" % cfg["page_bits"]] + cfg["native_props"]
        return {"native": ",".join(props)}

    def attach(self, g):
        self.g = g

    def get(self, prop):
        return self.g.vm.native_get(prop)

    def set(self, prop, value):
        return self.g.vm.native_set(prop, value)

    def counters(self):
        """The device's counters (no residency scan)."""
        return self.get("counters")

    def scan(self):
        """A whole residency scan now, so that "size" and the counters
        count the withdrawals so far.  The device scans in small batches on
        a timer, and answers "size" and query-balloon from what it knows;
        its test property x-scan-now scans everything at once (older builds
        scanned on every read of "size")."""
        try:
            self.set("x-scan-now", True)
        except Exception as e:              # noqa: BLE001 - QMPError
            if "x-scan-now" not in str(e):
                raise
            self.get("size")

    def resize(self, nbytes, wait=False, timeout=120):
        # QMP balloon's value is the guest's RAM less the balloon, and
        # QEMU counts hot-plugged DIMMs in that RAM.
        ram = self.g.vm.mem_bytes + sum(getattr(self.g.vm, "dimms", {}).values())
        if 0 <= nbytes < ram:
            self.g.vm.qmp("balloon", value=ram - nbytes)
        else:
            self.set("target-size", nbytes)
        if not wait:
            return False
        bs = 1 << self.get("page-bits")
        want = nbytes // bs * bs
        deadline = time.monotonic() + timeout
        while True:
            self.scan()
            if self.get("size") >= want:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def status(self):
        self.scan()
        c = self.counters()
        bs = c["block-size"]
        import vm as vmlib
        vst = self.g.vm.qmp("x-query-virtio-status",
                            path="/machine/peripheral/%s/virtio-backend"
                            % vmlib.NATIVE_ID)
        ready = any(x.startswith("VIRTIO_CONFIG_S_DRIVER_OK")
                    for x in vst["status"]["statuses"])
        s = {"driver_ready": ready,
             "page_bits": bs.bit_length() - 1,
             "block_size": bs,
             "target_bytes": c["target"],
             "bytes_received": c["blocks-received"] * bs,
             "bytes_in_balloon": c["blocks-unpopulated"] * bs,
             "bytes_in_bitmap": c["blocks-ballooned"] * bs,
             "blocks_withdrawn": c["blocks-withdrawn"],
             "rejected": c["rejected-messages"],
             "discard_errors": c["discard-errors"],
             "stats": self._stats_info(c),
             "counters": c}
        return s

    def _stats_info(self, c):
        gs = self.get("guest-stats")
        age = None
        if gs["last-update"]:
            age = int(time.time() * 1000) - gs["last-update"] * 1000
        return {"seq": c["stats-messages"], "age_ms": age}

    NAMES = {"stat-swap-in": "swap_in", "stat-swap-out": "swap_out",
             "stat-major-faults": "majflt", "stat-minor-faults": "minflt",
             "stat-free-memory": "memfree", "stat-total-memory": "memtot"}

    def stats(self, timeout=10):
        seq = self.counters()["stats-messages"]
        self.set("guest-stats-polling-interval", self.ONE_SHOT_S)
        try:
            deadline = time.monotonic() + timeout
            while True:
                c = self.counters()
                if c["stats-messages"] > seq:
                    break
                if time.monotonic() > deadline:
                    raise Fail("no stats from the guest in %d s" % timeout)
                time.sleep(0.02)
        finally:
            self.set("guest-stats-polling-interval", 0)
        gs = self.get("guest-stats")
        out = self._stats_info(c)
        out["values"] = {self.NAMES[k]: v for k, v in gs["stats"].items()
                         if k in self.NAMES and v != (1 << 64) - 1}
        return out

    def freeze(self):
        self.set("x-hold-output", True)

    def thaw(self):
        self.set("x-hold-output", False)


KINDS = {"vu": Balloon13d, "native": Native}


def make(kind):
    return KINDS[kind]()
