#!/usr/bin/python3
"""A long randomized run of the balloon's life-cycle actions (issue 11).

    python3 tests/e2e/soak.py [--duration 1h] [--series 6.1,6.12] [--seed N]
                              [--epoch 15m] [--out DIR] [-v]
    python3 tests/e2e/soak.py --series 6.12 [--hotplug pciehp]
                              --action unplug --cycle-seed S
    make soak DURATION=1h [SEED=N] [SERIES=6.12]

Boots the "life" VM of tests/e2e/scenarios/lifecycle.py (S3 on OVMF, the
vhost-user device behind a PCIe root port, reboots allowed, balloon13d as
device 13) and runs, in random order and with random pauses, sizes and
variants, the actions that scenario module defines:

    unplug    device_del at rest / while inflating / with page lists in
              flight, device_add again (the most frequent: 100 cycles in
              about an hour)
    suspend   S3 woken by QMP or the RTC, s2idle woken by the serial port,
              sometimes with an inflate in progress
    reboot    reboot -f or QMP system_reset with the balloon inflated
    poweroff  poweroff -f with the balloon inflated; the next VM attaches
              to the same balloon13d
    stress    CPU, I/O and memory stress while the balloon is resized
    floor     shrink to the floor
    resize    a burst of random targets

Each cycle checks what the scenario does (sizes, MemTotal, data, the
device's counters, a clean kernel log).  The kernel series alternate every
--epoch, each epoch in a fresh VM, and the root port's hotplug driver (the
guest's ACPI hotplug, or native PCIe hotplug, pciehp) every round of
series.  A failed cycle is logged with the cycle number, the run's seed
and the cycle's own seed, the guest's dmesg tail and the daemon's log
tail; the VM is then replaced and the run goes on.  `--action NAME
--cycle-seed S` replays one cycle.

Writes DIR/soak-<time>.log (everything printed) and DIR/soak-<time>.json:
cycles of each kind, failures, the worst time to return all pages on
unplug (device_del to DEVICE_DELETED), and host memory at start and end.
Exit status 1 if a cycle failed.  Python 3 standard library only.
"""

import argparse
import json
import os
import random
import re
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2elib  # noqa: E402
from e2elib import GROUPS, TOP, Fail, Guest, vmlib  # noqa: E402
import devices  # noqa: E402
import run  # noqa: E402  (tests/e2e/run.py: build())
from scenarios import lifecycle as life  # noqa: E402

# Relative weights of the actions.  Unplug cycles are about 8 s, the
# average cycle about 11 s: 40% gives 100 unplugs in about an hour.
WEIGHTS = {"unplug": 40, "suspend": 20, "resize": 10, "floor": 8,
           "stress": 8, "reboot": 9, "poweroff": 5}


def parse_duration(text):
    """'90s', '15m', '1h', '1h30m', '600' -> seconds."""
    text = str(text).strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    parts = re.findall(r"(\d+)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError("bad duration %r (want e.g. 90s, 15m, 1h)" % text)
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def host_memory():
    """The host's memory, bytes: MemTotal, MemFree, MemAvailable."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":")
            if k in ("MemTotal", "MemFree", "MemAvailable"):
                out[k] = int(v.split()[0]) * 1024
    return out


def rss(pid):
    """{"VmRSS", "RssAnon"} of a process in bytes (None if it is gone)."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("VmRSS:", "RssAnon:")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024
    except (OSError, TypeError):
        return None
    return out


def tail(text, n):
    return "\n".join("    | " + ln for ln in text.rstrip().splitlines()[-n:])


class Log:
    """Print and append to the log file."""

    def __init__(self, path):
        self.f = open(path, "a")

    def __call__(self, msg):
        line = "%s %s" % (time.strftime("%H:%M:%S"), msg)
        print(line, flush=True)
        self.f.write(line + "\n")
        self.f.flush()


class Soak:
    def __init__(self, args, kos, log):
        self.a = args
        self.kos = kos
        self.log = log
        self.cfg = GROUPS["life"]
        self.vms = []           # this epoch's VMs; the first runs the daemon
        self.g = None
        self.hotplug = "acpi"   # or "pciehp": who handles the root port
        self.daemon_rss = []    # (series, at boot, at the end) per daemon
        self.summary = {
            "seed": args.seed, "series": args.series_list,
            "duration_s": args.duration_s, "cycles": {},
            "cycles_by_series": {},
            "failures": [], "unplug_return_s": [],
            "unplug_return_s_by_hotplug": {"acpi": [], "pciehp": []},
            "suspend_s": [],
            "reboot_s": [], "vms_booted": 0,
            "host_memory_start": host_memory(),
        }

    # -- VMs --

    def boot(self, series, attach_to=None):
        """A life VM of `series`; attach_to: a VM whose balloon13d to use."""
        dev = devices.make("vu")
        kwargs = dict(dev.vm_kwargs(self.cfg))
        kwargs.update(self.cfg["vm"])
        kwargs["root_port"] = "pciehp" if self.hotplug == "pciehp" else True
        if attach_to:
            kwargs.update(backend=None, backend_args=(),
                          vhost_socket=attach_to.vhost_socket)
        vm = vmlib.VM(series=series, mem=self.cfg["mem"],
                      modules=[self.kos[series]], keep_tmp=self.a.keep,
                      **kwargs)
        vm.start()
        if attach_to:
            # The daemon is this VM's device too (freeze/thaw signal it).
            vm.backend_proc = attach_to.backend_proc
        self.vms.append(vm)
        self.summary["vms_booted"] += 1
        g = Guest(vm, dev, series, self.cfg)
        dev.attach(g)
        if attach_to:
            g.ctl_path = attach_to.path("ctl.sock")
        g.base_memtotal = g.meminfo()["MemTotal"]
        g.sh("modprobe virtio_balloon13")
        self.log("%s: VM booted in %.1f s (%s, %s hotplug)%s" % (
            vm.kver, vm.boot_seconds, vm.tmpdir, self.hotplug,
            ", on the same balloon13d" if attach_to else ""))
        self.g = g
        return g

    def daemon_vm(self):
        return self.vms[0] if self.vms else None

    def close_all(self, series):
        d = self.daemon_vm()
        if d is not None:
            self.daemon_rss.append({"series": series, "hotplug": self.hotplug,
                                    "start": getattr(d, "_soak_rss0", None),
                                    "end": rss(d.backend_pid),
                                    "connections": self.connections(d)})
        for vm in reversed(self.vms):
            vm.close()
        self.vms = []
        self.g = None

    @staticmethod
    def connections(d):
        """How many front ends balloon13d (run by VM d) has served."""
        try:
            return Guest(d, devices.make("vu"), "", GROUPS["life"]).ctl(
                "status")["connections"]
        except (Fail, OSError):
            return None

    def new_epoch_vm(self, series):
        self.close_all(series)
        g = self.boot(series)
        g.vm._soak_rss0 = rss(g.vm.backend_pid)
        return g

    # -- cycles --

    def poweroff(self, g, rng):
        """poweroff -f with the balloon inflated: QEMU exits 0; the next VM
        attaches to the same balloon13d and a RESIZE works there."""
        size = rng.randrange(64, 513) * e2elib.MiB
        g.modprobe()
        life.settle(g, size)
        g.check_dmesg_clean()
        s0 = g.status()
        status, shutdown = g.vm.poweroff(timeout=120)
        e2elib.check_eq(status, 0, "QEMU's exit status after poweroff")
        e2elib.check(shutdown and shutdown.get("reason") == "guest-shutdown",
                     "SHUTDOWN event: %r", shutdown)
        d = self.daemon_vm()
        e2elib.check(d.backend_proc.poll() is None, "balloon13d exited")
        g2 = self.boot(g.series, attach_to=d)
        life.settle(g2, 64 * e2elib.MiB)
        s2 = g2.status()
        e2elib.check_eq(s2["connections"], s0["connections"] + 1,
                        "balloon13d connections")
        e2elib.check_eq(s2["bytes_received"], 64 * e2elib.MiB,
                        "balloon13d bytes_received from the next VM")
        return {"size": size}

    def one(self, n, action, cycle_seed):
        """Run cycle n; returns None or the failure record."""
        g = self.g
        rng = random.Random(cycle_seed)
        g.seed = "%s, cycle seed %d" % (self.a.seed, cycle_seed)
        t0 = time.monotonic()
        try:
            g.dmesg_mark = g.kmsg_mark()
            if action == "poweroff":
                res = self.poweroff(g, rng)
                g = self.g
            else:
                res = life.run_action(g, rng, action)
            g.check_dmesg_clean()
        except (Fail, vmlib.VMError, OSError) as e:
            return self.failed(n, action, cycle_seed, e, time.monotonic() - t0)
        except Exception as e:  # a bug here: still keep going
            return self.failed(n, action, cycle_seed, e, time.monotonic() - t0,
                               traceback.format_exc())
        secs = time.monotonic() - t0
        s = self.summary
        s["cycles"][action] = s["cycles"].get(action, 0) + 1
        by = s["cycles_by_series"].setdefault(g.series, {})
        by[action] = by.get(action, 0) + 1
        if "return_s" in res:
            s["unplug_return_s"].append(round(res["return_s"], 3))
            s["unplug_return_s_by_hotplug"][self.hotplug].append(
                round(res["return_s"], 3))
        if action == "suspend":
            s["suspend_s"].append(round(res["seconds"], 2))
        if "boot_s" in res:
            s["reboot_s"].append(round(res["boot_s"], 2))
        detail = ", ".join("%s=%s" % (k, ("%.2f" % v) if isinstance(v, float)
                                      else v)
                           for k, v in sorted(res.items())
                           if k not in ("stressor",))
        self.log("cycle %d %s (%s): ok in %.1f s: %s" % (
            n, action, g.series, secs, detail))
        return None

    def failed(self, n, action, cycle_seed, exc, secs, trace=None):
        g = self.g
        vm = g.vm if g else None
        reason = " ".join(str(exc).split())[:400]
        rec = {"cycle": n, "action": action, "series": g.series if g else None,
               "seed": self.a.seed, "cycle_seed": cycle_seed,
               "reason": reason, "seconds": round(secs, 1),
               "hotplug": self.hotplug,
               "replay": "python3 tests/e2e/soak.py --series %s --hotplug %s "
                         "--action %s --cycle-seed %d" % (
                             g.series if g else "?", self.hotplug, action,
                             cycle_seed)}
        self.log("FAILED cycle %d %s (%s, seed %s, cycle seed %d): %s"
                 % (n, action, rec["series"], self.a.seed, cycle_seed, reason))
        self.log("  replay: %s (or --seed %s --cycles %d)"
                 % (rec["replay"], self.a.seed, n))
        parts = []
        if trace:
            parts.append("  --- traceback:\n" + tail(trace, 30))
        text = None
        if vm is not None and vm._cmd is not None and not vm._broken:
            try:
                text = vm.dmesg()
            except (vmlib.VMError, OSError):
                text = None
        if text is not None:
            parts.append("  --- guest dmesg (tail):\n" + tail(text, 30))
        elif vm is not None and vm.tmpdir:
            parts.append("  --- guest console (tail):\n"
                         + tail(vm.console_log(), 30))
        d = self.daemon_vm()
        if d is not None and d.tmpdir:
            parts.append("  --- balloon13d log (tail):\n"
                         + tail(d.backend_log() or "(empty)", 20))
        for p in parts:
            self.log(p)
        rec["dmesg_tail"] = (text or "").splitlines()[-30:]
        rec["daemon_log_tail"] = (
            d.backend_log() if d else "").splitlines()[-20:]
        self.summary["failures"].append(rec)
        return rec

    # -- the run --

    def run(self):
        a = self.a
        master = random.Random(a.seed)
        t_end = time.monotonic() + a.duration_s
        actions = sorted(WEIGHTS)
        weights = [WEIGHTS[k] for k in actions]
        n = 0
        epoch = 0
        stop = []
        signal.signal(signal.SIGINT, lambda *_: stop.append(1))
        signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
        while time.monotonic() < t_end and not stop:
            # Series alternate every epoch, the hotplug driver every round
            # of series: (6.1, acpi), (6.12, acpi), (6.1, pciehp), ...
            series = a.series_list[epoch % len(a.series_list)]
            self.hotplug = a.hotplug_list[
                epoch // len(a.series_list) % len(a.hotplug_list)]
            epoch += 1
            e_end = min(t_end, time.monotonic() + a.epoch_s)
            until = time.localtime(time.time() + e_end - time.monotonic())
            self.log("epoch %d: %s, %s hotplug, until %s" % (
                epoch, series, self.hotplug, time.strftime("%H:%M:%S", until)))
            try:
                self.new_epoch_vm(series)
            except (vmlib.VMError, OSError, Fail) as e:
                self.failed(n, "boot", 0, e, 0.0)
                continue
            while time.monotonic() < e_end and not stop:
                if a.cycles and n >= a.cycles:
                    stop.append(1)
                    break
                n += 1
                action = master.choices(actions, weights)[0]
                cycle_seed = master.randrange(1 << 31)
                pause = master.uniform(0, 3.0)
                if a.action:
                    action, cycle_seed = a.action, a.cycle_seed
                if self.one(n, action, cycle_seed):
                    # Start again from a fresh VM (and daemon).
                    try:
                        self.new_epoch_vm(series)
                    except (vmlib.VMError, OSError, Fail) as e:
                        self.failed(n, "boot", 0, e, 0.0)
                        break
                time.sleep(pause)
            self.close_all(series)
            self.write()
        self.summary["host_memory_end"] = host_memory()
        self.write()
        return self.summary

    def write(self):
        s = self.summary
        s["daemons"] = self.daemon_rss
        s["cycles_total"] = sum(s["cycles"].values())
        s["worst_unplug_return_s"] = max(s["unplug_return_s"], default=None)
        s["unplug_bound_s"] = life.UNPLUG_BOUND_S
        with open(self.a.json_path + ".tmp", "w") as f:
            json.dump(s, f, indent=1, sort_keys=True)
        os.replace(self.a.json_path + ".tmp", self.a.json_path)


def main():
    class Parser(argparse.ArgumentParser):
        def error(self, message):
            self.exit(2, "soak.py: %s (see --help)\n" % message)

    p = Parser(prog="tests/e2e/soak.py",
               description="randomized long run of the balloon's life cycle")
    p.add_argument("--duration", default="1h",
                   help="how long (e.g. 90s, 15m, 1h)")
    p.add_argument("--series", default="6.1,6.12",
                   help="kernel series, alternating every epoch")
    p.add_argument("--epoch", default="15m", help="time per VM before the "
                   "series changes (default 15m)")
    p.add_argument("--seed", type=int, default=None,
                   help="PRNG seed (default random)")
    p.add_argument("--hotplug", default="acpi,pciehp",
                   help="the root port's hotplug driver(s), alternating "
                   "every round of series: acpi, pciehp (default both)")
    p.add_argument("--cycles", type=int, default=0, help="stop after N cycles")
    p.add_argument("--action", choices=sorted(WEIGHTS),
                   help="run only this action (with --cycle-seed: replay "
                   "a cycle)")
    p.add_argument("--cycle-seed", type=int, default=None)
    p.add_argument("--out", default=os.path.join(TOP, "out", "soak"),
                   help="directory for the log and the JSON summary")
    p.add_argument("--keep", action="store_true",
                   help="keep the VMs' temp dirs")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args()
    e2elib.VERBOSE = a.verbose
    try:
        a.duration_s = parse_duration(a.duration)
        a.epoch_s = parse_duration(a.epoch)
    except ValueError as e:
        p.error(str(e))
    if a.duration_s <= 0 or a.epoch_s <= 0:
        p.error("--duration and --epoch must be positive")
    a.series_list = [s for s in a.series.split(",") if s]
    for s in a.series_list:
        if not re.fullmatch(r"\d+\.\d+(-[a-z]+)?", s):
            p.error("bad series %r (want e.g. 6.1,6.12)" % s)
    a.hotplug_list = [h for h in a.hotplug.split(",") if h]
    if not a.hotplug_list or set(a.hotplug_list) - {"acpi", "pciehp"}:
        p.error("bad --hotplug %r (want acpi, pciehp or both)" % a.hotplug)
    if a.cycle_seed is not None and not a.action:
        p.error("--cycle-seed needs --action")
    if a.action and a.cycle_seed is None:
        a.cycle_seed = random.SystemRandom().randrange(1 << 31)
    if a.action and not a.cycles:
        a.cycles = 1
    if a.seed is None:
        a.seed = random.SystemRandom().randrange(1 << 31)
    os.makedirs(a.out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log = Log(os.path.join(a.out, "soak-%s.log" % stamp))
    a.json_path = os.path.join(a.out, "soak-%s.json" % stamp)
    log("soak: %s on %s, seed %d (log %s, summary %s)" % (
        a.duration, ",".join(a.series_list), a.seed, log.f.name, a.json_path))
    kos = run.build(a.series_list)
    bad = {s: k for s, k in kos.items() if not os.path.isfile(k)}
    if bad:
        for s, why in bad.items():
            log("cannot run %s: %s" % (s, why))
        return 1
    s = Soak(a, kos, log).run()
    unplug = s["unplug_return_s"]
    log("soak: %d cycles (%s) in %s; %d failures; unplug: worst %s s of %d "
        "(bound %d s); host MemAvailable %.0f -> %.0f MiB; summary %s" % (
            s["cycles_total"],
            ", ".join("%s %d" % kv for kv in sorted(s["cycles"].items())),
            a.duration, len(s["failures"]),
            "%.2f" % max(unplug) if unplug else "-", len(unplug),
            life.UNPLUG_BOUND_S,
            s["host_memory_start"]["MemAvailable"] / 2**20,
            s["host_memory_end"]["MemAvailable"] / 2**20, a.json_path))
    for f in s["failures"]:
        log("FAIL cycle %d %s (%s): %s; replay: %s" % (
            f["cycle"], f["action"], f["series"], f["reason"][:200],
            f["replay"]))
    return 1 if s["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
