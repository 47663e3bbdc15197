#!/usr/bin/python3
"""Boot a virtio_balloon13 test guest in QEMU (TCG) and drive it.

Importable (``from vm import VM``) and a command line tool:

    python3 scripts/vm.py --series 6.12 [--mem 1536M] [--module KO]... \\
        [--backend PATH ARGS...] -- CMD

boots a guest, runs the shell command CMD in it, prints its output and
exits with its status.

The guest is Debian's stock kernel (scripts/fetch-kernels.sh) with a
busybox initramfs (scripts/mkinitramfs.sh) whose init serves a command
channel on the second serial port; the kernel console is the first one and
goes to a log file, so kernel messages never mix with command output.
Guest RAM is a shared memfd, so a vhost-user backend (balloon13d) can map
it and give pages back to the host.

QMP goes through QEMU's own Python library, qemu.qmp
(scripts/fetch-qemu-qmp.sh provides it); otherwise the Python 3 standard
library only.
"""

import argparse
import asyncio
import atexit
import base64
import concurrent.futures
import ctypes
import fcntl
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import threading
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(TOP, "scripts")
CACHE = os.environ.get("VB13_CACHE", "/var/cache/virtio_balloon13")
FIRMWARE_DIRS = ("/usr/share/qemu", "/usr/share/seabios")
VHOST_USER_DEVICES = ("vhost-user-device-pci", "vhost-user-test-device-pci")
# QEMU's native device 13 (qemu/device/) and the qdev id
# vm.py gives it: qom-get/qom-set path /machine/peripheral/<NATIVE_ID>.
NATIVE_DEVICE = "virtio-balloon13-pci"
NATIVE_ID = "b13"
# "max" without ERMS/FSRM: the kernel then clears pages with `rep stosq`
# instead of `rep stosb`, which TCG runs 2-4x faster (page faults, the
# balloon's allocations and init_on_alloc all clear pages).
DEFAULT_CPU = "max,erms=off,fsrm=off"

_READY = b"@@VB13-READY"
_PM = b"@@VB13-PM "
_PM_START = b"@@VB13-PM-START"
# S3 VMs boot OVMF: SeaBIOS does not restore the ICH9 LPC's ACPI PM base on
# resume, so a SeaBIOS guest loses its PM timer and ACPI after the first S3.
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
# The PCIe root port VM(root_port=True) puts the vhost-user device on.
ROOT_PORT = "vb13rp"
ROOT_PORT_DEVICE = "pcie-root-port,id=%s,chassis=13,slot=0" % ROOT_PORT
_OUT = re.compile(rb"@@VB13-OUT (\d+) (\d+) (\d+)\n")


class VMError(Exception):
    """Something went wrong starting or talking to the VM."""


class BootError(VMError):
    """The guest did not come up; the message ends with the console tail."""


class CommandTimeout(VMError):
    """A guest command did not answer in time; the channel is unusable."""


class CommandError(VMError):
    """A command run with check=True exited non-zero."""

    def __init__(self, cmd, status, output):
        super().__init__("guest command failed with status %d: %s\n%s"
                         % (status, cmd, output[-4000:]))
        self.cmd = cmd
        self.status = status
        self.output = output


class QMPError(VMError):
    """QMP answered with an error."""

    def __init__(self, cmd, error):
        super().__init__("QMP %s: %s: %s" % (cmd, error.get("class"),
                                              error.get("desc")))
        self.error_class = error.get("class")
        self.desc = error.get("desc")


_qemu_qmp = None


def qemu_qmp():
    """QEMU's qemu.qmp package (scripts/fetch-qemu-qmp.sh puts it on
    sys.path the first time)."""
    global _qemu_qmp
    if _qemu_qmp is None:
        try:
            import qemu.qmp as mod
        except ImportError:
            sys.path.insert(0, _script_output(
                ["bash", os.path.join(SCRIPTS, "fetch-qemu-qmp.sh")]))
            import qemu.qmp as mod
        _qemu_qmp = mod
    return _qemu_qmp


class _QMPLink:
    """One QMP connection through qemu.qmp's QMPClient (asyncio), run on an
    event loop thread of its own so that any thread may use it: a command
    waits for its own answer, and every event lands in .events (under
    .cond) in the order QEMU sent it, before the answer of any command
    QEMU sent after it."""

    def __init__(self, name):
        self.mod = qemu_qmp()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever,
                                       name="qmp-" + name, daemon=True)
        self.thread.start()
        self.cond = threading.Condition()
        self.events = []
        self.client = self._run(self._make(name), 10)
        self._accepting = None

    async def _make(self, name):
        link = self

        class Collect(self.mod.EventListener):
            async def put(self, event):
                with link.cond:
                    link.events.append(dict(event))
                    link.cond.notify_all()

        client = self.mod.QMPClient(name)
        client.register_listener(Collect())
        return client

    def _run(self, coro, timeout):
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise

    @property
    def running(self):
        return self.client.runstate == self.mod.Runstate.RUNNING

    def listen(self, path):
        """Listen on the UNIX socket path (before QEMU starts)."""
        self._run(self.client.start_server(path), 10)
        self._accepting = asyncio.run_coroutine_threadsafe(
            self.client.accept(), self.loop)

    def accepted(self, timeout):
        """Whether QEMU connected and the session (greeting, capabilities
        negotiation) is up within timeout seconds; raises its error."""
        try:
            self._accepting.result(timeout)
            return True
        except concurrent.futures.TimeoutError:
            return False

    def execute(self, cmd, args, timeout):
        return self._run(self.client.execute(cmd, args or None), timeout)

    def wait_closed(self, timeout):
        """Wait until QEMU's end of the connection is gone (every message
        it sent has been read by then)."""
        async def closed():
            while self.running:
                await self.client.runstate_changed()
        try:
            self._run(closed(), timeout)
        except concurrent.futures.TimeoutError:
            pass

    def close(self):
        if self._accepting and not self._accepting.done():
            self._accepting.cancel()
        try:
            self._run(self.client.disconnect(), 10)
        except Exception:   # QEMU gone first: disconnect() re-raises that
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


def parse_size(text):
    """'1536M', '2G', '1073741824' -> bytes."""
    m = re.fullmatch(r"(\d+)([KMGT]?)i?B?", str(text).strip(), re.I)
    if not m:
        raise ValueError("bad size %r (want e.g. 1536M or 2G)" % (text,))
    shift = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]
    return int(m.group(1)) << shift


def _script_output(argv):
    """Run one of our scripts and return the last line it printed."""
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, check=False)
    if proc.returncode != 0:
        raise VMError("%s failed (status %d):\n%s" % (
            " ".join(argv), proc.returncode, proc.stderr[-3000:]))
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise VMError("%s printed nothing" % " ".join(argv))
    return lines[-1]


def qemu_binary():
    """$VB13_QEMU, else the patched QEMU from scripts/build-qemu.sh."""
    if os.environ.get("VB13_QEMU"):
        return os.environ["VB13_QEMU"]
    return _script_output(["bash", os.path.join(SCRIPTS, "build-qemu.sh")])


def kernel_env(series):
    """KVER, VMLINUZ, MODROOT, KDIR of a kernel series (fetching it if needed)."""
    path = os.path.join(CACHE, "kernels", "%s.env" % series)
    if not os.path.exists(path):
        _script_output(["bash", os.path.join(SCRIPTS, "fetch-kernels.sh"), series])
    env = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            if key:
                env[key] = value
    if not os.path.exists(env.get("VMLINUZ", "")):
        _script_output(["bash", os.path.join(SCRIPTS, "fetch-kernels.sh"), series])
        return kernel_env(series)
    return env


def debug_kernel_extra_mem(mem_bytes):
    """RAM a debug kernel's guest gets on top of what was asked for: KASAN
    keeps 1/8 of all RAM as its shadow, and the debug kernel is bigger, so
    its MemTotal ends up about what the stock kernel's is in `mem_bytes`."""
    extra = mem_bytes // 7 + (64 << 20)
    return extra - extra % (2 << 20)


def initramfs(series, modules=()):
    """Path of the (cached) initramfs for a series with extra modules."""
    return _script_output(["bash", os.path.join(SCRIPTS, "mkinitramfs.sh"),
                           series] + [os.path.abspath(m) for m in modules])


_device_help = {}


def qemu_devices(qemu):
    """Device names the QEMU binary offers (cached per binary)."""
    if qemu not in _device_help:
        out = subprocess.run(
            [qemu] + _firmware_args() + ["-device", "help"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            check=False).stdout
        _device_help[qemu] = set(re.findall(r'^name "([^"]+)"', out, re.M))
    return _device_help[qemu]


def vhost_user_device_name(qemu):
    """The generic vhost-user PCI device this QEMU has (None if neither)."""
    devices = qemu_devices(qemu)
    for name in VHOST_USER_DEVICES:
        if name in devices:
            return name
    return None


def _firmware_args():
    args = []
    for d in FIRMWARE_DIRS:
        if os.path.isdir(d):
            args += ["-L", d]
    return args


def _die_with_parent():
    """preexec_fn: SIGKILL this child when the process that started it dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _tail(path, nbytes=6000):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - nbytes))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# Guest RAM kinds VM(mem_backend=...) offers, and whether another process
# (a vhost-user back end) can map them.
MEM_BACKENDS = {"memfd": True, "anon": False, "hugetlb": True, "file": True,
                "thp": True}
HUGE_PAGE = 2 << 20


HUGE_SYSFS = "/sys/kernel/mm/hugepages/hugepages-2048kB/"
# Every change this project makes to the host's pool of 2 MiB pages, and
# every mount or unmount that reserves from it, holds this lock: a grow
# counts as ours only what it added, and a VM's mount takes its
# reservation before anyone else can take the pages.
HUGE_POOL_LOCK = os.path.join(CACHE, "hugetlb-pool.lock")


def huge_pool():
    """The host's pool of 2 MiB pages: {"nr", "free", "resv", "surplus",
    "overcommit"} in pages, from sysfs."""
    def read(name):
        with open(HUGE_SYSFS + name) as f:
            return int(f.read())
    return {"nr": read("nr_hugepages"), "free": read("free_hugepages"),
            "resv": read("resv_hugepages"),
            "surplus": read("surplus_hugepages"),
            "overcommit": read("nr_overcommit_hugepages")}


def _pool_text(p):
    return ("nr_hugepages %d, HugePages_Free %d, HugePages_Rsvd %d, "
            "HugePages_Surp %d" % (p["nr"], p["free"], p["resv"],
                                   p["surplus"]))


def _set_nr_hugepages(n):
    with open("/proc/sys/vm/nr_hugepages", "w") as f:
        f.write(str(n))


class _HugePoolLock:
    """flock(2) on HUGE_POOL_LOCK, shared with scripts/qemu-qtest.sh."""

    def __enter__(self):
        os.makedirs(CACHE, exist_ok=True)
        self._f = open(HUGE_POOL_LOCK, "a")
        fcntl.flock(self._f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self._f.close()         # drops the lock
        return False


def _grow_huge_pool(want):
    """With the lock held: grow the pool until `want` pages are free and
    reserved for no one (HugePages_Free - HugePages_Rsvd), compacting
    memory once if the kernel found too few (a fragmented host).  Returns
    the pages added; VMError (pool as it was) if they could not be had."""
    p0 = huge_pool()
    for compact in (False, True):
        p = huge_pool()
        short = want - (p["free"] - p["resv"])
        if short <= 0:
            break
        if compact:
            with open("/proc/sys/vm/compact_memory", "w") as f:
                f.write("1")
        _set_nr_hugepages(p["nr"] + short)
    p = huge_pool()
    added = p["nr"] - p0["nr"]
    if p["free"] - p["resv"] < want:
        _shrink_huge_pool(added)
        raise VMError("the host's pool of 2 MiB pages has %d free pages "
                      "reserved for no one, %d wanted, even after "
                      "compaction: %s" % (p["free"] - p["resv"], want,
                                          _pool_text(p)))
    return added


def _shrink_huge_pool(n):
    """With the lock held: give back n pages added earlier, but never
    shrink below the pages in use or reserved (the kernel would turn
    in-use pages into surplus pages, which a later fault can't replace:
    SIGBUS)."""
    if n <= 0:
        return
    p = huge_pool()
    floor = p["nr"] - p["free"] + p["resv"]
    target = max(p["nr"] - n, floor)
    if target < p["nr"]:
        _set_nr_hugepages(target)


def mount_hugetlbfs(path, size):
    """Mount a hugetlbfs of 2 MiB pages at `path` that holds `size` bytes
    and reserves them from the host's pool (min_size) for as long as it is
    mounted, growing the pool (/proc/sys/vm/nr_hugepages) as needed.

    The reservation is what keeps guest RAM there: a block a balloon or
    free page reporting punched out loses the file's own reservation, and
    faulting it back in (the guest touching it, migration reading it)
    needs a page of the pool; without min_size that page is anyone's, and
    when someone else has it (or the pool was shrunk) the fault is a
    SIGBUS.  With min_size the kernel keeps the mount's pages allocated
    or reserved, whatever other mappers do.

    Returns the pages added to the pool; give them back with
    umount_hugetlbfs().  Needs root; VMError (nothing left changed) if
    the pool can't hold them or the mount is refused."""
    want = -(-size // HUGE_PAGE)
    with _HugePoolLock():
        added = _grow_huge_pool(want)
        r = subprocess.run(["mount", "-t", "hugetlbfs", "-o",
                            "pagesize=2M,size=%d,min_size=%d,mode=0700"
                            % (size, size), "vb13-hugetlb", path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, check=False)
        if r.returncode != 0:
            p = huge_pool()
            _shrink_huge_pool(added)
            raise VMError("cannot mount a hugetlbfs reserving %d 2 MiB "
                          "pages at %s: %s (%s)" % (want, path,
                                                    r.stdout.strip(),
                                                    _pool_text(p)))
    return added


def umount_hugetlbfs(path, added):
    """Unmount a hugetlbfs from mount_hugetlbfs() (its reservation goes
    with it) and give the `added` pages back to the host.  Whatever had
    the file mapped must have exited."""
    with _HugePoolLock():
        r = subprocess.run(["umount", path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT,
                           universal_newlines=True, check=False)
        if r.returncode != 0:
            # Still mapped by someone: its reservation stays until the last
            # user goes, and the shrink below leaves those pages alone.
            sys.stderr.write("vm.py: umount %s: %s; detaching it lazily\n"
                             % (path, r.stdout.strip()))
            subprocess.run(["umount", "-l", path], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
        _shrink_huge_pool(added)


def mount_huge_tmpfs(path, size):
    """Mount a tmpfs of `size` bytes at `path` that backs its files with
    2 MiB transparent huge pages (huge=always), whatever the host-wide
    shmem_enabled says short of "deny".  Needs root; VMError if refused."""
    r = subprocess.run(["mount", "-t", "tmpfs", "-o",
                        "huge=always,size=%d,mode=0700" % size,
                        "vb13-thp", path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True, check=False)
    if r.returncode != 0:
        raise VMError("cannot mount a huge=always tmpfs at %s: %s"
                      % (path, r.stdout.strip()))


class VM:
    """One guest.  Use as a context manager, or call start() and close().

    series      kernel series, "6.1" or "6.12" (scripts/fetch-kernels.sh), or
                "6.12-debug" (scripts/build-debug-kernel.sh)
    mem         guest RAM, e.g. "1536M"; a shared memfd of that size (on a
                "-debug" series, debug_kernel_extra_mem() more)
    mem_thp     back guest RAM with transparent huge pages instead: a file
                on a tmpfs mounted with huge=always under the VM's temp dir
                (needs root; no host-wide setting is changed); the same as
                mem_backend="thp"
    mem_backend what backs guest RAM (MEM_BACKENDS): "memfd" (the default,
                shared), "anon" (QEMU's default: private anonymous memory,
                memory-backend-ram), "hugetlb" (a shared file on a
                hugetlbfs of 2 MiB pages mounted under the temp dir; the
                host's pool must hold them, see mount_hugetlbfs()),
                "file" (a shared regular file in the temp dir), "thp";
                "hugetlb" grows the host's pool as needed
                and reserves the guest's RAM in it for the VM's whole life
                (mount_hugetlbfs()); close() gives the pages back
    smp, cpu    vCPUs and CPU model (TCG); -smp 1 boots and runs as fast
                as 2 on this 2-core host, use 2 to exercise concurrency
    append      extra kernel command line, e.g. "init_on_alloc=0"
    modules     extra .ko files, installed under /lib/modules/<kver>/extra
                (guest: `modprobe virtio_balloon13`)
    backend     path of a vhost-user backend (e.g. balloon13d); started
                first as `backend --socket-path <tmpdir>/vhost.sock ARGS`;
                "{tmpdir}" in backend_args is replaced by the VM's temp dir
    vhost_socket  attach to an already listening backend socket instead
    virtio_id, num_vqs, config_size, device_args
                the generic vhost-user device's properties; device_args is
                appended as is (e.g. "vq_size=256,vectors=1")
    balloon     also add QEMU's own virtio-balloon-pci (id balloon0)
    native      also add QEMU's native device 13, virtio-balloon13-pci (id
                NATIVE_ID): "" (or True) for its defaults, or its
                properties, e.g. "page-bits=21" or "qmp-balloon=off"
    incoming    start QEMU with -incoming unix:<tmpdir>/migrate.sock and
                don't wait for a guest: a migration destination (see
                destination() and migrate())
    qemu, kernel, initrd
                override the QEMU binary / kernel / initramfs paths
    boot_timeout  seconds to wait for the guest's command channel
    qemu_args   extra QEMU arguments
    keep_tmp    keep the temp dir (logs) after close()
    root_port   put the vhost-user device behind a PCIe root port (id
                ROOT_PORT), so it can be hot-unplugged (unplug_vhost())
                and plugged in again (replug_vhost()); the guest's ACPI
                hotplug (acpiphp) handles the port, or with "pciehp" the
                native PCIe hotplug driver (its attention button waits 5 s)
    s3          offer ACPI S3 (suspend to RAM) on q35: suspend("mem"); the
                VM boots OVMF instead of SeaBIOS, which leaves the guest
                without ACPI after its first resume (see OVMF_CODE)
    reboot      let the guest reboot (no -no-reboot): reboot(), and a
                guest panic (panic=-1) reboots it too, so a command then
                times out; the console log shows the panic
    maxmem, slots
                room for memory hot-plug: -m SIZE,slots=N,maxmem=MAX
                (e.g. "4G", 2); plug_dimm() and unplug_dimm() add and
                remove pc-dimm devices backed by shared memfds

    QEMU and the backend get PR_SET_PDEATHSIG: they die with the thread
    that started them, so start and use a VM from one long-lived thread.
    """

    def __init__(self, series="6.12", mem="1536M", mem_thp=False,
                 mem_backend="memfd", smp=1,
                 cpu=DEFAULT_CPU,
                 root_port=False, s3=False, reboot=False,
                 append="", modules=(), backend=None, backend_args=(),
                 vhost_socket=None, virtio_id=13, num_vqs=2, config_size=4,
                 device_args="", balloon=False, qemu=None, kernel=None,
                 initrd=None, boot_timeout=180, qemu_args=(), keep_tmp=False,
                 native=None, incoming=False, maxmem=None, slots=0):
        # What destination() starts a copy with.
        self._init_kwargs = {k: v for k, v in locals().items()
                             if k not in ("self", "__class__")}
        self.series = series
        self.mem_bytes = parse_size(mem)
        if series.endswith("-debug"):
            self.mem_bytes += debug_kernel_extra_mem(self.mem_bytes)
        self.mem_backend = "thp" if mem_thp else mem_backend
        if self.mem_backend not in MEM_BACKENDS:
            raise ValueError("mem_backend %r: want one of %s"
                             % (mem_backend, ", ".join(MEM_BACKENDS)))
        self.mem_thp = self.mem_backend == "thp"
        self._huge_added = 0        # pages mount_hugetlbfs() added
        self._huge_mount = None
        self._thp_mount = None
        self._ram_file = None       # guest RAM's file with mem_thp
        self.smp = int(smp)
        self.cpu = cpu
        self.append = append
        self.modules = list(modules)
        self.backend = backend
        self.backend_args = list(backend_args)
        self.vhost_socket = vhost_socket
        self.virtio_id = virtio_id
        self.num_vqs = num_vqs
        self.config_size = config_size
        self.device_args = device_args
        self.balloon = balloon
        self.qemu = qemu
        self.kernel = kernel
        self.initrd = initrd
        self.boot_timeout = boot_timeout
        self.qemu_args = list(qemu_args)
        self.keep_tmp = keep_tmp
        self.native = "" if native is True else native
        self.incoming = bool(incoming)
        self.incoming_uri = None
        self.root_port = root_port
        self.maxmem = parse_size(maxmem) if maxmem else None
        self.slots = int(slots)
        self.dimms = {}             # plug_dimm(): id -> size
        self.s3 = s3
        self.reboot_ok = reboot
        self.boots = 0              # READY lines seen: 1 after start()
        self.vhost_chardev = "vhu"  # replug_vhost() adds vhu1, vhu2, ...
        self.vhost_plugged = False

        self.tmpdir = None
        self.kver = None
        self.device_name = None
        self.qemu_cmdline = None
        self.qemu_proc = None
        self.backend_proc = None
        self.boot_seconds = None
        self._cmd = None
        # QMP (_QMPLink); helper threads use it too (a timer thawing the
        # native device while the main thread waits for SUSPEND).
        self._qmp = None
        self._events = []       # events of a closed connection
        self._cmd_buf = b""
        self._seq = 0
        self._broken = None

    # ---- life cycle -------------------------------------------------------

    def __enter__(self):
        # destination() hands out a started VM: `with` only closes it.
        return self if self.qemu_proc else self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def qemu_pid(self):
        return self.qemu_proc.pid if self.qemu_proc else None

    @property
    def backend_pid(self):
        return self.backend_proc.pid if self.backend_proc else None

    def path(self, name):
        """A path inside the VM's temp dir."""
        return os.path.join(self.tmpdir, name)

    def start(self):
        """Start backend and QEMU and wait for the guest; returns self.
        On failure everything started is stopped again and the error
        (BootError, VMError) carries the logs' tails."""
        atexit.register(self.close)
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self):
        self.tmpdir = tempfile.mkdtemp(prefix="vb13-vm-")
        # Building QEMU or the initramfs on first use is not boot time.
        self.qemu = self.qemu or qemu_binary()
        if not self.kernel:
            env = kernel_env(self.series)
            self.kernel = env["VMLINUZ"]
            self.kver = env["KVER"]
        if not self.initrd:
            self.initrd = initramfs(self.series, self.modules)
        t0 = time.monotonic()

        if self.backend:
            self._start_backend()
        if self.backend or self.vhost_socket:
            self.device_name = vhost_user_device_name(self.qemu)
            if not self.device_name:
                raise VMError("%s has neither of %s (build it with "
                              "scripts/build-qemu.sh)"
                              % (self.qemu, ", ".join(VHOST_USER_DEVICES)))

        cmd_listener = self._listen("cmd.sock")
        self._qmp = _QMPLink(os.path.basename(self.tmpdir))
        self._qmp.listen(self.path("qmp.sock"))
        try:
            self.qemu_cmdline = self._qemu_argv()
            with open(self.path("qemu.log"), "wb") as log:
                self.qemu_proc = subprocess.Popen(
                    self.qemu_cmdline, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
            self._cmd = self._accept(cmd_listener, "command channel")
        finally:
            cmd_listener.close()
        self._qmp_accept()
        if self.incoming:
            # The guest arrives by migration, already booted.
            self.boot_seconds = time.monotonic() - t0
            return self
        deadline = t0 + self.boot_timeout
        line = self._cmd_wait_line(_READY, deadline, boot=True)
        self.kver = line.split()[-1].decode() if line.split()[1:] else self.kver
        self.boot_seconds = time.monotonic() - t0
        self.boots = 1
        self.vhost_plugged = bool(self.vhost_socket)
        return self

    def close(self):
        """Stop QEMU and the backend, remove temp files.  Idempotent."""
        atexit.unregister(self.close)
        if self._cmd:
            try:
                self._cmd.close()
            except OSError:
                pass
        if self._qmp:
            self._events = list(self._qmp.events)
            self._qmp.close()
        self._cmd = self._qmp = None
        for proc in (self.qemu_proc, self.backend_proc):
            if proc and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        if self._thp_mount:
            subprocess.run(["umount", "-l", self._thp_mount],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
            self._thp_mount = None
        if self._huge_mount:
            umount_hugetlbfs(self._huge_mount, self._huge_added)
            self._huge_mount = None
            self._huge_added = 0
        if self.tmpdir and not self.keep_tmp:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def _start_backend(self):
        sock = self.path("vhost.sock")
        args = [a.replace("{tmpdir}", self.tmpdir) for a in self.backend_args]
        argv = [self.backend, "--socket-path", sock] + args
        with open(self.path("backend.log"), "wb") as log:
            self.backend_proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            if self.backend_proc.poll() is not None:
                raise VMError("backend %s exited with status %d before "
                              "listening on %s:\n%s" % (
                                  " ".join(argv), self.backend_proc.returncode,
                                  sock, _tail(self.path("backend.log"))))
            if time.monotonic() > deadline:
                raise VMError("backend %s did not create %s in 20 s:\n%s" % (
                    " ".join(argv), sock, _tail(self.path("backend.log"))))
            time.sleep(0.02)
        self.vhost_socket = sock

    def _mount_thp(self):
        """A tmpfs that hands out 2 MiB pages, just big enough for guest
        RAM; returns the RAM file's path."""
        mnt = self.path("thp")
        os.mkdir(mnt)
        mount_huge_tmpfs(mnt, self.mem_bytes + (64 << 20))
        self._thp_mount = mnt
        self._ram_file = os.path.join(mnt, "guest-ram")
        return self._ram_file

    def _mem_object(self, size):
        kind = self.mem_backend
        if kind == "memfd":
            return "memory-backend-memfd,id=mem,size=%d,share=on" % size
        if kind == "anon":
            return "memory-backend-ram,id=mem,size=%d" % size
        if kind == "file":
            self._ram_file = self.path("guest-ram")
            return ("memory-backend-file,id=mem,size=%d,share=on,"
                    "mem-path=%s" % (size, self._ram_file))
        if kind == "hugetlb":
            mnt = self.path("hugetlb")
            os.mkdir(mnt)
            # Unmounted, and the pages given back, by close().
            self._huge_added = mount_hugetlbfs(mnt, size)
            self._huge_mount = mnt
            self._ram_file = os.path.join(mnt, "guest-ram")
            return ("memory-backend-file,id=mem,size=%d,share=on,"
                    "mem-path=%s" % (size, self._ram_file))
        # align=2M: QEMU maps the file at a 2 MiB-aligned address, so
        # its mapping can use the file's huge pages.
        return ("memory-backend-file,id=mem,size=%d,share=on,align=2M,"
                "mem-path=%s" % (size, self._mount_thp()))

    def _qemu_argv(self):
        size = self.mem_bytes
        # no_timer_check: under TCG on a loaded host the kernel's early
        # check of the IO-APIC timer can time out and panic ("IO-APIC +
        # timer doesn't work!"), as it did for 4 of about 90 boots here.
        cmdline = "console=ttyS0,115200 quiet panic=-1 no_timer_check"
        if self.append:
            cmdline += " " + self.append
        argv = [self.qemu] + _firmware_args() + [
            "-nodefaults", "-no-user-config", "-display", "none",
            "-accel", "tcg", "-cpu", self.cpu, "-smp", str(self.smp),
            "-m", str(size // (1 << 20)) + "M" + (
                ",slots=%d,maxmem=%dM" % (self.slots, self.maxmem >> 20)
                if self.maxmem else ""),
            "-object", self._mem_object(size),
            "-machine", "q35,memory-backend=mem",
            "-nic", "none", "-no-reboot",
            "-kernel", self.kernel, "-initrd", self.initrd,
            "-append", cmdline,
            "-chardev", "file,id=con,path=%s" % self.path("console.log"),
            "-serial", "chardev:con",
            "-chardev", "socket,id=cmd,path=%s" % self.path("cmd.sock"),
            "-serial", "chardev:cmd",
            "-chardev", "socket,id=qmp,path=%s" % self.path("qmp.sock"),
            "-mon", "chardev=qmp,mode=control",
        ]
        if self.vhost_socket:
            dev = "%s,chardev=vhu,virtio-id=%d,num_vqs=%d,config_size=%d" % (
                self.device_name, self.virtio_id, self.num_vqs,
                self.config_size)
            if self.device_args:
                dev += "," + self.device_args
            argv += ["-chardev", "socket,id=vhu,path=%s" % self.vhost_socket,
                     "-device", dev + ",id=vhu0"]
        if self.balloon:
            argv += ["-device", "virtio-balloon-pci,id=balloon0"]
        if self.native is not None:
            dev = "%s,id=%s" % (NATIVE_DEVICE, NATIVE_ID)
            argv += ["-device", dev + ("," + self.native if self.native
                                       else "")]
        if self.incoming:
            self.incoming_uri = "unix:" + self.path("migrate.sock")
            argv += ["-incoming", self.incoming_uri]
        return self._lifecycle_argv(argv) + self.qemu_args

    def _listen(self, name):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path(name))
        s.listen(1)
        return s

    def _accept(self, listener, what):
        listener.settimeout(0.1)
        deadline = time.monotonic() + 30
        while True:
            try:
                conn, _ = listener.accept()
                conn.settimeout(None)
                return conn
            except socket.timeout:
                pass
            self._check_alive()
            if time.monotonic() > deadline:
                self._fail(BootError, "QEMU did not connect its %s" % what)

    # ---- failure reporting ------------------------------------------------

    def console_log(self):
        """The guest's kernel console (ttyS0) so far."""
        return _tail(self.path("console.log"), 1 << 24)

    def qemu_log(self):
        """QEMU's own stdout and stderr so far."""
        return _tail(self.path("qemu.log"), 1 << 24)

    def backend_log(self):
        """The backend's stdout and stderr so far ('' without a backend)."""
        return _tail(self.path("backend.log"), 1 << 24)

    def _fail(self, exc, msg):
        parts = [msg]
        qlog = _tail(self.path("qemu.log"), 3000).strip()
        if qlog:
            parts.append("--- QEMU output:\n" + qlog)
        if self.backend_proc:
            blog = _tail(self.path("backend.log"), 3000).strip()
            state = self.backend_proc.poll()
            parts.append("--- backend (%s):\n%s" % (
                "running" if state is None else "exited %d" % state, blog))
        parts.append("--- console tail:\n" + _tail(self.path("console.log"), 4000))
        raise exc("\n".join(parts))

    def _check_alive(self):
        if self.qemu_proc and self.qemu_proc.poll() is not None:
            self._fail(BootError if self.boot_seconds is None else VMError,
                       "QEMU exited with status %d" % self.qemu_proc.returncode)

    # ---- command channel --------------------------------------------------

    def _cmd_recv(self, deadline, boot=False):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if boot:
                self._fail(BootError, "guest not up within %d s"
                           % self.boot_timeout)
            self._broken = "a command timed out"
            raise CommandTimeout("guest did not answer in time")
        self._cmd.settimeout(min(remaining, 1.0))
        try:
            data = self._cmd.recv(1 << 16)
        except socket.timeout:
            self._check_alive()
            return
        if not data:
            # QEMU closes its end when it exits (e.g. a guest panic with
            # -no-reboot): give it a moment to be reaped and report that.
            try:
                self.qemu_proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            self._broken = "the command channel closed"
            self._check_alive()
            self._fail(BootError if boot else VMError,
                       "the guest's command channel closed")
        self._cmd_buf += data

    def _cmd_wait_line(self, prefix, deadline, boot=False):
        while True:
            while b"\n" in self._cmd_buf:
                line, _, self._cmd_buf = self._cmd_buf.partition(b"\n")
                if line.startswith(prefix):
                    return line
            self._cmd_recv(deadline, boot)

    def run(self, cmd, timeout=60, check=False):
        """Run a shell command in the guest -> (exit status, output).

        stdout and stderr are merged, stdin is /dev/null.  The guest kills
        the command after `timeout` seconds (status 137); if the guest does
        not answer at all, CommandTimeout is raised and the VM is unusable.
        check=True raises CommandError on a non-zero status.
        """
        status, out = self.run_bytes(cmd, timeout)
        text = out.decode("utf-8", "replace")
        if check and status != 0:
            raise CommandError(cmd, status, text)
        return status, text

    def run_bytes(self, cmd, timeout=60):
        """Like run(), output as bytes."""
        if self._cmd is None:
            raise VMError("VM not running")
        if self._broken:
            raise VMError("command channel unusable: " + self._broken)
        self._seq += 1
        seq = self._seq
        script = base64.b64encode(cmd.encode()).decode()
        # TCG guests are slow to start and reap processes: be generous on
        # the host side, the guest enforces the real timeout.
        budget = timeout + 30 + len(script) / 2000
        deadline = time.monotonic() + budget
        # The last receive left a timeout of at most 1 s on the socket; a
        # long command (a module in base64) into a slow guest (the debug
        # kernel) takes longer to be read than that.
        self._cmd.settimeout(budget)
        self._cmd.sendall(("@@VB13-CMD %d %d %s\n"
                           % (seq, max(1, int(timeout)), script)).encode())
        while True:
            m = _OUT.search(self._cmd_buf)
            if m and int(m.group(1)) == seq:
                self._cmd_buf = self._cmd_buf[m.end():]
                break
            if m:  # a stale answer (cannot happen, but never misread one)
                self._cmd_buf = self._cmd_buf[m.end():]
                continue
            self._cmd_recv(deadline)
        status, size = int(m.group(2)), int(m.group(3))
        end = b"@@VB13-END %d\n" % seq
        while len(self._cmd_buf) < size + len(end):
            self._cmd_recv(deadline)
        out = self._cmd_buf[:size]
        if self._cmd_buf[size:size + len(end)] != end:
            self._broken = "output framing lost"
            raise VMError("command channel out of step after %r" % cmd)
        self._cmd_buf = self._cmd_buf[size + len(end):]
        return status, out

    def dmesg(self):
        """The guest kernel log (dmesg)."""
        return self.run("dmesg", timeout=60, check=True)[1]

    # ---- QMP --------------------------------------------------------------

    def _qmp_accept(self):
        """Wait for QEMU to connect to QMP and the session to start."""
        deadline = time.monotonic() + 30
        try:
            while not self._qmp.accepted(0.2):
                self._check_alive()
                if time.monotonic() > deadline:
                    self._fail(BootError, "QEMU did not connect its QMP")
        except self._qmp.mod.QMPError as e:
            self._check_alive()
            self._fail(BootError, "QMP session did not start: %s" % e)

    @property
    def events(self):
        """QMP events received and not taken yet (wait_event(),
        take_events()), oldest first: dicts with "event", "data", ..."""
        return self._qmp.events if self._qmp else self._events

    def _drop_events(self, names):
        """Remove and return the events named in names, oldest first."""
        lock = self._qmp.cond if self._qmp else threading.Lock()
        with lock:
            evs = self.events
            taken = [ev for ev in evs if ev.get("event") in names]
            evs[:] = [ev for ev in evs if ev.get("event") not in names]
        return taken

    def qmp(self, cmd, _args=None, timeout=60, **kwargs):
        """Execute a QMP command and return its "return" value.

        Arguments are keyword arguments; names QMP spells with a hyphen go
        in the _args dict, e.g. qmp("human-monitor-command",
        _args={"command-line": "info balloon"}).  Raises QMPError.
        Asynchronous events land in self.events meanwhile.
        """
        if self._qmp is None:
            raise VMError("VM not running")
        args = dict(_args or {})
        args.update(kwargs)
        mod = self._qmp.mod
        try:
            return self._qmp.execute(cmd, args, timeout)
        except mod.ExecuteError as e:
            raise QMPError(cmd, {"class": e.error_class, "desc": str(e)})
        except concurrent.futures.TimeoutError:
            self._check_alive()
            raise VMError("QMP %s: no answer in %d s" % (cmd, timeout))
        except (mod.QMPError, EOFError, OSError) as e:
            self._check_alive()
            raise VMError("QMP %s: the connection failed: %s: %s"
                          % (cmd, type(e).__name__, e))

    def hmp(self, command_line):
        """Run a human monitor command, return its text."""
        return self.qmp("human-monitor-command",
                        _args={"command-line": command_line})

    # ---- the VM's life cycle: hot-plug, suspend, reboot, poweroff ---------

    def _lifecycle_argv(self, argv):
        """What root_port, s3 and reboot change in QEMU's arguments."""
        argv = list(argv)
        if self.reboot_ok:
            argv.remove("-no-reboot")
        if self.s3:
            if not os.path.exists(OVMF_CODE):
                raise VMError("%s missing (Debian's ovmf package; "
                              "scripts/setup.sh installs it)" % OVMF_CODE)
            shutil.copy(OVMF_VARS, self.path("ovmf-vars.fd"))
            argv += ["-global", "ICH9-LPC.disable_s3=0",
                     "-drive", "if=pflash,format=raw,unit=0,readonly=on,"
                     "file=" + OVMF_CODE,
                     "-drive", "if=pflash,format=raw,unit=1,file="
                     + self.path("ovmf-vars.fd")]
        if self.root_port == "pciehp":
            argv += ["-global",
                     "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"]
        if self.root_port and self.vhost_socket:
            i = next(k for k, a in enumerate(argv)
                     if a.startswith(self.device_name + ",chardev=vhu,"))
            argv[i] += ",bus=" + ROOT_PORT
            argv[i - 1:i - 1] = ["-device", ROOT_PORT_DEVICE]
        return argv

    def _send_cmd(self, cmd, timeout):
        """Send a guest command whose answer never comes (reboot, poweroff)."""
        if self._cmd is None:
            raise VMError("VM not running")
        if self._broken:
            raise VMError("command channel unusable: " + self._broken)
        self._seq += 1
        script = base64.b64encode(cmd.encode()).decode()
        self._cmd.sendall(("@@VB13-CMD %d %d %s\n"
                           % (self._seq, max(1, int(timeout)), script)).encode())

    def _cmd_try_line(self, prefix, seconds):
        """The next command channel line starting with prefix if one comes
        within `seconds`, else None (other lines are skipped)."""
        end = time.monotonic() + seconds
        while True:
            while b"\n" in self._cmd_buf:
                line, _, self._cmd_buf = self._cmd_buf.partition(b"\n")
                if line.startswith(prefix):
                    return line
            remaining = end - time.monotonic()
            if remaining <= 0:
                return None
            if select.select([self._cmd], [], [], remaining)[0]:
                self._cmd_recv(time.monotonic() + 30)
            else:
                self._check_alive()

    def wait_event(self, name, timeout=60, match=None):
        """Wait for the QMP event `name` whose "data" satisfies `match`
        (a predicate; None: any) and return it.  One already received
        (in self.events) counts; the event returned leaves self.events."""
        deadline = time.monotonic() + timeout
        if self._qmp is None:
            raise VMError("VM not running")
        link = self._qmp
        with link.cond:
            while True:
                for k, ev in enumerate(link.events):
                    if ev.get("event") == name and (
                            match is None or match(ev.get("data", {}))):
                        del link.events[k]
                        return ev
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise VMError("no QMP event %s within %d s"
                                  % (name, timeout))
                if not link.running:
                    self._check_alive()
                    raise VMError("QMP closed while waiting for %s" % name)
                link.cond.wait(min(remaining, 0.5))

    def take_events(self, name):
        """Remove and return every QMP event `name` QEMU has sent so far."""
        self.qmp("query-status")    # events sent before it are in by now
        return self._drop_events((name,))

    def run_state(self):
        """QEMU's run state: "running", "suspended", "paused", ..."""
        return self.qmp("query-status")["status"]

    def unplug_vhost(self, timeout=60):
        """Hot-unplug the vhost-user device (VM(root_port=True)): device_del,
        wait until the guest has let go of it and QEMU removed it
        (DEVICE_DELETED), then remove its chardev, which ends the
        backend's connection.  Returns the seconds from device_del to
        DEVICE_DELETED; VMError if that takes longer than `timeout`."""
        if not self.vhost_plugged:
            raise VMError("no vhost-user device plugged in")
        t0 = time.monotonic()
        self.qmp("device_del", id="vhu0")
        self.wait_event("DEVICE_DELETED", timeout,
                        lambda d: d.get("device") == "vhu0")
        secs = time.monotonic() - t0
        self.vhost_plugged = False
        self.qmp("chardev-remove", id=self.vhost_chardev)
        return secs

    def replug_vhost(self):
        """Plug the vhost-user device in again after unplug_vhost(): a new
        chardev (vhu1, vhu2, ...) connected to the same backend socket, and
        the device with the same id and properties on the same bus.  The
        guest sees it a moment later (wait for its driver to bind)."""
        if self.vhost_plugged:
            raise VMError("the vhost-user device is still plugged in")
        chardev = "vhu%d" % (int(self.vhost_chardev[3:] or 0) + 1)
        self.qmp("chardev-add", id=chardev, backend={
            "type": "socket", "data": {
                "addr": {"type": "unix",
                         "data": {"path": self.vhost_socket}},
                "server": False}})
        props = {"driver": self.device_name, "id": "vhu0",
                 "chardev": chardev, "virtio-id": self.virtio_id,
                 "num_vqs": self.num_vqs, "config_size": self.config_size}
        if self.root_port:
            props["bus"] = ROOT_PORT
        for prop in filter(None, self.device_args.split(",")):
            key, _, value = prop.partition("=")
            props[key] = _qmp_value(value)
        try:
            self.qmp("device_add", _args=props)
        except QMPError:
            self.qmp("chardev-remove", id=chardev)
            raise
        self.vhost_chardev = chardev
        self.vhost_plugged = True

    def plug_dimm(self, size, dimm_id=None):
        """Hot-plug a pc-dimm of `size` (bytes or e.g. "512M") backed by a
        shared memfd (a vhost-user back end maps it like the rest of guest
        RAM); needs VM(maxmem=..., slots=...).  The guest adds its memory
        blocks offline unless it onlines hot-plugged memory by itself.
        Returns the device id."""
        size = parse_size(size)
        dimm_id = dimm_id or "dimm%d" % len(self.dimms)
        self.qmp("object-add", _args={
            "qom-type": "memory-backend-memfd", "id": dimm_id + "-mem",
            "size": size, "share": True})
        try:
            self.qmp("device_add", _args={"driver": "pc-dimm", "id": dimm_id,
                                          "memdev": dimm_id + "-mem"})
        except QMPError:
            self.qmp("object-del", id=dimm_id + "-mem")
            raise
        self.dimms[dimm_id] = size
        return dimm_id

    def dimm_address(self, dimm_id):
        """Guest-physical address where a plugged DIMM sits."""
        for dev in self.qmp("query-memory-devices"):
            data = dev.get("data", {})
            if data.get("id") == dimm_id:
                return data["addr"]
        raise VMError("no memory device %s" % dimm_id)

    def unplug_dimm(self, dimm_id, timeout=120):
        """Hot-unplug a DIMM plug_dimm() added: device_del, wait for the
        guest to offline and eject it (DEVICE_DELETED), remove its memory
        backend.  Returns the seconds device_del took; VMError if the guest
        did not let go within `timeout` (its memory could not go offline)."""
        t0 = time.monotonic()
        self.qmp("device_del", id=dimm_id)
        self.wait_event("DEVICE_DELETED", timeout,
                        lambda d: d.get("device") == dimm_id)
        secs = time.monotonic() - t0
        self.qmp("object-del", id=dimm_id + "-mem")
        del self.dimms[dimm_id]
        return secs

    def suspend(self, state="mem", wake="qmp", rtc_seconds=3, timeout=120,
                on_start=None):
        """Suspend the guest and wait until its user space runs again.

        state "mem" is ACPI S3 (VM(s3=True)): QEMU's run state becomes
        "suspended" (QMP SUSPEND) and on wakeup QEMU resets the devices,
        as a real machine cuts their power.  "freeze" is suspend to idle:
        QEMU keeps running.  wake "qmp": QMP system_wakeup once QEMU is
        suspended (S3 only); "rtc": the guest's RTC alarm, rtc_seconds
        after the suspend starts (QEMU raises no wakeup event for it in
        suspend to idle, so S3 only); "serial": newlines on the command
        channel, whose port the guest makes a wakeup source (freeze only:
        S3 resets the port).  The guest side is scripts/guest/pmsuspend.
        on_start, if given, is called when the guest says it is about to
        write /sys/power/state (it has armed the RTC alarm just before).
        rtc_seconds must cover the guest's way down into S3: an alarm that
        expires before it is suspended is lost (VMError, and the guest is
        woken over QMP).

        Returns {"status": exit status of the guest's write to
        /sys/power/state (0 = suspended and resumed), "suspends": how many
        the kernel counted (/sys/power/suspend_stats/success, 1 expected),
        "seconds": from the command until the guest was back,
        "suspended_seconds": S3 only, QMP SUSPEND to WAKEUP}.
        """
        wakes = {"mem": ("qmp", "rtc"), "freeze": ("serial",)}
        if wake not in wakes.get(state, ()):
            raise ValueError("suspend(%r, %r): mem with qmp or rtc, or "
                             "freeze with serial" % (state, wake))
        if state == "mem" and not self.s3:
            raise VMError("suspend to RAM needs VM(s3=True)")
        self._drop_events(("SUSPEND", "WAKEUP"))
        t0 = time.monotonic()
        deadline = t0 + timeout
        self.run("pmsuspend %s%s" % (state, {
            "rtc": " --rtc %d" % rtc_seconds, "serial": " --serial"}.get(
                wake, "")), timeout=30, check=True)
        result = {}
        self._cmd_wait_line(_PM_START, deadline)
        t_start = time.monotonic()      # the RTC alarm was just armed
        if on_start:
            on_start()
        if state == "mem":
            self.wait_event("SUSPEND", deadline - time.monotonic())
            t1 = time.monotonic()
            if wake == "qmp":
                self.qmp("system_wakeup")
                self.wait_event("WAKEUP", deadline - time.monotonic())
            else:
                self._wait_rtc_wakeup(t1 - t_start, rtc_seconds, deadline)
            result["suspended_seconds"] = time.monotonic() - t1
        if wake == "serial":
            # Until the guest is back: one newline a second.  Those that
            # arrive while it is awake are empty lines the channel skips.
            line = None
            while line is None:
                if time.monotonic() >= deadline:
                    self._broken = "the guest did not resume"
                    raise CommandTimeout("guest not back from %s within "
                                         "%d s" % (state, timeout))
                self._cmd.sendall(b"\n")
                line = self._cmd_try_line(_PM, 1.0)
            line = line.split()
        else:
            line = self._cmd_wait_line(_PM, deadline).split()
        result["seconds"] = time.monotonic() - t0
        if len(line) != 5 or line[1].decode() != state:
            raise VMError("pmsuspend said %r" % b" ".join(line))
        result["status"] = int(line[2])
        result["suspends"] = int(line[4]) - int(line[3])
        return result

    def _wait_rtc_wakeup(self, entry_s, rtc_seconds, deadline):
        """Wait for the RTC to wake a guest in S3.  QEMU wakes it only when
        the alarm goes off while it is suspended: an alarm that expired
        while the guest was still on its way down (entry_s, from arming it
        to QMP SUSPEND) is lost.  Then, or when no wakeup comes at all,
        wake it over QMP so the VM stays usable, and raise VMError."""
        try:
            self.wait_event("WAKEUP", min(deadline - time.monotonic(),
                                          rtc_seconds + 30))
            return
        except VMError:
            if self.run_state() != "suspended":
                raise
        self.qmp("system_wakeup")
        self.wait_event("WAKEUP", max(1, deadline - time.monotonic()))
        if entry_s >= rtc_seconds:
            raise VMError("the RTC alarm (%d s) expired before the guest was "
                          "in S3 (%.1f s after it was armed): no wakeup; "
                          "woke it over QMP" % (rtc_seconds, entry_s))
        raise VMError("no wakeup from the RTC alarm (%d s; the guest was in "
                      "S3 %.1f s after arming it); woke it over QMP"
                      % (rtc_seconds, entry_s))

    def reboot(self, how="guest", timeout=None):
        """Reboot the guest (VM(reboot=True)) and wait for the new boot's
        READY line on the command channel (QEMU keeps the channel's
        connection across the reset).  how "guest": `reboot -f` in the
        guest; "reset": QMP system_reset.  Returns the seconds until the
        new boot was ready; self.boots counts the boots."""
        if not self.reboot_ok:
            raise VMError("rebooting needs VM(reboot=True)")
        t0 = time.monotonic()
        if how == "guest":
            self._send_cmd("reboot -f", 30)
        elif how == "reset":
            self.qmp("system_reset")
        else:
            raise ValueError("reboot(how=%r): guest or reset" % (how,))
        self._cmd_buf = b""     # the rest of the old boot's output
        line = self._cmd_wait_line(
            _READY, t0 + (timeout or self.boot_timeout), boot=True)
        if line.split()[1:]:
            self.kver = line.split()[-1].decode()
        self.boots += 1
        return time.monotonic() - t0

    def poweroff(self, timeout=120):
        """`poweroff -f` in the guest; returns wait_exit()."""
        self._send_cmd("poweroff -f", 30)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout=120):
        """Wait for QEMU to exit -> (its exit status, the "data" of its
        SHUTDOWN QMP event or None).  The backend keeps running."""
        try:
            status = self.qemu_proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise VMError("QEMU still running %d s after the guest was "
                          "told to power off" % timeout)
        shutdown = None
        if self._qmp is not None:
            self._qmp.wait_closed(10)   # what QEMU sent before it exited
            for ev in self._drop_events(("SHUTDOWN",)):
                shutdown = ev.get("data", {})
        self._broken = "QEMU exited with status %d" % status
        return status, shutdown

    # ---- host-side memory -------------------------------------------------

    def qemu_rss(self):
        """QEMU's resident memory as {field: bytes}: VmRSS, RssAnon,
        RssFile, RssShmem from /proc/<pid>/status and Rss, Pss, Pss_Shmem,
        ... from smaps_rollup.  Guest RAM is shared memory (RssShmem), but
        counts there only for pages QEMU itself has mapped; see
        guest_ram_resident() for what the memfd really holds."""
        out = {}
        for name in ("smaps_rollup", "status"):
            with open("/proc/%d/%s" % (self.qemu_pid, name)) as f:
                for line in f:
                    m = re.match(r"(\w+):\s+(\d+) kB", line)
                    if m:
                        out[m.group(1)] = int(m.group(2)) * 1024
        return out

    def guest_ram_huge(self):
        """Bytes of guest RAM QEMU maps with 2 MiB page-table entries
        (ShmemPmdMapped of its guest RAM mapping): how much of the RAM is
        still in huge pages on the host.  0 unless mem_thp."""
        if not self._ram_file:
            return 0
        ends = (self._ram_file, self._ram_file + " (deleted)")
        total, inside = 0, False
        with open("/proc/%d/smaps" % self.qemu_pid) as f:
            for line in f:
                if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
                    inside = line.rstrip("\n").endswith(ends)
                elif inside and line.startswith("ShmemPmdMapped:"):
                    total += int(line.split()[1]) * 1024
        return total

    # ---- the native device (virtio-balloon13-pci) ---------------------------

    def native_get(self, prop):
        """qom-get a property of the native device: "counters",
        "guest-stats", "size" (bytes in the balloon; scans first),
        "target-size", "page-bits", ..."""
        return self.qmp("qom-get", path="/machine/peripheral/" + NATIVE_ID,
                        property=prop)

    def native_set(self, prop, value):
        """qom-set a property of the native device, e.g.
        native_set("target-size", 512 << 20)."""
        return self.qmp("qom-set", path="/machine/peripheral/" + NATIVE_ID,
                        property=prop, value=value)

    # ---- live migration -----------------------------------------------------

    def destination(self, **overrides):
        """Start a migration destination for this guest: a VM with the same
        settings (overrides replace some) whose QEMU waits with -incoming.
        Devices added at run time must be passed in qemu_args.  The
        vhost-user device can't migrate, so a VM with a backend can't
        either."""
        if self.backend or self.vhost_socket:
            raise VMError("the generic vhost-user device is not migratable")
        kw = dict(self._init_kwargs)
        kw.update(qemu=self.qemu, kernel=self.kernel, initrd=self.initrd)
        kw.update(overrides)
        kw["incoming"] = True
        return VM(**kw).start()

    def migrate(self, dst, timeout=600, max_bandwidth=8 << 30,
                capabilities=None, started=False):
        """Live-migrate this guest to dst (from destination()) over its
        UNIX socket and wait until it runs there.  No command may be
        running in the guest.  Afterwards dst carries the command channel
        and QMP for the guest; this QEMU stays paused (state postmigrate)
        until close(), so its memory can still be looked at.  Returns
        query-migrate's last answer plus "host_seconds" (migrate command to
        the guest running on dst).  capabilities: {"name": bool} set on
        both sides first.  started: the caller has sent "migrate" itself
        (e.g. to act while it runs); only wait and hand over.  Raises
        VMError if it fails or takes longer than timeout seconds."""
        if not dst.incoming:
            raise VMError("destination not started with incoming=True")
        if self._broken:
            raise VMError("command channel unusable: " + self._broken)
        if capabilities and not started:
            caps = [{"capability": k, "state": v}
                    for k, v in capabilities.items()]
            for vm in (self, dst):
                vm.qmp("migrate-set-capabilities", capabilities=caps)
        t0 = time.monotonic()
        deadline = t0 + timeout
        if not started:
            self.qmp("migrate-set-parameters",
                     _args={"max-bandwidth": int(max_bandwidth)})
            self.qmp("migrate", uri=dst.incoming_uri)
        while True:
            info = self.qmp("query-migrate")
            status = info.get("status")
            if status == "completed":
                break
            if status in ("failed", "cancelled"):
                raise VMError("migration %s: %s" % (
                    status, info.get("error-desc", "no reason given")))
            if time.monotonic() > deadline:
                self.qmp("migrate_cancel")
                raise VMError("migration not done in %d s: %s"
                              % (timeout, info))
            dst._check_alive()
            time.sleep(0.05)
        while dst.qmp("query-status")["status"] != "running":
            if time.monotonic() > deadline:
                raise VMError("destination not running %d s after the "
                              "migration began" % timeout)
            time.sleep(0.02)
        info["host_seconds"] = time.monotonic() - t0
        # Whatever the guest wrote before the switch came from here.
        self._cmd.setblocking(False)
        try:
            while True:
                data = self._cmd.recv(1 << 16)
                if not data:
                    break
                self._cmd_buf += data
        except (BlockingIOError, OSError):
            pass
        self._cmd.setblocking(True)
        dst._cmd_buf = self._cmd_buf + dst._cmd_buf
        dst._seq = self._seq
        dst.kver = self.kver
        self._cmd_buf = b""
        self._broken = "the guest migrated away"
        return info

    def take_over(self, dst):
        """After migrate(): stop this (source) QEMU and carry on with dst's,
        so that whoever holds this VM object keeps driving the guest; dst
        is left empty (its close() does nothing)."""
        self.close()
        atexit.unregister(dst.close)
        self.__dict__.update(dst.__dict__)
        atexit.register(self.close)
        dst.qemu_proc = dst.backend_proc = dst._cmd = dst._qmp = None
        dst.tmpdir = dst._thp_mount = dst._huge_mount = None
        dst._huge_added = 0

    def guest_ram_resident(self):
        """Bytes of host memory the guest RAM holds right now.  For a file
        (memfd, hugetlbfs, tmpfs, a regular file) its allocated blocks,
        whoever touched them (QEMU, the guest or the backend); pages a
        backend punched out no longer count.  For private anonymous RAM,
        the Rss of QEMU's mapping of it (pages swapped out don't count)."""
        if self.mem_backend == "anon":
            return self._anon_ram_rss()
        fd_dir = "/proc/%d/fd" % self.qemu_pid
        prefix = self._ram_file or "/memfd:"
        best = None
        for fd in os.listdir(fd_dir):
            try:
                if not os.readlink(os.path.join(fd_dir, fd)).startswith(prefix):
                    continue
                st = os.stat(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if st.st_size == self.mem_bytes:
                return st.st_blocks * 512
            if best is None or st.st_size > best.st_size:
                best = st
        if best is None:
            raise VMError("no guest RAM file (%s) among QEMU's files"
                          % prefix)
        return best.st_blocks * 512


    def _anon_ram_rss(self):
        """Rss of the biggest anonymous mapping of exactly mem_bytes (QEMU
        maps guest RAM with a guard page, so the largest of that size)."""
        best, size, rss = 0, None, 0
        with open("/proc/%d/smaps" % self.qemu_pid) as f:
            for line in f:
                m = re.match(r"([0-9a-f]+)-([0-9a-f]+) ", line)
                if m:
                    if size == self.mem_bytes:
                        best = max(best, rss)
                    size = int(m.group(2), 16) - int(m.group(1), 16)
                    rss = 0
                elif line.startswith("Rss:"):
                    rss = int(line.split()[1]) * 1024
        if size == self.mem_bytes:
            best = max(best, rss)
        return best


def _qmp_value(text):
    """A device property given as text -> what QMP's device_add wants."""
    if re.fullmatch(r"\d+", text):
        return int(text)
    if text in ("on", "off", "true", "false"):
        return text in ("on", "true")
    return text


# ---- command line -------------------------------------------------------

def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        i = argv.index("--")
        opts, cmd = argv[:i], argv[i + 1:]
    else:
        opts, cmd = argv, []
    backend = []
    if "--backend" in opts:
        i = opts.index("--backend")
        opts, backend = opts[:i], opts[i + 1:]
        if not backend:
            print("vm.py: --backend needs a PATH", file=sys.stderr)
            return 2

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            self.exit(2, "vm.py: %s (see --help)\n" % message)

    p = Parser(
        prog="vm.py", usage="%(prog)s [options] [--backend PATH ARGS...] -- CMD",
        description="Boot a test guest, run CMD in it, print its output and "
        "exit with its status.",
        epilog="--backend PATH ARGS... (last option before --) starts the "
        "vhost-user backend PATH --socket-path TMP/vhost.sock ARGS... first "
        "and adds the generic vhost-user device (virtio-id 13); '{tmpdir}' in "
        "ARGS is the VM's temp dir.  Example: vm.py --series 6.1 --backend "
        "host/balloon13d --page-bits 21 -- cat /proc/meminfo")
    p.add_argument("--series", default="6.12",
                   help="kernel series (6.1, 6.12, 6.12-debug)")
    p.add_argument("--mem", default="1536M", help="guest RAM (default 1536M)")
    p.add_argument("--smp", type=int, default=1)
    p.add_argument("--cpu", default=DEFAULT_CPU)
    p.add_argument("--append", default="", help="extra kernel command line")
    p.add_argument("--module", action="append", default=[],
                   help="extra .ko for /lib/modules/<kver>/extra (repeatable)")
    p.add_argument("--balloon", action="store_true",
                   help="add QEMU's virtio-balloon-pci (legacy balloon)")
    p.add_argument("--native", nargs="?", const="", default=None,
                   metavar="PROPS",
                   help="add QEMU's native device 13 (virtio-balloon13-pci), "
                   "optionally with properties, e.g. page-bits=21")
    p.add_argument("--device-args", default="",
                   help="extra properties of the vhost-user device")
    p.add_argument("--timeout", type=int, default=600,
                   help="seconds CMD may run (default 600)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="report boot time and paths on stderr")
    p.add_argument("--backend", help=argparse.SUPPRESS)
    a = p.parse_args(opts)
    if not cmd:
        p.error("no command given (put it after --)")
    if not re.fullmatch(r"\d+\.\d+(-debug)?", a.series):
        p.error("bad --series %r (want e.g. 6.1, 6.12 or 6.12-debug)" % a.series)
    if backend and not os.access(backend[0], os.X_OK):
        print("vm.py: backend %s is not executable" % backend[0], file=sys.stderr)
        return 2
    try:
        parse_size(a.mem)
    except ValueError as e:
        print("vm.py: %s" % e, file=sys.stderr)
        return 2
    for m in a.module:
        if not os.path.isfile(m):
            print("vm.py: no such module file: %s" % m, file=sys.stderr)
            return 2

    vm = VM(series=a.series, mem=a.mem, smp=a.smp, cpu=a.cpu, append=a.append,
            modules=a.module, backend=backend[0] if backend else None,
            backend_args=backend[1:], device_args=a.device_args,
            balloon=a.balloon, keep_tmp=a.keep, native=a.native)
    try:
        with vm:
            if a.verbose:
                print("vm.py: %s booted in %.1f s (tmp %s)"
                      % (vm.kver, vm.boot_seconds, vm.tmpdir), file=sys.stderr)
            status, out = vm.run_bytes(" ".join(cmd), timeout=a.timeout)
            sys.stdout.buffer.write(out)
            sys.stdout.flush()
            return status
    except VMError as e:
        print("vm.py: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
