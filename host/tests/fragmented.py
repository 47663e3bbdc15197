#!/usr/bin/python3
"""A fragmented balloon: how long vhost-user messages and control commands
wait while balloon13d works through it (issue 16).

The guest (frontend.py's, in a 16 GiB sparse memfd region whose first
2 GiB are populated) balloons every other 4 KiB block of those 2 GiB: a
balloon of 1 GiB in 262144 runs of one block, sent as page lists of 8191
addresses (64 KiB, the largest message the contract lets a driver send),
up to 16 in flight.  Meanwhile the front end asks GET_CONFIG every few
milliseconds and a control client asks "progress", each timed from
request to answer.  Then the guest sends the same lists again (every block
a duplicate, every address a residency check), and last a "status" walks
the whole balloon while GET_CONFIG goes on being timed.

    fragmented.py [--json FILE] [--modes access,withdraw] [--daemon BIN]

the bench row of issue 16's goal (no vhost-user message waits more than
20 ms with such a balloon): runs the scenario once per mode (the driver
acking no device feature, so the balloon is counted by residency, or
acking WITHDRAW, so by messages and without a status walk), prints a
Markdown table row per mode and writes every number as JSON.  abuse.py's
fragmented_latency runs the same and asserts on it.
"""

import argparse
import array
import json
import os
import select
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import frontend as F  # noqa: E402

GIB = 1 << 30
SPAN = 2 * GIB              # the populated part of the big region
PER = 8191                  # addresses per page list (64 KiB message)
INFLIGHT = 16
GOAL_MS = 20.0


class BigFrontend(F.Frontend):
    """The usual guest plus a 16 GiB region of sparse memfd at 8 GiB."""
    BIG_GPA, BIG_SIZE, BIG_QVA = 8 * GIB, 16 * GIB, 0x7e0000000000

    def __init__(self, path):
        super().__init__(path)
        self.big = os.memfd_create("big-ram", os.MFD_CLOEXEC)
        os.ftruncate(self.big, self.BIG_SIZE)

    def set_mem_table(self):
        body = struct.pack("<II", len(F.REGIONS) + 1, 0)
        for gpa, size, off in F.REGIONS:
            body += struct.pack("<QQQQ", gpa, size, F.QVA + off, off)
        body += struct.pack("<QQQQ", self.BIG_GPA, self.BIG_SIZE,
                            self.BIG_QVA, 0)
        self.send(F.SET_MEM_TABLE, body,
                  [self.memfd] * len(F.REGIONS) + [self.big])


def pages_msg(addrs, kind=0):
    return struct.pack("<II", kind, 0) + array.array("Q", addrs).tobytes()


DAEMON_PID = None


def daemon_cpu_s():
    """CPU time the daemon has run, in seconds, at nanosecond resolution
    (/proc/PID/schedstat: on-CPU time, then time waiting for a CPU)."""
    with open("/proc/%d/schedstat" % DAEMON_PID) as f:
        return int(f.read().split()[0]) / 1e9


class Timer:
    """Waits, in wall time and in the daemon's CPU time during each: on
    a busy machine the wall time of a wait also holds time the daemon
    spent waiting for a CPU or blocked in the kernel; its CPU time is what
    its own work made the request wait."""

    def __init__(self):
        self.samples, self.cpu = [], []

    def add(self, s, cpu=0.0):
        self.samples.append(s * 1000)
        self.cpu.append(cpu * 1000)

    def summary(self):
        v = sorted(self.samples) or [0.0]
        return {"n": len(self.samples), "max_ms": round(v[-1], 2),
                "p99_ms": round(v[min(len(v) - 1, int(len(v) * .99))], 2),
                "median_ms": round(v[len(v) // 2], 2),
                "max_daemon_cpu_ms": round(max(self.cpu or [0.0]), 2)}


def timed(t, fn):
    c, start = daemon_cpu_s(), time.monotonic()
    ret = fn()
    wall = time.monotonic() - start
    t.add(wall, daemon_cpu_s() - c)
    return ret


def timed_config(fe, t):
    def ask():
        fe.send(F.GET_CONFIG, struct.pack("<III", 0, 4, 0) + bytes(4))
        fe.recv_reply(F.GET_CONFIG)
    timed(t, ask)


def timed_ctl(ctl, t, cmd="progress"):
    def ask():
        ctl.sendall(json.dumps({"cmd": cmd}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = ctl.recv(65536)
            assert chunk, "control socket closed"
            buf += chunk
        return buf
    buf = timed(t, ask)
    ans = json.loads(buf)
    assert ans["ok"], ans
    return ans


def stream(fe, msgs, ctl, cfg, cmds):
    """Send msgs (bytes) through outputq, INFLIGHT at a time, timing
    GET_CONFIG and a control command between kicks."""
    vq = fe.vq[1]
    slot = 0x1000000               # 16 slots of 64 KiB + in region B
    where = [slot + k * 0x11000 for k in range(INFLIGHT)]
    free = list(range(INFLIGHT))
    inflight = {}
    i, done, start, k = 0, 0, time.monotonic(), 0
    while done < len(msgs):
        posted = False
        while free and i < len(msgs):
            w = free.pop()
            fe.w(where[w], msgs[i])
            inflight[vq.add([(where[w], len(msgs[i]), False)])] = w
            i += 1
            posted = True
        if posted:
            vq.notify()
        timed_config(fe, cfg)
        if k % 4 == 0:
            timed_ctl(ctl, cmds)
        k += 1
        r, _, _ = select.select([vq.call], [], [], 0.003)
        if r:
            try:
                os.eventfd_read(vq.call)
            except BlockingIOError:
                pass
        for head, length in vq.get_used():
            free.append(inflight.pop(head))
            done += 1
        assert time.monotonic() - start < 600, "stuck at %d of %d" % (
            done, len(msgs))
    return time.monotonic() - start


def run(env_args=(), features=None, daemon=None):
    """The whole scenario; returns a dict of results."""
    if daemon:
        os.environ["B13_DAEMON"] = daemon
    global DAEMON_PID
    e = F.Env(*env_args, fe=BigFrontend, verbose=False, features=features)
    DAEMON_PID = e.d.p.pid
    out = {}
    try:
        fe, base = e.fe, BigFrontend.BIG_GPA
        t = time.monotonic()
        os.posix_fallocate(fe.big, 0, SPAN)
        out["populate_s"] = round(time.monotonic() - t, 2)
        addrs = list(range(base, base + SPAN, 2 * 4096))
        msgs = [pages_msg(addrs[j:j + PER]) for j in range(0, len(addrs),
                                                            PER)]
        ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ctl.settimeout(60)
        ctl.connect(e.d.ctl)
        phases = {}
        for phase in ("inflate", "again"):
            cfg, cmds = Timer(), Timer()
            secs = stream(fe, msgs, ctl, cfg, cmds)
            phases[phase] = {"seconds": round(secs, 2),
                             "get_config": cfg.summary(),
                             "control": cmds.summary()}
        # a status walk over the whole balloon, GET_CONFIG timed meanwhile
        cfg = Timer()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(120)
        s.connect(e.d.ctl)
        t = time.monotonic()
        s.sendall(b'{"cmd":"status"}\n')
        buf = b""
        while not buf.endswith(b"\n"):
            r, _, _ = select.select([s], [], [], 0.002)
            if r:
                chunk = s.recv(1 << 20)
                assert chunk, "status connection closed"
                buf += chunk
            else:
                timed_config(fe, cfg)
        walk = time.monotonic() - t
        st = json.loads(buf)
        s.close()
        ctl.close()
        phases["status"] = {"seconds": round(walk, 3),
                            "get_config": cfg.summary()}
        out["phases"] = phases
        out["blocks"] = len(addrs)
        out["blocks_in_balloon"] = st["blocks_in_balloon"]
        out["punch_calls"] = st["punch"]["calls"]
        out["punch_max_us"] = st["punch"].get("max_us")
        out["rejected"] = st["messages"]["rejected"]
        out["worst_get_config_ms"] = max(
            p["get_config"]["max_ms"] for p in phases.values())
        out["worst_control_ms"] = max(
            p["control"]["max_ms"] for p in phases.values() if "control" in p)
        out["worst_get_config_daemon_cpu_ms"] = max(
            p["get_config"]["max_daemon_cpu_ms"] for p in phases.values())
        out["worst_control_daemon_cpu_ms"] = max(
            p["control"]["max_daemon_cpu_ms"] for p in phases.values()
            if "control" in p)
        out["daemon_busy"] = st.get("busy")
        out["daemon_loop"] = st.get("loop")
        out["daemon_alive"] = e.d.alive()
    finally:
        e.close()
    return out


ROW = ("| {mode} | {blocks} | {inflate:.2f} s | {gc_max:.1f} ms | "
       "{gc_p99:.1f} ms | {ctl_max:.1f} ms | {cpu_wait:.1f} ms | "
       "{loop_cpu:.1f} ms | {madvise:.1f} ms | {walk} | {load} |")
HEADER = ("| mode | blocks | inflate | worst GET_CONFIG wait | p99 | worst "
          "control request | daemon CPU in a wait | longest loop "
          "iteration (CPU) | longest madvise | status | load |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")


def row(mode, res):
    ph = res["phases"]
    loop = res.get("daemon_loop") or {}
    walk = ph["status"]["seconds"] * 1000
    return ROW.format(
        mode=mode, blocks=res["blocks"], inflate=ph["inflate"]["seconds"],
        gc_max=res["worst_get_config_ms"],
        gc_p99=max(p["get_config"]["p99_ms"] for p in ph.values()),
        ctl_max=res["worst_control_ms"],
        cpu_wait=max(res["worst_get_config_daemon_cpu_ms"],
                     res["worst_control_daemon_cpu_ms"]),
        loop_cpu=loop.get("max_cpu_us", 0) / 1000,
        madvise=(res.get("punch_max_us") or 0) / 1000,
        walk="%.0f ms walk" % walk if mode == "access" else
        "%.1f ms, no walk" % walk, load=res["load"][0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--modes", default="access,withdraw")
    ap.add_argument("--daemon", help="balloon13d binary to measure")
    a = ap.parse_args()
    out = {}
    for mode in a.modes.split(","):
        feats = F.BASE | (F.F_WITHDRAW if mode == "withdraw" else 0)
        res = run(features=feats, daemon=a.daemon)
        res["load"] = open("/proc/loadavg").read().split()[:3]
        out[mode] = res
    print(HEADER)
    for mode, res in out.items():
        print(row(mode, res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
