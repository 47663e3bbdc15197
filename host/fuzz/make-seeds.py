#!/usr/bin/python3
"""Write the hand-made seed inputs of balloon13d's fuzz harnesses.

Each harness reads its input in its own layout (see the harness source);
these seeds give libFuzzer a valid start in each: a q35-like memory table
with page lists that are accepted, repeated, misaligned or out of RAM;
stats with every tag, repeats and unknown tags; every control command and
the malformed lines issue 9 found; a whole vhost-user conversation with a
guest that sends a page list, and the front-end mistakes issue 9 found.  Usage: make-seeds.py [DIR] (default:
the corpus/ next to this script).  The corpus also holds inputs the
fuzzers found (make fuzz-merge); this script only (re)writes seed-*,
and the vhost regressions (fuzz_vhost's format changed with the harness;
they are written here in the new one).
"""

import os
import struct
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else \
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

u8 = lambda v: struct.pack("<B", v)
u16 = lambda v: struct.pack("<H", v)
u64 = lambda v: struct.pack("<Q", v & (2**64 - 1))

# fuzz_pagelist: index into its page_bits[] table
PB12, PB21, PB5, PB0, PB30 = 0, 4, 7, 8, 9


def region_gap(gap_pages, size, host_off=None, unmapped=False):
    how = (4 if unmapped else 0) | (8 if host_off is not None else 0)
    b = u8(how) + u16(gap_pages) + u64(size)
    if host_off is not None and not unmapped:
        b += u16(host_off)
    return b


def region_at(gpa, size, host_off=None):
    how = 1 | (8 if host_off is not None else 0)
    b = u8(how) + u64(gpa) + u64(size)
    if host_off is not None:
        b += u16(host_off)
    return b


def in_region(k, off):        # a block `off` blocks into region k
    return u8(1 | k << 2) + struct.pack("<I", off)


def near_region(k, off, by):  # the same, `1 + by` bytes off
    return u8(2 | k << 2) + struct.pack("<I", off) + u8(by)


def raw(addr):
    return u8(0) + u64(addr)


def again(i):                 # the i-th address of this message once more
    return u8(3) + u16(i)


def message(addrs, cut1=0xffff, cut2=0xffff, reserved=False):
    return u16(len(addrs)) + u8(0xff if reserved else 0) + \
        b"".join(addrs) + u16(cut1) + u16(cut2)


def withdraw(addrs, cut1=0xffff, cut2=0xffff):
    return u16(0x1000 + len(addrs)) + b"".join(addrs) + u16(cut1) + u16(cut2)


def rng(addr, blocks=None, length=None):
    """A REPORT range: addr (an address spec) and blocks, or a raw length."""
    if length is not None:
        return u8(1) + addr + u64(length)
    return u8(blocks << 1) + addr


def report(ranges, cut1=0xffff, cut2=0xffff):
    return u16(0x2000 + len(ranges)) + b"".join(ranges) + u16(cut1) + \
        u16(cut2)


def q35(pb, withdraw_mode=False):
    return u8(pb + (16 if withdraw_mode else 0)) + u8(2) + \
        region_gap(0, 0xa0000) + region_gap(0x60, 0x7f00000) + \
        region_at(0x100000000, 0x8000000)


PAGELIST = {
    "q35-accepted": q35(PB12) + message(
        [in_region(1, 3), in_region(1, 4), in_region(2, 0), in_region(1, 5),
         again(0), in_region(0, 159)], cut1=11, cut2=20) + u8(3),
    "q35-rejects": q35(PB12) +
    message([in_region(1, 1), near_region(1, 2, 0x10)]) +
    message([in_region(0, 160)]) +                       # the 640K hole
    message([raw(0xfffffffffffff000)]) +
    message([raw(2**64 - 1)]) +
    message([]) +
    message([in_region(2, 7)], reserved=True) + u8(1),
    "blocks-2m-unaligned-host": u8(PB21) + u8(1) +
    region_gap(0, 0x2000000, host_off=0x800) +
    region_gap(0x100, 0x400000) +
    message([in_region(0, 1), in_region(0, 2), in_region(1, 0),
             in_region(1, 1), again(1)]) + u8(9),
    "blocks-32-bytes": u8(PB5) + u8(0) + region_gap(1, 0x10000) +
    message([in_region(0, i) for i in range(0, 256, 3)] +
            [in_region(0, i) for i in range(1, 130)]) + u8(2),
    "blocks-1-byte": u8(PB0) + u8(0) + region_at(0x1234, 0x3000) +
    message([in_region(0, i) for i in range(4096, 8192 + 64)]) + u8(200),
    "blocks-1g": u8(PB30) + u8(1) + region_at(0, 0xc0000000) +
    region_at(0x100000000, 0x100000000) +
    message([in_region(0, 1), in_region(1, 0), in_region(1, 3)]) + u8(1),
    "table-overlap": u8(PB12) + u8(1) + region_at(0x100000, 0x200000) +
    region_at(0x200000, 0x1000) + message([raw(0x100000)]),
    "table-wraps": u8(PB12) + u8(0) + region_at(2**64 - 0x1000, 0x2000) +
    message([raw(2**64 - 0x1000)]),
    "unmapped-region": u8(PB12) + u8(1) + region_gap(0, 0x100000) +
    region_gap(0x200, 0x100000, unmapped=True) +
    message([in_region(1, i) for i in range(8)] +
            [in_region(0, i) for i in range(8)]),
    # WITHDRAW (negotiated): valid, repeated, unaligned, outside RAM
    "withdraw": q35(PB12, True) + message(
        [in_region(1, i) for i in range(16)]) + withdraw(
        [in_region(1, 3), in_region(1, 4), again(0), near_region(1, 5, 7),
         in_region(0, 160), raw(2**64 - 4096), in_region(2, 1)],
        cut1=9, cut2=30) + message([in_region(1, 3)]) + u8(2),
    "withdraw-not-negotiated": q35(PB12) + message([in_region(1, 1)]) +
    withdraw([in_region(1, 1)]),
    # REPORT: across two adjacent regions, ballooned blocks inside, and
    # each kind of bad range
    "report": u8(PB12) + u8(1) + region_at(0x0, 0x400000) +
    region_at(0x400000, 0x400000) + message(
        [in_region(0, i) for i in range(0x3f0, 0x400)] +
        [in_region(1, i) for i in range(4)]) +
    report([rng(in_region(0, 0x3f8), length=0x10000),
            rng(in_region(1, 0x10), blocks=100)], cut1=7) +
    report([rng(in_region(0, 1), blocks=0)]) +
    report([rng(in_region(0, 1), length=0x1800)]) +
    report([rng(raw(2**64 - 4096), blocks=2)]) +
    report([rng(in_region(1, 0x3ff), blocks=2)]) + u8(1),
    "report-withdraw-mode": q35(PB21, True) + message(
        [in_region(1, 2), in_region(1, 3)]) +
    report([rng(in_region(1, 0), blocks=8)]) + u8(1),
}


def msg_input(pb, present, flags, body):
    return u8(pb) + u8(present) + u8(flags) + body


def stats(pairs, reserved=0):
    return struct.pack("<II", 1, reserved) + \
        b"".join(struct.pack("<QQ", t, v) for t, v in pairs)


def pages(addrs, reserved=0):
    return struct.pack("<II", 0, reserved) + \
        b"".join(struct.pack("<Q", a) for a in addrs)


MESSAGE = {
    "stats-all-tags": msg_input(0, 0, 0, stats(
        [(t, 1000 * t + 7) for t in range(6)])),
    "stats-repeats-unknown": msg_input(0, 0x3f, 2, stats(
        [(4, 1), (9, 2), (4, 3), (2**64 - 1, 4), (5, 5), (4, 6)])),
    "stats-64": msg_input(0, 0, 0, stats([(3, i) for i in range(64)])),
    "stats-65": msg_input(0, 0, 0, stats([(3, i) for i in range(65)])),
    "stats-half-entry": msg_input(0, 0, 0, stats([(1, 1)])[:-8]),
    "pages-q35": msg_input(0, 0, 3, pages(
        [0x104000, 0x105000, 0x100000000, 0x104000, 0x0])),
    "pages-2m": msg_input(1, 0, 1, pages([0x200000, 0x7e00000])),
    "pages-bad": msg_input(0, 0, 0, pages([0x104000, 0xa1000], 1)),
    "unknown-type": msg_input(0, 0, 0, struct.pack("<IIQ", 2, 0, 0x1000)),
    "short": msg_input(0, 0, 0, b"\0\0\0"),
    "writable": msg_input(0, 0, 0x80, pages([0x104000])),
    "oversize": msg_input(0, 0, 0x40, pages([0x104000])),
    # flags bits 3-5: WITHDRAW, REPORTING, FULL_STATS negotiated
    "stats-full": msg_input(0, 0, 0x20, stats(
        [(t, 1000 * t + 7) for t in range(19)])),
    "stats-full-not-negotiated": msg_input(0, 0, 0, stats(
        [(t, 1000 * t + 7) for t in range(18)])),
    "withdraw": msg_input(0, 0, 0x08 | 2, struct.pack("<II", 2, 0) +
                          struct.pack("<QQQ", 0x104000, 0xa1000, 0x103800)),
    "withdraw-not-negotiated": msg_input(0, 0, 0, struct.pack(
        "<IIQ", 2, 0, 0x104000)),
    "report": msg_input(0, 0, 0x10 | 1, struct.pack("<II", 3, 0) +
                        struct.pack("<QQQQ", 0x200000, 0x400000, 0x0,
                                    0x1000)),
    "report-bad-length": msg_input(0, 0, 0x10, struct.pack(
        "<IIQ", 3, 0, 0x200000)),
}

CONTROL = {
    "commands": b'{"cmd":"status"}\n{"cmd":"progress"}\n'
    b'{"cmd":"resize","bytes":1073741824}\n{"cmd":"stats","timeout_ms":50}\n'
    b'{"cmd":"ranges","from":4096}\n{"cmd":"inject","kind":"overram",'
    b'"count":1024}\n{"cmd": "inject", "kind": "short"}\r\n',
    "errors": b'nonsense\n[1]\n{"cmd":5}\n{"cmd":"fly"}\n{"cmd":"resize"}\n'
    b'{"cmd":"resize","bytes":-1}\n{"cmd":"resize","bytes":"1M"}\n'
    b'{"cmd":"resize","bytes":1.5}\n{"cmd":"resize","bytes":1,"x":2}\n'
    b'{"cmd":"stats","timeout_ms":0}\n{"cmd":"inject","kind":"weird"}\n'
    b'{"cmd":"resize","bytes":99999999999999999999}\n',
    "cmd-array": b'{"cmd":[1]}\n{"cmd":{"a":null}}\n{"cmd":null}\n',
    "stats-interval": b'{"cmd":"stats-interval","ms":0}\n'
    b'{"cmd":"stats-interval","ms":86400000}\n'
    b'{"cmd":"stats-interval","ms":86400001}\n{"cmd":"stats-interval"}\n'
    b'{"cmd":"stats-interval","ms":-5}\n'
    b'{"cmd":"stats-interval","ms":100,"bytes":1}\n',
    "nesting": b"[" * 9 + b"]" * 9 + b"\n" + b'{"cmd":"status","a":' +
    b"[" * 7 + b"]" * 7 + b"}\n" + b'{"cmd":"x\\"[[[[[[[[[[[["}\n',
    "nesting-deep": b"[" * 4000 + b"\n",
    "strings": b'{"cmd":"\\u0000"}\n{"cmd":"st\\u0061tus"}\n'
    b'{"cmd":"status"}\x00\n{"cmd":"\xff"}\n',
}


# fuzz_vhost: a conversation.  Requests as in libvhost-user.h.
GET_FEATURES, SET_FEATURES, SET_OWNER, SET_MEM_TABLE = 1, 2, 3, 5
SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE = 8, 9, 10, 11
SET_VRING_KICK, SET_VRING_CALL = 12, 13
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, SET_VRING_ENABLE = 15, 16, 18
GET_CONFIG, SET_CONFIG, ADD_MEM_REG = 24, 25, 37
MEMFD, EVENTFD, PIPE, SAME = 0, 1, 2, 3
QVA = 0x7f0000000000


def vmsg(req, payload=b"", fds=(), cut=0):
    """A message: request, flags, size, payload, fds, and where to cut it
    in two writes (0: whole)."""
    b = u8(req) + u8(0) + u16(len(payload)) + payload + u8(len(fds))
    for kind, pages in fds:
        b += u8(kind) + (u16(pages) if kind == MEMFD else b"")
    return b + (u8(0x5a) + u8(cut - 1) if cut else u8(0))


def vwrite(off, data, memfd=0):
    out = b""
    for i in range(0, len(data), 255):
        part = data[i:i + 255]
        out += u8(0xf0) + u8(len(part)) + part + u8(memfd) + \
            struct.pack("<I", off + i)
    return out


KICK = u8(0xe8)
RESIZE = lambda value: u8(0xe0) + struct.pack("<I", value)
STATS_INTERVAL = lambda ms: u8(0xe2) + struct.pack("<I", ms)
state = lambda q, n: struct.pack("<II", q, n)


def ring(q, num, desc, avail, used, qva=QVA):
    return vmsg(SET_VRING_NUM, state(q, num)) + \
        vmsg(SET_VRING_BASE, state(q, 0)) + \
        vmsg(SET_VRING_ADDR, struct.pack("<IIQQQQ", q, 0, qva + desc,
                                         qva + used, qva + avail, 0)) + \
        vmsg(SET_VRING_KICK, u64(q), [(EVENTFD, 0)]) + \
        vmsg(SET_VRING_CALL, u64(q), [(EVENTFD, 0)])


def table(regions, memfds):
    """SET_MEM_TABLE: regions (gpa, size, qva, offset), one fd each."""
    body = struct.pack("<II", len(regions), 0)
    for r in regions:
        body += struct.pack("<QQQQ", *r)
    return vmsg(SET_MEM_TABLE, body, memfds)


def hello(features):
    return vmsg(GET_FEATURES) + vmsg(GET_PROTOCOL_FEATURES) + \
        vmsg(SET_PROTOCOL_FEATURES, u64(1 << 9 | 1 << 3 | 1 << 15)) + \
        vmsg(SET_OWNER) + vmsg(SET_FEATURES, u64(features))


BASE = 1 << 32 | 1 << 30
ENABLE = vmsg(SET_VRING_ENABLE, state(0, 1)) + \
    vmsg(SET_VRING_ENABLE, state(1, 1))
SETUP = hello(BASE) + \
    table([(0, 1 << 20, QVA, 0)], [(MEMFD, 256)]) + \
    ring(0, 64, 0x0, 0x400, 0x1000) + ring(1, 64, 0x2000, 0x2400, 0x3000) + \
    ENABLE
GUEST = vwrite(0x10000, struct.pack("<IIQQ", 0, 0, 0x20000, 0x21000)) + \
    vwrite(0x2000, struct.pack("<QIHH", 0x10000, 24, 0, 0)) + \
    vwrite(0x2400, struct.pack("<HHH", 0, 1, 0)) + \
    vwrite(0x0, struct.pack("<QIHH", 0x18000, 16, 2, 0)) + \
    vwrite(0x400, struct.pack("<HHH", 0, 1, 0)) + KICK

# Three regions, three memfds, laid out like q35's low RAM, a hole, and
# RAM above 4 GiB; the rings and messages in the second region.
Q = 0x7e0000000000
R1 = QVA + 0x200000            # region 1's qva (gpa 0x100000, memfd 1)
MULTI = hello(BASE | 0xf) + table(
    [(0x0, 0xa0000, QVA, 0), (0x100000, 0x100000, R1, 0),
     (0x100000000, 0x100000, Q, 0)], [(MEMFD, 256), (MEMFD, 256),
                                      (MEMFD, 256)])
MULTI_RINGS = ring(0, 16, 0x0, 0x400, 0x1000, qva=R1) + \
    ring(1, 16, 0x2000, 0x2400, 0x3000, qva=R1) + ENABLE


def outmsg(off, body, slot):
    """An outputq message at offset off of region 1, posted in slot."""
    return vwrite(off, body, 1) + \
        vwrite(0x2000 + 16 * slot, struct.pack(
            "<QIHH", 0x100000 + off, len(body), 0, 0), 1) + \
        vwrite(0x2404 + 2 * slot, struct.pack("<H", slot), 1) + \
        vwrite(0x2400, struct.pack("<HH", 0, slot + 1), 1)


VHOST = {
    "conversation": SETUP + GUEST +
    vmsg(GET_CONFIG, struct.pack("<III", 0, 4, 0) + bytes(4)) +
    vmsg(SET_CONFIG, struct.pack("<III", 0, 4, 0) + bytes(4)) +
    vmsg(GET_VRING_BASE, state(1, 0)),
    "stats-and-chain": SETUP +
    vwrite(0x10000, struct.pack("<IIQQ", 1, 0, 4, 1000)) +
    vwrite(0x2000, struct.pack("<QIHH", 0x10000, 12, 1, 1) +
           struct.pack("<QIHH", 0x1000c, 12, 0, 0)) +
    vwrite(0x2400, struct.pack("<HHH", 0, 1, 0)) + KICK,
    "bad-queue-index": SETUP + vmsg(GET_VRING_BASE, state(7, 0)),
    "bad-ring-size": vmsg(SET_OWNER) + vmsg(SET_VRING_NUM, state(1, 100)),
    "ring-outside": SETUP + vmsg(SET_VRING_ADDR, struct.pack(
        "<IIQQQQ", 1, 0, QVA + (1 << 20) - 16, QVA, QVA + 0x400, 0)),
    "add-mem-reg": SETUP + vmsg(ADD_MEM_REG, u64(0) + struct.pack(
        "<QQQQ", 1 << 20, 1 << 20, QVA + (1 << 20), 0), [(MEMFD, 256)]) +
    vmsg(38, u64(0) + struct.pack("<QQQQ", 1 << 20, 1 << 20,
                                  QVA + (1 << 20), 0)) + GUEST,
    "table-too-short-file": table([(0, 1 << 20, QVA, 0)], [(MEMFD, 16)]),
    "kick-pipe": SETUP + vmsg(SET_VRING_KICK, u64(0), [(PIPE, 0)]),
    # several regions: page lists across them, requests, a withdrawal, a
    # report, full stats, a stats interval, the table again
    "multi-region": MULTI + MULTI_RINGS +
    vwrite(0x0, struct.pack("<QIHH", 0x108000, 16, 2, 0), 1) +
    vwrite(0x400, struct.pack("<HHH", 0, 1, 0), 1) +
    RESIZE(1 << 20) + STATS_INTERVAL(100) +
    outmsg(0x10000, struct.pack("<II", 0, 0) + struct.pack(
        "<QQQQ", 0x1000, 0x120000, 0x100000000, 0x100001000), 0) + KICK +
    outmsg(0x11000, struct.pack("<II", 2, 0) + struct.pack(
        "<QQQ", 0x1000, 0x100000000, 0xa0000), 1) + KICK +
    outmsg(0x12000, struct.pack("<II", 3, 0) + struct.pack(
        "<QQQQ", 0x130000, 0x10000, 0x100000000, 0x100000), 2) + KICK +
    outmsg(0x13000, struct.pack("<II", 1, 0) + b"".join(
        struct.pack("<QQ", t, t) for t in range(18)), 3) + KICK +
    MULTI[len(hello(BASE | 0xf)):] + KICK,
    # a message cut in two writes, and one whose size runs past the rest
    "partial-messages": SETUP +
    vmsg(GET_CONFIG, struct.pack("<III", 0, 4, 0) + bytes(4), cut=14) +
    vmsg(GET_FEATURES, cut=5) + u8(0xb8) + u8(0) + u16(0) +
    struct.pack("<I", 0x1000) + u8(0) + u8(0),
    # issue 16: regions reaching 2^64 (refused now), aliased regions
    # region 0's qva + size is 2^64: libvhost-user maps the rings through
    # region 1 (smaller, same qvas), and the used ring runs 262 bytes past
    # its mapping; the 41st used element lands 68 bytes past it
    "region-qva-top": hello(BASE) + table(
        [(0, 0x80000, 2**64 - 0x80000, 0),
         (0x100000, 0x60000, 2**64 - 0x90000, 0x80000)],
        [(MEMFD, 256), (SAME, 0)]) +
    vwrite(0x10000, struct.pack("<IIQ", 0, 0, 0x1000)) +
    vwrite(0xd0000, struct.pack("<QIHH", 0x10000, 16, 0, 0)) +
    vwrite(0xd4000 + 4 + 2 * 40, struct.pack("<H", 0)) +
    vwrite(0xd4000, struct.pack("<HH", 0, 41)) +
    vwrite(0xdff00, struct.pack("<HH", 0, 40)) +
    vmsg(SET_VRING_NUM, state(1, 64)) + vmsg(SET_VRING_BASE, state(1, 40)) +
    vmsg(SET_VRING_ADDR, struct.pack("<IIQQQQ", 1, 0, 2**64 - 0x40000,
                                     2**64 - 0x30100, 2**64 - 0x3c000, 0)) +
    vmsg(SET_VRING_CALL, u64(1), [(EVENTFD, 0)]) +
    vmsg(SET_VRING_KICK, u64(1), [(EVENTFD, 0)]) +
    vmsg(SET_VRING_ENABLE, state(1, 1)) + KICK,
    "region-gpa-top": hello(BASE) + table(
        [(0, 0x80000, QVA, 0), (2**64 - 0x81000, 0x80000, Q, 0x80000)],
        [(MEMFD, 256), (SAME, 0)]) +
    ring(0, 64, 0x0, 0x400, 0x1000) + ring(1, 64, 0x2000, 0x2400, 0x3000) +
    ENABLE + vwrite(0x2000, struct.pack("<QIHH", 2**64 - 0x1010, 0x2010,
                                        0, 0)) +
    vwrite(0x2400, struct.pack("<HHH", 0, 1, 0)) + KICK,
    "regions-aliased": hello(BASE) + table(
        [(0, 0x80000, QVA, 0), (0x100000, 0x80000, Q, 0x40000)],
        [(MEMFD, 256), (SAME, 0)]),
    "regions-one-file": hello(BASE) + table(
        [(0, 0x80000, QVA, 0), (0x100000, 0x80000, Q, 0x80000)],
        [(MEMFD, 256), (SAME, 0)]) +
    ring(0, 64, 0x0, 0x400, 0x1000) + ring(1, 64, 0x2000, 0x2400, 0x3000) +
    ENABLE + GUEST,
}


# Inputs that once broke something, in this harness's format (the names
# say what): replayed by make check from regressions/vhost/.
VHOST_REGRESSIONS = {
    # a region whose front-end address is 8 bytes off a page: rings
    # aligned in the front end's addresses are not in ours (UBSan:
    # misaligned ring reads); refused at SET_VRING_ADDR
    "ring-misaligned-in-our-mapping": hello(BASE) +
    table([(0, 0x80000, QVA + 8, 0)], [(MEMFD, 256)]) +
    ring(0, 64, 0x8, 0x408, 0x1008) + ENABLE + KICK,
    # INDIRECT_DESC negotiated, an indirect table at an odd address
    "indirect-table-misaligned": hello(BASE | 1 << 28) +
    table([(0, 0x80000, QVA, 0)], [(MEMFD, 256)]) +
    ring(0, 64, 0x0, 0x400, 0x1000) + ring(1, 64, 0x2000, 0x2400, 0x3000) +
    ENABLE + vwrite(0x10000, struct.pack("<IIQ", 0, 0, 0x5000)) +
    vwrite(0x20004, struct.pack("<QIHH", 0x10000, 16, 0, 0)) +
    vwrite(0x2000, struct.pack("<QIHH", 0x20004, 16, 4, 0)) +
    vwrite(0x2404, struct.pack("<H", 0)) +
    vwrite(0x2400, struct.pack("<HH", 0, 1)) + KICK,
}


def main():
    for name, seeds in (("pagelist", PAGELIST), ("message", MESSAGE),
                        ("control", CONTROL), ("vhost", VHOST)):
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        for seed, data in seeds.items():
            with open(os.path.join(d, "seed-" + seed), "wb") as f:
                f.write(data)
    d = os.path.join(os.path.dirname(OUT), "regressions", "vhost")
    os.makedirs(d, exist_ok=True)
    for name, data in VHOST_REGRESSIONS.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
