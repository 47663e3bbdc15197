#!/usr/bin/python3
"""Device 13 under libvirt: a real virtqemud drives the native device.

    python3 tests/libvirt/run.py [--series 6.12] [--qemu PATH]
                                 [--libvirt PREFIX] [-k CASE[,CASE]] [--keep]

Builds (or finds in the cache) libvirt with the virtio-balloon13 memballoon
model (scripts/build-libvirt.sh) and the module for the kernel series
(scripts/build-module.sh), starts its virtqemud in a mount namespace of its
own, with a private etc/ and var/ (nothing of the host's libvirt is
touched), and drives one TCG domain through virsh and the Python bindings
(python3-libvirt): the project's QEMU (--qemu, else $VB13_QEMU, else
scripts/build-qemu.sh), Debian's kernel of the series and the busybox
initramfs of scripts/mkinitramfs.sh with the module, as scripts/vm.py boots
them; the guest's command channel is vm.py's, on the domain's second serial
port.

Prints TAP: libvirt's own unit tests from the build (libvirt/unit/<test>),
then one line per case below (libvirt/<case>), a plan, and a summary line.
A case whose prerequisite failed is reported as failed, naming it.  Exit
status 1 if anything failed, 2 for a bad command line.
"""

import argparse
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape, quoteattr

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "scripts"))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))
import vm as vmlib  # noqa: E402
from e2elib import (KiB, MiB, SYS_GLOB, Fail, Guest, check,  # noqa: E402
                    check_eq, say)

DOMAIN = "vb13-libvirt"
# Where scripts/build-libvirt.sh's libvirt keeps configuration and state.
STATE = "/run/vb13-libvirt"
RAM_MIB = 1024
PERIOD = 2          # <stats period> the domain is defined with
# Guest RAM the guest keeps using when the save image is checked, and the
# slack allowed on top of what is not ballooned (the device state, page
# tables, the kernel's own pages the balloon never holds).
SAVE_SLACK = 96 * MiB
CASES = ("probe", "define", "start", "setmem-down", "setmem-up",
         "dommemstat", "domstats", "stats-period", "save-restore",
         "destroy", "autodeflate", "free-page-reporting", "stock-recipe")
# Each case and the one before it that must have passed.
NEEDS = {"define": "probe", "start": "define", "setmem-down": "start",
         "setmem-up": "setmem-down", "dommemstat": "start",
         "domstats": "start", "stats-period": "start",
         "save-restore": "start", "destroy": "start",
         "autodeflate": "probe", "free-page-reporting": "probe",
         "stock-recipe": "probe"}
# Guest statistics the device reports ("guest-stats", virtio-balloon's
# names) -> dommemstat's field and the divisor libvirt applies.
STAT_FIELDS = {
    "stat-swap-in": ("swap_in", KiB), "stat-swap-out": ("swap_out", KiB),
    "stat-major-faults": ("major_fault", 1),
    "stat-minor-faults": ("minor_fault", 1),
    "stat-free-memory": ("unused", KiB),
    "stat-total-memory": ("available", KiB),
    "stat-available-memory": ("usable", KiB),
    "stat-disk-caches": ("disk_caches", KiB),
    "stat-htlb-pgalloc": ("hugetlb_pgalloc", 1),
    "stat-htlb-pgfail": ("hugetlb_pgfail", 1),
}
# The device's feature bits (include/uapi/linux/virtio_balloon13.h).
F_REPORTING = 1
F_PRESSURE_RELEASE = 3
U64_MAX = (1 << 64) - 1
# How long libvirt may take to see a size the guest reached (QEMU passes
# one BALLOON_CHANGE a second; TCG and a loaded host add to it).
BALLOON_EVENT_S = 10

libvirt = None      # the python3-libvirt module, imported in main()


def sh_out(argv, env=None, timeout=None):
    """Run a host command -> (status, stdout+stderr)."""
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, env=env, timeout=timeout)
    return p.returncode, p.stdout


def last_line(argv):
    status, out = sh_out(argv)
    lines = out.strip().splitlines()
    if status != 0 or not lines:
        raise RuntimeError("%s failed (status %d):\n%s"
                           % (" ".join(argv), status, out[-3000:]))
    return lines[-1]


# ---- the daemon ---------------------------------------------------------------

class Daemon:
    """virtqemud from PREFIX in a mount namespace of its own: STATE/etc and
    STATE/var (the paths scripts/build-libvirt.sh compiles in) are
    bind-mounted from TMP/etc and TMP/var, so its configuration, state,
    sockets, logs and capability cache are this run's alone.  The clients
    reach it by the socket's path."""

    QEMU_CONF = """\
# The test runs as root with no systemd, SELinux or AppArmor: QEMU runs as
# root, unconfined, outside cgroups and mount namespaces.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
"""

    def __init__(self, prefix, tmp):
        self.prefix = prefix
        self.tmp = tmp
        self.proc = None
        self.sock = os.path.join(tmp, "var", "run", "libvirt", "virtqemud-sock")
        self.uri = "qemu:///system?socket=" + self.sock
        self.log = os.path.join(tmp, "virtqemud.log")
        self.env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(prefix, "lib"))

    def start(self):
        etc = os.path.join(self.tmp, "etc")
        os.makedirs(os.path.join(etc, "libvirt"))
        os.makedirs(os.path.join(self.tmp, "var", "run"))
        with open(os.path.join(etc, "libvirt", "qemu.conf"), "w") as f:
            f.write(self.QEMU_CONF)
        with open(os.path.join(etc, "libvirt", "virtqemud.conf"), "w") as f:
            # $VB13_LIBVIRT_LOG_LEVEL: 1 (debug) to 4 (errors), default 3.
            level = os.environ.get("VB13_LIBVIRT_LOG_LEVEL", "3")
            f.write('log_level = %s\nlog_outputs = "%s:file:%s"\n'
                    % (level, level, self.log))
        # The QEMU is TCG only.  Where /dev/kvm is there, libvirt takes KVM
        # for usable, finds no KVM in the capabilities it probed and probes
        # the binary again at every lookup (2 s each, 30 s for a define):
        # the daemon sees a read-only regular file in its place, which no
        # one can open for writing.
        nokvm = os.path.join(self.tmp, "no-kvm")
        open(nokvm, "w").close()
        script = ('mount --bind "$1" "$2" && mount --bind "$3" "$4" && '
                  '{ [ ! -e /dev/kvm ] || { mount --bind "$5" /dev/kvm && '
                  'mount -o remount,bind,ro /dev/kvm; }; } && exec "$6"')
        argv = ["unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", script, "sh",
                etc, os.path.join(STATE, "etc"),
                os.path.join(self.tmp, "var"), os.path.join(STATE, "var"),
                nokvm, os.path.join(self.prefix, "sbin", "virtqemud")]
        for d in ("etc", "var"):      # mount points, empty on the host
            os.makedirs(os.path.join(STATE, d), exist_ok=True)
        with open(os.path.join(self.tmp, "virtqemud.out"), "wb") as out:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, env=self.env,
                preexec_fn=vmlib._die_with_parent)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None:
                raise Fail("virtqemud exited with status %d: %s" % (
                    self.proc.returncode, self.tail()))
            if time.monotonic() > deadline:
                raise Fail("virtqemud made no socket in 60 s: " + self.tail())
            time.sleep(0.1)

    def tail(self, n=15):
        text = ""
        for p in (os.path.join(self.tmp, "virtqemud.out"), self.log):
            text += vmlib._tail(p, 4000)
        return " | ".join(text.strip().splitlines()[-n:])

    def virsh(self, *args, ok=True, timeout=300):
        """virsh -c URI ARGS -> its output; Fail if it exits non-zero
        (with ok=False: (status, output))."""
        argv = [os.path.join(self.prefix, "bin", "virsh"), "-q", "-c",
                self.uri] + [str(a) for a in args]
        t0 = time.monotonic()
        try:
            status, out = sh_out(argv, env=self.env, timeout=timeout)
            if time.monotonic() - t0 > 5:
                say("virsh %s took %.1f s" % (" ".join(map(str, args[:2])),
                                              time.monotonic() - t0))
        except subprocess.TimeoutExpired:
            raise Fail("virsh %s did not return in %d s" % (
                " ".join(map(str, args)), timeout))
        if not ok:
            return status, out
        if status != 0:
            raise Fail("virsh %s exited %d: %s" % (
                " ".join(map(str, args)), status, " ".join(out.split())[:300]))
        return out

    def qmp(self, cmd, **args):
        """A QMP command through virsh qemu-monitor-command -> "return"."""
        msg = {"execute": cmd}
        if args:
            msg["arguments"] = args
        out = self.virsh("qemu-monitor-command", DOMAIN, json.dumps(msg))
        return json.loads(out)["return"]

    def qemu_pids(self):
        """PIDs of the QEMUs libvirt runs (pid files beside a domain's
        status XML; driver.pid is the driver's own)."""
        pids = []
        run = os.path.join(self.tmp, "var", "run", "libvirt", "qemu")
        for x in glob.glob(os.path.join(run, "*.xml")):
            p = x[:-4] + ".pid"
            try:
                with open(p) as f:
                    pids.append(int(f.read().strip()))
            except (OSError, ValueError):
                pass
        return pids

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.virsh("destroy", DOMAIN, ok=False, timeout=60)
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.qemu_pids():     # a QEMU libvirt left behind
            try:
                os.kill(pid, 9)
            except OSError:
                pass


# ---- the guest's command channel --------------------------------------------

class _Pid:
    """What vm.VM's channel code asks of a QEMU process it did not start."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def poll(self):
        if self.pid and not os.path.exists("/proc/%d" % self.pid):
            self.returncode = -1
        return self.returncode

    def wait(self, timeout=None):
        deadline = time.monotonic() + (timeout or 0)
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.returncode


class Channel(vmlib.VM):
    """vm.py's guest command channel on the domain's second serial port
    (<serial type='unix'> in mode 'connect'): we listen, each QEMU libvirt
    starts connects.  Only the channel part of vm.VM is used."""

    def __init__(self, tmpdir):
        super().__init__()
        self.tmpdir = tmpdir
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path("cmd.sock"))
        self.listener.listen(1)

    def drain(self):
        """Drop connections waiting on the listener: a QEMU that failed to
        start may have connected before it exited.  Call before starting
        a domain."""
        self.listener.setblocking(False)
        try:
            while True:
                conn, _ = self.listener.accept()
                conn.close()
        except BlockingIOError:
            pass
        finally:
            self.listener.setblocking(True)

    def attach(self, pid, boot):
        """Take the connection of a QEMU just started; with boot, wait for
        the guest's READY line."""
        if self._cmd:
            self._cmd.close()
        self._cmd, self._cmd_buf, self._broken = None, b"", None
        self.qemu_proc = _Pid(pid)
        self.listener.settimeout(30)
        try:
            self._cmd, _ = self.listener.accept()
        except socket.timeout:
            raise Fail("QEMU did not connect the command channel in 30 s")
        self._cmd.settimeout(None)
        if boot:
            t0 = time.monotonic()
            self._cmd_wait_line(vmlib._READY, t0 + 180, boot=True)
            self.boot_seconds = time.monotonic() - t0

    def close(self):
        if self._cmd:
            self._cmd.close()
            self._cmd = None
        self.listener.close()


class NoDevice:
    """e2elib.Guest's device: here libvirt is the host side."""
    suffix = ""
    kind = "libvirt"


# ---- the domain ----------------------------------------------------------------

def domain_xml(name, qemu, kernel, initrd, tmp, cur_mib=RAM_MIB,
               balloon_attrs=None, period=PERIOD, model="virtio-balloon13",
               qemu_args=()):
    """A TCG q35 domain booting the test kernel and initramfs, with device
    13 as its memory balloon (or another model, and extra QEMU arguments
    for the stock-libvirt recipes)."""
    attrs = "".join(" %s=%s" % (k, quoteattr(v))
                    for k, v in sorted((balloon_attrs or {}).items()))
    stats = "\n      <stats period='%d'/>" % period if period else ""
    args = []
    for d in vmlib.FIRMWARE_DIRS:
        if os.path.isdir(d):
            args += ["-L", d]
    fw = "".join("\n    <qemu:arg value=%s/>" % quoteattr(a)
                 for a in args + list(qemu_args))
    return """<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>%(name)s</name>
  <memory unit='MiB'>%(ram)d</memory>
  <currentMemory unit='MiB'>%(cur)d</currentMemory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>%(kernel)s</kernel>
    <initrd>%(initrd)s</initrd>
    <cmdline>console=ttyS0,115200 quiet panic=-1</cmdline>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode='maximum' check='none'>
    <feature policy='disable' name='erms'/>
    <feature policy='disable' name='fsrm'/>
  </cpu>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>%(qemu)s</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path=%(console)s/>
      <target port='0'/>
    </serial>
    <serial type='unix'>
      <source mode='connect' path=%(cmd)s/>
      <target port='1'/>
    </serial>
    <memballoon model=%(model)s%(attrs)s>%(stats)s
    </memballoon>
  </devices>
  <qemu:commandline>%(fw)s
  </qemu:commandline>
</domain>
""" % {"name": escape(name), "ram": RAM_MIB, "cur": cur_mib,
       "kernel": escape(kernel), "initrd": escape(initrd),
       "qemu": escape(qemu), "attrs": attrs, "stats": stats, "fw": fw,
       "model": quoteattr(model),
       "console": quoteattr(os.path.join(tmp, "console.log")),
       "cmd": quoteattr(os.path.join(tmp, "cmd.sock"))}


def qemu_devices(pid):
    """The -device arguments of a running QEMU, as dicts."""
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        argv = f.read().decode().split("\0")
    devs = []
    for i, a in enumerate(argv[:-1]):
        if a == "-device":
            v = argv[i + 1]
            if v.startswith("{"):
                devs.append(json.loads(v))
            else:
                d, _, rest = v.partition(",")
                props = dict(p.partition("=")[::2] for p in rest.split(",") if p)
                props["driver"] = d
                devs.append(props)
    return devs


def dommemstat(text):
    out = {}
    for line in text.splitlines():
        p = line.split()
        if len(p) == 2 and re.fullmatch(r"\d+", p[1]):
            out[p[0]] = int(p[1])
    return out


# ---- the run -------------------------------------------------------------------

class Run:
    def __init__(self, args, prefix, qemu, kernel, initrd, tmp):
        self.args = args
        self.prefix = prefix
        self.qemu = qemu
        self.kernel = kernel
        self.initrd = initrd
        self.tmp = tmp
        self.daemon = Daemon(prefix, tmp)
        self.chan = Channel(tmp)
        self.conn = None
        self.dom = None
        self.g = None
        self.caps = set()       # capability flags libvirt probed
        self.base = None        # guest MemTotal with the balloon empty

    # -- helpers --

    def xml(self, name=DOMAIN, **kw):
        return domain_xml(name, self.qemu, self.kernel, self.initrd, self.tmp,
                          **kw)

    def qemu_pid(self):
        pids = self.daemon.qemu_pids()
        check(len(pids) == 1, "libvirt runs %d QEMU processes, want 1", len(pids))
        return pids[0]

    def boot(self):
        pid = self.qemu_pid()
        self.chan.attach(pid, boot=True)
        say("guest booted in %.1f s under libvirt" % self.chan.boot_seconds)
        self.g = Guest(self.chan, NoDevice(), self.args.series,
                       {"mem": "%dM" % RAM_MIB, "page_bits": 12})
        self.g.dmesg_mark = 0
        return pid

    def guest_size(self):
        st = self.g.state()
        return st["sys"].get("size_bytes"), st["mem"]["MemTotal"]

    def expect_balloon(self, cur_kib):
        """Guest memory libvirt was asked for -> the balloon holds the rest,
        exactly, and MemTotal shrank by exactly that."""
        want = RAM_MIB * MiB - cur_kib * KiB
        st = self.g.wait_size(want, timeout=180)
        check_eq(st["mem"]["MemTotal"], self.base - want,
                 "MemTotal with %d KiB wanted" % cur_kib)
        # libvirt learns the balloon's size from BALLOON_CHANGE events,
        # which QEMU sends at most once a second (the last one always).
        deadline = time.monotonic() + BALLOON_EVENT_S
        while self.dom.info()[2] != cur_kib and time.monotonic() < deadline:
            time.sleep(0.2)
        check_eq(self.dom.info()[2], cur_kib,
                 "virDomainGetInfo memory (KiB) %d s after the guest got "
                 "there" % BALLOON_EVENT_S)
        out = self.daemon.virsh("dominfo", DOMAIN)
        m = re.search(r"Used memory:\s+(\d+) KiB", out)
        check(m and int(m.group(1)) == cur_kib,
              "virsh dominfo Used memory %s, want %d KiB",
              m.group(1) if m else "missing", cur_kib)
        actual = dommemstat(self.daemon.virsh("dommemstat", DOMAIN)).get("actual")
        check_eq(actual, cur_kib, "dommemstat actual")
        return st

    def guest_stats(self):
        """The device's own guest-stats, through libvirt's monitor."""
        return self.daemon.qmp("qom-get", path="/machine/peripheral/balloon0",
                               property="guest-stats")

    def wait_stats_update(self, after, timeout=30):
        """Wait for guest-stats with last-update > after."""
        deadline = time.monotonic() + timeout
        while True:
            gs = self.guest_stats()
            if gs.get("last-update", 0) > after:
                return gs
            if time.monotonic() > deadline:
                raise Fail("guest-stats not updated after %d in %d s (period "
                           "%d s): %r" % (after, timeout, PERIOD, gs))
            time.sleep(0.5)

    def feature_bits(self):
        out = self.g.sh("for d in %s; do cat $d/features; break; done"
                        % SYS_GLOB).strip()
        check(re.fullmatch(r"[01]+", out or ""), "guest virtio features %r", out)
        return out

    # -- cases --

    def t_probe(self):
        self.daemon.start()
        self.conn = libvirt.open(self.daemon.uri)
        ver = self.conn.getLibVersion()
        say("virtqemud %d.%d.%d, QEMU %s" % (
            ver // 1000000, ver // 1000 % 1000, ver % 1000, self.qemu))
        # Domain capabilities make libvirt probe the binary; its flags are
        # then in the capability cache.
        self.conn.getDomainCapabilities(self.qemu, "x86_64", "q35", "qemu")
        files = glob.glob(os.path.join(self.tmp, "var", "cache", "libvirt",
                                       "qemu", "capabilities", "*.xml"))
        check(len(files) == 1, "%d capability cache files, want 1", len(files))
        root = ET.parse(files[0]).getroot()
        self.caps = {f.get("name") for f in root.iter("flag")}
        check("virtio-balloon13-pci" in self.caps,
              "libvirt did not find virtio-balloon13-pci in %s", self.qemu)
        say("probed: " + ", ".join(sorted(c for c in self.caps
                                          if "balloon13" in c)))

    def t_define(self):
        # Two balloons are one too many, whatever their models.
        two = self.xml().replace(
            "  </devices>", "    <memballoon model='virtio'/>\n  </devices>")
        try:
            self.conn.defineXML(two)
            raise Fail("a domain with two memballoon elements was defined")
        except libvirt.libvirtError as e:
            check("single memory balloon" in str(e), "two balloons: %s", e)
        self.dom = self.conn.defineXML(self.xml())
        for flags, how in ((0, "live"), (libvirt.VIR_DOMAIN_XML_INACTIVE,
                                         "inactive")):
            root = ET.fromstring(self.dom.XMLDesc(flags))
            bal = root.findall("./devices/memballoon")
            check_eq([b.get("model") for b in bal], ["virtio-balloon13"],
                     "memballoon models (%s XML)" % how)
            addr = bal[0].find("address")
            check(addr is not None and addr.get("type") == "pci",
                  "memballoon has no PCI address (%s XML)", how)
            st = bal[0].find("stats")
            check(st is not None and st.get("period") == str(PERIOD),
                  "stats period %r, want %d", st is not None and st.get("period"),
                  PERIOD)
        out = self.daemon.virsh("dumpxml", DOMAIN)
        check_eq(len(re.findall(r"<memballoon ", out)), 1,
                 "memballoon elements in virsh dumpxml")

    def t_start(self):
        self.chan.drain()
        self.daemon.virsh("start", DOMAIN)
        pid = self.boot()
        drivers = [d.get("driver") for d in qemu_devices(pid)]
        check_eq(drivers.count("virtio-balloon13-pci"), 1,
                 "virtio-balloon13-pci devices on QEMU's command line")
        check("virtio-balloon-pci" not in drivers,
              "libvirt added virtio-balloon-pci too: %s", drivers)
        bal = [d for d in qemu_devices(pid)
               if d.get("driver") == "virtio-balloon13-pci"][0]
        check_eq(bal.get("id"), "balloon0", "the device's id")
        st = self.g.modprobe()
        check_eq(st["sys"].get("size_bytes"), 0, "balloon size after boot")
        self.base = st["mem"]["MemTotal"]
        say("MemTotal %d KiB with the balloon empty" % (self.base // KiB))
        check_eq(self.dom.info()[2], RAM_MIB * 1024, "current memory (KiB)")
        check_eq(self.dom.state()[0], libvirt.VIR_DOMAIN_RUNNING, "state")

    def t_setmem_down(self):
        self.g.sh("memtouch %d" % (RAM_MIB * 3 // 5))
        self.daemon.virsh("setmem", DOMAIN, "%dM" % 768, "--live")
        self.expect_balloon(768 * 1024)
        # The XML libvirt keeps follows the balloon (BALLOON_CHANGE).
        root = ET.fromstring(self.dom.XMLDesc(0))
        check_eq(int(root.find("currentMemory").text), 768 * 1024,
                 "currentMemory (KiB) in the live XML")
        self.daemon.virsh("setmem", DOMAIN, "%dM" % 512, "--live")
        self.expect_balloon(512 * 1024)

    def t_setmem_up(self):
        # Up through the Python bindings, then with virsh.
        self.dom.setMemoryFlags(640 * 1024, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        self.expect_balloon(640 * 1024)
        self.daemon.virsh("setmem", DOMAIN, "%dM" % RAM_MIB, "--live")
        st = self.expect_balloon(RAM_MIB * 1024)
        check_eq(st["mem"]["MemTotal"], self.base, "MemTotal back at the start")
        st, out = self.daemon.virsh("setmem", DOMAIN, "%dM" % (RAM_MIB * 2),
                                    "--live", ok=False)
        check(st != 0, "setmem above <memory> was accepted: %s", out.strip())

    def t_dommemstat(self):
        self.dom.setMemoryFlags(768 * 1024, libvirt.VIR_DOMAIN_AFFECT_LIVE)
        self.expect_balloon(768 * 1024)

        def measure():
            # MemFree read before and after a fresh sample and the
            # dommemstat that shows it (or a newer one, still in between).
            before = self.g.meminfo()
            gs = self.wait_stats_update(int(time.time()))
            ms = dommemstat(self.daemon.virsh("dommemstat", DOMAIN))
            return before, gs, ms, self.g.meminfo()

        # Free page reporting keeps up to 128 MiB off the free lists while
        # a report is on the device: only a window no report ended in.
        before, gs, ms, mem = self.g.without_reports(measure)
        py = self.dom.memoryStats()
        say("dommemstat: " + " ".join("%s=%d" % kv for kv in sorted(ms.items())))
        for key in ("actual", "last_update", "rss"):
            check(key in ms, "dommemstat has no %s: %s", key, sorted(ms))
        check_eq(ms["actual"], 768 * 1024, "dommemstat actual")
        check(ms["rss"] > 0, "dommemstat rss %d", ms["rss"])
        # Every statistic the device reports is shown, in libvirt's units.
        reported = {k: v for k, v in gs["stats"].items() if v != U64_MAX}
        check(reported, "the device reports no statistics: %r", gs)
        for stat, value in sorted(reported.items()):
            if stat not in STAT_FIELDS:
                continue
            field, div = STAT_FIELDS[stat]
            check(field in ms, "dommemstat has no %s though the device "
                  "reports %s", field, stat)
            if field in ("available", "usable", "unused", "disk_caches"):
                # Updated by the device's polling: the same sample.
                if ms["last_update"] == gs["last-update"]:
                    check_eq(ms[field], value // div, "dommemstat " + field)
        for stat in ("stat-total-memory", "stat-free-memory"):
            check(stat in reported, "the device does not report %s", stat)
        check_eq(ms["available"], mem["MemTotal"] // KiB,
                 "dommemstat available (KiB) against the guest's MemTotal")
        lo = min(before["MemFree"], mem["MemFree"]) - mem["MemTotal"] // 20
        hi = max(before["MemFree"], mem["MemFree"]) + mem["MemTotal"] // 20
        check(lo <= ms["unused"] * KiB <= hi,
              "dommemstat unused %d KiB, guest MemFree %d..%d KiB",
              ms["unused"], before["MemFree"] // KiB, mem["MemFree"] // KiB)
        check(abs(ms["last_update"] - time.time()) <= 3 * PERIOD + 5,
              "last_update %d is not recent (now %d)", ms["last_update"],
              time.time())
        pytags = {libvirt.VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON: "actual",
                  libvirt.VIR_DOMAIN_MEMORY_STAT_AVAILABLE: "available"}
        for tag, field in pytags.items():
            check_eq(py.get(field), ms[field], "memoryStats()[%s]" % field)
        missing = sorted(f for s, (f, _) in STAT_FIELDS.items()
                         if f not in ms)
        if missing:
            say("not shown (the device does not report them): "
                + ", ".join(missing))

    def t_domstats(self):
        out = self.daemon.virsh("domstats", "--balloon", DOMAIN)
        st = dict(re.findall(r"^\s*balloon\.([\w.-]+)=(\d+)\s*$", out, re.M))
        st = {k: int(v) for k, v in st.items()}
        say("domstats: " + " ".join("%s=%d" % kv for kv in sorted(st.items())))
        check_eq(st.get("current"), 768 * 1024, "balloon.current")
        check_eq(st.get("maximum"), RAM_MIB * 1024, "balloon.maximum")
        for key in ("available", "unused", "last-update", "rss",
                    "swap_in", "major_fault", "minor_fault"):
            check(key in st, "domstats has no balloon.%s", key)
        check_eq(st["available"], self.g.meminfo()["MemTotal"] // KiB,
                 "balloon.available (KiB)")
        recs = self.conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_BALLOON)
        check_eq(len(recs), 1, "domains in getAllDomainStats")
        py = recs[0][1]
        check_eq(py.get("balloon.current"), 768 * 1024,
                 "getAllDomainStats balloon.current")
        check_eq(py.get("balloon.maximum"), RAM_MIB * 1024,
                 "getAllDomainStats balloon.maximum")

    def t_stats_period(self):
        path = "/machine/peripheral/balloon0"
        check_eq(self.daemon.qmp("qom-get", path=path,
                                 property="guest-stats-polling-interval"),
                 PERIOD, "polling interval from <stats period>")
        # The device refreshes on its own every PERIOD seconds.
        first = self.wait_stats_update(0)["last-update"]
        second = self.wait_stats_update(first, timeout=4 * PERIOD + 10)
        gap = second["last-update"] - first
        check(PERIOD - 1 <= gap <= 2 * PERIOD + 2,
              "guest-stats updated %d s apart, period %d s", gap, PERIOD)
        # virsh dommemstat --period, live and persistent.
        self.daemon.virsh("dommemstat", DOMAIN, "--period", 1, "--live")
        check_eq(self.daemon.qmp("qom-get", path=path,
                                 property="guest-stats-polling-interval"),
                 1, "polling interval after dommemstat --period 1 --live")
        root = ET.fromstring(self.dom.XMLDesc(0))
        check_eq(root.find("./devices/memballoon/stats").get("period"), "1",
                 "live XML stats period")
        self.dom.setMemoryStatsPeriod(5, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        root = ET.fromstring(self.dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        check_eq(root.find("./devices/memballoon/stats").get("period"), "5",
                 "persistent XML stats period")
        check_eq(self.daemon.qmp("qom-get", path=path,
                                 property="guest-stats-polling-interval"),
                 1, "polling interval after a --config change")
        self.daemon.virsh("dommemstat", DOMAIN, "--period", PERIOD, "--live")

    def t_save_restore(self):
        self.daemon.virsh("setmem", DOMAIN, "%dM" % (RAM_MIB // 2), "--live")
        self.expect_balloon(RAM_MIB // 2 * 1024)
        out = self.g.sh("dd if=/dev/urandom of=/tmp/data bs=1M count=64 "
                        "2>/dev/null && sha256sum /tmp/data", timeout=120)
        digest = out.split()[0]
        image = os.path.join(self.tmp, "save.img")
        old = self.qemu_pid()
        self.daemon.virsh("save", DOMAIN, image)
        check_eq(self.dom.state()[0], libvirt.VIR_DOMAIN_SHUTOFF,
                 "state after save")
        check(not os.path.exists("/proc/%d" % old), "QEMU still runs after save")
        size = os.path.getsize(image)
        limit = RAM_MIB * MiB // 2 + SAVE_SLACK
        say("save image %.1f MiB (guest RAM %d MiB, %d MiB ballooned)"
            % (size / MiB, RAM_MIB, RAM_MIB // 2))
        check(size <= limit, "save image %d MiB > %d MiB: ballooned memory "
              "was saved", size // MiB, limit // MiB)
        self.chan.drain()
        self.conn.restore(image)
        check_eq(self.dom.state()[0], libvirt.VIR_DOMAIN_RUNNING,
                 "state after restore")
        self.chan.attach(self.qemu_pid(), boot=False)
        out = self.g.sh("sha256sum /tmp/data && rm /tmp/data")
        check_eq(out.split()[0], digest, "checksum of 64 MiB written before save")
        self.expect_balloon(RAM_MIB // 2 * 1024)
        self.g.sh("memtouch --verify 64")
        self.daemon.virsh("setmem", DOMAIN, "%dM" % RAM_MIB, "--live")
        st = self.expect_balloon(RAM_MIB * 1024)
        check_eq(st["mem"]["MemTotal"], self.base, "MemTotal after restore")

    def feature_case(self, attr, cap, prop, bit):
        """A memballoon attribute mapped to one of device 13's feature
        properties: with the property in QEMU, each value reaches QEMU's
        command line and the feature bit the guest sees; without it,
        libvirt refuses the domain with its own message."""
        name = DOMAIN + "-" + attr.lower()
        if cap not in self.caps:
            try:
                self.conn.defineXML(self.xml(name=name,
                                             balloon_attrs={attr: "on"}))
                raise Fail("%s='on' was accepted without QEMU's %s property"
                           % (attr, prop))
            except libvirt.libvirtError as e:
                check("not supported by this QEMU binary" in str(e),
                      "%s refused with: %s", attr, e)
            return "SKIP %s has no %s property (refused as expected; the " \
                "XML and argv side is tested by qemuxmlconftest)" % (
                    os.path.basename(self.qemu), prop)
        self.teardown_main()
        for value, want in (("on", "1"), ("off", "0")):
            dom = self.conn.defineXML(self.xml(name=name,
                                               balloon_attrs={attr: value}))
            try:
                self.chan.drain()
                dom.create()
                pid = self.boot()
                bal = [d for d in qemu_devices(pid)
                       if d.get("driver") == "virtio-balloon13-pci"][0]
                check_eq(bal.get(prop), value == "on",
                         "%s on QEMU's command line with %s='%s'"
                         % (prop, attr, value))
                self.g.modprobe()
                bits = self.feature_bits()
                check_eq(bits[bit], want, "guest feature bit %d with %s='%s'"
                         % (bit, attr, value))
            finally:
                if dom.isActive():
                    dom.destroy()
                dom.undefine()
        return None

    def t_autodeflate(self):
        return self.feature_case("autodeflate",
                                 "virtio-balloon13-pci.pressure-release",
                                 "pressure-release", F_PRESSURE_RELEASE)

    def t_free_page_reporting(self):
        return self.feature_case("freePageReporting",
                                 "virtio-balloon13-pci.free-page-reporting",
                                 "free-page-reporting", F_REPORTING)

    def teardown_main(self):
        """Destroy and undefine the main domain (the destroy case's work,
        done early when a feature case needs the guest's memory)."""
        if self.dom is None:
            return
        pid = self.daemon.qemu_pids()
        self.daemon.virsh("destroy", DOMAIN)
        check_eq(self.dom.state()[0], libvirt.VIR_DOMAIN_SHUTOFF,
                 "state after destroy")
        for p in pid:
            check(not os.path.exists("/proc/%d" % p), "QEMU %d still runs", p)
        self.dom.undefine()
        check_eq(self.conn.listAllDomains(), [], "domains left")
        self.dom = None

    def t_stock_recipe(self):
        """What Documentation/device-notes.rst says of libvirt without the
        virtio-balloon13 model: device 13 added with <qemu:commandline>
        beside libvirt's default virtio balloon stops QEMU; with
        model='none' it runs, virsh setmem and QMP balloon resize it, but
        libvirt shows none of its statistics."""
        name = DOMAIN + "-stock"
        # An address of its own: libvirt does not know the slot is taken.
        dev = ["-device", "virtio-balloon13-pci,id=b13,bus=pcie.0,addr=0x10"]
        xml = self.xml(name=name, model="virtio", period=0, qemu_args=dev)
        dom = self.conn.defineXML(xml)
        try:
            st, out = self.daemon.virsh("start", name, ok=False)
            check(st != 0, "device 13 beside the virtio balloon started")
            check("Only one balloon device is supported" in out,
                  "device 13 beside the virtio balloon: %s",
                  " ".join(out.split())[:200])
        finally:
            dom.undefine()
        dom = self.conn.defineXML(self.xml(name=name, model="none", period=0,
                                           qemu_args=dev))
        try:
            self.chan.drain()
            dom.create()
            self.boot()
            base = self.g.modprobe()["mem"]["MemTotal"]
            # QMP balloon reaches device 13, whoever sends it: virsh
            # setmem sends it without looking for a <memballoon>.
            self.daemon.virsh("setmem", name, "768M", "--live")
            st = self.g.wait_size(256 * MiB, timeout=180)
            check_eq(st["mem"]["MemTotal"], base - 256 * MiB,
                     "MemTotal after virsh setmem 768M")
            msg = {"execute": "balloon", "arguments": {"value": 896 * MiB}}
            self.daemon.virsh("qemu-monitor-command", name, json.dumps(msg))
            st = self.g.wait_size(128 * MiB, timeout=180)
            check_eq(st["mem"]["MemTotal"], base - 128 * MiB,
                     "MemTotal after QMP balloon 896 MiB")
            info = self.daemon.virsh("dominfo", name)
            say("dominfo without a memballoon: " + " ".join(
                ln.strip() for ln in info.splitlines() if "memory" in ln))
            # libvirt asks for statistics only of a balloon it knows.
            ms = dommemstat(self.daemon.virsh("dommemstat", name))
            say("dommemstat without a memballoon: %s" % ms)
            check_eq(sorted(ms), ["rss"], "dommemstat fields")
            st, out = self.daemon.virsh("dommemstat", name, "--period", 2,
                                        "--live", ok=False)
            check(st != 0, "dommemstat --period worked without a memballoon")
            say("dommemstat --period without a memballoon: "
                + " ".join(out.split()))
        finally:
            if dom.isActive():
                dom.destroy()
            dom.undefine()

    def t_destroy(self):
        check(self.dom is not None, "no running main domain to destroy")
        self.g.check_dmesg_clean()
        self.teardown_main()
        return None


def report(results, n, case, ok, secs, reason=None):
    """One TAP line with the bare id; time and reason on comment lines."""
    rid = "libvirt/" + case
    if ok is True:
        print("ok %d - %s\n# %s: %.1f s" % (n, rid, rid, secs), flush=True)
    elif ok == "skip":
        print("ok %d - %s # SKIP %s" % (n, rid, reason), flush=True)
    else:
        print("not ok %d - %s\n# %s: %s" % (
            n, rid, rid, " ".join(str(reason).split())[:400]), flush=True)
    results.append(ok)


def main():
    global libvirt
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", default="6.12")
    ap.add_argument("--qemu", default=os.environ.get("VB13_QEMU"),
                    help="QEMU binary (default $VB13_QEMU, else "
                    "scripts/build-qemu.sh)")
    ap.add_argument("--libvirt", default=os.environ.get("VB13_LIBVIRT"),
                    help="libvirt prefix (default $VB13_LIBVIRT, else "
                    "scripts/build-libvirt.sh)")
    ap.add_argument("-k", dest="only", help="cases to run (comma list)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp dir (logs, save image)")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else set(CASES)
    bad = only - set(CASES)
    if bad:
        ap.error("unknown case(s) %s; cases: %s" % (", ".join(sorted(bad)),
                                                    ", ".join(CASES)))

    prefix = args.libvirt or last_line(
        ["bash", os.path.join(TOP, "scripts", "build-libvirt.sh")])
    libdir = os.path.join(prefix, "lib")
    if os.environ.get("LD_LIBRARY_PATH", "").split(":")[0] != libdir:
        # python3-libvirt must load this libvirt.so.0, not Debian's.
        os.environ["LD_LIBRARY_PATH"] = libdir
        os.environ["VB13_LIBVIRT"] = prefix
        os.execv(sys.executable, [sys.executable] + sys.argv)
    import libvirt as lv
    libvirt = lv
    libvirt.registerErrorHandler(lambda ctx, err: None, None)

    results = []
    n = 0
    with open(os.path.join(prefix, "unit-tests.tap")) as f:
        for line in f:
            m = re.match(r"(ok|not ok) \d+ - (\S+)", line)
            if m:
                n += 1
                print("%s %d - %s" % (m.group(1), n, m.group(2)), flush=True)
                results.append(m.group(1) == "ok")
            elif line.startswith("#"):
                print(line.rstrip(), flush=True)

    qemu = os.path.abspath(args.qemu or vmlib.qemu_binary())
    env = vmlib.kernel_env(args.series)
    ko = last_line(["bash", os.path.join(TOP, "scripts", "build-module.sh"),
                    args.series])
    initrd = vmlib.initramfs(args.series, [ko])
    tmp = tempfile.mkdtemp(prefix="vb13-libvirt-")
    say("libvirt %s, QEMU %s, kernel %s, temp dir %s"
        % (prefix, qemu, env["KVER"], tmp))
    run = Run(args, prefix, qemu, env["VMLINUZ"], initrd, tmp)
    passed = {}
    try:
        for case in CASES:
            if case not in only:
                continue
            n += 1
            need = NEEDS.get(case)
            if need and need in only and not passed.get(need):
                report(results, n, case, False, 0,
                       "not run: libvirt/%s failed" % need)
                passed[case] = False
                continue
            t0 = time.monotonic()
            try:
                skip = getattr(run, "t_" + case.replace("-", "_"))()
            except Fail as e:
                report(results, n, case, False, time.monotonic() - t0, e)
                say("virtqemud log: " + run.daemon.tail(8))
                say("console: " + " | ".join(run.chan.console_log()
                                              .strip().splitlines()[-8:]))
                passed[case] = False
            except (vmlib.VMError, OSError, libvirt.libvirtError) as e:
                report(results, n, case, False, time.monotonic() - t0,
                       "%s: %s" % (type(e).__name__, str(e).splitlines()[0]
                                   if str(e) else ""))
                say("virtqemud log: " + run.daemon.tail(8))
                passed[case] = False
            except Exception as e:  # a bug here: still one line per case
                report(results, n, case, False, time.monotonic() - t0,
                       "%s: %s" % (type(e).__name__, e))
                print("\n".join("# " + ln for ln in
                                traceback.format_exc().splitlines()))
                passed[case] = False
            else:
                if skip:
                    report(results, n, case, "skip", 0, skip[5:])
                else:
                    report(results, n, case, True, time.monotonic() - t0)
                passed[case] = True
    finally:
        run.chan.close()
        if run.conn:
            try:
                run.conn.close()
            except libvirt.libvirtError:
                pass
        run.daemon.stop()
        if args.keep:
            say("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("1..%d" % n)
    p = sum(1 for r in results if r is True)
    s = sum(1 for r in results if r == "skip")
    f = len(results) - p - s
    print("# libvirt: %d passed, %d failed, %d skipped" % (p, f, s))
    return 1 if f else 0


if __name__ == "__main__":
    sys.exit(main())
