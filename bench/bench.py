#!/usr/bin/python3
"""Device 13 (virtio_balloon13 + balloon13d) against QEMU's virtio-balloon.

Boots test guests (scripts/vm.py) that carry three balloons: QEMU's own
virtio-balloon-pci (device 5) with Linux's virtio_balloon, driven over QMP,
device 13 served by balloon13d over vhost-user, driven over its control
socket ("dev13"), and device 13 as QEMU's native virtio-balloon13-pci
("native", qmp-balloon=off beside virtio-balloon, driven with qom-set
target-size), both bound by virtio_balloon13.  For each it measures
inflating and deflating, the guest CPU spent, the host memory given back
and the latency to the first page list; it measures the
guest allocator's own bound with bench/allocbench.ko, how device 13's cost
grows with the size in a 16 GiB guest, and where the time goes.

    bench.py --out DIR [--smoke] [--reps N] [--configs a,b] ...

Writes DIR/results.json (after every VM, so a crash keeps what was
measured); bench/report.py turns it into tables, plots and the ratios.
Python 3 standard library only.
"""

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import threading
import time
import zlib

BENCH = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(TOP, "scripts"))
sys.path.insert(0, BENCH)

from vm import VM, VMError, mount_huge_tmpfs  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
SYSFS13 = "/sys/bus/virtio/drivers/virtio_balloon13"
DEBUGFS13 = "/sys/kernel/debug/virtio_balloon13"
# The native device's PCI slot, so the guest can tell the two device 13s
# apart.
NATIVE_ADDR = "0x10"
NATIVE_PCI = "0000:00:10.0"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# balloon13d's device features in the measurements of inflate and deflate:
# all but free page reporting, which would discard guest memory under them
# (the "reporting" configuration measures it on its own).
PAIR_FEATURES = "withdraw,full-stats,pressure-release"
_MARK = re.compile(rb"@@BENCH (\w+) ([0-9.]+)")


def say(msg):
    print("bench: " + msg, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def host_mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def proc_cpu(pid):
    """utime + stime of a process (all threads), in seconds."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def mib(n):
    return n / MiB


def thp_unavailable():
    """Why the host can't back guest RAM with shmem huge pages, or None."""
    knob = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
    try:
        with open(knob) as f:
            mode = f.read()
    except OSError:
        return "no %s (kernel without transparent huge pages)" % knob
    if "[deny]" in mode:
        return "%s is deny: no tmpfs may use huge pages" % knob
    if os.geteuid() != 0:
        return "mounting a huge=always tmpfs needs root"
    return None


class BenchError(Exception):
    """The harness could not measure something."""


class Ctl:
    """A connection to balloon13d's control socket (JSON lines)."""

    def __init__(self, path, timeout=60):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rb")

    def __call__(self, **req):
        self.sock.sendall(json.dumps(req).encode() + b"\n")
        line = self.file.readline()
        if not line:
            raise BenchError("balloon13d closed its control connection")
        ans = json.loads(line)
        if not ans.get("ok"):
            raise BenchError("balloon13d: %s: %s" % (req, ans.get("error")))
        return ans

    def close(self):
        self.file.close()
        self.sock.close()


class BenchVM(VM):
    """A VM whose command channel also delivers "@@BENCH TAG TIME" markers
    written by guest-bench.sh, stamped with the host time they arrived."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.marks = []
        self._mk_buf = b""
        self._mk_cond = threading.Condition()

    def _cmd_recv(self, deadline, boot=False):
        n = len(self._cmd_buf)
        super()._cmd_recv(deadline, boot)
        new = self._cmd_buf[n:]
        if new:
            now = time.monotonic()
            self._mk_buf = (self._mk_buf + new)[-65536:]
            lines = self._mk_buf.split(b"\n")
            self._mk_buf = lines.pop()
            found = [(now, m.group(1).decode(), float(m.group(2)))
                     for m in map(_MARK.match, lines) if m]
            if found:
                with self._mk_cond:
                    self.marks.extend(found)
                    self._mk_cond.notify_all()

    def wait_mark(self, tag, start, timeout, alive=None):
        """The first marker TAG at index >= start: (host time, guest time)."""
        deadline = time.monotonic() + timeout
        with self._mk_cond:
            while True:
                for t, g, gt in self.marks[start:]:
                    if g == tag:
                        return t, gt
                if alive is not None and not alive():
                    raise BenchError("guest command ended without marker %s"
                                     % tag)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError("no %s marker from the guest in %d s"
                                     % (tag, timeout))
                self._mk_cond.wait(min(left, 0.5))


class Background(threading.Thread):
    """vm.run(cmd) in a thread."""

    def __init__(self, vm, cmd, timeout):
        super().__init__(daemon=True)
        self.vm, self.cmd, self.timeout = vm, cmd, timeout
        self.result = self.error = None

    def run(self):
        try:
            self.result = self.vm.run(self.cmd, timeout=self.timeout)
        except BaseException as e:  # reported by the caller
            self.error = e


def parse_kv(text, sep=" "):
    out = {}
    for word in text.split() if sep == " " else text.splitlines():
        k, _, v = word.partition("=" if sep == " " else sep)
        if k and v:
            try:
                out[k] = int(v)
            except ValueError:
                try:
                    out[k] = float(v)
                except ValueError:
                    out[k] = v
    return out


_LOGLINE = re.compile(r"balloon13d\[\s*(\d+)\.(\d+)\]: (.*)")
_PAGES = re.compile(r"outputq: page list, (\d+) addresses in (\d+) run")
_TARGET = re.compile(r"target (\d+) bytes")


class Bench:
    """One benchmark VM and what drives it."""

    def __init__(self, name, series, mem, page_bits, init_on_alloc, ko,
                 allocbench_ko, daemon, legacy=True, smp=1, thp=False,
                 native=True, features=PAIR_FEATURES):
        self.name = name
        self.thp = thp
        self.page_bits = page_bits
        self.init_on_alloc = init_on_alloc
        self.block = 1 << page_bits
        self.vm = BenchVM(
            series=series, mem=mem, mem_thp=thp, smp=smp,
            modules=[ko, allocbench_ko],
            backend=daemon,
            backend_args=["--control", "{tmpdir}/ctl.sock", "--page-bits",
                          str(page_bits), "-v", "--features", features],
            balloon=legacy, append="init_on_alloc=%d" % init_on_alloc,
            native=("qmp-balloon=off,page-bits=%d,addr=%s"
                    % (page_bits, NATIVE_ADDR)) if native else None,
            boot_timeout=300,
            # Name QEMU's threads, so the vCPU thread can be found.
            qemu_args=["-name", "vb13-bench,debug-threads=on"])
        self.ctl = None
        self.dev = None             # balloon13d's device in the guest's sysfs
        self.ndev = None            # the native device's
        self.memtotal_kb = None
        self.info = {}

    # ---- life cycle -------------------------------------------------------

    def start(self):
        t = time.monotonic()
        self.vm.start()
        self.info["boot_s"] = round(self.vm.boot_seconds, 2)
        with open(os.path.join(BENCH, "guest-bench.sh")) as f:
            lib = f.read()
        self.vm.run("cat >/tmp/bench.sh <<'VB13EOF'\n%sVB13EOF\n" % lib,
                    check=True)
        self.vm.run("modprobe virtio_balloon && modprobe virtio_balloon13 && "
                    "modprobe allocbench", timeout=120, check=True)
        _, out = self.vm.run("for d in %s/virtio*; do echo $d "
                             "$(readlink -f $d); done" % SYSFS13, check=True)
        for line in out.splitlines():
            path, real = line.split()
            if "/%s/" % NATIVE_PCI in real:
                self.ndev = path
            elif not self.dev:
                self.dev = path
        _, out = self.vm.run(
            "cat /proc/cmdline; dmesg | grep -m1 'mem auto-init' || echo -; "
            "head -1 /proc/meminfo; cat %s/page_bits %s/floor_bytes; "
            "ls /sys/bus/virtio/drivers/virtio_balloon/ | grep -c virtio || true"
            % (self.dev, self.dev), check=True)
        lines = out.splitlines()
        self.memtotal_kb = int(lines[2].split()[1])
        self.info.update({
            "kernel": self.vm.kver, "cmdline": lines[0],
            "mem_auto_init": lines[1].split("]", 1)[-1].strip(),
            "memtotal_kb": self.memtotal_kb, "page_bits": int(lines[3]),
            "floor_bytes": int(lines[4]),
            "legacy_bound": int(lines[5]) > 0,
            "guest_ram_bytes": self.vm.mem_bytes,
            "guest_ram_backing": ("file on a huge=always tmpfs (2 MiB THP)"
                                  if self.thp else "memfd (4 KiB pages)"),
            "host_load_at_boot": loadavg(),
            "setup_s": round(time.monotonic() - t, 2),
        })
        if self.info["page_bits"] != self.page_bits:
            raise BenchError("device 13 page_bits %s, wanted %d"
                             % (lines[3], self.page_bits))
        if self.vm.native is not None and not self.ndev:
            raise BenchError("the native device 13 is not bound: %s" % out)
        self.info["native"] = bool(self.ndev)
        self.ctl = Ctl(self.vm.path("ctl.sock"))
        return self

    def close(self):
        if self.ctl:
            self.ctl.close()
            self.ctl = None
        self.vm.close()

    # ---- guest helpers ----------------------------------------------------

    def memtouch(self, margin_mib=100):
        """Make the guest use its memory: memtouch all but margin_mib of
        the free memory, then allocbench's fill writes every page still
        free, down into the reserves below the watermarks (twice; cheap).
        memtouch alone leaves 100-200 MiB untouched: it takes the small
        free blocks first, leaving exactly the large ones device 13 takes
        next, and it cannot go below the watermarks (44 MiB min with THP,
        plus boosts), while a balloon's pages come from anywhere in the
        free lists.  After this all but ~4 MiB of the free guest memory
        is backed on the host."""
        t = time.monotonic()
        self.vm.run("{ read -r _; read -r _ f _; } </proc/meminfo; "
                    "memtouch $((f / 1024 - %d)) >/dev/null && "
                    "echo fill >/sys/kernel/debug/allocbench/run && "
                    "echo fill >/sys/kernel/debug/allocbench/run"
                    % margin_mib, timeout=900, check=True)
        return time.monotonic() - t

    def counters(self, dev=None):
        """balloon13d's device's debugfs counters (or dev's)."""
        _, out = self.vm.run("cat %s/%s/counters" % (
            DEBUGFS13, os.path.basename(dev or self.dev)), check=True)
        return {k: int(v) for k, v in
                (line.split() for line in out.splitlines() if line.strip())}

    def allocbench(self, size, max_order, block_order):
        _, out = self.vm.run(
            "echo %d %d %d >/sys/kernel/debug/allocbench/run && "
            "cat /sys/kernel/debug/allocbench/run"
            % (size // MiB, max_order, block_order), timeout=900, check=True)
        r = {k: int(v) for k, v in
             (line.split() for line in out.splitlines() if line.strip())}
        if r.get("err") or r.get("pages", 0) << 12 < size:
            raise BenchError("allocbench fell short: %s" % r)
        return {"bytes": size, "max_order": max_order,
                "block_order": block_order,
                "alloc_s": r["alloc_ns"] / 1e9, "free_s": r["free_ns"] / 1e9,
                "chunks": {k: v for k, v in r.items()
                           if k.startswith("chunks_order_")}}

    # ---- host side --------------------------------------------------------

    def vcpu_tid(self):
        if not hasattr(self, "_vcpu_tid"):
            self._vcpu_tid = None
            task = "/proc/%d/task" % self.vm.qemu_pid
            for tid in os.listdir(task):
                try:
                    with open("%s/%s/comm" % (task, tid)) as f:
                        if f.read().startswith("CPU 0"):
                            self._vcpu_tid = int(tid)
                except OSError:
                    pass
        return self._vcpu_tid

    def host_snap(self):
        rss = self.vm.qemu_rss()
        snap = {"resident": self.vm.guest_ram_resident(),
                "huge": self.vm.guest_ram_huge(),
                "rss_shmem": rss.get("RssShmem"),
                "qemu_cpu": proc_cpu(self.vm.qemu_pid),
                "daemon_cpu": proc_cpu(self.vm.backend_pid),
                "vcpu_cpu": None, "vcpu_nvcsw": None}
        tid = self.vcpu_tid()
        if tid:
            base = "/proc/%d/task/%d/" % (self.vm.qemu_pid, tid)
            try:
                with open(base + "stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                snap["vcpu_cpu"] = (int(fields[11]) + int(fields[12])) / CLK_TCK
                with open(base + "status") as f:
                    for line in f:
                        if line.startswith("nonvoluntary_ctxt_switches"):
                            snap["vcpu_nvcsw"] = int(line.split()[1])
            except OSError:
                pass
        return snap

    def log_offset(self):
        try:
            return os.path.getsize(self.vm.path("backend.log"))
        except OSError:
            return 0

    def log_timeline(self, offset, target):
        """Daemon log from offset: when the target was set, and when each
        page list was done (ms resolution, the daemon's own clock)."""
        with open(self.vm.path("backend.log"), "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        t_target = None
        msgs = []
        for line in text.splitlines():
            m = _LOGLINE.match(line)
            if not m:
                continue
            t = int(m.group(1)) + int(m.group(2)) / 1000
            if t_target is None:
                mt = _TARGET.match(m.group(3))
                if mt and int(mt.group(1)) == target:
                    t_target = t
                continue
            mp = _PAGES.match(m.group(3))
            if mp:
                msgs.append((round(t - t_target, 3), int(mp.group(1)),
                             int(mp.group(2))))
        out = {"messages": msgs}
        if t_target is not None and msgs:
            out["first_s"] = msgs[0][0]
            total = 0
            for t, n, _ in msgs:
                total += n * self.block
                if total >= target:
                    out["done_s"] = t
                    break
        return out

    # ---- one measured operation --------------------------------------------

    def measure(self, balloon, direction, size, timeout=600):
        """Inflate the balloon by `size` bytes from empty, or deflate it
        from `size` back to empty, timing it from the host's request."""
        full = self.vm.mem_bytes
        inflate = direction == "inflate"
        target = size if inflate else 0
        if balloon in ("dev13", "native"):
            dev = self.dev if balloon == "dev13" else self.ndev
            seen = "%s/target_bytes 1 %d" % (dev, target)
            cond = "%s/size_bytes 1 %s %d" % (
                dev, "-ge" if inflate else "-eq", target)
        else:
            seen = "- 0 0"
            want_kb = self.memtotal_kb - (size >> 10 if inflate else 0)
            cond = "/proc/meminfo 2 %s %d" % ("-le" if inflate else "-ge",
                                              want_kb)
        interval = 0.01 if inflate else (0.005 if balloon == "legacy"
                                         else 0.002)
        cmd = ". /tmp/bench.sh; waiter %s %s %s %d 0.2" % (
            seen, cond, interval, timeout)

        st0 = self.ctl(cmd="status") if balloon == "dev13" else None
        nc0 = self.vm.native_get("counters") if balloon == "native" else None
        actual0 = self.vm.qmp("query-balloon")["actual"] if balloon == "legacy" else None
        off = self.log_offset()
        start = len(self.vm.marks)
        bg = Background(self.vm, cmd, timeout + 60)
        bg.start()
        self.vm.wait_mark("R", start, 120, alive=bg.is_alive)
        h0 = self.host_snap()
        load = loadavg()
        t0 = time.monotonic()
        if balloon == "dev13":
            self.ctl(cmd="resize", bytes=target)
        elif balloon == "native":
            self.vm.native_set("target-size", target)
        else:
            self.vm.qmp("balloon", value=full - target)

        first = done = None
        polls = 0
        if balloon == "dev13" and inflate:
            # Follow the daemon's -v log rather than polling `status`:
            # status counts the balloon with mincore() over every run of
            # the bitmap, which costs the single-threaded daemon
            # milliseconds per call and slows the inflate it measures.
            got, buf, seen_target = 0, b"", False
            with open(self.vm.path("backend.log"), "rb") as log:
                log.seek(off)
                while True:
                    data = log.read()
                    now = time.monotonic()
                    polls += 1
                    if data:
                        buf += data
                        lines = buf.split(b"\n")
                        buf = lines.pop()
                        for line in lines:
                            m = _LOGLINE.match(line.decode("utf-8", "replace"))
                            if not m:
                                continue
                            if not seen_target:
                                mt = _TARGET.match(m.group(3))
                                seen_target = bool(mt and int(mt.group(1)) == target)
                                continue
                            mp = _PAGES.match(m.group(3))
                            if mp:
                                got += int(mp.group(1)) * self.block
                                if first is None:
                                    first = now - t0
                    if got >= size:
                        done = now - t0
                        break
                    if now - t0 > timeout:
                        raise BenchError("device 13 inflate of %d MiB not "
                                         "done in %d s (%d MiB received)"
                                         % (size // MiB, timeout, got // MiB))
                    time.sleep(0.001)
        elif balloon == "native" and inflate:
            # The counters cost the device nothing to read (no residency
            # scan); a QMP round trip takes the BQL for well under 1 ms.
            want = nc0["blocks-received"] + size // self.block
            while True:
                c = self.vm.native_get("counters")
                now = time.monotonic()
                polls += 1
                if first is None and c["page-lists"] != nc0["page-lists"]:
                    first = now - t0
                if c["blocks-received"] >= want:
                    done = now - t0
                    break
                if now - t0 > timeout:
                    raise BenchError("native inflate of %d MiB not done in "
                                     "%d s (%d blocks received)" % (
                                         size // MiB, timeout,
                                         c["blocks-received"] -
                                         nc0["blocks-received"]))
                time.sleep(0.001 if first is None else 0.002)
        elif balloon == "legacy":
            want = full - target
            while True:
                actual = self.vm.qmp("query-balloon")["actual"]
                now = time.monotonic()
                polls += 1
                if first is None and actual != actual0:
                    first = now - t0
                if (actual <= want) if inflate else (actual >= want):
                    done = now - t0
                    break
                if now - t0 > timeout:
                    raise BenchError("legacy %s to %d MiB not done in %d s "
                                     "(actual %d MiB)" % (
                                         direction, want // MiB, timeout,
                                         actual // MiB))
                time.sleep(0.001 if first is None else 0.005)
        h_done = self.host_snap() if done is not None else None
        t_mark, _ = self.vm.wait_mark("D", start, timeout + 30,
                                      alive=bg.is_alive)
        guest_done = t_mark - t0
        if done is None:
            done = guest_done
            h_done = self.host_snap()
        bg.join(timeout + 60)
        if bg.error:
            raise bg.error
        status, out = bg.result
        res = parse_kv(out.strip().splitlines()[-1] if out.strip() else "")
        if status != 0 or "kw_ns" not in res:
            raise BenchError("guest waiter failed (%d): %s" % (status, out))

        r = {
            "balloon": balloon, "direction": direction, "bytes": size,
            "time_s": round(done, 4),
            "guest_done_s": round(guest_done, 4),
            "first_s": None if first is None else round(first, 4),
            "guest_kworker_s": res["kw_ns"] / 1e9,
            "guest_sys_s": res["sys_ticks"] / 100,
            "guest_user_s": res["usr_ticks"] / 100,
            "guest_idle_s": res["idle_ticks"] / 100,
            "resident_before": h0["resident"],
            "resident_after": h_done["resident"],
            "huge_before": h0["huge"], "huge_after": h_done["huge"],
            "reclaimed": h0["resident"] - h_done["resident"],
            "rss_shmem_before": h0["rss_shmem"],
            "rss_shmem_after": h_done["rss_shmem"],
            "qemu_cpu_s": round(h_done["qemu_cpu"] - h0["qemu_cpu"], 2),
            "vcpu_cpu_s": (None if h0["vcpu_cpu"] is None else
                           round(h_done["vcpu_cpu"] - h0["vcpu_cpu"], 2)),
            "vcpu_nvcsw": (None if h0["vcpu_nvcsw"] is None else
                           h_done["vcpu_nvcsw"] - h0["vcpu_nvcsw"]),
            "daemon_cpu_s": round(h_done["daemon_cpu"] - h0["daemon_cpu"], 2),
            "host_polls": polls, "host_load": load,
        }
        if res.get("t_seen"):
            r["guest_seen_to_done_s"] = round(res["t_done"] - res["t_seen"], 4)
        if balloon == "dev13":
            st1 = self.ctl(cmd="status")
            r["daemon"] = {
                "pages_messages": st1["messages"]["pages"] - st0["messages"]["pages"],
                "bytes_received": st1["bytes_received"] - st0["bytes_received"],
                "punch_calls": st1["punch"]["calls"] - st0["punch"]["calls"],
                "punch_bytes": st1["punch"]["bytes"] - st0["punch"]["bytes"],
                "bytes_in_balloon": st1["bytes_in_balloon"],
                # Blocks seen for the first time, and blocks sent again
                # after the guest had used them (each of those costs the
                # daemon a mincore() call and a 64 KiB malloc).
                "block_bytes": self.block,
                "new_blocks": st1["blocks_in_bitmap"] - st0["blocks_in_bitmap"],
                "reballooned_blocks": st1["reballooned_blocks"] - st0["reballooned_blocks"],
                "duplicate_blocks": st1["duplicate_blocks"] - st0["duplicate_blocks"],
            }
            if st1["bytes_received"] - st0["bytes_received"] < size and inflate:
                raise BenchError("daemon status shows %d bytes received, "
                                 "wanted %d" % (st1["bytes_received"] -
                                                st0["bytes_received"], size))
            for cmd in ("status", "progress"):
                t = time.monotonic()
                for _ in range(5):
                    self.ctl(cmd=cmd)
                r[cmd + "_call_ms"] = round((time.monotonic() - t) / 5 * 1000,
                                            3)
            if inflate:
                tl = self.log_timeline(off, target)
                r["log_first_s"] = tl.get("first_s")
                r["log_done_s"] = tl.get("done_s")
                r["timeline"] = tl["messages"]
        elif balloon == "native":
            c = self.vm.native_get("counters")
            d = {k: c[k] - nc0[k] for k in (
                "page-lists", "blocks-received", "blocks-ballooned",
                "blocks-reballooned", "discards", "discarded-bytes",
                "discard-errors", "rejected-messages")}
            r["native"] = dict(d, block_bytes=self.block,
                               bytes_received=d["blocks-received"] * self.block,
                               new_blocks=(d["blocks-ballooned"] -
                                           d["blocks-reballooned"]))
            if inflate and d["blocks-received"] * self.block < size:
                raise BenchError("native counters show %d blocks received, "
                                 "wanted %d" % (d["blocks-received"],
                                                size // self.block))
            t = time.monotonic()
            for _ in range(5):
                self.vm.native_get("counters")
            r["progress_call_ms"] = round((time.monotonic() - t) / 5 * 1000, 3)
        return r


# ---- phases ----------------------------------------------------------------

def run_pair(b, size, reps, touch=True, balloons=("legacy", "dev13", "native"),
             counters=True):
    """reps x (inflate, deflate) for each balloon, alternating which goes
    first; memory touched before each inflate."""
    out = {bl: {"inflate": [], "deflate": []} for bl in balloons}
    out["memtouch_s"] = []
    out["counters"] = []
    for rep in range(reps):
        order = list(balloons) if rep % 2 == 0 else list(reversed(balloons))
        for bl in order:
            if touch:
                out["memtouch_s"].append(round(b.memtouch(), 2))
            inf = b.measure(bl, "inflate", size)
            dfl = b.measure(bl, "deflate", size)
            out[bl]["inflate"].append(inf)
            out[bl]["deflate"].append(dfl)
            say("%s rep %d %-6s %5d MiB: inflate %.3f s (first %s) "
                "deflate %.3f s, reclaimed %.1f MiB, guest kworker %.3f s%s"
                % (b.name, rep + 1, bl, size // MiB, inf["time_s"],
                   inf["first_s"], dfl["time_s"], mib(inf["reclaimed"]),
                   inf["guest_kworker_s"],
                   ", host huge pages %.0f -> %.0f MiB" % (
                       mib(inf["huge_before"]), mib(inf["huge_after"]))
                   if b.thp else ""))
        if counters and "dev13" in balloons:
            out["counters"].append(b.counters())
    return out


def run_allocbench(b, size, reps, variants):
    out = {}
    for name, (max_order, block_order) in variants.items():
        out[name] = []
        for _ in range(reps):
            b.memtouch()
            r = b.allocbench(size, max_order, block_order)
            out[name].append(r)
        say("%s allocbench %s (orders %d..%d) %d MiB: alloc %s s"
            % (b.name, name, max_order, block_order, size // MiB,
               " ".join("%.3f" % r["alloc_s"] for r in out[name])))
    return out


def host_punch_bound(size, thp, reps, step=4 * MiB):
    """The host's bound, like allocbench's for the guest: seconds for
    madvise(MADV_REMOVE) to give `size` bytes of written shared memory
    back, in `step` runs (the daemon's coalesced runs of order-10
    chunks), no guest or daemon involved.  thp: a file on a huge=always
    tmpfs (2 MiB pages) instead of a memfd.  Returns per-rep seconds."""
    import mmap
    import tempfile
    times = []
    mnt = None
    try:
        if thp:
            mnt = tempfile.mkdtemp(prefix="vb13-punch-")
            mount_huge_tmpfs(mnt, size + 8 * MiB)
        for _ in range(reps):
            if thp:
                fd = os.open(os.path.join(mnt, "f"),
                             os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            else:
                fd = os.memfd_create("vb13-punch")
            try:
                os.ftruncate(fd, size)
                m = mmap.mmap(fd, size, mmap.MAP_SHARED)
                for off in range(0, size, 4096):
                    m[off] = 1
                t = time.perf_counter()
                for off in range(0, size, step):
                    m.madvise(mmap.MADV_REMOVE, off, step)
                times.append(time.perf_counter() - t)
                m.close()
            finally:
                os.close(fd)
                if thp:
                    os.unlink(os.path.join(mnt, "f"))
    finally:
        if mnt:
            subprocess.run(["umount", mnt], check=False)
            os.rmdir(mnt)
    return times


_FG_LINE = re.compile(r"^\s*([0-9.]+) \|\s+\d+\)\s+(\S+-\d+)\s+\|\s+"
                      r"[!#*@$+]?\s*(?:([0-9.]+) (us|ms))?\s*\|\s*(.*)$")
_FG_NAME = re.compile(r"^(\w+)(?: \[\w+\])?\(\)(;| \{)$")
_FG_CLOSE = re.compile(r"^\}(?: /\* (\w+))?")


def parse_function_graph(text):
    """function_graph output (funcgraph-abstime, funcgraph-proc) ->
    {function: [(entry time, inclusive duration), ...]}.  Each task has
    its own call stack: a preempted worker's frames must not be closed by
    an interrupt that arrived in another task."""
    calls = {}
    stacks = {}
    for line in text.splitlines():
        m = _FG_LINE.match(line)
        if not m:
            continue
        ts = float(m.group(1))
        stack = stacks.setdefault(m.group(2), [])
        dur = None
        if m.group(3):
            dur = float(m.group(3)) / (1e3 if m.group(4) == "ms" else 1e6)
        body = m.group(5).strip()
        close = _FG_CLOSE.match(body)
        if close:
            want = close.group(1)
            while stack and want and stack[-1][0] != want:
                stack.pop()	# frames whose exit was lost
            if stack and dur is not None:
                name, t_in = stack.pop()
                calls.setdefault(name, []).append((t_in, dur))
            continue
        fm = _FG_NAME.match(body)
        if not fm:
            continue
        if fm.group(2) == ";":
            if dur is not None:
                calls.setdefault(fm.group(1), []).append((ts, dur))
        else:
            stack.append((fm.group(1), ts))
    return calls


# What to trace per balloon: the worker, its allocation and its "tell the
# device" step, and the rest of the hot path.
TRACE = {
    "dev13": {"worker": "vb13_resize_fn", "alloc": "vb13_alloc_chunk",
              "send": "vb13_submit", "free": "vb13_free_acked",
              "more": ["vb13_msg_add", "vb13_encode_chunk", "vb13_reap",
                       "vb13_release_chunk", "vb13_out_done", "vb13_req_fn"]},
    "legacy": {"worker": "update_balloon_size_func",
               "alloc": "balloon_page_alloc", "send": "tell_host",
               "free": "leak_balloon",
               "more": ["fill_balloon", "release_pages_balloon",
                        "balloon_ack"]},
}
TRACE_COMMON = ["virtqueue_add_outbuf", "vp_notify", "vring_interrupt"]


def fg_summary(calls, balloon):
    stats = {name: {"calls": len(c),
                    "total_ms": round(sum(d for _, d in c) * 1e3, 3),
                    "max_ms": round(max(d for _, d in c) * 1e3, 3)}
             for name, c in calls.items()}
    t = TRACE[balloon]
    work = calls.get(t["worker"], [])
    if work:
        start = min(x for x, _ in work)
        end = max(x + d for x, d in work)
        busy = sum(d for _, d in work)
        part = {k: sum(d for _, d in calls.get(t[k], []))
                for k in ("alloc", "send", "free")}
        stats["_worker"] = {
            "runs": len(work), "span_ms": round((end - start) * 1e3, 2),
            "busy_ms": round(busy * 1e3, 2),
            "idle_ms": round((end - start - busy) * 1e3, 2),
            "alloc_ms": round(part["alloc"] * 1e3, 2),
            "send_ms": round(part["send"] * 1e3, 2),
            "free_ms": round(part["free"] * 1e3, 2),
            "other_ms": round((busy - sum(part.values())) * 1e3, 2)}
    return stats


def pipeline(b, off, calls):
    """Device-13 inflate as a pipeline, all in ms from the RESIZE request:
    when the guest queued each page list (virtqueue_add_outbuf), when the
    daemon had discarded it (its log, written before it returns the
    buffer), and when the guest's outputq callback ran.  The guest's and
    the daemon's clocks are aligned on the request: the daemon logs when
    it wrote it, the guest traces vb13_req_fn handling it (~1 ms later)."""
    with open(b.vm.path("backend.log"), "rb") as f:
        f.seek(off)
        text = f.read().decode("utf-8", "replace")
    t_sent, daemon = None, []
    for line in text.splitlines():
        m = _LOGLINE.match(line)
        if not m:
            continue
        t = int(m.group(1)) + int(m.group(2)) / 1000
        if t_sent is None and "inputq: sent RESIZE" in m.group(3):
            t_sent = t
        elif t_sent is not None and _PAGES.match(m.group(3)):
            daemon.append(round((t - t_sent) * 1e3, 1))
    req = sorted(calls.get("vb13_req_fn", []))
    if t_sent is None or not req:
        return {"error": "no request in the log or the trace"}
    t0 = req[0][0]

    def rel(name):
        return [round((t - t0) * 1e3, 1) for t, _ in sorted(calls.get(name, []))
                if t >= t0]
    queued, returned = rel("virtqueue_add_outbuf"), rel("vb13_out_done")
    return {"queued_ms": queued, "daemon_done_ms": daemon,
            "callback_ms": returned,
            "messages": len(queued), "callbacks": len(returned),
            "messages_per_callback": round(len(queued) / len(returned), 2)
            if returned else None}


def ftrace_profile(b, size, balloon="dev13"):
    """One inflate and deflate with the guest's function_graph tracer on
    the balloon's hot path: calls and time in each function, and how much
    of the time the worker was running, allocating, or telling the device
    (for the legacy driver, tell_host includes waiting for the host)."""
    t = TRACE[balloon]
    want = [t["worker"], t["alloc"], t["send"], t["free"]] + t["more"] + \
        TRACE_COMMON
    T = "/sys/kernel/tracing"
    _, avail = b.vm.run("mount -t tracefs tracefs %s 2>/dev/null; "
                        "grep -E '^(%s)( |$)' %s/available_filter_functions"
                        % (T, "|".join(want), T), timeout=120)
    funcs = sorted({line.split()[0] for line in avail.splitlines()
                    if line.strip()})
    if t["worker"] not in funcs:
        return {"error": "%s not traceable: %s" % (t["worker"], avail[-300:])}
    b.vm.run("cd %s && echo 0 >tracing_on && echo nop >current_tracer && "
             "echo 65536 >buffer_size_kb && echo '%s' >set_ftrace_filter && "
             "echo function_graph >current_tracer && "
             "echo funcgraph-abstime >trace_options && "
             "echo funcgraph-irqs >trace_options && "
             "echo funcgraph-proc >trace_options && echo >trace"
             % (T, " ".join(funcs)), timeout=120, check=True)
    out = {"functions": funcs, "balloon": balloon, "bytes": size}
    try:
        for direction in ("inflate", "deflate"):
            if direction == "inflate":
                b.memtouch()
            b.vm.run("echo >%s/trace; echo 1 >%s/tracing_on" % (T, T),
                     check=True)
            off = b.log_offset()
            r = b.measure(balloon, direction, size)
            b.vm.run("echo 0 >%s/tracing_on" % T, check=True)
            # The serial channel is slow; a legacy trace is megabytes.
            _, z = b.vm.run_bytes("gzip -1 <%s/trace" % T, timeout=600)
            trace = zlib.decompress(z, 16 + zlib.MAX_WBITS).decode(
                "utf-8", "replace")
            over = b.vm.run("cat %s/per_cpu/cpu0/stats" % T)[1]
            m = re.search(r"overrun: (\d+)", over)
            out[direction + "_overrun"] = int(m.group(1)) if m else None
            r.pop("timeline", None)
            out[direction] = r
            calls = parse_function_graph(trace)
            out[direction + "_trace"] = fg_summary(calls, balloon)
            if balloon == "dev13" and direction == "inflate":
                out["pipeline"] = pipeline(b, off, calls)
            out[direction + "_trace_lines"] = len(trace.splitlines())
    finally:
        b.vm.run("cd %s && echo 0 >tracing_on && echo nop >current_tracer && "
                 "echo >set_ftrace_filter && echo 1408 >buffer_size_kb" % T,
                 timeout=120)
    return out


def status_poll_profile(b, size, interval=0.005):
    """One device-13 inflate while a second client polls `status` every
    `interval` s, as a harness following the control socket would."""
    stop = threading.Event()
    calls = []

    def poll():
        c = Ctl(b.vm.path("ctl.sock"))
        try:
            while not stop.is_set():
                t = time.monotonic()
                c(cmd="status")
                calls.append(time.monotonic() - t)
                stop.wait(interval)
        finally:
            c.close()

    b.memtouch()
    th = threading.Thread(target=poll, daemon=True)
    th.start()
    try:
        inf = b.measure("dev13", "inflate", size)
    finally:
        stop.set()
        th.join(30)
    b.measure("dev13", "deflate", size)
    calls.sort()
    return {"inflate": inf, "interval_s": interval, "status_calls": len(calls),
            "status_call_ms_median": round(calls[len(calls) // 2] * 1e3, 3)
            if calls else None,
            "status_call_ms_max": round(calls[-1] * 1e3, 3) if calls else None}


def strace_profile(b, size):
    """One device-13 inflate with strace timing the daemon's punch calls."""
    log = b.vm.path("strace.log")
    proc = subprocess.Popen(["strace", "-q", "-T", "-e", "trace=madvise,mincore",
                             "-p", str(b.vm.backend_pid), "-o", log],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)  # attached
        b.memtouch()
        inf = b.measure("dev13", "inflate", size)
        dfl = b.measure("dev13", "deflate", size)
    finally:
        proc.terminate()
        proc.wait(10)
    calls = {"madvise": [], "mincore": []}
    with open(log) as f:
        for line in f:
            m = re.match(r"(madvise|mincore)\(0x[0-9a-f]+, (\d+),.*<([0-9.]+)>",
                         line)
            if m:
                calls[m.group(1)].append((int(m.group(2)), float(m.group(3))))
    out = {"inflate": inf, "deflate": dfl}
    for name, c in calls.items():
        out[name] = {"calls": len(c), "bytes": sum(n for n, _ in c),
                     "total_s": round(sum(t for _, t in c), 4),
                     "max_s": round(max((t for _, t in c), default=0), 4)}
    return out


def perf_profile(b, size):
    """Where QEMU's host CPU goes during one device-13 inflate (perf)."""
    data = b.vm.path("perf.data")
    proc = subprocess.Popen(["perf", "record", "-q", "-F", "499", "-g", "-o",
                             data, "-p", str(b.vm.qemu_pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.0)
        b.memtouch()
        inf = b.measure("dev13", "inflate", size)
    finally:
        proc.send_signal(2)
        proc.wait(30)
    rep = subprocess.run(["perf", "report", "-i", data, "--no-children",
                          "--sort", "dso,sym", "--stdio", "-g", "none",
                          "--percent-limit", "1.5"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True, check=False).stdout
    top = [line.strip() for line in rep.splitlines()
           if line.strip() and not line.startswith("#")][:25]
    b.measure("dev13", "deflate", size)
    return {"inflate": inf, "top": top}


# ---- configurations --------------------------------------------------------

def build_configs(a):
    """name -> dict of what to run."""
    cfgs = {}
    if a.smoke:
        cfgs["smoke"] = dict(mem="512M", page_bits=12, ioa=1, size=64 * MiB,
                             reps=1, kind="pair", ab_reps=1)
        # The THP path too (vm.py mem_thp, 2 MiB blocks), so it can't rot.
        # Device 13 first, on RAM legacy's 4 KiB discards haven't split.
        cfgs["smoke-thp"] = dict(mem="512M", page_bits=21, ioa=1,
                                 size=64 * MiB, reps=1, kind="pair",
                                 ab_reps=1, thp=True,
                                 balloons=("dev13", "native", "legacy"))
        return cfgs
    for ioa in (1, 0):
        cfgs["pb12-ioa%d" % ioa] = dict(mem="2G", page_bits=12, ioa=ioa,
                                        size=GiB, reps=a.reps, kind="pair",
                                        ab_reps=a.reps, profile="full")
        cfgs["pb21-ioa%d" % ioa] = dict(mem="2G", page_bits=21, ioa=ioa,
                                        size=GiB, reps=a.reps, kind="pair",
                                        ab_reps=a.reps, profile="ftrace")
    # Guest RAM in 2 MiB host pages, the setting 2 MiB blocks are for:
    # the host frees a huge page with one cheap punch instead of 512
    # page frees, while 4 KiB discards (legacy) split its huge pages.
    for pb, ioas in ((21, (1, 0)), (12, (1,))):
        for ioa in ioas:
            cfgs["pb%d-thp-ioa%d" % (pb, ioa)] = dict(
                mem="2G", page_bits=pb, ioa=ioa, size=GiB, reps=a.reps,
                kind="pair", ab_reps=a.reps, thp=True,
                profile="ftrace" if pb == 21 and ioa == 1 else None)
    for ioa in (1, 0):
        cfgs["scale-ioa%d" % ioa] = dict(
            mem="16G", page_bits=12, ioa=ioa, kind="scale",
            sizes13=[256 * MiB, GiB, 4 * GiB, 12 * GiB],
            sizes_legacy=[256 * MiB, GiB, 4 * GiB], reps=a.scale_reps)
    cfgs.update(pressure_configs(a))
    cfgs.update(feature_configs(a))
    if not a.smoke:
        cfgs.update(thp_configs(a))
    return cfgs


def run_config(name, cfg, a, builds):
    b = Bench(name, a.series, cfg["mem"], cfg["page_bits"], cfg["ioa"],
              builds["ko"], builds["allocbench"], builds["daemon"],
              thp=cfg.get("thp", False), native=cfg["kind"] == "pair")
    res = {"config": {k: v for k, v in cfg.items()}, "load_start": loadavg(),
           "host_mem_available_start": host_mem_available()}
    t = time.monotonic()
    try:
        b.start()
        res["vm"] = b.info
        say("%s: %s booted in %.1f s, %s, %s" % (
            name, b.info["kernel"], b.info["boot_s"], b.info["cmdline"],
            b.info["mem_auto_init"]))
        if cfg["kind"] == "pair":
            size = cfg["size"]
            res["pair"] = run_pair(b, size, cfg["reps"],
                                   balloons=cfg.get("balloons", (
                                       "legacy", "dev13", "native")))
            block_order = cfg["page_bits"] - 12
            variants = {"driver_orders": (10, block_order)}
            if block_order == 0 and not a.smoke:
                variants["order0"] = (0, 0)
            res["allocbench"] = run_allocbench(b, size, cfg["ab_reps"],
                                               variants)
            res["host_punch"] = {"bytes": size, "step": 4 * MiB,
                                 "thp": bool(cfg.get("thp")),
                                 "punch_s": host_punch_bound(
                                     size, cfg.get("thp"), cfg["ab_reps"])}
            say("%s host punch bound %d MiB: %s s" % (
                name, size // MiB, " ".join(
                    "%.3f" % t for t in res["host_punch"]["punch_s"])))
            if cfg.get("profile") and not a.no_profile:
                prof = {}
                todo = [("ftrace", ftrace_profile)]
                if cfg["profile"] == "full":
                    # 256 MiB: a 1 GiB legacy trace overflows the buffer.
                    todo += [("ftrace_legacy",
                              lambda b, size: ftrace_profile(b, size // 4,
                                                             "legacy")),
                             ("status_poll", status_poll_profile),
                             ("strace", strace_profile),
                             ("perf", perf_profile)]
                for what, fn in todo:
                    try:
                        prof[what] = fn(b, size)
                        say("%s profile %s done" % (name, what))
                    except (BenchError, VMError, OSError) as e:
                        prof[what] = {"error": str(e)[:2000]}
                        say("%s profile %s failed: %s" % (name, what, e))
                res["profile"] = prof
        else:
            res["scale"] = run_scale(b, cfg)
    finally:
        res["load_end"] = loadavg()
        res["elapsed_s"] = round(time.monotonic() - t, 1)
        try:
            res["console_tail"] = b.vm.console_log()[-3000:] if b.vm.tmpdir else ""
        except Exception:
            pass
        b.close()
    return res


def run_scale(b, cfg):
    out = {"dev13": {}, "legacy": {}}
    for rep in range(cfg["reps"]):
        for size in cfg["sizes13"]:
            for bl in ("dev13", "legacy"):
                if bl == "legacy" and size not in cfg["sizes_legacy"]:
                    continue
                inf = b.measure(bl, "inflate", size, timeout=1200)
                dfl = b.measure(bl, "deflate", size, timeout=1200)
                for r in (inf, dfl):
                    r.pop("timeline", None) if size > GiB else None
                d = out[bl].setdefault(str(size), {"inflate": [], "deflate": []})
                d["inflate"].append(inf)
                d["deflate"].append(dfl)
                say("%s rep %d %-6s %6d MiB: inflate %.3f s (%.3f s/GiB) "
                    "deflate %.3f s, kworker %.3f s" % (
                        b.name, rep + 1, bl, size // MiB, inf["time_s"],
                        inf["time_s"] / (size / GiB), dfl["time_s"],
                        inf["guest_kworker_s"]))
    return out


# ---- pressure recovery -------------------------------------------------------

def pressure_configs(a):
    """The stepped workload against an empty balloon, a full device-13
    balloon and a full legacy balloon with deflate-on-oom, in one VM.
    A legacy run takes a minute or two (1 MiB per OOM notification), so
    it gets at most three repetitions."""
    return {"pressure": dict(mem="1536M", page_bits=12, ioa=1,
                             kind="pressure", reps=a.reps,
                             legacy_reps=min(a.reps, 3), step_mib=50,
                             steps=12),
            # The same without F_WITHDRAW: blocks withdrawn by access.
            "pressure-access": dict(mem="1536M", page_bits=12, ioa=1,
                                    kind="pressure", reps=a.reps,
                                    legacy_reps=0, step_mib=50, steps=12,
                                    features="full-stats,pressure-release")}


def guest_counter(b, key):
    """A line of /proc/vmstat, or 0."""
    _, out = b.vm.run("grep '^%s ' /proc/vmstat || echo '%s 0'" % (key, key))
    return int(out.split()[-1])


def memstep(b, cfg):
    """Run the stepped workload; its summary plus OOM kills (vmstat) and
    guest wall time."""
    oom0 = guest_counter(b, "oom_kill")
    t = time.monotonic()
    status, out = b.vm.run("memstep %d %d" % (cfg["step_mib"], cfg["steps"]),
                           timeout=1800)
    wall = time.monotonic() - t
    m = re.search(r"memstep: (.*)", out)
    if not m:
        raise BenchError("memstep printed no summary (%d): %s"
                         % (status, out[-500:]))
    r = parse_kv(m.group(1))
    r.update({"status": status, "wall_s": round(wall, 3),
              "oom_kills": guest_counter(b, "oom_kill") - oom0})
    return r


def wait_dev13_floor(b, full=None, timeout=300):
    """Until device 13's floor holds it (at `full` blocks, if given), or
    the zones' watermarks do (the guest's kernel keeps more free than the
    floor leaves it): (counters, seconds waited)."""
    t = time.monotonic()
    while True:
        c = b.counters()
        if c["in_flight_blocks"] == 0 and (
                c.get("held_by_watermark") == 1 or
                (c["held_by_floor"] == 1 and full in (None, c["num_blocks"]))):
            return c, time.monotonic() - t
        if time.monotonic() - t > timeout:
            raise BenchError("device 13 not back at its floor in %d s: %s"
                             % (timeout, c))
        time.sleep(0.2)


def legacy_actual(b):
    return b.vm.qmp("query-balloon")["actual"]


def wait_legacy(b, want, timeout=600, settle=10):
    """Until the legacy balloon is at `want` (QMP actual, +-2 MiB), or has
    not moved for `settle` seconds: in a guest at its limit it stops a few
    MiB short and keeps retrying."""
    t = time.monotonic()
    last, since = None, time.monotonic()
    while True:
        actual = legacy_actual(b)
        if abs(actual - want) <= 2 * MiB:
            return
        if actual != last:
            last, since = actual, time.monotonic()
        elif time.monotonic() - since > settle:
            return
        if time.monotonic() - t > timeout:
            raise BenchError("legacy balloon not at %d MiB in %d s (actual "
                             "%d MiB)" % (want // MiB, timeout, actual // MiB))
        time.sleep(0.2)


def pressure_run(b, cfg, way, size13=None):
    """One run of the workload: way is "empty", "dev13" (balloon at its
    floor) or "legacy" (holding what device 13 held)."""
    full = b.vm.mem_bytes
    r = {"way": way}
    if way == "dev13":
        b.ctl(cmd="resize", bytes=full)
        c0, _ = wait_dev13_floor(b)
        r["balloon_before"] = c0["num_blocks"] * b.block
    elif way == "legacy":
        b.vm.qmp("balloon", value=full - size13)
        wait_legacy(b, full - size13)
        r["balloon_before"] = full - legacy_actual(b)
    _, out = b.vm.run("head -2 /proc/meminfo")
    r["memtotal_before"], r["memfree_before"] = (
        int(line.split()[1]) * 1024 for line in out.splitlines()[:2])
    r.update(memstep(b, cfg))
    if way == "dev13":
        c1 = b.counters()
        r["released"] = (c1["pressure_blocks"] - c0["pressure_blocks"]) * b.block
        r["releases"] = c1["pressure_releases"] - c0["pressure_releases"]
        # Back at the floor once the workload is gone and the hold is over.
        c2, r["back_s"] = wait_dev13_floor(b, c0["num_blocks"])
        r["back_short"] = (c0["num_blocks"] - c2["num_blocks"]) * b.block
        r["back_held_by_watermark"] = c2.get("held_by_watermark", 0)
        b.ctl(cmd="resize", bytes=0)
        wait_dev13_floor_empty(b)
    elif way == "legacy":
        r["released"] = r["balloon_before"] - (full - legacy_actual(b))
        # virtio_balloon does not inflate again after deflating on OOM.
        time.sleep(10)
        r["balloon_10s_after"] = full - legacy_actual(b)
        b.vm.qmp("balloon", value=full)
        wait_legacy(b, full)
    secs = r.get("seconds") or r["wall_s"]
    r["released_mib_s"] = round(r.get("released", 0) / MiB / secs, 1)
    return r


def wait_dev13_floor_empty(b, timeout=300):
    t = time.monotonic()
    while b.counters()["num_blocks"]:
        if time.monotonic() - t > timeout:
            raise BenchError("device 13 not empty in %d s" % timeout)
        time.sleep(0.2)


def run_pressure_config(name, cfg, a, builds):
    """Pressure recovery: the stepped workload (scripts/guest/memstep.c)
    with both balloons empty, against device 13 at its floor, and against
    legacy virtio_balloon holding as much with deflate-on-oom on; in one
    VM, repetitions interleaved."""
    b = Bench(name, a.series, cfg["mem"], cfg["page_bits"], cfg["ioa"],
              builds["ko"], builds["allocbench"], builds["daemon"],
              features=cfg.get("features", PAIR_FEATURES))
    b.vm.qemu_args += ["-global", "virtio-balloon-device.deflate-on-oom=on"]
    res = {"config": dict(cfg), "load_start": loadavg(), "runs": []}
    t = time.monotonic()
    try:
        b.start()
        res["vm"] = b.info
        _, out = b.vm.run("cat /sys/bus/virtio/drivers/virtio_balloon/virtio*"
                          "/features")
        res["legacy_features"] = out.strip()
        size13 = None
        for rep in range(cfg["reps"]):
            ways = ["empty", "dev13"]
            if rep < cfg["legacy_reps"]:
                ways.append("legacy")
            for way in ways:
                try:
                    r = pressure_run(b, cfg, way, size13)
                except (BenchError, VMError) as e:
                    # Keep what was measured; the report shows the error.
                    res["error"] = "rep %d %s: %s" % (rep + 1, way, e)
                    say("%s rep %d %s failed: %s" % (name, rep + 1, way, e))
                    break
                if way == "dev13":
                    size13 = r["balloon_before"]
                r.update({"rep": rep, "load": loadavg()})
                res["runs"].append(r)
                say("%s rep %d %-6s: %s s, %s of %s steps, %d OOM kills, "
                    "released %.0f MiB (%.1f MiB/s)%s" % (
                        name, rep + 1, way, r.get("seconds"), r.get("done"),
                        cfg["steps"], r["oom_kills"],
                        r.get("released", 0) / MiB, r["released_mib_s"],
                        ", back at the floor after %.1f s" % r["back_s"]
                        if "back_s" in r else ""))
            if "error" in res:
                break
        _, res["dmesg_bad"] = b.vm.run(
            "dmesg | grep -cE 'WARNING:|BUG:|Oops|Call Trace' || true")
    finally:
        res["load_end"] = loadavg()
        res["elapsed_s"] = round(time.monotonic() - t, 1)
        b.close()
    return res


# ---- issue 15: free page reporting and explicit withdrawal -----------------

def feature_configs(a):
    """Free page reporting (device 13 and legacy, one VM), deflate with
    and without explicit withdrawal (one VM, the daemon restarted between
    them behind a PCIe root port), and churn with reporting on."""
    return {
        "reporting": dict(mem="2G", page_bits=12, ioa=1, kind="reporting",
                          reps=min(a.reps, 3), free_mib=1024, pf_mib=128,
                          pf_s=10, pf_warm_s=2, goal_frac=0.9, goal_s=5.0,
                          goal_overhead=0.033),
        "withdraw": dict(mem="2G", page_bits=12, ioa=1, kind="withdraw",
                         size=GiB, reps=a.reps),
        "churn-reporting": dict(kind="churn", series=["6.12", "6.12-debug"]),
    }


def guest_sh(b, cmd, timeout=120):
    status, out = b.vm.run(cmd, timeout=timeout)
    if status != 0:
        raise BenchError("guest command %r exited %d: %s"
                         % (cmd[:80], status, out.strip()[-300:]))
    return out


def wait_resident_quiet(b, settle=5.0, tol=8 * MiB, timeout=180):
    """Until host-resident guest RAM has not moved by more than tol for
    settle seconds (the page reporting passes after a driver registers
    come 2 s apart); returns the seconds waited."""
    t0 = time.monotonic()
    last, since = b.vm.guest_ram_resident(), t0
    while True:
        time.sleep(0.5)
        r, now = b.vm.guest_ram_resident(), time.monotonic()
        if abs(r - last) > tol:
            last, since = r, now
        elif now - since >= settle:
            return now - t0
        if now - t0 > timeout:
            raise BenchError("host-resident guest RAM still moving after "
                             "%d s" % timeout)


def reporting_mode(b, who):
    """Leave exactly one free page reporting driver bound: "dev13"
    (virtio_balloon13), "legacy" (virtio_balloon, with QEMU's
    free-page-reporting=on) or "off" (neither; no balloon driver).  Only
    one device in a guest can report.  Waits until the first reporting
    passes are over; returns the seconds that took."""
    guest_sh(b, "rmmod virtio_balloon13 2>/dev/null; "
             "rmmod virtio_balloon 2>/dev/null; true")
    if who == "dev13":
        out = guest_sh(b, "modprobe virtio_balloon13 && sleep 0.5 && "
                       "grep -h reporting_active %s/virtio*/counters"
                       % DEBUGFS13)
        if out.split()[-1] != "1":
            raise BenchError("virtio_balloon13 is not reporting: %s" % out)
    elif who == "legacy":
        # VIRTIO_BALLOON_F_REPORTING is bit 5.
        out = guest_sh(b, "modprobe virtio_balloon && sleep 0.5 && "
                       "cut -c6 /sys/bus/virtio/drivers/virtio_balloon/"
                       "virtio*/features")
        if out.strip() != "1":
            raise BenchError("virtio_balloon did not negotiate free page "
                             "reporting: %r" % out)
    return wait_resident_quiet(b)


def free_and_watch(b, mib_, timeout=60.0, goal=0.9, at=5.0):
    """The guest touches mib_ MiB and frees it (memtouch exits); how much
    of what it touched goes back to the host, sampled every 0.2 s from the
    free: the share at `at` seconds and when it reached `goal`."""
    res0 = b.vm.guest_ram_resident()
    guest_sh(b, "memtouch %d >/dev/null" % mib_, timeout=600)
    t0 = time.monotonic()
    peak = b.vm.guest_ram_resident()
    touched = peak - res0
    if touched < mib_ * MiB // 2:
        raise BenchError("memtouch %d raised host-resident guest RAM by only "
                         "%.0f MiB" % (mib_, touched / MiB))
    samples, at_frac, goal_s = [], None, None
    while True:
        t = time.monotonic() - t0
        frac = (peak - b.vm.guest_ram_resident()) / touched
        samples.append((round(t, 2), round(frac, 4)))
        if at_frac is None and t >= at:
            at_frac = frac
        if goal_s is None and frac >= goal:
            goal_s = t
        if at_frac is not None and (goal_s is not None or t >= timeout):
            break
        time.sleep(0.2)
    return {"touched": touched, "frac_at": at_frac, "at_s": at,
            "goal_s": None if goal_s is None else round(goal_s, 2),
            "final_frac": samples[-1][1], "samples": samples[::5]}


def pagefault_rate(b, mib_, secs, warm):
    """pages/s of the page-fault-heavy workload (scripts/guest/pagefault.c)
    over secs, after warm seconds of it."""
    guest_sh(b, "pagefault --mib %d %d >/dev/null" % (mib_, warm), timeout=300)
    out = guest_sh(b, "pagefault --mib %d %d" % (mib_, secs), timeout=600)
    m = re.search(r"pagefault: (.*)", out)
    if not m:
        raise BenchError("pagefault printed no summary: %s" % out[-300:])
    return parse_kv(m.group(1))


def run_reporting_config(name, cfg, a, builds):
    """Free page reporting, device 13 and legacy side by side in one VM
    (one driver reporting at a time), repetitions interleaved: 1 GiB
    freed, how fast it goes back to the host; the page-fault-heavy
    workload's rate with reporting on against off; the host's own time to
    discard 1 GiB (the bound)."""
    b = Bench(name, a.series, cfg["mem"], cfg["page_bits"], cfg["ioa"],
              builds["ko"], builds["allocbench"], builds["daemon"],
              native=False, features="all")
    b.vm.qemu_args += ["-global", "virtio-balloon-device.free-page-reporting=on"]
    res = {"config": dict(cfg), "load_start": loadavg(), "free": [],
           "pagefault": []}
    t = time.monotonic()
    try:
        b.start()
        res["vm"] = b.info
        modes = ("off", "dev13", "legacy")
        for rep in range(cfg["reps"]):
            order = modes[rep % 3:] + modes[:rep % 3]
            for who in order:
                settle = reporting_mode(b, who)
                c0 = b.counters() if who == "dev13" else None
                pf = pagefault_rate(b, cfg["pf_mib"], cfg["pf_s"],
                                    cfg["pf_warm_s"])
                r = {"rep": rep, "mode": who, "settle_s": round(settle, 1),
                     "rate": pf["rate"], "pages": pf["pages"],
                     "seconds": pf["seconds"], "load": loadavg()}
                if c0:
                    c1 = b.counters()
                    r["reported_mib"] = (c1["report_bytes"] -
                                         c0["report_bytes"]) / MiB
                res["pagefault"].append(r)
                say("%s rep %d %-6s: pagefault %.0f pages/s%s" % (
                    name, rep + 1, who, pf["rate"],
                    ", %.0f MiB reported meanwhile" % r["reported_mib"]
                    if c0 else ""))
                wait_resident_quiet(b)
                f = free_and_watch(b, cfg["free_mib"],
                                   timeout=8.0 if who == "off" else 60.0,
                                   goal=cfg["goal_frac"], at=cfg["goal_s"])
                f.update({"rep": rep, "mode": who, "load": loadavg()})
                res["free"].append(f)
                say("%s rep %d %-6s: freed %d MiB, %.0f%% back at %.0f s, "
                    "%d%% after %s s" % (
                        name, rep + 1, who, cfg["free_mib"],
                        100 * f["frac_at"], cfg["goal_s"],
                        100 * cfg["goal_frac"], f["goal_s"]))
        res["host_punch"] = {"bytes": cfg["free_mib"] * MiB, "step": 4 * MiB,
                             "thp": False,
                             "punch_s": host_punch_bound(cfg["free_mib"] * MiB,
                                                         False, cfg["reps"])}
    finally:
        res["load_end"] = loadavg()
        res["elapsed_s"] = round(time.monotonic() - t, 1)
        b.close()
    return res


def dev13_sysfs(b):
    """The vhost-user device 13's sysfs directory in the guest (the only
    one: this VM has no native device)."""
    out = guest_sh(b, "ls -d %s/virtio* 2>/dev/null || true" % SYSFS13)
    devs = out.split()
    if len(devs) != 1:
        raise BenchError("%d device 13s bound: %s" % (len(devs), out))
    return devs[0]


def restart_daemon(b, features, timeout=60):
    """Swap balloon13d for one offering `features`, in the same VM: unplug
    the device, restart the daemon, plug the device in again and wait for
    the driver to bind it."""
    b.vm.unplug_vhost()
    b.ctl.close()
    b.vm.backend_proc.terminate()
    b.vm.backend_proc.wait(30)
    i = b.vm.backend_args.index("--features")
    b.vm.backend_args[i + 1] = features
    b.vm._start_backend()
    b.vm.replug_vhost()
    deadline = time.monotonic() + timeout
    while True:
        out = guest_sh(b, "ls -d %s/virtio* 2>/dev/null || true" % SYSFS13)
        if out.split():
            break
        if time.monotonic() > deadline:
            raise BenchError("device 13 not bound %d s after the replug"
                             % timeout)
        time.sleep(0.2)
    b.dev = dev13_sysfs(b)
    b.ctl = Ctl(b.vm.path("ctl.sock"))


def negotiated_withdraw(b):
    bits = guest_sh(b, "cat %s/features" % b.dev).strip()
    return bits[:1] == "1"


def run_withdraw_config(name, cfg, a, builds):
    """Deflate with explicit withdrawal against withdrawal by access and
    against legacy, in one VM: the pair measurements (legacy and
    balloon13d) with a daemon offering WITHDRAW, then again after swapping
    in a daemon without it (hot-unplug and replug behind a PCIe root
    port), then once more with it; the allocator bound of the same VM."""
    b = Bench(name, a.series, cfg["mem"], cfg["page_bits"], cfg["ioa"],
              builds["ko"], builds["allocbench"], builds["daemon"],
              native=False)
    b.vm.root_port = True
    res = {"config": dict(cfg), "load_start": loadavg(), "phases": []}
    t = time.monotonic()
    try:
        b.start()
        res["vm"] = b.info
        phases = (("explicit", PAIR_FEATURES),
                  ("access", "full-stats,pressure-release"),
                  ("explicit", PAIR_FEATURES))
        reps = max(1, (cfg["reps"] + 1) // 2)
        for i, (way, features) in enumerate(phases):
            if i:
                restart_daemon(b, features)
            got = negotiated_withdraw(b)
            if got != (way == "explicit"):
                raise BenchError("%s phase: WITHDRAW %snegotiated (daemon "
                                 "--features %s)" % (way, "" if got else "not ",
                                                     features))
            pair = run_pair(b, cfg["size"], reps if i != 1 else cfg["reps"],
                            balloons=("legacy", "dev13"), counters=False)
            res["phases"].append({"way": way, "features": features,
                                  "pair": pair})
        res["allocbench"] = run_allocbench(b, cfg["size"], cfg["reps"],
                                           {"driver_orders": (10, 0)})
    finally:
        res["load_end"] = loadavg()
        res["elapsed_s"] = round(time.monotonic() - t, 1)
        b.close()
    return res


_CHURN_LINE = re.compile(r"churn: .*")
_TAP = re.compile(r"^(ok|not ok) \d+ - e2e/(\S+)/churn(?: # SKIP (.*))?")


def run_churn_config(name, cfg, a, builds):
    """The end-to-end churn scenario (tests/e2e: random resizes, the device
    frozen mid-inflation, checksummed data, memtouch --verify, every kernel
    splat a failure) on each series, with balloon13d offering every
    feature, free page reporting among them: 0 bad pages means the
    scenario passed; the guest's report counters show reporting ran."""
    res = {"config": dict(cfg), "load_start": loadavg(), "runs": []}
    t = time.monotonic()
    for series in cfg["series"]:
        t1 = time.monotonic()
        p = subprocess.run([sys.executable, os.path.join(TOP, "tests", "e2e",
                                                         "run.py"),
                            "--series", series, "--devices", "vu", "-k",
                            "churn", "--skip", "churn-native"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
        text = p.stdout
        m = [_TAP.match(ln) for ln in text.splitlines()]
        m = [x for x in m if x]
        legacy = re.findall(r"^(PASS|FAIL|SKIP) e2e/(\S+)/churn\b(.*)",
                            text, re.M)
        if m:
            ok = m[-1].group(1) == "ok" and not m[-1].group(3)
            skip = m[-1].group(3)
        elif legacy:
            ok = legacy[-1][0] == "PASS"
            skip = legacy[-1][2].lstrip(": ") if legacy[-1][0] == "SKIP" else None
        else:
            ok, skip = False, None
        rep = re.search(r"churn: reporting: (\d+) messages, (\d+) bytes", text)
        r = {"series": series, "passed": ok, "skipped": skip,
             "exit": p.returncode, "seconds": round(time.monotonic() - t1, 1),
             "report_messages": int(rep.group(1)) if rep else None,
             "reported_mib": int(rep.group(2)) / MiB if rep else None,
             "summary": [ln.strip() for ln in text.splitlines()
                         if "churn" in ln and ("ok" in ln or "churn:" in ln)][-6:]}
        if not ok:
            r["log_tail"] = text[-3000:]
        res["runs"].append(r)
        say("%s %s: %s in %.0f s, %s REPORT messages (%s MiB)" % (
            name, series, "passed" if ok else ("skipped: %s" % skip if skip
                                               else "FAILED"),
            r["seconds"], r["report_messages"],
            "-" if r["reported_mib"] is None else "%.0f" % r["reported_mib"]))
    res["load_end"] = loadavg()
    res["elapsed_s"] = round(time.monotonic() - t, 1)
    return res


# ---- issue 17: THP availability with the balloon half full -----------------

def thp_configs(a):
    """Guest THP faults with device 13's balloon empty and half full, for
    4 KiB and 2 MiB blocks: one VM each (page_bits is per device), in a
    guest whose free memory was fragmented first (thp-pbN) and in a fresh
    one with a larger workload (thp-fresh-pbN)."""
    cfgs = {}
    for pb in (12, 21):
        base = dict(mem="2G", page_bits=pb, ioa=1, kind="thp",
                    reps=min(a.reps, 3), share=0.5)
        cfgs["thp-pb%d" % pb] = dict(base, frag_share=0.3, work_share=0.2)
        cfgs["thp-fresh-pb%d" % pb] = dict(base, frag_share=0,
                                           work_share=0.35)
    return cfgs


def thp_probe(b, mib):
    """Touch `mib` MiB of anonymous memory in the guest (Debian guests run
    THP 'always'); the THP faults that got a huge page and those that fell
    back to small pages (/proc/vmstat thp_fault_alloc and
    thp_fault_fallback)."""
    a0 = guest_counter(b, "thp_fault_alloc")
    f0 = guest_counter(b, "thp_fault_fallback")
    b.vm.run("echo 3 >/proc/sys/vm/drop_caches; memtouch %d >/dev/null" % mib,
             timeout=900, check=True)
    return (guest_counter(b, "thp_fault_alloc") - a0,
            guest_counter(b, "thp_fault_fallback") - f0)


def free_huge_blocks(b):
    """Free 2 MiB blocks the guest has whole (/proc/buddyinfo, orders 9
    and up, every zone but ZONE_DMA): the most THP faults that can get a
    huge page without compaction."""
    _, out = b.vm.run("cat /proc/buddyinfo", check=True)
    n = 0
    for line in out.splitlines():
        p = line.split()
        if len(p) < 5 or p[2] != "zone" or p[3] == "DMA":
            continue
        for order, k in enumerate(int(x) for x in p[4:]):
            if order >= 9:
                n += k << (order - 9)
    return n


def wait_dev13_blocks(b, blocks, timeout=300):
    t = time.monotonic()
    while True:
        c = b.counters()
        if c["num_blocks"] == blocks and not c["in_flight_blocks"]:
            return time.monotonic() - t
        if time.monotonic() - t > timeout:
            raise BenchError("device 13 at %d blocks, not %d, after %d s"
                             % (c["num_blocks"], blocks, timeout))
        time.sleep(0.2)


def run_thp_config(name, cfg, a, builds):
    """THP fault success (huge pages got / THP faults) of a workload of
    work_share of the guest's RAM, with the balloon empty and holding
    `share` of it, repetitions interleaved in one VM whose free memory
    was first fragmented (allocbench frag: frag_share of RAM taken in
    single pages, every other one kept)."""
    b = Bench(name, a.series, cfg["mem"], cfg["page_bits"], cfg["ioa"],
              builds["ko"], builds["allocbench"], builds["daemon"],
              legacy=False, native=False)
    res = {"config": dict(cfg), "load_start": loadavg(), "runs": []}
    t = time.monotonic()
    try:
        b.start()
        res["vm"] = b.info
        _, out = b.vm.run("cat /sys/kernel/mm/transparent_hugepage/enabled",
                          check=True)
        res["thp_enabled"] = out.strip()
        memtotal = b.memtotal_kb * 1024
        half = int(memtotal * cfg["share"]) // b.block * b.block
        work = int(memtotal * cfg["work_share"]) // MiB
        # A guest that has run a while: long-lived unmovable pages all
        # over memory, with one-page holes between them.
        frag = int(memtotal * cfg["frag_share"]) // MiB
        if frag:
            b.vm.run("echo 'frag %d' >/sys/kernel/debug/allocbench/run && "
                     "cat /sys/kernel/debug/allocbench/run" % frag,
                     timeout=900, check=True)
        res["frag_mib"] = frag
        for rep in range(cfg["reps"]):
            for way, size in (("empty", 0), ("half", half)):
                b.ctl(cmd="resize", bytes=size)
                settle = wait_dev13_blocks(b, size // b.block)
                # What the workload finds: whole free 2 MiB blocks (a 2 MiB
                # balloon block is one of them; so is every THP).
                b.vm.run("echo 3 >/proc/sys/vm/drop_caches", check=True)
                huge = free_huge_blocks(b)
                got, fell = thp_probe(b, work)
                r = {"rep": rep, "way": way, "balloon_bytes": size,
                     "work_mib": work, "thp_alloc": got, "thp_fallback": fell,
                     "success": got / (got + fell) if got + fell else None,
                     "free_huge_blocks": huge,
                     "bound": min(1.0, huge / (got + fell)) if got + fell
                     else None,
                     "balloon_migrate": guest_counter(b, "balloon_migrate"),
                     "settle_s": round(settle, 2), "load": loadavg()}
                res["runs"].append(r)
                say("%s rep %d %-5s: balloon %4d MiB, %d MiB touched: %d THP "
                    "faults got a huge page, %d fell back (%.1f%%); %d whole "
                    "free 2 MiB blocks before" % (
                        name, rep + 1, way, size // MiB, work, got, fell,
                        100.0 * (r["success"] or 0), huge))
        b.ctl(cmd="resize", bytes=0)
    finally:
        res["load_end"] = loadavg()
        res["elapsed_s"] = round(time.monotonic() - t, 1)
        b.close()
    return res


def builds_from_args(a):
    for p in (a.module, a.allocbench, a.daemon):
        if not os.path.isfile(p):
            raise BenchError("missing %s" % p)
    return {"ko": a.module, "allocbench": a.allocbench, "daemon": a.daemon}


def git_rev():
    try:
        return subprocess.run(["git", "-C", TOP, "rev-parse", "--short", "HEAD"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True, check=False).stdout.strip()
    except OSError:
        return ""


def smoke_verdict(results, name="smoke"):
    """Reasons the smoke run's numbers are not sane (empty: fine)."""
    bad = []
    r = results["configs"].get(name, {})
    pair = r.get("pair")
    if not pair:
        return ["no measurements: %s" % r.get("error", "?")]
    for bl in ("legacy", "dev13", "native"):
        for d in ("inflate", "deflate"):
            runs = pair.get(bl, {}).get(d, [])
            if not runs:
                bad.append("%s %s not measured" % (bl, d))
                continue
            for x in runs:
                if not x["time_s"] > 0:
                    bad.append("%s %s time %s" % (bl, d, x["time_s"]))
                if x["bytes"] != 64 * MiB:
                    bad.append("%s %s moved %s bytes" % (bl, d, x["bytes"]))
        for x in pair.get(bl, {}).get("inflate", []):
            if x["reclaimed"] < x["bytes"] // 2:
                bad.append("%s reclaimed only %.1f of %d MiB" % (
                    bl, mib(x["reclaimed"]), x["bytes"] // MiB))
            if bl == "dev13" and x["daemon"]["bytes_received"] < x["bytes"]:
                bad.append("device 13 received %d bytes" %
                           x["daemon"]["bytes_received"])
            if bl == "native" and x["native"]["bytes_received"] < x["bytes"]:
                bad.append("the native device 13 received %d bytes" %
                           x["native"]["bytes_received"])
            if bl == "native" and x["native"]["discard-errors"]:
                bad.append("the native device 13 had %d discard errors" %
                           x["native"]["discard-errors"])
    ab = r.get("allocbench", {}).get("driver_orders", [])
    if not ab or not ab[0]["alloc_s"] > 0:
        bad.append("allocbench gave no time")
    hp = (r.get("host_punch") or {}).get("punch_s") or []
    if not hp or not all(t > 0 for t in hp):
        bad.append("host discard bound gave no time: %s" % hp)
    if r.get("config", {}).get("thp"):
        # Guest RAM really was in huge pages, and the 2 MiB blocks freed
        # some of them.
        for x in (pair.get("dev13", {}).get("inflate", []) +
                  pair.get("native", {}).get("inflate", [])):
            if not x["huge_before"] > x["huge_after"]:
                bad.append("device 13 freed no host huge page (%d -> %d "
                           "MiB PMD-mapped)" % (mib(x["huge_before"]),
                                                mib(x["huge_after"])))
    return bad


def main(argv=None):
    class Parser(argparse.ArgumentParser):
        def error(self, message):
            self.exit(2, "bench.py: %s (see --help)\n" % message)

    p = Parser(prog="bench.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="directory for results.json")
    p.add_argument("--smoke", action="store_true",
                   help="one repetition, 64 MiB, 512 MiB guest")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--scale-reps", type=int, default=3)
    p.add_argument("--configs", default="",
                   help="comma-separated subset of the configurations")
    p.add_argument("--no-profile", action="store_true")
    p.add_argument("--series", default="6.12")
    p.add_argument("--module", required=True, help="virtio_balloon13.ko")
    p.add_argument("--allocbench", required=True, help="allocbench.ko")
    p.add_argument("--daemon", required=True, help="balloon13d")
    a = p.parse_args(argv)
    if a.reps < 1 or a.scale_reps < 1:
        p.error("--reps and --scale-reps must be >= 1")

    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "results.json")
    cfgs = build_configs(a)
    if a.configs:
        names = a.configs.split(",")
        unknown = [n for n in names if n not in cfgs]
        if unknown:
            p.error("unknown configuration(s) %s (have %s)"
                    % (",".join(unknown), ",".join(cfgs)))
        cfgs = {n: cfgs[n] for n in names}

    results = {"meta": {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "host": platform.node(), "host_kernel": platform.release(),
        "nproc": os.cpu_count(), "load_start": loadavg(),
        "host_mem_available": host_mem_available(),
        "git": git_rev(), "smoke": a.smoke, "reps": a.reps,
        "scale_reps": a.scale_reps, "series": a.series,
        "notes": "TCG (no KVM), -smp 1, cpu max,erms=off,fsrm=off; "
                 "guest RAM a shared memfd, or for the -thp configurations "
                 "a file on a huge=always tmpfs",
    }, "configs": {}}
    failed = []
    try:
        builds = builds_from_args(a)
        for name, cfg in cfgs.items():
            if cfg["kind"] == "scale" and host_mem_available() < 6 * GiB:
                results["configs"][name] = {"skipped": "host MemAvailable %d MiB"
                                            % (host_mem_available() // MiB)}
                say("%s skipped: not enough free host memory" % name)
                continue
            why = thp_unavailable() if cfg.get("thp") else None
            if why:
                results["configs"][name] = {"skipped": why}
                say("%s skipped: %s" % (name, why))
                continue
            say("%s: starting (host load %s)" % (name, loadavg()))
            try:
                runner = {"pressure": run_pressure_config,
                          "reporting": run_reporting_config,
                          "withdraw": run_withdraw_config,
                          "churn": run_churn_config,
                          "thp": run_thp_config}.get(cfg["kind"], run_config)
                results["configs"][name] = runner(name, cfg, a, builds)
            except (BenchError, VMError, OSError) as e:
                failed.append(name)
                results["configs"][name] = {"error": str(e)[-4000:]}
                say("%s FAILED: %s" % (name, str(e)[-2000:]))
            results["meta"]["load_end"] = loadavg()
            results["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %z")
            with open(path + ".tmp", "w") as f:
                json.dump(results, f, indent=1)
            os.replace(path + ".tmp", path)
    except Exception as e:  # the smoke test must end with a verdict
        if a.smoke:
            print("FAIL bench/smoke: %s: %s" % (
                type(e).__name__, (str(e).splitlines() or [""])[0][:300]))
            return 1
        raise
    say("results in %s" % path)
    if a.smoke:
        return smoke_report(results, a.out)
    return 1 if failed else 0


def smoke_report(results, out):
    """Render the smoke run without plots and print PASS, FAIL or SKIP
    for each smoke configuration."""
    import report
    try:
        lines = report.render(results, out, make_plots=False)
        summ = report.summarize(results)
    except Exception as e:  # a broken report is a failed smoke test
        print("FAIL bench/smoke: report: %s: %s" % (type(e).__name__, e))
        return 1
    for line in lines:
        print(line)
    rc = 0
    for name, r in results["configs"].items():
        if "skipped" in r:
            print("SKIP bench/%s: %s" % (name, r["skipped"]))
            continue
        bad = smoke_verdict(results, name)
        if bad:
            print("FAIL bench/%s: %s" % (name, "; ".join(bad)[:400]))
            rc = 1
            continue
        p = r["pair"]
        med = summ[name]
        size = r["config"]["size"]
        print("PASS bench/%s: %d MiB legacy inflate %.3f s deflate %.3f s, "
              "device 13 inflate %.3f s deflate %.3f s, native device 13 "
              "inflate %.3f s deflate %.3f s, reclaimed %.0f%%/%.0f%%/%.0f%%, "
              "allocator bound %.3f s, host bound %.3f s%s (results %s)" % (
                  name, size // MiB,
                  med["legacy"]["inflate"]["time_s"]["median"],
                  med["legacy"]["deflate"]["time_s"]["median"],
                  med["dev13"]["inflate"]["time_s"]["median"],
                  med["dev13"]["deflate"]["time_s"]["median"],
                  med["native"]["inflate"]["time_s"]["median"],
                  med["native"]["deflate"]["time_s"]["median"],
                  100 * p["legacy"]["inflate"][0]["reclaimed"] / size,
                  100 * p["dev13"]["inflate"][0]["reclaimed"] / size,
                  100 * p["native"]["inflate"][0]["reclaimed"] / size,
                  med["allocbench"]["driver_orders"]["alloc_s"]["median"],
                  med["host_punch"]["punch_s"]["median"],
                  ", host huge pages %.0f -> %.0f MiB" % (
                      mib(p["dev13"]["inflate"][0]["huge_before"]),
                      mib(p["dev13"]["inflate"][0]["huge_after"]))
                  if r["config"].get("thp") else "", out))
    return rc


if __name__ == "__main__":
    sys.exit(main())
