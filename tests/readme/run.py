#!/usr/bin/python3
"""README.md's "Use it in your own VM", run as written.

    python3 tests/readme/run.py [--tap FILE] [--keep] [-k BLOCK[,BLOCK]]
                                [--readme FILE]

Reads the blocks of README.md that a comment `<!-- readme-test: NAME -->`
precedes (fenced code, or a table), runs their commands on this machine
and in QEMU guests, and checks what each one promises: balloon sizes and
the guest's MemTotal exactly, QEMU's resident memory falling by the
balloon (the host gets it back), QMP's and virsh's answers, the feature
bits the libvirt XML switches on, the package's version in the guest, and
the values the blocks' comments promise.  --readme FILE reads an edited
copy instead, to see a block's test fail.  One TAP
result per block, `readme/<NAME>` (scripts/tap.py reads them), in the
order below; a block whose prerequisite failed fails naming it.

What it changes to run the README's commands on a build machine (the
README lists the same):
  - `sudo` is left out (it runs as root) and `/usr/local` is a prefix in
    its temp dir, put first in PATH;
  - each QEMU command line gets the test guest's direct kernel boot
    (Debian's 6.12 kernel, scripts/mkinitramfs.sh's busybox initramfs with
    the module DKMS built from the package), a console log, vm.py's
    command channel on the second serial port and a QMP socket of the
    test's own; vm1.qcow2 is an empty qcow2 image;
  - apt runs here with -y and without Recommends; modprobe and modinfo
    run in the guest;
  - libvirt: type='qemu', the disk's and the emulator's paths, the same
    boot elements and the channel's <serial>; the daemon block runs in a
    mount namespace of its own with private /run/vb13-libvirt directories
    (tests/libvirt/run.py's Daemon, which also hides an unusable
    /dev/kvm from it), and virsh gets -c its socket.
The KVM command lines are not run (no usable KVM here): each must differ
from its TCG form in the accelerator alone.

Machinery comes from the suites that own it: scripts/vm.py (QEMU, the
guest's command channel), tests/e2e/e2elib.py (the guest's state),
tests/deb/test_deb.py (the package: another install left alone, what a
purge must remove), tests/libvirt/run.py (virtqemud in a namespace, the
channel under libvirt).  Exit status 1 if anything failed.
"""

import argparse
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
for d in ("scripts", "tests/e2e", "tests/deb"):
    sys.path.insert(0, os.path.join(TOP, d))
import importlib.util  # noqa: E402
import tap  # noqa: E402
import vm as vmlib  # noqa: E402
from e2elib import KiB, MiB, Fail, Guest, check, check_eq, say  # noqa: E402
import test_deb  # noqa: E402  (tests/deb/test_deb.py)


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(TOP, path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


lvrun = _load("libvirt_run", "tests/libvirt/run.py")

README = os.path.join(TOP, "README.md")
SERIES = "6.12"
MARK = re.compile(r"^<!--\s*readme-test:\s*([\w-]+)\s*-->\s*$")
# Every block the test knows, in the order it reports them, and the block
# each needs to have passed.
BLOCKS = ("needs", "install-qemu", "install-host", "qemu-native-kvm",
          "qemu-vu-kvm", "guest-package", "qemu-native-tcg", "qmp",
          "qemu-vu-tcg", "balloon13ctl", "guest-view", "libvirt-daemon",
          "libvirt-xml", "virsh", "sizes")
NEEDS = {"qemu-native-tcg": ("install-qemu", "guest-package"),
         "qmp": ("qemu-native-tcg",),
         "qemu-vu-tcg": ("install-qemu", "install-host", "guest-package"),
         "balloon13ctl": ("qemu-vu-tcg",), "guest-view": ("balloon13ctl",),
         "libvirt-xml": ("libvirt-daemon", "install-qemu", "guest-package"),
         "virsh": ("libvirt-xml",)}
# Libraries every Linux program links whatever the README says.
BASE_PACKAGES = {"libc6"}
SYSFS = "/sys/bus/virtio/drivers/virtio_balloon13/virtio*"
# Before a balloon is made, the guest touches this much of its RAM
# (memtouch, from the test guest's initramfs) and frees it; then QEMU's
# resident memory must fall by the balloon's size, less this slack: the
# balloon also takes free pages memtouch never touched (about 800 MiB of a
# 2 GiB guest's free memory stay untouched), which were never resident on
# the host.  Measured: 497 to 508 MiB of a 512 MiB balloon; with the
# memory given back nowhere (share=off for balloon13d), about 0.
TOUCH_MIB = 1100
GIVEN_BACK_SLACK = 64 * MiB


# ---- README.md ---------------------------------------------------------------

def read_blocks(path=README):
    """{name: (kind, text, line)}: kind "code:<lang>" or "table"."""
    with open(path) as f:
        lines = f.read().split("\n")
    blocks = {}
    i = 0
    while i < len(lines):
        m = MARK.match(lines[i])
        i += 1
        if not m:
            continue
        name = m.group(1)
        if name in blocks:
            raise Fail("README.md:%d: block %s marked twice" % (i, name))
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i < len(lines) and lines[i].startswith("```"):
            lang = lines[i][3:].strip()
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            check(j < len(lines), "README.md:%d: block %s never closed", i + 1, name)
            blocks[name] = ("code:" + lang, "\n".join(lines[i + 1:j]), i + 1)
            i = j + 1
        elif i < len(lines) and lines[i].startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            blocks[name] = ("table", "\n".join(lines[i:j]), i + 1)
            i = j
        else:
            raise Fail("README.md:%d: the marker of %s is followed by neither "
                       "a fenced block nor a table" % (i, name))
    return blocks


class Cmd:
    """One command of a shell block: its text (continuations joined,
    comment removed), argv, and the output a "# -> TEXT" comment promises."""

    def __init__(self, raw):
        self.raw = raw
        self.argv = shlex.split(raw, comments=True)
        self.text = shlex.join(self.argv) if self.argv else ""
        m = re.search(r"#\s*->\s*(.*)$", raw)
        self.expect = m.group(1).strip() if m and not _in_quotes(raw, m.start()) else None
        m = re.search(r"\s#\s", raw)
        self.shell = raw[:m.start()].rstrip() if m and not _in_quotes(raw, m.start()) else raw
        # A trailing `&` (run in the background) is the shell's, not an
        # argument.
        self.background = bool(self.argv) and self.argv[-1] == "&"
        if self.background:
            self.argv = self.argv[:-1]
        if self.argv and self.argv[0] == "sudo":
            # sudo's own options, then the command.
            k = 1
            while k < len(self.argv) and self.argv[k].startswith("-"):
                k += 1
            self.argv = self.argv[k:]
            self.shell = re.sub(r"^sudo(\s+-\S+)*\s+", "", self.shell)

    def __repr__(self):
        return self.text


def _in_quotes(s, pos):
    """Whether s[pos] is inside single or double quotes."""
    q = None
    for c in s[:pos]:
        if q:
            if c == q:
                q = None
        elif c in "'\"":
            q = c
    return q is not None


def commands(text):
    out, cur = [], ""
    for line in text.split("\n"):
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        cur += line
        if cur.strip() and not cur.strip().startswith("#"):
            out.append(Cmd(cur.strip()))
        cur = ""
    return out


def qemu_argv(cmds):
    """The qemu-system-x86_64 command of a block."""
    q = [c for c in cmds if c.argv and c.argv[0] == "qemu-system-x86_64"]
    check(len(q) == 1, "%d qemu-system-x86_64 commands in the block, want 1", len(q))
    return q[0].argv


def option(argv, name):
    """The values of -name in argv."""
    return [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == name]


def size_arg(text, unit=1):
    """'512M', '2G', '1536M' -> bytes; a bare number is in `unit`s."""
    if re.fullmatch(r"\d+", text):
        return int(text) * unit
    return vmlib.parse_size(text)


# ---- the environment the commands run in -----------------------------------------

class Env:
    def __init__(self, work):
        self.work = work                    # the user's working directory
        self.prefix = os.path.join(work, "prefix")      # for /usr/local
        self.env = dict(os.environ)
        self.env["PATH"] = os.path.join(self.prefix, "bin") + ":" + self.env["PATH"]
        self.env["DEBIAN_FRONTEND"] = "noninteractive"

    def sub(self, text):
        return text.replace("/usr/local", self.prefix)

    def which(self, name):
        return shutil.which(name, path=self.env["PATH"])

    def sh(self, cmd, cwd=None, timeout=1800, ok=(0,)):
        """Run a block's command with bash -> its output; Fail unless its
        status is in ok."""
        text = self.sub(cmd.shell)
        t0 = time.monotonic()
        p = subprocess.run(["bash", "-c", text], cwd=cwd or self.work,
                           env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout)
        say("$ %s  (%.1f s, exit %d)" % (text[:110], time.monotonic() - t0,
                                        p.returncode))
        if ok is not None and p.returncode not in ok:
            raise Fail("`%s` exited %d: %s" % (
                text[:100], p.returncode,
                " | ".join(p.stdout.strip().splitlines()[-5:])[:400]))
        return p.stdout


class ReadmeVM(vmlib.VM):
    """A guest started with the README's QEMU command line plus the test
    guest's boot, console, command channel and QMP (module docstring)."""

    def __init__(self, argv, qemu, module, mem):
        super().__init__(series=SERIES, mem=mem, modules=[module], qemu=qemu)
        self.readme_argv = list(argv)

    def _qemu_argv(self):
        cmdline = "console=ttyS0,115200 quiet panic=-1 no_timer_check"
        return [self.qemu] + self.readme_argv[1:] + [
            "-kernel", self.kernel, "-initrd", self.initrd,
            "-append", cmdline, "-no-reboot",
            "-chardev", "file,id=vb13con,path=%s" % self.path("console.log"),
            "-serial", "chardev:vb13con",
            "-chardev", "socket,id=vb13cmd,path=%s" % self.path("cmd.sock"),
            "-serial", "chardev:vb13cmd",
            "-chardev", "socket,id=vb13qmp,path=%s" % self.path("qmp.sock"),
            "-mon", "chardev=vb13qmp,mode=control"]


class NoDevice:
    """e2elib.Guest's device: here the README's commands drive it."""
    suffix = ""
    kind = "readme"


class ReadmeDaemon(lvrun.Daemon):
    """The README's daemon block, run in a mount namespace whose
    /run/vb13-libvirt/{etc,var} are this run's (as lvrun.Daemon runs
    virtqemud); virtqemud --daemon leaves a pid file there."""

    def start_block(self, script):
        etc, var = os.path.join(self.tmp, "etc"), os.path.join(self.tmp, "var")
        os.makedirs(etc)
        os.makedirs(os.path.join(var, "run"))
        for d in ("etc", "var"):
            os.makedirs(os.path.join(lvrun.STATE, d), exist_ok=True)
        # /dev/kvm that can't be used: hidden as tests/libvirt/run.py's
        # Daemon hides it (libvirt would probe QEMU again at every lookup).
        nokvm = os.path.join(self.tmp, "no-kvm")
        open(nokvm, "w").close()
        wrap = ('mount --bind "$1" "$2" && mount --bind "$3" "$4" && '
                '{ [ ! -e /dev/kvm ] || { mount --bind "$5" /dev/kvm && '
                'mount -o remount,bind,ro /dev/kvm; }; } && '
                'cd "$6" && exec bash -ec "$7"')
        argv = ["unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", wrap, "sh",
                etc, os.path.join(lvrun.STATE, "etc"),
                var, os.path.join(lvrun.STATE, "var"), nokvm, TOP, script]
        with open(os.path.join(self.tmp, "virtqemud.out"), "wb") as out:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, timeout=3600)
        if p.returncode != 0:
            raise Fail("the daemon block exited %d: %s" % (p.returncode, self.tail()))
        deadline = time.monotonic() + 60
        while not os.path.exists(self.sock):
            if time.monotonic() > deadline:
                raise Fail("virtqemud made no socket in 60 s: " + self.tail())
            time.sleep(0.1)

    def daemon_pid(self):
        try:
            with open(os.path.join(self.tmp, "var", "run",
                                   "virtqemud.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def in_namespace(self):
        """The processes that have this run's directories mounted: the
        daemon and whatever it started, found even without a pid file."""
        pids = []
        for d in glob.glob("/proc/[0-9]*"):
            try:
                with open(os.path.join(d, "mountinfo")) as f:
                    if " %s/var " % self.tmp in f.read():
                        pids.append(int(os.path.basename(d)))
            except (OSError, ValueError):
                pass
        return pids

    def stop(self):
        for pid in self.qemu_pids():
            _kill(pid)
        pid = self.daemon_pid()
        if pid:
            _kill(pid, 15)
            for _ in range(100):
                if not os.path.exists("/proc/%d" % pid):
                    break
                time.sleep(0.1)
            _kill(pid)
        for pid in self.in_namespace():
            _kill(pid)


def _kill(pid, sig=9):
    try:
        os.kill(pid, sig)
    except OSError:
        pass


# ---- the run ---------------------------------------------------------------------

class Run:
    def __init__(self, args, blocks, env):
        self.args = args
        self.blocks = blocks
        self.env = env
        self.work = env.work
        self.module = None          # the .ko the guests load
        self.version = None         # the package's version
        self.deb_installed = False
        self.daemon = None
        self.chan = None
        self.vm = None
        self.vu_daemon = None
        self.g = None

    def cmds(self, name):
        kind, text, _ = self.blocks[name]
        check(kind.startswith("code:"), "block %s is not a fenced block", name)
        return commands(text)

    def guest(self, vm, mem):
        g = Guest(vm, NoDevice(), SERIES, {"mem": mem, "page_bits": 12})
        g.dmesg_mark = None
        return g

    def expect_size(self, g, balloon, base, what):
        t0 = time.monotonic()
        st = g.wait_size(balloon, timeout=180)
        say("%s: settled in %.1f s" % (what, time.monotonic() - t0))
        check_eq(st["mem"]["MemTotal"], base - balloon, "MemTotal after " + what)
        say("%s: balloon %d MiB, MemTotal %d KiB" % (what, balloon // MiB,
                                                      st["mem"]["MemTotal"] // KiB))
        return st

    # -- blocks without a VM --

    def t_needs(self):
        """Every package the table names exists here (is installed), and
        every library the host binaries link comes from one it names for
        that piece."""
        kind, text, _ = self.blocks["needs"]
        check(kind == "table", "needs is not a table")
        rows = {}
        for line in text.split("\n")[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells
        pkgs = {}
        for key, cells in rows.items():
            pkgs[key] = set(re.findall(r"`([a-z0-9][a-z0-9.+-]*)`", cells[3]))
        named = set().union(*pkgs.values()) - {"dkms"}
        for p in sorted(named):
            if "*" in p or p.endswith("-"):
                continue
            st = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True).stdout
            check(st.endswith(" installed"), "package %s named in the table is "
                  "not installed here (%r)", p, st)
        q = vmlib.qemu_binary()     # the project's, what install-qemu copies
        for row, binary in (("QEMU", q), ("balloon13d, balloon13ctl",
                                          os.path.join(TOP, "host", "balloon13d")),
                            ("balloon13d, balloon13ctl",
                             os.path.join(TOP, "host", "balloon13ctl"))):
            check(row in pkgs, "no row %r in the table", row)
            used = needed_packages(binary)
            missing = used - pkgs[row] - BASE_PACKAGES
            check(not missing, "%s links libraries of %s, which the row %r "
                  "does not name", os.path.basename(binary),
                  ", ".join(sorted(missing)), row)
            say("%s links %s" % (os.path.basename(binary), ", ".join(sorted(used))))
        m = re.search(r"QEMU (\d+\.\d+\.\d+)", rows["QEMU"][4])
        check(m, "the QEMU row names no version")
        out = subprocess.run([q, "--version"], stdout=subprocess.PIPE,
                             text=True).stdout
        check(m.group(1) in out.split("\n")[0],
              "the QEMU row says %s, the project's QEMU says %r", m.group(1),
              out.split("\n")[0])

    def t_install_qemu(self):
        c = self.cmds("install-qemu")
        out = ""
        for cmd in c:
            out += self.env.sh(cmd, cwd=TOP)
        q = self.env.which("qemu-system-x86_64")
        check(q == os.path.join(self.env.prefix, "bin", "qemu-system-x86_64"),
              "qemu-system-x86_64 in PATH is %s, not the installed one", q)
        for dev in ("virtio-balloon13-pci", "vhost-user-test-device-pci"):
            check('name "%s"' % dev in out, "the device list lacks %s", dev)

    def t_install_host(self):
        for cmd in self.cmds("install-host"):
            self.env.sh(cmd, cwd=TOP, timeout=1800)
        for b in ("balloon13d", "balloon13ctl"):
            check(self.env.which(b) == os.path.join(self.env.prefix, "bin", b),
                  "%s in PATH is %s", b, self.env.which(b))

    def kvm_form(self, name):
        kvm = self.cmds(name)
        tcg = self.cmds(name.replace("-kvm", "-tcg"))
        check_eq(len(kvm), len(tcg), "commands in %s and its TCG form" % name)
        for a, b in zip(kvm, tcg):
            if a.argv[:1] != ["qemu-system-x86_64"]:
                check_eq(a.argv, b.argv, "a command beside QEMU in " + name)
                continue
            check_eq(option(a.argv, "-accel"), ["kvm"], "-accel in " + name)
            check_eq(option(b.argv, "-accel"), ["tcg"], "-accel in its TCG form")
            i = a.argv.index("-accel") + 1
            check_eq(a.argv[:i] + a.argv[i + 1:], b.argv[:i] + b.argv[i + 1:],
                     "%s without its accelerator, against the TCG form's" % name)

    def t_qemu_native_kvm(self):
        self.kvm_form("qemu-native-kvm")

    def t_qemu_vu_kvm(self):
        self.kvm_form("qemu-vu-kvm")

    def t_sizes(self):
        """Each command the table shows is one of the blocks' commands, and
        each gives the same 512 MiB balloon of a 2 GiB guest."""
        kind, text, _ = self.blocks["sizes"]
        check(kind == "table", "sizes is not a table")
        every = " ".join(c.text for n in ("qmp", "virsh", "balloon13ctl")
                         for c in self.cmds(n))
        spans = re.findall(r"`([^`]+)`", "\n".join(text.split("\n")[2:]))
        check(len(spans) == 3, "%d commands in the table, want 3", len(spans))
        for s in spans:
            norm = " ".join(shlex.split(s)) if not s.startswith("{") else s
            check(norm in every or s in " ".join(c.raw for n in ("qmp",)
                                                 for c in self.cmds(n)),
                  "the table's %r is in none of the blocks", s)
        ram = vmlib.parse_size(option(qemu_argv(self.cmds("qemu-native-tcg")),
                                      "-m")[0])
        value = json.loads(spans[0])["arguments"]["value"]
        check_eq(ram - value, 512 * MiB, "the QMP row's balloon")
        check_eq(ram - size_arg(shlex.split(spans[1])[3], KiB), 512 * MiB,
                 "the virsh row's balloon")
        check_eq(size_arg(shlex.split(spans[2])[-1]), 512 * MiB,
                 "the balloon13ctl row's balloon")

    # -- the package --

    def t_guest_package(self):
        """make deb and apt install here; modprobe and modinfo in the
        vu guest later (guest_package_in_vm), apt purge at the end."""
        c = self.cmds("guest-package")
        verbs = [x.argv[:2] for x in c]
        check(verbs[0] == ["make", "deb"], "the block starts with %s" % verbs[0])
        out = self.env.sh(c[0], cwd=TOP)
        debs = glob.glob(os.path.join(TOP, "out", "deb", "*_all.deb"))
        check(len(debs) == 1, "make deb left %s", debs)
        self.version = test_deb.lib("vb13_version")
        why = test_deb.installed_elsewhere()
        kver = test_deb.kernel_env(SERIES)["KVER"]
        if why:
            # Someone's own install: never touched.  The guests load the
            # module built from this tree.
            say("not installed: " + why)
            self.module = vmlib._script_output(
                ["bash", os.path.join(TOP, "scripts", "build-module.sh"), SERIES])
            return "SKIP " + why
        inst = [x for x in c if x.argv[:2] == ["apt", "install"]]
        check(len(inst) == 1, "no apt install in the block")
        cmd = inst[0]
        cmd.shell = cmd.shell.replace(
            "apt install", "apt install -y -q --no-install-recommends "
            "-o DPkg::Lock::Timeout=900", 1)
        try:
            self.env.sh(cmd, cwd=TOP)
        finally:
            # Purged at the end if dpkg knows it at all, even half
            # installed.
            st = subprocess.run(["dpkg-query", "-W", "-f=${Status}", test_deb.PKG],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                text=True).stdout
            self.deb_installed = bool(st) and "not-installed" not in st
        ko = test_deb.module_path(kver)
        check(ko, "DKMS built no module for %s", kver)
        self.module = os.path.join(self.work, os.path.basename(ko))
        shutil.copy(ko, self.module)
        del out
        return None

    def guest_package_in_vm(self, g):
        """The block's guest commands (modprobe, modinfo) in the guest."""
        for cmd in self.cmds("guest-package"):
            if cmd.argv[0] in ("modprobe", "modinfo"):
                out = g.sh(cmd.shell).strip()
                say("guest$ %s -> %s" % (cmd.shell, out[:80]))
                if cmd.argv[:3] == ["modinfo", "-F", "version"]:
                    check_eq(out, self.version, "modinfo -F version in the guest")
        check_eq(len(g.state()["devs"]), 1, "devices bound after modprobe")
        alias = g.sh("modinfo -F alias virtio_balloon13").split()
        check("virtio:d0000000Dv*" in alias, "no virtio modalias for device 13 "
              "(udev could not load it): %s", alias)

    def purge(self):
        cmd = [x for x in self.cmds("guest-package") if x.argv[:2] == ["apt", "purge"]]
        check(len(cmd) == 1, "no apt purge in the block")
        cmd[0].shell = cmd[0].shell.replace(
            "apt purge", "apt purge -y -q -o DPkg::Lock::Timeout=900", 1)
        self.env.sh(cmd[0], cwd=TOP)
        self.deb_installed = False
        left = test_deb.leftovers()
        check(not left, "left behind after apt purge: %s", " ".join(left))

    # -- the native device --

    def disk(self):
        """The README's vm1.qcow2: an empty image here."""
        path = os.path.join(self.work, "vm1.qcow2")
        if not os.path.exists(path):
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path,
                            "1G"], check=True)
        return path

    def boot(self, argv):
        self.disk()
        mem = option(argv, "-m")
        check(len(mem) == 1, "the QEMU line has %d -m, want 1", len(mem))
        q = self.env.which(argv[0])
        check(q, "%s is not in PATH", argv[0])
        self.vm = ReadmeVM(argv, q, self.module, mem[0])
        self.vm.start()
        say("guest up in %.1f s: %s" % (self.vm.boot_seconds, " ".join(argv[:8])))
        g = self.guest(self.vm, mem[0])
        return g, vmlib.parse_size(mem[0])

    def close_vm(self):
        if self.vm:
            self.vm.close()
            self.vm = None
        if self.vu_daemon and self.vu_daemon.poll() is None:
            self.vu_daemon.terminate()
            try:
                self.vu_daemon.wait(10)
            except subprocess.TimeoutExpired:
                self.vu_daemon.kill()
        self.vu_daemon = None

    def t_qemu_native_tcg(self):
        c = self.cmds("qemu-native-tcg")
        self.g, self.ram = self.boot(qemu_argv(c))
        st = self.g.modprobe()
        self.base = st["mem"]["MemTotal"]
        check_eq(st["sys"].get("size_bytes"), 0, "balloon after boot")
        devs = self.vm.qmp("qom-list", path="/machine/peripheral")
        check("b13" in [d["name"] for d in devs], "no device b13 in QEMU")

    def host_memory(self, g):
        """QEMU's resident memory once the guest has touched most of its
        RAM and freed it again (so that the pages a balloon takes are
        resident on the host before it takes them)."""
        t0 = time.monotonic()
        g.sh("memtouch %d" % TOUCH_MIB, timeout=240)
        say("memtouch %d: %.1f s" % (TOUCH_MIB, time.monotonic() - t0))
        return self.vm.qemu_rss()["VmRSS"]

    def given_back(self, rss0, balloon, what):
        """The host got the balloon's memory back: QEMU's resident memory
        fell by nearly all of it (balloon13d punches out the shared memfd's
        pages, the native device discards its own RAM's)."""
        rss1 = self.vm.qemu_rss()["VmRSS"]
        say("%s: QEMU's VmRSS %d -> %d MiB" % (what, rss0 // MiB, rss1 // MiB))
        check(rss0 - rss1 >= balloon - GIVEN_BACK_SLACK,
              "%s: QEMU's resident memory fell by %d MiB (%d -> %d MiB), "
              "want at least %d MiB: the host did not get the balloon's "
              "memory back", what, (rss0 - rss1) // MiB, rss0 // MiB,
              rss1 // MiB, (balloon - GIVEN_BACK_SLACK) // MiB)

    def t_qmp(self):
        g, balloon = self.g, 0
        rss0 = None
        for cmd in self.cmds("qmp"):
            check(cmd.argv[:1] == ["echo"] and "socat" in cmd.shell,
                  "not an echo | socat line: %s", cmd.raw[:60])
            msgs = json_seq(cmd.argv[1])
            last = msgs[-1]
            if last["execute"] == "balloon" and rss0 is None:
                rss0 = self.host_memory(g)
            out = self.env.sh(cmd)
            answers = json_seq(out)
            errs = [a for a in answers if "error" in a]
            check(not errs, "QMP answered %s", errs)
            if last["execute"] == "balloon":
                balloon = max(0, self.ram - last["arguments"]["value"])
                self.expect_size(g, balloon, self.base, "QMP balloon %d"
                                 % last["arguments"]["value"])
                if balloon:
                    self.given_back(rss0, balloon, "QMP balloon")
            elif last["execute"] == "query-balloon":
                got = [a for a in answers if "return" in a and a["return"]][-1]
                check_eq(got["return"]["actual"], self.ram - balloon,
                         "query-balloon actual")
                if cmd.expect:
                    check_eq(got, json.loads(cmd.expect), "query-balloon's "
                             "answer against the README's")
        self.close_vm()

    # -- balloon13d --

    def t_qemu_vu_tcg(self):
        c = self.cmds("qemu-vu-tcg")
        bg = [x for x in c if x.background]
        check(len(bg) == 1 and bg[0].argv[0] == "balloon13d",
              "the block starts no balloon13d in the background")
        d = bg[0].argv
        self.vu_sock = option(d, "-s")[0]
        self.vu_ctl = option(d, "-c")[0]
        argv = [self.env.which("balloon13d")] + d[1:]
        log = open(os.path.join(self.work, "balloon13d.log"), "wb")
        self.vu_daemon = subprocess.Popen(argv, cwd=self.work, stdout=log,
                                          stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL,
                                          preexec_fn=vmlib._die_with_parent)
        deadline = time.monotonic() + 20
        while not os.path.exists(os.path.join(self.work, self.vu_sock)):
            check(self.vu_daemon.poll() is None, "balloon13d exited %s",
                  self.vu_daemon.returncode)
            check(time.monotonic() < deadline, "balloon13d made no socket")
            time.sleep(0.05)
        self.g, self.ram = self.boot(qemu_argv(c))
        self.guest_package_in_vm(self.g)
        st = self.g.state()
        self.base = st["mem"]["MemTotal"]
        check_eq(st["sys"].get("size_bytes"), 0, "balloon after boot")

    def t_balloon13ctl(self):
        g = self.g
        c = self.cmds("balloon13ctl")
        self.viewed = False
        size = None
        rss0 = None
        for cmd in c:
            check(cmd.argv[0] == "balloon13ctl", "not a balloon13ctl line")
            m = re.search(r"a (\d+) MiB balloon", cmd.raw)
            if m and "resize" in cmd.argv:
                check_eq(size_arg(cmd.argv[cmd.argv.index("resize") + 1]),
                         int(m.group(1)) * MiB, "resize's argument against "
                         "the README's comment")
            if "resize" in cmd.argv and rss0 is None:
                rss0 = self.host_memory(g)
            out = self.env.sh(cmd, timeout=300)
            if "resize" in cmd.argv:
                size = size_arg(cmd.argv[cmd.argv.index("resize") + 1])
                self.expect_size(g, size, self.base, "balloon13ctl resize %d MiB"
                                 % (size // MiB))
                if size:
                    self.given_back(rss0, size, "balloon13ctl resize")
                if size and not self.viewed:
                    self.guest_view(g, size)
            elif cmd.argv[-1] == "status":
                st = json_seq(self.env.sh(Cmd(cmd.shell.replace(
                    " status", " --json status"))))[-1]
                check(size is not None, "status before any resize")
                check_eq(st.get("target_bytes"), size,
                         "balloon13ctl status target_bytes")
                check_eq(st.get("bytes_in_balloon"), size,
                         "balloon13ctl status bytes_in_balloon")
                say("status: " + " | ".join(out.strip().splitlines()[:4]))

    def guest_view(self, g, size):
        """The guest-view block in the guest, with the balloon at size."""
        try:
            cmds = self.cmds("guest-view")
            outs = [g.sh(cmd.shell).strip() for cmd in cmds]
            check_eq(outs[0], str(size), "size_bytes in the guest")
            m = re.search(r"#\s*(\d+) with a (\d+) MiB balloon", cmds[0].raw)
            check(m, "the size_bytes line promises no value")
            check_eq((int(m.group(1)), int(m.group(2)) * MiB), (size, size),
                     "the size_bytes line's comment against the balloon")
            check(re.fullmatch(r"MemTotal:\s+%d kB" % ((self.base - size) // KiB),
                               outs[1]), "guest-view's MemTotal line %r, want "
                  "%d kB", outs[1], (self.base - size) // KiB)
            self.viewed = True
        except Fail as e:
            self.viewed = str(e)

    def t_guest_view(self):
        if self.viewed is not True:
            raise Fail(self.viewed or "never run: balloon13ctl made no balloon")

    # -- libvirt --

    def t_libvirt_daemon(self):
        kind, text, _ = self.blocks["libvirt-daemon"]
        script = "\n".join(c.shell for c in commands(text))
        self.lvtmp = tempfile.mkdtemp(prefix="vb13-readme-libvirt-")
        prefix = lvrun.last_line(["bash", os.path.join(TOP, "scripts",
                                                       "build-libvirt.sh")])
        self.daemon = ReadmeDaemon(prefix, self.lvtmp)
        self.daemon.start_block(script)
        check(self.daemon.daemon_pid(), "virtqemud left no pid file")
        check(open("/proc/%d/cmdline" % self.daemon.daemon_pid()).read()
              .startswith(os.path.join(prefix, "sbin", "virtqemud")),
              "the daemon is not the built virtqemud")

    def domain_xml(self):
        kind, text, _ = self.blocks["libvirt-xml"]
        check(kind == "code:xml", "libvirt-xml is not an xml block")
        root = ET.fromstring(self.env.sub(text))
        check_eq(root.get("type"), "kvm", "the domain's type")
        root.set("type", "qemu")
        osel = root.find("os")
        kenv = vmlib.kernel_env(SERIES)
        for tag, value in (("kernel", kenv["VMLINUZ"]),
                           ("initrd", vmlib.initramfs(SERIES, [self.module])),
                           ("cmdline", "console=ttyS0,115200 quiet panic=-1 "
                            "no_timer_check")):
            ET.SubElement(osel, tag).text = value
        src = root.find("./devices/disk/source")
        src.set("file", self.disk())
        devs = root.find("devices")
        ser = ET.SubElement(devs, "serial", type="unix")
        ET.SubElement(ser, "source", mode="connect",
                      path=os.path.join(self.lvtmp, "cmd.sock"))
        ET.SubElement(ser, "target", port="1")
        self.chan = lvrun.Channel(self.lvtmp)
        return root, ET.tostring(root, encoding="unicode")

    def t_libvirt_xml(self):
        root, xml = self.domain_xml()
        self.domain = root.findtext("name")
        bal = root.find("./devices/memballoon")
        check_eq(bal.get("model"), "virtio-balloon13", "memballoon model")
        self.period = int(bal.find("stats").get("period"))
        self.xml_attrs = {k: v for k, v in bal.attrib.items() if k != "model"}
        self.ram = vmlib.parse_size(root.findtext("memory") + {
            "GiB": "G", "MiB": "M", "KiB": "K"}[root.find("memory").get("unit")])
        with open(os.path.join(self.work, "vm1.xml"), "w") as f:
            f.write(xml)

    def virsh(self, cmd):
        """A virsh line of the block, through the test's daemon."""
        check(cmd.argv[0] == "virsh", "not a virsh line: %s", cmd.raw[:50])
        return self.daemon.virsh(*[a for a in cmd.argv[1:]])

    def t_virsh(self):
        balloon = 0
        os.chdir(self.work)
        for cmd in self.cmds("virsh"):
            verb = cmd.argv[1]
            if verb == "start":
                self.chan.drain()
            out = self.virsh(cmd)
            if verb == "start":
                pid = self.daemon.qemu_pids()
                check(len(pid) == 1, "libvirt runs %d QEMUs", len(pid))
                self.chan.attach(pid[0], boot=True)
                g = self.guest(self.chan, "2G")
                st = g.modprobe()
                self.base = st["mem"]["MemTotal"]
                self.libvirt_features(g, pid[0])
            elif verb == "setmem":
                want = size_arg(cmd.argv[3], KiB)
                balloon = self.ram - want
                self.expect_size(g, balloon, self.base, "virsh setmem %s" % cmd.argv[3])
            elif verb == "dommemstat":
                deadline = time.monotonic() + 4 * self.period + 10
                while True:
                    ms = lvrun.dommemstat(out)
                    mt = g.meminfo()["MemTotal"] // KiB
                    if ms.get("available") == mt or time.monotonic() > deadline:
                        break
                    time.sleep(1)
                    out = self.virsh(cmd)
                say("dommemstat: " + " ".join("%s=%d" % kv for kv in sorted(ms.items())))
                check_eq(ms.get("actual"), (self.ram - balloon) // KiB,
                         "dommemstat actual")
                check_eq(ms.get("available"), mt, "dommemstat available "
                         "against the guest's MemTotal (KiB)")
                m = re.search(r"actual (\d+)", cmd.raw)
                if m:
                    check_eq(ms["actual"], int(m.group(1)),
                             "dommemstat actual against the README's comment")
            elif verb == "undefine":
                st, left = self.daemon.virsh("list", "--all", "--name", ok=False)
                check_eq(left.split(), [], "domains left after undefine")

    def libvirt_features(self, g, pid):
        """What autodeflate and freePageReporting switch: QEMU's property,
        the feature bit the device offers (QEMU's own x-query-virtio-status),
        and the bit the guest negotiates: set exactly when the device
        offers it and this tree's driver asks for it (its feature table)."""
        bal = [d for d in lvrun.qemu_devices(pid)
               if d.get("driver") == "virtio-balloon13-pci"]
        check_eq(len(bal), 1, "virtio-balloon13-pci devices on QEMU's command line")
        feats = g.features()
        st = self.qmp_virsh("x-query-virtio-status", path="/machine/peripheral/"
                            "%s/virtio-backend" % bal[0]["id"])
        offered = st["host-features"].get("unknown-dev-features", 0) & 0xffffff
        asked = driver_features()
        say("device offers 0x%x, the driver asks for %s, the guest has %s" % (
            offered, sorted(asked), sorted(feats)))
        for attr, prop, bit in (("autodeflate", "pressure-release", 3),
                                ("freePageReporting", "free-page-reporting", 1)):
            if attr not in self.xml_attrs:
                continue
            on = self.xml_attrs[attr] == "on"
            check_eq(bal[0].get(prop), on, "%s on QEMU's command line" % prop)
            check_eq(bool(offered >> bit & 1), on, "feature bit %d (%s) "
                     "offered by the device" % (bit, attr))
            check_eq(bit in feats, on and bit in asked,
                     "the guest's feature bit %d (%s)" % (bit, attr))
        got = self.qmp_virsh("qom-get", path="/machine/peripheral/%s"
                             % bal[0]["id"],
                             property="guest-stats-polling-interval")
        check_eq(got, self.period, "guest-stats-polling-interval from <stats period>")

    def qmp_virsh(self, command, **arguments):
        """A QMP command through virsh qemu-monitor-command -> its return."""
        msg = {"execute": command, "arguments": arguments}
        return json.loads(self.daemon.virsh("qemu-monitor-command", self.domain,
                                            json.dumps(msg)))["return"]

    def cleanup(self):
        self.close_vm()
        if self.chan:
            self.chan.close()
        if self.daemon:
            self.daemon.stop()
        if getattr(self, "lvtmp", None) and not self.args.keep:
            shutil.rmtree(self.lvtmp, ignore_errors=True)


def json_seq(text):
    """The JSON values of a text, one after another."""
    dec, vals, i = json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return vals
        v, i = dec.raw_decode(text, i)
        vals.append(v)


def driver_features():
    """The feature bits this tree's driver asks for: the names in its
    feature table, numbered by the uapi header."""
    with open(os.path.join(TOP, "include/uapi/linux/virtio_balloon13.h")) as f:
        num = dict(re.findall(r"#define\s+(VIRTIO_BALLOON13_F_\w+)\s+(\d+)",
                              f.read()))
    with open(os.path.join(TOP, "drivers/virtio/virtio_balloon13.c")) as f:
        m = re.search(r"vb13_features\[\]\s*=\s*\{([^}]*)\}", f.read())
    check(m, "no feature table in the driver")
    names = re.findall(r"VIRTIO_BALLOON13_F_\w+", m.group(1))
    check(names and all(n in num for n in names),
          "the driver's feature table names %s", names)
    return {int(num[n]) for n in names}


def needed_packages(binary):
    """Debian packages of the shared libraries binary names (DT_NEEDED)."""
    out = subprocess.run(["readelf", "-d", binary], stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    pkgs = set()
    for lib in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out):
        path = None
        for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu"):
            if os.path.exists(os.path.join(d, lib)):
                path = os.path.realpath(os.path.join(d, lib))
                break
        check(path, "%s needs %s, not found", binary, lib)
        own = subprocess.run(["dpkg", "-S", path], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True).stdout
        if not own:
            own = subprocess.run(["dpkg", "-S", path.replace("/usr/lib/", "/lib/")],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                 text=True).stdout
        check(own, "no Debian package owns %s", path)
        pkgs.add(own.split(":")[0])
    return pkgs


def main():
    ap = argparse.ArgumentParser(prog="tests/readme/run.py",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--tap", metavar="FILE", default=os.environ.get("VB13_TAP"),
                    help="also write the TAP to FILE (default $VB13_TAP)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    ap.add_argument("--readme", default=README, metavar="FILE",
                    help="read the blocks from FILE, an edited copy of "
                    "README.md (to see a block's test fail)")
    ap.add_argument("-k", dest="only", help="blocks to run (comma list; "
                    "what they need runs too)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        ap.error("run it as root (it installs a package and starts virtqemud)")
    out = (tap.Writer(args.tap, echo=sys.stdout) if args.tap
           else tap.Writer(sys.stdout))
    ids = ["readme/blocks"] + ["readme/" + b for b in BLOCKS]
    out.plan(len(ids))
    failed = False
    try:
        blocks = read_blocks(args.readme)
        unknown = sorted(set(blocks) - set(BLOCKS))
        missing = [b for b in BLOCKS if b not in blocks]
        check(not unknown, "README.md marks blocks the test does not know: %s"
              % ", ".join(unknown))
        check(not missing, "README.md lacks the blocks %s" % ", ".join(missing))
        out.ok("readme/blocks")
    except Fail as e:
        out.not_ok("readme/blocks", str(e))
        for b in BLOCKS:
            out.not_ok("readme/" + b, "not run: readme/blocks failed")
        out.close()
        return 1
    only = set(BLOCKS)
    if args.only:
        only = set(args.only.split(","))
        bad = only - set(BLOCKS)
        if bad:
            ap.error("unknown blocks %s" % ", ".join(sorted(bad)))
        todo = list(only)           # and what they need
        while todo:
            for n in NEEDS.get(todo.pop(), ()):
                if n not in only:
                    only.add(n)
                    todo.append(n)
    work = tempfile.mkdtemp(prefix="vb13-readme-")
    os.chdir(work)
    env = Env(work)
    run = Run(args, blocks, env)
    passed = {}
    pkg_result = None
    try:
        for b in BLOCKS:
            tid = "readme/" + b
            if b not in only:
                out.skip(tid, "not asked for (-k)")
                continue
            need = [n for n in NEEDS.get(b, ()) if not passed.get(n)]
            if need:
                out.not_ok(tid, "not run: readme/%s failed" % need[0])
                failed = True
                passed[b] = False
                continue
            t0 = time.monotonic()
            try:
                res = getattr(run, "t_" + b.replace("-", "_"))()
            except (Fail, vmlib.VMError, OSError, subprocess.SubprocessError) as e:
                out.not_ok(tid, "%s" % str(e)[:600])
                failed = True
                passed[b] = False
                if run.vm:
                    say("console: " + " | ".join(run.vm.console_log()
                                                  .strip().splitlines()[-6:]))
                    run.close_vm()
                continue
            except Exception as e:      # a bug here: still one line
                out.not_ok(tid, "%s: %s" % (type(e).__name__, e),
                           traceback.format_exc())
                failed = True
                passed[b] = False
                run.close_vm()
                continue
            passed[b] = True
            if b == "guest-package":
                # Reported once the purge at the end is checked too.
                pkg_result = res
            elif isinstance(res, str) and res.startswith("SKIP"):
                out.skip(tid, res[5:])
            else:
                out.ok(tid)
            say("%s: %.1f s" % (tid, time.monotonic() - t0))
            if b == "balloon13ctl" or (b == "qemu-vu-tcg" and not passed[b]):
                run.close_vm()
    finally:
        run.cleanup()
        if run.deb_installed:
            # The block's last command, once the guests are done.
            try:
                run.purge()
                say("apt purge: the package and its modules are gone")
            except Fail as e:
                failed = True
                if passed.get("guest-package"):
                    passed["guest-package"] = False
                    out.not_ok("readme/guest-package", "apt purge: %s" % e)
                else:       # reported already
                    say("apt purge: %s" % e)
        if passed.get("guest-package"):
            if isinstance(pkg_result, str) and pkg_result.startswith("SKIP"):
                out.skip("readme/guest-package", pkg_result[5:])
            else:
                out.ok("readme/guest-package")
        os.chdir("/")
        if args.keep:
            say("kept " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    out.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
