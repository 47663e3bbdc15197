#!/usr/bin/python3
"""Integration tests of balloon13d over real vhost-user, without QEMU.

This script plays both QEMU (the vhost-user front end: features, memory
table with a memfd, vring setup) and the guest driver (split virtqueues in
that memfd: posting request buffers, sending page lists and stats), then
checks what the daemon did through its control socket and balloon13ctl.

Python 3 standard library only.  Prints TAP: "ok N - host/vhost-user/NAME"
per test (B13_TAP_SUITE replaces "host/vhost-user"); tests/run.sh counts
them.  B13_DAEMON / B13_CTL test other builds (the sanitizer build: also
set B13_SANITIZED=1).  Usage: frontend.py [TEST...]
"""

import json
import mmap
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback

HOST = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# B13_DAEMON, B13_CTL: test other builds (e.g. an older one, to see a
# test fail without the fix it checks).
DAEMON = os.environ.get("B13_DAEMON") or os.path.join(HOST, "balloon13d")
CTL = os.environ.get("B13_CTL") or os.path.join(HOST, "balloon13ctl")

# vhost-user requests
GET_FEATURES, SET_FEATURES, SET_OWNER = 1, 2, 3
SET_MEM_TABLE = 5
SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE = 8, 9, 10, 11
SET_VRING_KICK, SET_VRING_CALL = 12, 13
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES = 15, 16
SET_VRING_ENABLE = 18
GET_CONFIG, SET_CONFIG = 24, 25
VERSION = 0x1
F_VERSION_1 = 1 << 32
F_PROTOCOL_FEATURES = 1 << 30
F_INDIRECT, F_EVENT_IDX = 1 << 28, 1 << 29
PROTO_CONFIG = 1 << 9
# Device 13's feature bits (include/uapi/linux/virtio_balloon13.h)
F_WITHDRAW, F_REPORTING, F_FULL_STATS, F_PRESSURE_RELEASE = 1, 2, 4, 8
F_ALL = 0xF
BASE = F_VERSION_1 | F_PROTOCOL_FEATURES
# Message types
PAGES, STATS, WITHDRAW, REPORT = 0, 1, 2, 3

VRING_DESC_F_NEXT, VRING_DESC_F_WRITE = 1, 2
QSIZE = 64

# Guest memory: a memfd holding three regions laid out like q35's.
MIB = 1 << 20
MEM_SIZE = 96 * MIB
REGIONS = [  # gpa, size, file offset
    (0x0, 0xA0000, 0),
    (0x100000, 63 * MIB, 0x100000),
    (0x100000000, 32 * MIB, 64 * MIB),
]
RAM = sum(r[1] for r in REGIONS)
QVA = 0x7F0000000000          # where "QEMU" maps the memfd
RING_GPA = 0x3000000          # rings and buffers live in region B
BUF_GPA = 0x3100000
BLOCKS_B = 0x1000000          # blocks we balloon in region B
BLOCKS_C = 0x100000000        # ... and in region C


def gpa_to_off(gpa):
    for base, size, off in REGIONS:
        if base <= gpa < base + size:
            return off + gpa - base
    raise ValueError("gpa %#x not in RAM" % gpa)


# Daemons that ended badly (exit status, sanitizer report): the test that
# ran them fails.
PROBLEMS = []
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")


class Daemon:
    def __init__(self, tmp, *args, verbose=True, **popen):
        """popen: more subprocess.Popen arguments (umask, preexec_fn)."""
        self.sock = os.path.join(tmp, "vhu.sock")
        self.ctl = os.path.join(tmp, "ctl.sock")
        self.log = open(os.path.join(tmp, "daemon.log"), "w+")
        self.p = subprocess.Popen(
            [DAEMON, "--socket-path", self.sock, "--control", self.ctl] +
            (["-v"] if verbose else []) + list(args), stderr=self.log,
            **popen)
        for _ in range(200):
            if os.path.exists(self.ctl):
                break
            time.sleep(0.01)
        else:
            raise RuntimeError("balloon13d did not start")

    def request(self, obj, timeout=10):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.ctl)
        s.sendall(json.dumps(obj).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        s.close()
        return json.loads(buf)

    def status(self):
        st = self.request({"cmd": "status"})
        assert st["ok"], st
        return st

    def ctl_cmd(self, *args, timeout=30):
        return subprocess.run([CTL, "--control", self.ctl] + list(args),
                              capture_output=True, text=True,
                              timeout=timeout)

    def alive(self):
        return self.p.poll() is None

    def stop(self):
        """SIGTERM; the exit status.  A daemon that had died, did not exit
        0, or whose log holds a sanitizer report goes to PROBLEMS."""
        rc, was_alive = None, self.alive()
        if was_alive:
            self.p.send_signal(signal.SIGTERM)
            try:
                rc = self.p.wait(30)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                PROBLEMS.append("balloon13d did not exit on SIGTERM")
        else:
            rc = self.p.returncode
            if rc is not None and not getattr(self, "reported", False):
                PROBLEMS.append("balloon13d died (exit %s)" % rc)
        self.reported = True
        if was_alive and rc not in (0, None):
            PROBLEMS.append("balloon13d exited %s" % rc)
        text = self.logtext()
        for mark in SANITIZER_MARKS:
            if mark in text:
                at = text.index(mark)
                PROBLEMS.append("sanitizer: " +
                                text[at:at + 600].replace("\n", " | "))
                break
        return rc

    def logtext(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()


class VQ:
    """The guest driver's side of one split virtqueue."""

    def __init__(self, fe, idx):
        self.fe, self.idx = fe, idx
        self.desc = RING_GPA + idx * 0x4000
        self.avail = self.desc + 16 * QSIZE
        self.used = self.desc + 0x1000
        self.free = list(range(QSIZE))
        self.avail_idx = 0
        self.last_used = 0
        self.chains = {}
        self.kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.call = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def add(self, bufs):
        """bufs: [(gpa, len, writable)]; returns the head index."""
        ids = [self.free.pop(0) for _ in bufs]
        for i, (gpa, length, wr) in enumerate(bufs):
            flags = (VRING_DESC_F_WRITE if wr else 0)
            nxt = 0
            if i + 1 < len(bufs):
                flags |= VRING_DESC_F_NEXT
                nxt = ids[i + 1]
            self.fe.w(self.desc + 16 * ids[i],
                      struct.pack("<QIHH", gpa, length, flags, nxt))
        self.chains[ids[0]] = ids
        self.fe.w(self.avail + 4 + 2 * (self.avail_idx % QSIZE),
                  struct.pack("<H", ids[0]))
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        self.fe.w(self.avail + 2, struct.pack("<H", self.avail_idx))
        return ids[0]

    def notify(self):
        os.eventfd_write(self.kick, 1)

    def used_idx(self):
        return struct.unpack("<H", self.fe.r(self.used + 2, 2))[0]

    def get_used(self):
        out = []
        while self.last_used != self.used_idx():
            slot = self.used + 4 + 8 * (self.last_used % QSIZE)
            head, length = struct.unpack("<II", self.fe.r(slot, 8))
            self.free += self.chains.pop(head)
            out.append((head, length))
            self.last_used = (self.last_used + 1) & 0xFFFF
        return out

    def wait_used(self, n=1, timeout=3.0):
        got, end = [], time.monotonic() + timeout
        while len(got) < n:
            got += self.get_used()
            if len(got) >= n:
                break
            left = end - time.monotonic()
            if left <= 0:
                break
            select.select([self.call], [], [], min(left, 0.05))
            try:
                os.eventfd_read(self.call)
            except BlockingIOError:
                pass
        return got


class Frontend:
    """QEMU's part: the vhost-user conversation and guest memory."""

    def __init__(self, path, page_bits=12):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(5)
        self.s.connect(path)
        self.memfd = os.memfd_create("guest-ram", os.MFD_CLOEXEC)
        os.ftruncate(self.memfd, MEM_SIZE)
        self.mem = mmap.mmap(self.memfd, MEM_SIZE)
        self.vq = [VQ(self, 0), VQ(self, 1)]
        self.page_bits = page_bits

    # guest memory
    def w(self, gpa, data):
        off = gpa_to_off(gpa)
        self.mem[off:off + len(data)] = data

    def r(self, gpa, n):
        off = gpa_to_off(gpa)
        return self.mem[off:off + n]

    # vhost-user messages
    def send(self, req, payload=b"", fds=()):
        msg = struct.pack("<III", req, VERSION, len(payload)) + payload
        if fds:
            socket.send_fds(self.s, [msg], list(fds))
        else:
            self.s.sendall(msg)

    def recv_reply(self, req):
        hdr = self._recv(12)
        r, flags, size = struct.unpack("<III", hdr)
        assert r == req and flags & 0x4, (r, flags)
        return self._recv(size)

    def _recv(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise EOFError("daemon closed the vhost-user socket")
            buf += chunk
        return buf

    def get_u64(self, req):
        self.send(req)
        return struct.unpack("<Q", self.recv_reply(req))[0]

    def get_config(self, size=4):
        self.send(GET_CONFIG, struct.pack("<III", 0, size, 0) + bytes(size))
        rep = self.recv_reply(GET_CONFIG)
        return rep[12:12 + size] if len(rep) >= 12 + size else b""

    def negotiate(self, features=None):
        self.features_offered = self.get_u64(GET_FEATURES)
        self.proto_offered = self.get_u64(GET_PROTOCOL_FEATURES)
        self.send(SET_PROTOCOL_FEATURES, struct.pack("<Q", PROTO_CONFIG))
        self.send(SET_OWNER)
        if features is None:
            features = F_VERSION_1 | F_PROTOCOL_FEATURES
        self.send(SET_FEATURES, struct.pack("<Q", features))

    def set_mem_table(self):
        body = struct.pack("<II", len(REGIONS), 0)
        for gpa, size, off in REGIONS:
            body += struct.pack("<QQQQ", gpa, size, QVA + off, off)
        self.send(SET_MEM_TABLE, body, [self.memfd] * len(REGIONS))

    def start_queue(self, q, base=0):
        vq = self.vq[q]
        qva = lambda g: QVA + gpa_to_off(g)
        self.send(SET_VRING_NUM, struct.pack("<II", q, QSIZE))
        self.send(SET_VRING_BASE, struct.pack("<II", q, base))
        self.send(SET_VRING_ADDR, struct.pack(
            "<IIQQQQ", q, 0, qva(vq.desc), qva(vq.used), qva(vq.avail), 0))
        self.send(SET_VRING_KICK, struct.pack("<Q", q), [vq.kick])
        self.send(SET_VRING_CALL, struct.pack("<Q", q), [vq.call])

    def enable(self):
        for q in (0, 1):
            self.send(SET_VRING_ENABLE, struct.pack("<II", q, 1))

    def start(self, features=None):
        self.negotiate(features)
        self.set_mem_table()
        self.start_queue(0)
        self.start_queue(1)
        self.enable()

    def new_rings(self):
        """A reset driver's fresh rings, at the same place, zeroed."""
        for q in (0, 1):
            self.w(RING_GPA + q * 0x4000, bytes(0x2000))
        self.vq = [VQ(self, 0), VQ(self, 1)]
        for q in (0, 1):
            self.start_queue(q)
        self.enable()

    def stop_queue(self, q):
        self.send(GET_VRING_BASE, struct.pack("<II", q, 0))
        return struct.unpack("<II", self.recv_reply(GET_VRING_BASE))

    def close(self):
        self.s.close()

    # the guest driver
    def post_requests(self, n, size=16):
        ids = []
        for _ in range(n):
            slot = self.vq[0].free[0]
            # Not 0 in reserved: a device that leaves the field as it
            # found it fails read_requests().
            self.w(BUF_GPA + 64 * slot + 4, b"\xa5" * 4)
            ids.append(self.vq[0].add([(BUF_GPA + 64 * slot, size, True)]))
        self.vq[0].notify()
        return ids

    def read_requests(self, n, timeout=3.0):
        """[(used_len, type, value)] for n used inputq buffers; a request
        whose reserved field is not 0 fails the test (the device must
        write 0 there: spec B13-DEV-REQ-04)."""
        out = []
        for head, length in self.vq[0].wait_used(n, timeout):
            t, res, v = struct.unpack("<IIQ", self.r(BUF_GPA + 64 * head,
                                                      16))
            if length >= 8:
                eq(res, 0, "reserved of a type %d request" % t)
            out.append((length, t, v))
        return out

    def send_msg(self, data, split=None, extra=None, wait=True, base=None):
        """Send one outputq message; split: descriptor sizes."""
        slot = self.vq[1].free[0]
        if base is None:
            base = BUF_GPA + 0x40000 + 0x10000 * (slot % 16)
        self.w(base, data)
        sizes = split or [len(data)]
        bufs, off = [], 0
        for sz in sizes:
            bufs.append((base + off, sz, False))
            off += sz
        if extra:
            bufs += extra
        self.vq[1].add(bufs)
        self.vq[1].notify()
        if wait:
            got = self.vq[1].wait_used(1)
            assert len(got) == 1, "outputq buffer not returned"
            return got[0]
        return None

    def send_pages(self, addrs, **kw):
        return self.send_msg(struct.pack("<II", 0, 0) +
                             b"".join(struct.pack("<Q", a) for a in addrs),
                             **kw)

    def send_withdraw(self, addrs, **kw):
        return self.send_msg(struct.pack("<II", WITHDRAW, 0) +
                             b"".join(struct.pack("<Q", a) for a in addrs),
                             **kw)

    def send_report(self, ranges, **kw):
        return self.send_msg(struct.pack("<II", REPORT, 0) + b"".join(
            struct.pack("<QQ", a, n) for a, n in ranges), **kw)

    def send_stats(self, pairs, **kw):
        return self.send_msg(struct.pack("<II", 1, 0) + b"".join(
            struct.pack("<QQ", t, v) for t, v in pairs), **kw)

    def touch(self, gpa, n=4096):
        self.w(gpa, b"\x5a" * n)


# ---- the tests ---------------------------------------------------------------

class Env:
    def __init__(self, *args, start=True, features=None, fe=None, **daemon):
        self.tmp = tempfile.mkdtemp(prefix="b13fe.")
        self.d = Daemon(self.tmp, *args, **daemon)
        self.fe = (fe or Frontend)(self.d.sock)
        if start:
            self.fe.start(features)
            wait_for(lambda: self.d.status()["driver_ready"])

    def close(self):
        try:
            self.fe.close()
        except OSError:
            pass
        rc = self.d.stop()
        subprocess.run(["rm", "-rf", self.tmp])
        return rc


def wait_for(cond, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def eq(a, b, what=""):
    if a != b:
        raise AssertionError("%s: %r != %r" % (what, a, b))


def t_features_config(e):
    fe = e.fe
    eq(fe.features_offered, BASE | F_ALL, "features")
    assert fe.proto_offered & PROTO_CONFIG, "CONFIG protocol feature"
    eq(fe.get_config(), struct.pack("<I", 12), "config")
    st = e.d.status()
    eq(st["config_reads"], 1, "config_reads")
    eq(st["features"], F_VERSION_1 | F_PROTOCOL_FEATURES, "acked")
    assert "config read (4 bytes): page_bits 12" in e.d.logtext()


def t_page_bits_40():
    e = Env("--page-bits", "40")
    try:
        eq(e.fe.get_config(), struct.pack("<I", 40), "config")
        eq(e.fe.get_config(8), struct.pack("<II", 40, 0), "config 8")
        # every block is beyond RAM: rejected, no crash
        e.fe.send_pages([0])
        eq(e.d.status()["rejects"]["out_of_ram"], 1, "out_of_ram")
    finally:
        e.close()


def t_ring_features():
    e = Env("--ring-features", start=False)
    try:
        e.fe.negotiate()
        eq(e.fe.features_offered, BASE | F_ALL | F_INDIRECT | F_EVENT_IDX,
           "features")
    finally:
        e.close()


def t_memory_table(e):
    st = e.d.status()
    eq(st["connected"], True, "connected")
    eq(st["guest_ram_bytes"], RAM, "ram")
    eq([(r["gpa"], r["size"]) for r in st["regions"]],
       [(g, s) for g, s, _ in REGIONS], "regions")
    eq(st["regions"][1]["blocks"], 63 * MIB // 4096, "blocks")
    assert "memory table: 3 region(s)" in e.d.logtext()


def t_resize_before_buffers():
    e = Env()
    try:
        for size in ("1M", "2M", "3M"):
            r = e.d.ctl_cmd("resize", size)
            eq(r.returncode, 0, "resize " + r.stderr)
        assert "queued until the guest posts" in r.stdout, r.stdout
        st = e.d.status()
        eq((st["target_bytes"], st["target_delivered"],
            st["pending_requests"]), (3 * MIB, False, 1), "pending")
        e.fe.post_requests(3)
        eq(e.fe.read_requests(1), [(16, 0, 3 * MIB)], "only the latest")
        time.sleep(0.1)
        eq(e.fe.read_requests(1, timeout=0.2), [], "nothing more")
        st = e.d.status()
        eq((st["target_delivered"], st["pending_requests"],
            st["requests_sent"]["resize"]), (True, 0, 1), "delivered")
        # with buffers already posted, delivery is immediate
        e.d.request({"cmd": "resize", "bytes": 4096})
        eq(e.fe.read_requests(1), [(16, 0, 4096)], "immediate")
    finally:
        e.close()


def t_request_order_and_stats():
    e = Env()
    try:
        e.d.request({"cmd": "resize", "bytes": 4 * MIB})
        # a stats command waits for the guest: send it on its own socket
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(e.d.ctl)
        s.sendall(b'{"cmd": "stats", "timeout_ms": 3000}\n')
        time.sleep(0.1)
        e.d.request({"cmd": "resize", "bytes": 8 * MIB})
        e.fe.post_requests(4)
        eq([(t, v) for _, t, v in e.fe.read_requests(2)],
           [(1, 0), (0, 8 * MIB)], "STATS, then the latest RESIZE")
        e.fe.send_stats([(4, 100 * MIB), (5, 200 * MIB), (2, 5), (9, 1)])
        s.settimeout(3)
        ans = json.loads(s.makefile().readline())
        assert ans["ok"], ans
        # tag 9 is unknown: dropped, counted as a guest error
        eq(ans["stats"]["values"], {"memfree": 100 * MIB,
                                    "memtot": 200 * MIB, "majflt": 5},
           "stats")
        assert ans["stats"]["age_ms"] < 1000
        st = e.d.status()
        eq(st["messages"]["stats"], 1, "stats messages")
        eq(st["guest_errors"]["stats_unknown_tag"], 1, "unknown tag")
        eq(st["stats"]["values"]["memtot"], 200 * MIB, "status stats")
    finally:
        e.close()


def t_stats_ctl_and_timeout():
    e = Env()
    try:
        e.fe.post_requests(2)
        p = subprocess.Popen([CTL, "--control", e.d.ctl, "--json", "stats",
                              "--timeout", "3"], stdout=subprocess.PIPE,
                             text=True)
        eq([(t, v) for _, t, v in e.fe.read_requests(1)], [(1, 0)], "req")
        e.fe.send_stats([(0, 1), (1, 2), (3, 7)])
        out, _ = p.communicate(timeout=5)
        eq(p.returncode, 0, "ctl stats")
        eq(json.loads(out)["stats"]["values"],
           {"swap_in": 1, "swap_out": 2, "minflt": 7}, "values")
        r = e.d.ctl_cmd("stats", "--timeout", "0.3")
        eq(r.returncode, 1, "timeout exit")
        assert "timeout" in r.stderr, r.stderr
        eq([(t, v) for _, t, v in e.fe.read_requests(1)], [(1, 0)],
           "the unanswered request")
        # human output
        p = subprocess.Popen([CTL, "--control", e.d.ctl, "stats"],
                             stdout=subprocess.PIPE, text=True)
        time.sleep(0.1)
        e.fe.post_requests(1)
        eq([(t, v) for _, t, v in e.fe.read_requests(1)], [(1, 0)], "req 3")
        e.fe.send_stats([(4, 3 * MIB), (2, 42)])
        out, _ = p.communicate(timeout=5)
        eq(p.returncode, 0, "human stats")
        assert "  memfree         3 MiB\n" in out and \
            "  majflt          42\n" in out and \
            "  memtot          -\n" in out, out
    finally:
        e.close()


def t_small_input_buffer():
    e = Env()
    try:
        e.fe.post_requests(1, size=8)
        e.fe.post_requests(1, size=16)
        e.d.request({"cmd": "resize", "bytes": MIB})
        eq(e.fe.read_requests(2), [(0, 0, 0), (16, 0, MIB)], "used")
        eq(e.d.status()["guest_errors"]["input_buffer_too_small"], 1, "err")
    finally:
        e.close()


def t_page_list(e):
    fe = e.fe
    b = BLOCKS_B
    for a in (b, b + 0x1000, b + 0x2000, b + 0x3000, BLOCKS_C):
        fe.touch(a)
    # unsorted, split over descriptors in the middle of an address
    msg = struct.pack("<II", 0, 0) + b"".join(
        struct.pack("<Q", a) for a in (b + 0x2000, BLOCKS_C, b, b + 0x1000))
    eq(fe.send_msg(msg, split=[12, 7, len(msg) - 19])[1], 0, "used len")
    st = e.d.status()
    eq((st["blocks_in_balloon"], st["blocks_in_bitmap"],
        st["blocks_received"], st["bytes_in_balloon"]),
       (4, 4, 4, 4 * 4096), "counts")
    eq((st["punch"]["calls"], st["punch"]["bytes"], st["punch"]["errors"]),
       (2, 4 * 4096, 0), "punch")
    eq(st["messages"]["pages"], 1, "messages")
    pr = e.d.request({"cmd": "progress"})
    eq((pr["ok"], pr["bytes_received"], pr["bytes_in_bitmap"],
        pr["page_lists"], pr["punched_bytes"], pr["target_bytes"],
        pr["block_size"]),
       (True, st["bytes_received"], st["bytes_in_bitmap"], 1, 4 * 4096,
        st["target_bytes"], 4096), "progress")
    r = e.d.ctl_cmd("progress")
    eq(r.returncode, 0, "ctl progress " + r.stderr)
    assert "received 16 KiB in 1 page list, discarded 16 KiB" \
        in r.stdout, r.stdout
    rg = e.d.request({"cmd": "ranges"})
    eq([(r["start"], r["blocks"]) for r in rg["ranges"]],
       [(b, 3), (BLOCKS_C, 1)], "ranges")
    # the host really dropped them: contents are gone, neighbour intact
    eq(fe.r(b + 0x1000, 16), bytes(16), "discarded")
    eq(fe.r(b + 0x3000, 4), b"\x5a" * 4, "neighbour")
    r = e.d.ctl_cmd("ranges")
    assert "2 range(s), 4 block(s)" in r.stdout, r.stdout


def t_withdraw_by_access(e):
    fe = e.fe
    addrs = [BLOCKS_B + 0x100000 + 0x1000 * i for i in range(16)]
    fe.send_pages(addrs)
    eq(e.d.status()["blocks_in_balloon"], 16, "in")
    for a in addrs[3:8]:
        fe.touch(a, 1)
    st = e.d.status()
    eq((st["blocks_in_balloon"], st["blocks_withdrawn"],
        st["blocks_in_bitmap"]), (11, 5, 16), "withdrawn")


def t_duplicates(e):
    fe, a = e.fe, BLOCKS_B + 0x200000
    fe.send_pages([a, a, a + 0x1000])
    st = e.d.status()
    eq((st["repeated_in_message"], st["blocks_in_bitmap"]), (1, 2), "rep")
    fe.send_pages([a])
    eq(e.d.status()["duplicate_blocks"], 1, "duplicate")
    fe.touch(a, 1)
    fe.send_pages([a])
    st = e.d.status()
    eq((st["duplicate_blocks"], st["reballooned_blocks"],
        st["blocks_in_balloon"]), (1, 1, 2), "reballooned")


def t_no_discard():
    """--no-discard (guest RAM pinned where the daemon can't see it, e.g.
    by an assigned device of the VMM; B13-DEV-DISCARD-01): the blocks of a
    page list are counted, never discarded: their data survives and the
    memfd keeps its pages.  Without WITHDRAW the balloon is then counted
    from messages (a kept block is resident, which is no withdrawal).  The
    same list without the option discards, as the control."""
    addrs = [BLOCKS_B + 0x600000 + 0x2000 * i for i in range(8)] + \
        [BLOCKS_C + 0x10000]
    pat = lambda a: struct.pack("<Q", 0x1313000000000000 | a)
    for keep, feats in ((True, BASE), (True, BASE | F_WITHDRAW),
                        (False, BASE)):
        e = Env(*(["--no-discard"] if keep else []), features=feats)
        try:
            fe, what = e.fe, "keep=%s features=%#x" % (keep, feats)
            for a in addrs:
                fe.w(a, pat(a))
            msg = BUF_GPA + 0x200000
            fe.w(msg, bytes(4096))      # the message's page is there now
            used = os.fstat(fe.memfd).st_blocks * 512
            fe.send_pages(addrs, base=msg)
            st = e.d.status()
            eq((st["blocks_in_balloon"], st["blocks_in_bitmap"],
                st["bytes_in_balloon"], st["blocks_withdrawn"]),
               (9, 9, 9 * 4096, 0), "counts " + what)
            eq((st["no_discard"], st["kept_bytes"], st["punch"]["calls"],
                st["punch"]["bytes"]),
               (True, 9 * 4096, 0, 0) if keep else (False, 0, 9, 9 * 4096),
               "discards " + what)
            eq(used - os.fstat(fe.memfd).st_blocks * 512,
               0 if keep else 9 * 4096, "memfd bytes freed " + what)
            for a in addrs:
                eq(fe.r(a, 8), pat(a) if keep else bytes(8),
                   "data at %#x %s" % (a, what))
            r = e.d.ctl_cmd("status")
            eq(r.returncode, 0, "ctl status " + r.stderr)
            assert ("discards:     off (--no-discard" in r.stdout) == keep, \
                r.stdout
            if keep and not feats & F_WITHDRAW:
                # taken back by access and sent again: no guest error
                fe.touch(addrs[0], 8)
                fe.send_pages(addrs[:1])
                st = e.d.status()
                eq((st["blocks_in_balloon"], st["duplicate_blocks"],
                    st["reballooned_blocks"]), (9, 0, 1), "resent")
                eq(fe.r(addrs[0], 8), b"\x5a" * 8, "resent data")
        finally:
            e.close()


def t_rejects(e):
    fe = e.fe
    hdr = lambda t, r=0: struct.pack("<II", t, r)
    q = lambda *a: b"".join(struct.pack("<Q", x) for x in a)
    b = BLOCKS_B + 0x300000
    cases = [
        ("short", b"\0\0\0\0"),
        ("bad_length", hdr(0)),                   # n = 0
        ("bad_length", hdr(0) + b"\0" * 4),
        ("bad_length", hdr(1) + q(4)),            # stats need 16 per entry
        ("bad_length", hdr(1)),
        ("unknown_type", hdr(2) + q(b)),
        ("unknown_type", hdr(0x01000000) + q(b)),  # big-endian 1
        ("unaligned", hdr(0) + q(b + 0x800)),
        ("out_of_ram", hdr(0) + q(0xA0000)),      # the 640K hole
        ("out_of_ram", hdr(0) + q(64 * MIB)),     # above region B
        ("out_of_ram", hdr(0) + q(0x200000000)),
        ("out_of_ram", hdr(0) + q(b, b + 0x1000, 0xA1000)),  # one bad
        ("overflow", hdr(0) + q(0xFFFFFFFFFFFFF000)),
        ("overflow", hdr(0) + q(0xFFFFFFFFFFFFFFFF)),  # checked first
    ]
    want = {}
    for reason, msg in cases:
        head, length = fe.send_msg(msg)
        eq(length, 0, reason + " used len")
        want[reason] = want.get(reason, 0) + 1
    # device-writable descriptor in a page list
    fe.send_msg(hdr(0) + q(b), extra=[(BUF_GPA + 0x30000, 16, True)])
    want["writable_descriptor"] = 1
    # a 17 MiB message (inside RAM): rejected unread
    fe.send_msg(b"", split=[17 * MIB], base=0x1000000)
    want["oversize"] = 1
    st = e.d.status()
    for reason, n in want.items():
        eq(st["rejects"][reason], n, reason)
    eq(st["messages"]["rejected"], sum(want.values()), "rejected")
    eq((st["blocks_in_bitmap"], st["punch"]["calls"]), (0, 0), "no blocks")
    # and the device still works
    fe.send_pages([b])
    eq(e.d.status()["blocks_in_balloon"], 1, "still works")
    assert e.d.alive() and e.d.status()["connected"]


def t_reserved_nonzero(e):
    e.fe.send_msg(struct.pack("<IIQ", 0, 1, BLOCKS_B + 0x400000))
    st = e.d.status()
    eq((st["guest_errors"]["reserved_nonzero"], st["blocks_in_balloon"]),
       (1, 1), "accepted, counted")


def t_hold_ms():
    e = Env("--hold-ms", "400")
    try:
        fe, a = e.fe, BLOCKS_B + 0x500000
        fe.touch(a, 4096 * 4)
        t0 = time.monotonic()
        fe.send_pages([a, a + 0x1000, a + 0x2000, a + 0x3000], wait=False)
        time.sleep(0.15)
        eq(fe.vq[1].get_used(), [], "not returned yet")
        st = e.d.status()
        # discarded BEFORE the buffer comes back
        eq((st["held_buffers"], st["blocks_in_balloon"],
            st["punch"]["calls"]), (1, 4, 1), "held")
        eq(fe.r(a, 4), bytes(4), "already discarded")
        got = fe.vq[1].wait_used(1, timeout=2)
        dt = time.monotonic() - t0
        eq(len(got), 1, "returned")
        assert 0.35 <= dt < 1.5, "held %.3f s" % dt
        eq(e.d.status()["held_buffers"], 0, "released")
        # stats are not held
        t0 = time.monotonic()
        fe.send_stats([(4, 1)])
        assert time.monotonic() - t0 < 0.3
    finally:
        e.close()


def t_resize_wait():
    e = Env("--stall-after-ms", "400")
    try:
        fe = e.fe
        fe.post_requests(4)
        p = subprocess.Popen([CTL, "--control", e.d.ctl, "resize", "64K",
                              "--wait", "--timeout", "10"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        eq(fe.read_requests(1), [(16, 0, 65536)], "request")
        time.sleep(0.2)
        assert p.poll() is None, "returned before the blocks came"
        fe.send_pages([BLOCKS_B + 0x600000 + 0x1000 * i for i in range(8)])
        time.sleep(0.2)
        assert p.poll() is None, "returned at half the target"
        fe.send_pages([BLOCKS_B + 0x608000 + 0x1000 * i for i in range(8)])
        out, err = p.communicate(timeout=5)
        eq(p.returncode, 0, "wait: " + err)
        assert "balloon holds 64 KiB" in out, out
        # stall: the guest sends less than asked and stops
        t0 = time.monotonic()
        p = subprocess.Popen([CTL, "--control", e.d.ctl, "resize", "1M",
                              "--wait", "--timeout", "10"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        eq(fe.read_requests(1), [(16, 0, MIB)], "request 2")
        fe.send_pages([BLOCKS_B + 0x700000])
        out, err = p.communicate(timeout=5)
        eq(p.returncode, 1, "stall exit")
        assert "stalled" in err and "68 KiB of 1 MiB" in err, err
        assert time.monotonic() - t0 < 3
        # timeout
        r = e.d.ctl_cmd("resize", "2M", "--wait", "--timeout", "0.2")
        eq(r.returncode, 1, "timeout exit")
        assert "timeout" in r.stderr, r.stderr
    finally:
        e.close()


def t_chaos():
    e = Env("--chaos")
    try:
        fe = e.fe
        fe.post_requests(6)
        for kind in ("short", "long", "unknown", "huge", "overram"):
            r = e.d.ctl_cmd("inject", kind, "1")
            eq(r.returncode, 0, kind + r.stderr)
        got = fe.read_requests(5)
        eq(got[0][:2], (8, 0), "short")
        eq(got[1][:2], (4096, 0), "long")
        eq(got[2][:2], (16, 7), "unknown")
        eq(got[3], (16, 0, 2**64 - 1), "huge")
        eq(got[4], (16, 0, RAM * 16), "overram")
        r = e.d.request({"cmd": "inject", "kind": "short", "count": 3})
        eq((r["queued"], r["delivered"]), (3, 1), "count")
        eq(e.d.status()["injected"], {"short": 2, "long": 1, "unknown": 1,
                                      "huge": 1, "overram": 1}, "counts")
        fe.post_requests(2)
        eq(len(fe.read_requests(3)), 3, "rest delivered")
        eq(e.d.status()["injected"]["short"], 4, "short count")
        bad = e.d.request({"cmd": "inject", "kind": "weird"})
        assert not bad["ok"]
    finally:
        e.close()


def t_inject_refused(e):
    r = e.d.ctl_cmd("inject", "short", "1")
    eq(r.returncode, 1, "exit")
    assert "--chaos" in r.stderr, r.stderr


def t_control_errors(e):
    for req, frag in ((b"nonsense\n", "bad JSON"),
                      (b"[1]\n", "JSON object"),
                      (b'{"cmd": 5}\n', "missing"),
                      (b'{"cmd": "fly"}\n', "unknown command"),
                      (b'{"cmd": "resize"}\n', "missing"),
                      (b'{"cmd": "resize", "bytes": -1}\n', "range"),
                      (b'{"cmd": "resize", "bytes": "1M"}\n', "integer")):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(3)
        s.connect(e.d.ctl)
        s.sendall(req)
        ans = json.loads(s.makefile().readline())
        s.close()
        assert not ans["ok"] and frag in ans["error"], (req, ans)
    # several requests on one connection, answered in order; no trailing \n
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect(e.d.ctl)
    s.sendall(b'{"cmd":"status"}\n{"cmd":"ranges"}\n{"cmd":"status"}')
    s.shutdown(socket.SHUT_WR)
    lines = s.makefile().read().splitlines()
    eq(len(lines), 3, "three answers")
    assert "ranges" in json.loads(lines[1])
    assert e.d.alive()


def t_hostile_descriptor():
    # libvhost-user refuses these rings outright: the device drops the
    # connection (QEMU sees the backend go away) but keeps running.
    for bufs in ([(0x50000000, 64, False)],      # not guest RAM
                 [(BUF_GPA, 0, False)]):          # zero-sized buffer
        hostile_ring(bufs)


def hostile_ring(bufs):
    e = Env()
    try:
        fe = e.fe
        fe.vq[1].add(bufs)
        fe.vq[1].notify()
        assert wait_for(lambda: not e.d.status()["connected"]), \
            "connection kept"
        st = e.d.status()
        assert st["last_disconnect"], st
        assert e.d.alive()
        # and a new VM can connect
        fe2 = Frontend(e.d.sock)
        fe2.start()
        eq(fe2.get_config(), struct.pack("<I", 12), "config")
        assert wait_for(lambda: e.d.status()["connections"] == 2)
        fe2.close()
    finally:
        e.close()


def t_disconnect_reconnect():
    e = Env()
    try:
        e.fe.send_pages([BLOCKS_B])
        e.d.request({"cmd": "resize", "bytes": MIB})
        e.fe.close()
        assert wait_for(lambda: not e.d.status()["connected"])
        st = e.d.status()
        eq((st["connections"], st["target_bytes"], st["blocks_in_bitmap"]),
           (1, 0, 0), "reset")
        assert "front end closed the connection" in st["last_disconnect"]
        fe = Frontend(e.d.sock)
        fe.start()
        assert wait_for(lambda: e.d.status()["driver_ready"])
        fe.send_pages([BLOCKS_B + 0x1000])
        st = e.d.status()
        eq((st["connections"], st["blocks_in_balloon"]), (2, 1), "again")
        fe.close()
        e.fe = fe
    finally:
        e.close()


def t_device_restart():
    e = Env()
    try:
        fe = e.fe
        fe.post_requests(2)
        e.d.request({"cmd": "resize", "bytes": 2 * MIB})
        eq(fe.read_requests(1), [(16, 0, 2 * MIB)], "first")
        fe.stop_queue(0)
        fe.stop_queue(1)
        assert wait_for(lambda: not e.d.status()["driver_ready"])
        eq(e.d.status()["device_stops"], 1, "stops")
        # a restarted driver (fresh rings) gets the target again; the
        # rings are zeroed as a driver's would be (with the old used
        # ring left in place, the first request was read back again)
        fe.new_rings()
        fe.post_requests(2)
        eq(fe.read_requests(1), [(16, 0, 2 * MIB)], "again")
    finally:
        e.close()


def t_sigterm_connected():
    e = Env()
    e.fe.send_pages([BLOCKS_B])
    rc = e.d.stop()
    eq(rc, 0, "exit code")
    assert not os.path.exists(e.d.sock) and not os.path.exists(e.d.ctl)
    e.close()


def t_big_message(e):
    # 4096 addresses in one message: 2 runs of 8 MiB, discarded in
    # chunks of at most 4 MiB: 4 madvise calls
    a = [BLOCKS_B + 0x800000 + 0x1000 * i for i in range(2048)] + \
        [BLOCKS_C + 0x1000 * i for i in range(2048)]
    a.reverse()
    e.fe.send_pages(a)
    st = e.d.status()
    eq((st["blocks_in_balloon"], st["punch"]["calls"]), (4096, 4), "big")
    # the longest message the contract allows is taken; one more
    # address is too long, rejected unread
    # (below the rings at RING_GPA, overlapping the first run)
    b = [0x100000 + 0x1000 * i for i in range(8191)]
    eq(e.fe.send_pages(b)[1], 0, "used len")
    n = len(set(a) | set(b))
    st = e.d.status()
    eq((st["blocks_in_balloon"], st["rejects"]["oversize"]), (n, 0),
       "64 KiB message")
    e.fe.send_pages(b + [0x20ff000])
    st = e.d.status()
    eq((st["blocks_in_balloon"], st["rejects"]["oversize"]), (n, 1),
       "64 KiB + 8 bytes")


# ---- the four feature bits (CONTRACT.md) ------------------------------------

def t_features_offer():
    """--features decides what GET_FEATURES offers; a front end acking a
    bit that was not offered loses the connection."""
    for arg, want in (("all", F_ALL), ("none", 0),
                      ("withdraw,full-stats", F_WITHDRAW | F_FULL_STATS),
                      ("free-page-reporting", F_REPORTING),
                      ("pressure-release", F_PRESSURE_RELEASE)):
        e = Env("-f", arg, start=False)
        try:
            e.fe.negotiate(BASE | want)
            eq(e.fe.features_offered, BASE | want, arg)
            wait_for(lambda: e.d.status()["device_features"]["driver_acked"])
            st = e.d.status()
            names = ["withdraw", "free-page-reporting", "full-stats",
                     "pressure-release"]
            eq(st["device_features"]["offered"],
               [n for i, n in enumerate(names) if want & 1 << i], arg)
            eq(st["device_features"]["negotiated"],
               st["device_features"]["offered"], arg)
            eq(st["device_features"]["accounting"],
               "messages" if want & F_WITHDRAW else "residency", arg)
        finally:
            e.close()
    e = Env("-f", "withdraw", start=False)
    try:
        e.fe.negotiate(BASE | F_REPORTING)
        assert wait_for(lambda: not e.d.status()["connected"]), "kept"
        assert "not offered 0x2" in e.d.status()["last_disconnect"]
    finally:
        e.close()


def t_withdraw():
    """WITHDRAW: valid entries in the balloon leave it; invalid or absent
    ones are guest errors that stop nothing; the count comes from messages
    alone (touching a block changes nothing, no status walk)."""
    e = Env(features=BASE | F_WITHDRAW)
    try:
        fe, b = e.fe, BLOCKS_B + 0x900000
        a = [b + 0x1000 * i for i in range(8)]
        walks = e.d.status()["control"]["status_walks"]
        fe.send_pages(a)
        st = e.d.status()
        eq((st["blocks_in_balloon"], st["device_features"]["accounting"]),
           (8, "messages"), "inflated")
        fe.touch(a[0], 1)                # by access: not a withdrawal now
        eq(e.d.status()["blocks_in_balloon"], 8, "touch changes nothing")
        head, used = fe.send_withdraw([a[1], a[2], b + 0x800, 0xA0000,
                                       2**64 - 4096, b + 0x100000, a[1],
                                       a[3]])
        eq(used, 0, "used len")
        st = e.d.status()
        eq((st["blocks_in_balloon"], st["withdraw"]["blocks"],
            st["guest_errors"]["withdraw_invalid"],
            st["guest_errors"]["withdraw_not_in_balloon"],
            st["messages"]["withdraw"], st["messages"]["rejected"]),
           (5, 3, 3, 2, 1, 0), "withdrawn, errors counted")
        rg = e.d.request({"cmd": "ranges"})
        eq([(r["start"], r["blocks"]) for r in rg["ranges"]],
           [(a[0], 1), (a[4], 4)], "ranges")
        # a re-ballooned block is new again, not a duplicate
        fe.send_pages([a[1]])
        st = e.d.status()
        eq((st["blocks_in_balloon"], st["duplicate_blocks"],
            st["reballooned_blocks"]), (6, 0, 0), "again")
        fe.send_pages([a[1]])
        eq(e.d.status()["duplicate_blocks"], 1, "duplicate")
        # a wrong length (B13-DEV-WITHDRAW-04): the complete entry leaves
        # the balloon and the length is a guest error; with no complete
        # entry the message is rejected whole
        fe.send_msg(struct.pack("<II", WITHDRAW, 0))
        fe.send_msg(struct.pack("<IIQI", WITHDRAW, 0, a[4], 0))
        st = e.d.status()
        eq((st["rejects"]["bad_length"],
            st["guest_errors"]["withdraw_bad_length"],
            st["blocks_in_balloon"], st["withdraw"]["blocks"],
            st["messages"]["withdraw"]), (1, 1, 5, 4, 2), "wrong lengths")
        rg = e.d.request({"cmd": "ranges"})
        eq([(r["start"], r["blocks"]) for r in rg["ranges"]],
           [(a[0], 2), (a[5], 3)], "a[4] withdrawn")
        eq(st["control"]["status_walks"], walks, "no residency walk")
        r = e.d.ctl_cmd("status")
        assert "balloon counted from messages" in r.stdout, r.stdout
        assert "withdraw:     2 message(s), 4 blocks" in r.stdout, r.stdout
    finally:
        e.close()
    # not negotiated: an unknown type
    e = Env(features=BASE)
    try:
        e.fe.send_pages([BLOCKS_B])
        e.fe.send_withdraw([BLOCKS_B])
        st = e.d.status()
        eq((st["rejects"]["unknown_type"], st["blocks_in_balloon"]),
           (1, 1), "not negotiated")
    finally:
        e.close()


def t_report():
    """REPORT: ranges discarded before the buffer returns, never counted
    as ballooned; a bad range rejects the message whole."""
    e = Env(features=BASE | F_REPORTING)
    try:
        fe, b = e.fe, BLOCKS_B + 0xA00000
        fe.touch(b, 0x20000)
        fe.touch(BLOCKS_C, 0x2000)
        head, used = fe.send_report([(b, 0x10000), (BLOCKS_C, 0x1000)])
        eq(used, 0, "used len")
        eq(fe.r(b, 16), bytes(16), "discarded")
        eq(fe.r(b + 0xFFF0, 16), bytes(16), "discarded to the end")
        eq(fe.r(b + 0x10000, 4), b"\x5a" * 4, "neighbour kept")
        eq(fe.r(BLOCKS_C, 4), bytes(4), "second range")
        eq(fe.r(BLOCKS_C + 0x1000, 4), b"\x5a" * 4, "its neighbour")
        st = e.d.status()
        eq((st["blocks_in_balloon"], st["blocks_in_bitmap"],
            st["report"]["ranges"], st["report"]["bytes"],
            st["messages"]["report"], st["punch"]["bytes"]),
           (0, 0, 2, 0x11000, 1, 0x11000), "reported, not ballooned")
        # each bad range rejects the whole message: the good one stays
        fe.touch(b + 0x10000, 0x1000)
        good = (b + 0x10000, 0x1000)
        cases = [("empty_range", (b, 0)),
                 ("unaligned", (b + 0x800, 0x1000)),
                 ("unaligned", (b, 0x1800)),
                 ("overflow", (2**64 - 0x1000, 0x2000)),
                 ("out_of_ram", (0x9F000, 0x2000)),        # into the hole
                 ("out_of_ram", (0x3FFF000, 0x2000)),      # past region B
                 ("out_of_ram", (0x4000000, 0x1000))]
        want = {}
        for why, bad in cases:
            fe.send_report([good, bad])
            want[why] = want.get(why, 0) + 1
        st = e.d.status()
        for why, n in want.items():
            eq(st["rejects"][why], n, why)
        eq(fe.r(b + 0x10000, 4), b"\x5a" * 4, "nothing discarded")
        fe.send_msg(struct.pack("<IIQ", REPORT, 0, b))   # 8 + 8: not 8 + 16n
        eq(e.d.status()["rejects"]["bad_length"], 1, "length")
        # without WITHDRAW, reported blocks that were ballooned (and
        # withdrawn by access since) leave the bitmap
        fe.send_pages([b + 0x20000, b + 0x21000, b + 0x30000])
        fe.send_report([(b + 0x20000, 0x4000)])
        st = e.d.status()
        eq((st["blocks_in_bitmap"], st["report"]["ballooned_blocks_freed"]),
           (1, 2), "freed from the bitmap")
    finally:
        e.close()
    # with WITHDRAW too, a ballooned block reported as free is a guest
    # error and stays in the balloon
    e = Env(features=BASE | F_REPORTING | F_WITHDRAW)
    try:
        e.fe.send_pages([BLOCKS_B])
        e.fe.send_report([(BLOCKS_B, 0x2000)])
        st = e.d.status()
        eq((st["blocks_in_balloon"], st["guest_errors"]["report_ballooned"]),
           (1, 1), "stays, counted")
    finally:
        e.close()
    e = Env(features=BASE)
    try:
        e.fe.send_report([(BLOCKS_B, 0x1000)])
        eq(e.d.status()["rejects"]["unknown_type"], 1, "not negotiated")
    finally:
        e.close()


ALL_TAGS = ["swap_in", "swap_out", "majflt", "minflt", "memfree", "memtot",
            "avail", "caches", "htlb_pgalloc", "htlb_pgfail", "oom_kill",
            "alloc_stall", "async_scan", "direct_scan", "async_reclaim",
            "direct_reclaim", "psi_some_us", "psi_full_us"]


def t_full_stats():
    """FULL_STATS: all eighteen tags kept and shown; without it the ones
    from 6 on are unknown tags (dropped, counted)."""
    pairs = [(t, 1000 * t + 1) for t in range(18)]
    e = Env(features=BASE | F_FULL_STATS)
    try:
        e.fe.post_requests(1)
        p = subprocess.Popen([CTL, "-c", e.d.ctl, "stats"],
                             stdout=subprocess.PIPE, text=True)
        eq([(t, v) for _, t, v in e.fe.read_requests(1)], [(1, 0)], "req")
        e.fe.send_stats(pairs)
        out, _ = p.communicate(timeout=5)
        eq(p.returncode, 0, "stats")
        lines = [ln.split()[0] for ln in out.splitlines()[1:]]
        eq(lines, ALL_TAGS, "every tag, in order")
        assert "  oom_kill        10001\n" in out, out
        assert "  psi_full_us     0.017 s\n" in out, out
        assert "  avail           5.86 KiB\n" in out, out
        st = e.d.status()
        eq(st["stats"]["values"],
           {n: 1000 * t + 1 for t, n in enumerate(ALL_TAGS)}, "values")
        eq(st["guest_errors"]["stats_unknown_tag"], 0, "none unknown")
    finally:
        e.close()
    e = Env(features=BASE)
    try:
        e.fe.send_stats(pairs)
        st = e.d.status()
        eq(sorted(st["stats"]["values"]), sorted(ALL_TAGS[:6]), "base six")
        eq(st["guest_errors"]["stats_unknown_tag"], 12, "twelve unknown")
    finally:
        e.close()


def t_stats_interval():
    """stats-interval: REQ_STATS_INTERVAL to a full-stats driver, again
    after it restarts; refused when the driver did not negotiate it."""
    e = Env(features=BASE | F_FULL_STATS)
    try:
        fe = e.fe
        fe.post_requests(4)
        r = e.d.ctl_cmd("stats-interval", "500")
        eq(r.returncode, 0, "ctl " + r.stderr)
        eq(r.stdout, "stats pushed every 500 ms\n", "output")
        eq(fe.read_requests(1), [(16, 2, 500)], "delivered")
        r = e.d.ctl_cmd("--json", "stats-interval", "0")
        eq(json.loads(r.stdout)["interval_ms"], 0, "json")
        eq(fe.read_requests(1), [(16, 2, 0)], "stopped")
        e.d.request({"cmd": "stats-interval", "ms": 250})
        eq(fe.read_requests(1), [(16, 2, 250)], "again")
        st = e.d.status()
        eq((st["device_features"]["stats_interval_ms"],
            st["requests_sent"]["stats_interval"]), (250, 3), "status")
        # pushed stats (no request) are taken like answers
        fe.send_stats([(4, 7)])
        eq(e.d.status()["stats"]["values"], {"memfree": 7}, "pushed")
        # a driver reset: it pushes nothing until told again
        fe.stop_queue(0)
        fe.stop_queue(1)
        fe.new_rings()
        fe.post_requests(2)
        eq(fe.read_requests(1), [(16, 2, 250)], "after a restart")
        for bad in ("-1", "86400001", "soon"):
            r = e.d.ctl_cmd("stats-interval", bad)
            eq(r.returncode, 2, bad)
    finally:
        e.close()
    e = Env(features=BASE)
    try:
        r = e.d.ctl_cmd("stats-interval", "500")
        eq(r.returncode, 1, "refused")
        assert "did not negotiate full-stats" in r.stderr, r.stderr
    finally:
        e.close()
    # asked before any driver: sent when a full-stats one starts
    e = Env(start=False)
    try:
        eq(e.d.request({"cmd": "stats-interval", "ms": 1000})["queued"],
           False, "queued later")
        e.fe.start(BASE | F_FULL_STATS)
        e.fe.post_requests(2)
        eq(e.fe.read_requests(1), [(16, 2, 1000)], "at start")
    finally:
        e.close()


def t_driver_reset_empties():
    """Both rings restarting from index 0 is a driver reset: the balloon
    is empty (contract).  A pause (rings going on) keeps it."""
    e = Env(features=BASE | F_WITHDRAW)
    try:
        fe = e.fe
        fe.send_pages([BLOCKS_B, BLOCKS_B + 0x1000])

        def restart(pause):
            last = [fe.stop_queue(q)[1] for q in (0, 1)]
            assert wait_for(lambda: not e.d.status()["driver_ready"])
            if pause:                    # go on where the rings stopped
                for q in (0, 1):
                    fe.start_queue(q, last[q])
                fe.enable()
            else:
                fe.new_rings()

        restart(True)
        assert wait_for(lambda: e.d.status()["driver_ready"])
        st = e.d.status()
        eq((st["blocks_in_balloon"], st["driver_resets"]), (2, 0), "pause")
        restart(False)
        assert wait_for(lambda: e.d.status()["driver_ready"])
        st = e.d.status()
        eq((st["blocks_in_balloon"], st["driver_resets"]), (0, 1), "reset")
        fe.send_pages([BLOCKS_B])
        eq(e.d.status()["blocks_in_balloon"], 1, "new balloon")
    finally:
        e.close()


SHARED = [t_features_config, t_memory_table, t_page_list,
          t_withdraw_by_access, t_duplicates, t_rejects, t_reserved_nonzero,
          t_inject_refused, t_control_errors, t_big_message]
OWN = [t_page_bits_40, t_ring_features, t_resize_before_buffers,
       t_request_order_and_stats, t_stats_ctl_and_timeout,
       t_small_input_buffer, t_hold_ms, t_resize_wait, t_chaos,
       t_hostile_descriptor, t_disconnect_reconnect, t_device_restart,
       t_sigterm_connected, t_features_offer, t_withdraw, t_report,
       t_full_stats, t_stats_interval, t_driver_reset_empties,
       t_no_discard]


class Skip(Exception):
    """A test that cannot run here (raise it with the reason)."""


def diag(text):
    """Lines for people, as TAP comments."""
    for line in str(text).splitlines():
        print("# " + line, flush=True)


def run_suite(suite, shared, own, argv):
    """Run the tests (shared ones get a fresh Env each), print TAP with
    ids SUITE/NAME; B13_TAP_SUITE overrides SUITE.  Exit status 1 if any
    failed."""
    suite = os.environ.get("B13_TAP_SUITE", suite)
    only = set(argv)
    failed, n = 0, 0
    print("TAP version 13", flush=True)
    for t in shared + own:
        name = t.__name__[2:]
        if only and name not in only:
            continue
        n += 1
        e, skip = None, None
        del PROBLEMS[:]
        t0 = time.monotonic()
        try:
            try:
                if t in shared:
                    e = Env()
                    t(e)
                    assert e.d.alive(), "daemon died"
                else:
                    t()
            except Skip as s:
                skip = str(s)
            finally:
                if e:
                    e.close()
            assert not PROBLEMS, "; ".join(PROBLEMS)
            if skip:
                print("ok %d - %s/%s # SKIP %s" % (n, suite, name, skip),
                      flush=True)
            else:
                print("ok %d - %s/%s" % (n, suite, name), flush=True)
        except Exception as ex:  # report and go on
            failed += 1
            why = str(ex).replace("\n", " ")[:300]
            print("not ok %d - %s/%s" % (n, suite, name), flush=True)
            diag("FAIL %s: %s" % (name, why))
            diag(traceback.format_exc(limit=4))
            if e:
                diag("daemon log tail:\n" +
                     "\n".join(e.d.logtext().splitlines()[-15:]))
        diag("%s: %.1f s" % (name, time.monotonic() - t0))
    print("1..%d" % n, flush=True)
    return 1 if failed else 0


def main():
    return run_suite("host/vhost-user", SHARED, OWN, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
