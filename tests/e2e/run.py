#!/usr/bin/python3
"""End-to-end scenarios of virtio_balloon13 in real QEMU VMs (TCG).

    python3 tests/e2e/run.py [--series 6.1,6.12] [--devices vu,native]
                             [-k NAME[,NAME]] [--seed N] [--keep] [-v]

Builds what it needs (the module for each kernel with
scripts/build-module.sh, balloon13d and balloon13ctl with `make -s host`),
boots guests with scripts/vm.py (the kernel series' image, the module
installed under /lib/modules/<kver>/extra and loaded with `modprobe`,
device 13 from balloon13d over vhost-user or QEMU's native device) and runs
every scenario on every kernel series and every device kind it applies to.
Each scenario prints exactly one line

    PASS e2e/<label>/<scenario>
    FAIL e2e/<label>/<scenario>: <one-line reason>
    SKIP e2e/<label>/<scenario>: <why>

where <label> is the series, with "-native" for QEMU's native device
(e2e/6.12/probe, e2e/6.12-native/probe).  A failure is followed by the
guest's dmesg tail and the device's log tail.  Progress, measurements and
timings go on other lines (never starting with PASS/FAIL/SKIP).  Exit
status: 0 all passed, 1 a scenario failed, 2 bad command line.

Scenarios live in tests/e2e/scenarios/*.py (basic.py first, then the
others by name); tests/e2e/e2elib.py has what they share and
tests/e2e/devices.py the host side of each device kind.  Scenarios of one
VM group share one VM per series and device, in order.
Python 3 standard library only.
"""

import argparse
import importlib
import os
import random
import re
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2elib  # noqa: E402
from e2elib import (GROUPS, SCENARIOS, TOP, Fail, Guest, Skip,  # noqa: E402
                    say, vmlib)
import devices  # noqa: E402


def load_scenarios():
    """Import every module in tests/e2e/scenarios, basic.py first."""
    names = sorted(f[:-3] for f in os.listdir(os.path.join(HERE, "scenarios"))
                   if f.endswith(".py") and not f.startswith("_"))
    names.sort(key=lambda n: n != "basic")
    for n in names:
        importlib.import_module("scenarios." + n)


def indent(text, n):
    lines = text.rstrip().splitlines()[-n:]
    return "\n".join("    | " + ln for ln in lines)


class Runner:
    def __init__(self, args):
        self.args = args
        self.results = []          # (label, name, ok, seconds)
        self.skipped = []          # (label, name)

    def report(self, label, name, ok, secs, reason=None, details=""):
        self.results.append((label, name, ok, secs))
        say("%s: %.1f s" % (name, secs))
        if ok:
            print("PASS e2e/%s/%s" % (label, name), flush=True)
        else:
            reason = " ".join(str(reason).split())[:300]
            print("FAIL e2e/%s/%s: %s" % (label, name, reason), flush=True)
            if details:
                print(details, flush=True)

    def skip(self, label, name, reason):
        self.skipped.append((label, name))
        print("SKIP e2e/%s/%s: %s" % (label, name, reason), flush=True)

    def failure_details(self, g, vm, exc):
        parts = []
        if e2elib.VERBOSE and not isinstance(exc, Fail):
            parts.append("    --- traceback:\n" + indent(
                "".join(traceback.format_exception(type(exc), exc,
                                                   exc.__traceback__)), 30))
        text = None
        if vm is not None and vm._cmd is not None and not vm._broken:
            try:
                text = vm.dmesg()
            except vmlib.VMError:
                text = None
        if text is not None:
            parts.append("    --- guest dmesg (tail):\n" + indent(text, 25))
        elif vm is not None and vm.tmpdir:
            parts.append("    --- guest console (tail):\n"
                         + indent(vm.console_log(), 25))
        if vm is not None and vm.tmpdir:
            if vm.backend:
                parts.append("    --- balloon13d log (tail):\n"
                             + indent(vm.backend_log() or "(empty)", 15))
            else:
                parts.append("    --- QEMU log (tail):\n"
                             + indent(vm.qemu_log() or "(empty)", 15))
        return "\n".join(parts)

    def run_group(self, series, kind, ko, group, scenarios):
        cfg = GROUPS[group]
        dev = devices.make(kind)
        label = series + dev.suffix
        t0 = time.monotonic()
        what = "%s, %s" % (cfg["mem"], describe(cfg, kind))
        try:
            kwargs = dict(dev.vm_kwargs(cfg))
            kwargs.update(cfg["vm"])
            vm = vmlib.VM(series=series, mem=cfg["mem"], modules=[ko],
                          keep_tmp=self.args.keep, **kwargs)
            vm.start()
        except (vmlib.VMError, OSError, Fail) as e:
            reason = "VM (%s) did not start: %s" % (what, str(e).splitlines()[0])
            for name, _ in scenarios:
                self.report(label, name, False, 0.0, reason,
                            indent(str(e), 30) if name == scenarios[0][0] else "")
            return
        try:
            say("%s: VM '%s' (%s) booted in %.1f s%s"
                % (vm.kver, group, what, vm.boot_seconds,
                   " (kept: %s)" % vm.tmpdir if self.args.keep else ""))
            g = Guest(vm, dev, series, cfg)
            dev.attach(g)
            g.seed = self.args.seed
            broken = None
            try:
                g.base_memtotal = g.meminfo()["MemTotal"]
            except (Fail, vmlib.VMError) as e:
                broken = "guest unusable after boot: %s" % str(e).splitlines()[0]
            for name, func in scenarios:
                if broken:
                    self.report(label, name, False, 0.0, broken)
                    continue
                t1 = time.monotonic()
                try:
                    g.dmesg_mark = len(g.dmesg())
                    func(g)
                    g.check_dmesg_clean()
                except Skip as e:
                    self.skip(label, name, str(e))
                except Fail as e:
                    self.report(label, name, False, time.monotonic() - t1, e,
                                self.failure_details(g, vm, e))
                except (vmlib.VMError, OSError) as e:
                    # OSError: the command channel broke (QEMU went away).
                    first = (str(e).splitlines() or [type(e).__name__])[0]
                    if isinstance(e, OSError):
                        first = "%s: %s" % (type(e).__name__, first)
                        try:
                            vm.qemu_proc.wait(5)
                        except subprocess.TimeoutExpired:
                            pass
                        vm._broken = vm._broken or first
                    if vm.qemu_proc.poll() is not None:
                        if "QEMU exited" not in first:
                            first += " (QEMU exited with status %d)" % (
                                vm.qemu_proc.returncode)
                        panic = re.findall(r"Kernel panic - not syncing: .*|"
                                           r"BUG: .*|Oops: .*", vm.console_log())
                        if panic:
                            first += " (guest: %s)" % panic[0].strip()
                    self.report(label, name, False, time.monotonic() - t1,
                                "VM: " + first, self.failure_details(g, vm, e))
                    if vm._broken or vm.qemu_proc.poll() is not None:
                        broken = "VM unusable after %s: %s" % (name, first)
                except Exception as e:  # a bug in this script: still report
                    self.report(label, name, False, time.monotonic() - t1,
                                "%s: %s" % (type(e).__name__, e),
                                indent(traceback.format_exc(), 30))
                else:
                    self.report(label, name, True, time.monotonic() - t1)
        finally:
            vm.close()
        say("VM '%s' done in %.1f s" % (group, time.monotonic() - t0))


def describe(cfg, kind):
    """A VM group's device options, for progress lines."""
    if kind == "vu":
        opts = devices.Balloon13d.vm_kwargs(cfg)["backend_args"][2:]
        return "balloon13d %s" % (" ".join(opts) or "defaults")
    return "virtio-balloon13-pci%s" % (
        "".join("," + p for p in ["page-bits=%d" % cfg["page_bits"]]
                + cfg["native_props"]))


def build(series_list):
    """make -s host, and the module for each series -> {series: ko or error}."""
    t0 = time.monotonic()
    proc = subprocess.run(["make", "-s", "-C", TOP, "host"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    host_err = None
    if proc.returncode != 0:
        host_err = "make host failed: " + (proc.stdout.strip().splitlines() or ["?"])[-1]
        print(indent(proc.stdout, 20), flush=True)
    say("make host: %.1f s" % (time.monotonic() - t0))
    kos = {}
    for series in series_list:
        t0 = time.monotonic()
        proc = subprocess.run(["bash", os.path.join(TOP, "scripts", "build-module.sh"),
                               series], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines or not os.path.isfile(lines[-1]):
            kos[series] = "module build for %s failed: %s" % (
                series, (proc.stderr.strip().splitlines() or ["?"])[-1])
            print(indent(proc.stderr, 20), flush=True)
        else:
            kos[series] = lines[-1]
        say("module for %s: %.1f s" % (series, time.monotonic() - t0))
        if host_err:
            kos[series] = host_err
    return kos


def main():
    class Parser(argparse.ArgumentParser):
        def error(self, message):
            self.exit(2, "run.py: %s (see --help)\n" % message)

    p = Parser(prog="tests/e2e/run.py",
               description="virtio_balloon13 end-to-end scenarios in QEMU VMs")
    p.add_argument("--series", default="6.1,6.12",
                   help="kernel series, comma separated (default 6.1,6.12)")
    p.add_argument("--devices", default=",".join(e2elib.DEVICE_KINDS),
                   help="device kinds, comma separated: vu (balloon13d), "
                   "native (QEMU's virtio-balloon13-pci); default both, each "
                   "where a scenario applies")
    p.add_argument("-k", dest="names", default="",
                   help="run only scenarios whose name contains one of these "
                   "comma-separated strings")
    p.add_argument("--skip", dest="skip", default="",
                   help="leave out scenarios whose name is one of these "
                   "comma-separated names")
    p.add_argument("--only", dest="only", default="",
                   help="run only scenarios whose name is one of these "
                   "comma-separated names")
    p.add_argument("--seed", type=int, default=None,
                   help="PRNG seed of the randomized scenarios (default: random)")
    p.add_argument("--keep", action="store_true", help="keep the VMs' temp dirs")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show every guest command and daemon request")
    p.add_argument("--list", action="store_true", help="list the scenarios")
    a = p.parse_args()
    e2elib.VERBOSE = a.verbose
    load_scenarios()
    if a.list:
        for name, grp, func, kinds, series in SCENARIOS:
            doc = (func.__doc__ or "").strip().splitlines()
            print("%-18s VM %-9s %-10s %s" % (name, grp, "+".join(kinds),
                                              doc[0] if doc else ""))
        return 0
    series_list = [s for s in a.series.split(",") if s]
    for s in series_list:
        if not re.fullmatch(r"\d+\.\d+(-[a-z]+)?", s):
            p.error("bad series %r (want e.g. 6.1,6.12)" % s)
    kinds = [k for k in a.devices.split(",") if k]
    for k in kinds:
        if k not in e2elib.DEVICE_KINDS:
            p.error("bad device kind %r (want %s)" % (k, ",".join(e2elib.DEVICE_KINDS)))
    keys = [k for k in a.names.split(",") if k]
    chosen = [s for s in SCENARIOS if not keys or any(k in s[0] for k in keys)]
    chosen = [s for s in chosen if s[0] not in a.skip.split(",")]
    only = [n for n in a.only.split(",") if n]
    if only:
        unknown = set(only) - {s[0] for s in SCENARIOS}
        if unknown:
            p.error("--only: no scenario %s" % ",".join(sorted(unknown)))
        chosen = [s for s in chosen if s[0] in only]
    if not chosen:
        p.error("no scenario matches -k %s (--list shows them)" % a.names)
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 31)

    t_start = time.monotonic()
    print("e2e: %d scenarios on %s (devices %s), seed %d"
          % (len(chosen), ", ".join(series_list), ",".join(kinds), a.seed),
          flush=True)
    kos = build(series_list)
    qemu = vmlib.qemu_binary()
    runner = Runner(a)
    labels = []
    for series in series_list:
        for kind in kinds:
            todo = [s for s in chosen if kind in s[3]
                    and (s[4] is None or series in s[4])]
            if not todo:
                continue
            label = series + devices.KINDS[kind].suffix
            labels.append(label)
            t0 = time.monotonic()
            print("== e2e %s" % label, flush=True)
            why = devices.KINDS[kind].available(qemu)
            if why:
                for s in todo:
                    runner.skip(label, s[0], why)
                continue
            groups = []
            for s in todo:
                if s[1] not in groups:
                    groups.append(s[1])
            for grp in groups:
                scen = [(s[0], s[2]) for s in todo if s[1] == grp]
                if not os.path.isfile(kos[series]):
                    for name, _ in scen:
                        runner.report(label, name, False, 0.0, kos[series])
                    continue
                runner.run_group(series, kind, kos[series], grp, scen)
            say("%s: %.1f s" % (label, time.monotonic() - t0))

    failed = [r for r in runner.results if not r[2]]
    print("e2e timings (s):", flush=True)
    print("  %-18s %s" % ("scenario", " ".join("%11s" % s for s in labels)))
    for name in [s[0] for s in chosen]:
        row = []
        for lb in labels:
            t = [r[3] for r in runner.results if r[0] == lb and r[1] == name]
            row.append("%11.1f" % t[0] if t else "%11s" % "-")
        print("  %-18s %s" % (name, " ".join(row)))
    print("e2e: %d passed, %d failed, %d skipped in %.1f s" % (
        len(runner.results) - len(failed), len(failed), len(runner.skipped),
        time.monotonic() - t_start), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
