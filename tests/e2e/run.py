#!/usr/bin/python3
"""End-to-end scenarios of virtio_balloon13 in real QEMU VMs (TCG).

    python3 tests/e2e/run.py [--series 6.1,6.12] [--devices vu,native]
                             [-k NAME[,NAME]] [--skip NAME[,NAME]]
                             [--shard K/N [--times FILE]] [--tap FILE]
                             [--seed N] [--keep] [-v]

Builds what it needs (the module for each kernel with
scripts/build-module.sh, balloon13d and balloon13ctl with `make -s host`),
boots guests with scripts/vm.py (the kernel series' image, the module
installed under /lib/modules/<kver>/extra and loaded with `modprobe`,
device 13 from balloon13d over vhost-user or QEMU's native device) and runs
every scenario on every kernel series and every device kind it applies to.

Results are TAP 14 (scripts/tap.py), on stdout or, with --tap, in FILE
(stdout then shows them too): the plan first (every scenario it will
run), then one result per scenario,

    ok 3 - e2e/<label>/<scenario>
    not ok 4 - e2e/<label>/<scenario>
    # <one-line reason>
    # <the guest's dmesg tail and the device's log tail>
    ok 5 - e2e/<label>/<scenario> # SKIP <why>

where <label> is the series, with "-native" for QEMU's native device
(e2e/6.12/probe, e2e/6.12-native/probe).  Progress, measurements and
timings go on other lines (indented, never a TAP result).  Exit status: 0
all passed, 1 a scenario failed, 2 bad command line (an unknown --skip
name too).

--shard K/N runs the K-th of N disjoint parts of the chosen scenarios,
whole VM groups each, balanced by the times of earlier runs (--times FILE;
default $VB13_CACHE/e2e-times.json, which every run updates): the N parts
together are exactly the unsharded run, if all N get the same options and
the same times file.

Scenarios live in tests/e2e/scenarios/*.py (basic.py first, then the
others by name); tests/e2e/e2elib.py has what they share and
tests/e2e/devices.py the host side of each device kind.  Scenarios of one
VM group share one VM per series and device, in order.
Python 3 standard library only.
"""

import argparse
import importlib
import json
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
import tap  # noqa: E402  (scripts/tap.py)

TIMES = os.path.join(os.environ.get("VB13_CACHE", "/var/cache/virtio_balloon13"),
                     "e2e-times.json")


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
    def __init__(self, args, out):
        self.args = args
        self.out = out             # tap.Writer
        self.results = []          # (label, name, ok, seconds)
        self.skipped = []          # (label, name)

    def report(self, label, name, ok, secs, reason=None, details=""):
        self.results.append((label, name, ok, secs))
        say("%s: %.1f s" % (name, secs))
        tid = "e2e/%s/%s" % (label, name)
        if ok:
            self.out.ok(tid)
        else:
            self.out.not_ok(tid, " ".join(str(reason).split())[:300], details)

    def skip(self, label, name, reason):
        self.skipped.append((label, name))
        self.out.skip("e2e/%s/%s" % (label, name), reason)

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
            except (vmlib.VMError, OSError):
                # A QEMU that died (the failure itself) closes the channel.
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
        why = cfg["requires"] and cfg["requires"](kind, vmlib.qemu_binary())
        if why:
            for name, _ in scenarios:
                self.skip(label, name, why)
            return
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
                    g.dmesg_mark = g.kmsg_mark()
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


def load_times(path):
    """{"<label>/<scenario>": seconds} of earlier runs ({} if none)."""
    try:
        with open(path) as f:
            times = json.load(f)
        return {k: float(v) for k, v in times.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def save_times(path, results):
    """Fold this run's scenario times into the times file (advisory: a
    concurrent run may win the rename)."""
    times = load_times(path)
    for label, name, _, secs in results:
        if secs > 0:
            times["%s/%s" % (label, name)] = round(secs, 1)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "w") as f:
            json.dump(times, f, indent=0, sort_keys=True)
        os.replace(tmp, path)
    except OSError as e:
        say("could not save scenario times to %s: %s" % (path, e))


def shard_groups(units, n, times):
    """Split units [(label, group, [scenario names])] into n parts, whole
    units each, longest first onto the part with least time so far: a
    function of the units and the times only, so every shard computes the
    same split.  A scenario without a time counts as the median of those
    known (60 s if none is)."""
    known = sorted(times.values())
    default = known[len(known) // 2] if known else 60.0
    cost = []
    for i, (label, grp, names) in enumerate(units):
        c = sum(times.get("%s/%s" % (label, nm), default) for nm in names)
        cost.append((-c, i))
    parts = [[0.0, []] for _ in range(n)]
    for c, i in sorted(cost):
        part = min(range(n), key=lambda k: (parts[k][0], k))
        parts[part][0] -= c
        parts[part][1].append(i)
    return [sorted(p[1]) for p in parts], [p[0] for p in parts]


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
                   "comma-separated names (each must name a scenario)")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="run the K-th of N parts of the chosen scenarios "
                   "(whole VM groups, balanced by --times)")
    p.add_argument("--times", default=TIMES, metavar="FILE",
                   help="scenario times of earlier runs, for --shard "
                   "(default %(default)s; updated after each run)")
    p.add_argument("--tap", default=os.environ.get("VB13_TAP"), metavar="FILE",
                   help="write the TAP results to FILE (and show them on "
                   "stdout); default $VB13_TAP (make check sets it), else "
                   "stdout only")
    p.add_argument("--only", dest="only", default="",
                   help="run only scenarios whose name is one of these "
                   "comma-separated names (each must name a scenario)")
    p.add_argument("--seed", type=int, default=None,
                   help="PRNG seed of the randomized scenarios (default: random)")
    p.add_argument("--keep", action="store_true", help="keep the VMs' temp dirs")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show every guest command and daemon request")
    p.add_argument("--list", action="store_true", help="list the scenarios "
                   "(with --shard: the scenarios of that shard, per label)")
    a = p.parse_args()
    e2elib.VERBOSE = a.verbose
    load_scenarios()
    known = [s[0] for s in SCENARIOS]
    skip = [k for k in a.skip.split(",") if k]
    unknown = [k for k in skip if k not in known]
    if unknown:
        p.error("--skip names no scenario: %s (--list shows them)"
                % ",".join(unknown))
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
    chosen = [s for s in chosen if s[0] not in skip]
    only = [n for n in a.only.split(",") if n]
    if only:
        unknown = set(only) - {s[0] for s in SCENARIOS}
        if unknown:
            p.error("--only: no scenario %s" % ",".join(sorted(unknown)))
        chosen = [s for s in chosen if s[0] in only]
    if not chosen:
        p.error("no scenario matches -k %s (--list shows them)" % a.names)
    shard = None
    if a.shard:
        m = re.fullmatch(r"(\d+)/(\d+)", a.shard)
        if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
            p.error("bad --shard %r (want K/N with 1 <= K <= N)" % a.shard)
        shard = int(m.group(1)) - 1, int(m.group(2))

    # The plan: every (label, VM group, scenarios) this run will do, in
    # order; a shard keeps its part of the groups.
    units = []
    for series in series_list:
        for kind in kinds:
            label = series + devices.KINDS[kind].suffix
            todo = [s for s in chosen if kind in s[3]
                    and (s[4] is None or series in s[4])]
            groups = []
            for s in todo:
                if s[1] not in groups:
                    groups.append(s[1])
            for grp in groups:
                units.append((label, grp, [s[0] for s in todo if s[1] == grp],
                              series, kind))
    if shard:
        parts, secs = shard_groups([u[:3] for u in units], shard[1],
                                   load_times(a.times))
        units = [units[i] for i in parts[shard[0]]]
    if a.list:
        if shard:
            print("shard %d/%d: %d VM groups, about %.0f s by %s"
                  % (shard[0] + 1, shard[1], len(units), secs[shard[0]], a.times))
            for label, grp, names, _, _ in units:
                print("%-14s VM %-9s %s" % (label, grp, ",".join(names)))
            return 0
        for name, grp, func, kinds_, series in SCENARIOS:
            doc = (func.__doc__ or "").strip().splitlines()
            print("%-18s VM %-9s %-10s %s" % (name, grp, "+".join(kinds_),
                                              doc[0] if doc else ""))
        return 0
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 31)

    t_start = time.monotonic()
    out = tap.Writer(a.tap, echo=sys.stdout) if a.tap else tap.Writer(sys.stdout)
    out.plan(sum(len(u[2]) for u in units))
    say("e2e: %d scenarios in %d VM groups on %s (devices %s), seed %d%s"
        % (sum(len(u[2]) for u in units), len(units), ", ".join(series_list),
           ",".join(kinds), a.seed,
           ", shard %d/%d" % (shard[0] + 1, shard[1]) if shard else ""))
    runner = Runner(a, out)
    try:
        run_units(runner, units)
    finally:
        out.close()
        save_times(TIMES, runner.results)   # never a --times snapshot

    failed = [r for r in runner.results if not r[2]]
    labels = []
    for u in units:
        if u[0] not in labels:
            labels.append(u[0])
    print("  e2e timings (s):", flush=True)
    print("    %-18s %s" % ("scenario", " ".join("%11s" % s for s in labels)))
    for name in [s[0] for s in chosen]:
        row = []
        for lb in labels:
            t = [r[3] for r in runner.results if r[0] == lb and r[1] == name]
            row.append("%11.1f" % t[0] if t else "%11s" % "-")
        if any(c.strip() != "-" for c in row):
            print("    %-18s %s" % (name, " ".join(row)))
    say("e2e: %d passed, %d failed, %d skipped in %.1f s" % (
        len(runner.results) - len(failed), len(failed), len(runner.skipped),
        time.monotonic() - t_start))
    return 1 if failed else 0


def run_units(runner, units):
    """Build what the units need, then run them in order."""
    series_list = []
    for u in units:
        if u[3] not in series_list:
            series_list.append(u[3])
    kos = build(series_list)
    qemu = vmlib.qemu_binary()
    t_label, current = time.monotonic(), None
    for label, grp, names, series, kind in units:
        if label != current:
            if current:
                say("%s: %.1f s" % (current, time.monotonic() - t_label))
            current, t_label = label, time.monotonic()
            say("== e2e %s" % label)
        why = devices.KINDS[kind].available(qemu)
        if why:
            for name in names:
                runner.skip(label, name, why)
            continue
        if not os.path.isfile(kos[series]):
            for name in names:
                runner.report(label, name, False, 0.0, kos[series])
            continue
        funcs = {s[0]: s[2] for s in SCENARIOS}
        runner.run_group(series, kind, kos[series], grp,
                         [(n, funcs[n]) for n in names])
    if current:
        say("%s: %.1f s" % (current, time.monotonic() - t_label))


if __name__ == "__main__":
    sys.exit(main())
