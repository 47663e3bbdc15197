#!/usr/bin/python3
"""The device side of a fragmented balloon (issue 16's bench row): how long
each device makes its host wait while it holds 1 GiB in alternating 4 KiB
blocks, against the issue's goals.

- The native device (QEMU's virtio-balloon13-pci): its qtest bench
  (bench/fragmented in tests/qtest/virtio-balloon13-test.c, run with
  -m slow) in a 2.5 GiB memfd guest, the balloon inflated contiguously and
  fragmented, without and with WITHDRAW: the longest a page list, a
  query-balloon or a timer scan batch holds QEMU's main loop (the BQL;
  goal 5 ms), and the downtime of a migration to a file (goal: at most
  twice the contiguous balloon's).
- balloon13d: host/tests/fragmented.py, the worst wait of a vhost-user
  GET_CONFIG while it works through the same balloon (goal 20 ms).

    devices.py [--reps N] [--out DIR]

Writes DIR/devices.json (every number) and DIR/devices.md (the table),
and prints one line per goal: the value, the goal, their ratio.  Nothing
here asserts a time: the host may be loaded.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BQL_GOAL_MS = 5.0
WAIT_GOAL_MS = 20.0
DOWNTIME_GOAL_RATIO = 2.0

LINE = re.compile(
    r"# bench (?P<layout>contiguous|fragmented)(?P<wd>\+withdraw)?: page "
    r"lists of (?P<per>\d+) blocks: main loop max (?P<kick>[\d.]+) ms, back "
    r"used max (?P<back>[\d.]+) ms, all (?P<all>[\d.]+) s; query-balloon max "
    r"(?P<query>[\d.]+) ms; scan batches (?P<batches>\d+), max "
    r"(?P<batch>[\d.]+) ms; over 5 ms: (?P<kicks_over>\d+) page lists, "
    r"(?P<batches_over>\d+) batches; timed by the device: output dispatch "
    r"max (?P<dev_output>[\d.]+) ms, scan batch max (?P<dev_batch>[\d.]+) "
    r"ms; full scan (?P<full>[\d.]+) ms; size after 1/4 "
    r"withdrawn (?P<size>\d+) MiB; migration downtime (?P<downtime>\d+) ms")


def native_once():
    """One run of the qtest bench: {"contiguous": {...}, ...}."""
    qemu = subprocess.run(["bash", os.path.join(TOP, "scripts/build-qemu.sh")],
                          check=True, stdout=subprocess.PIPE,
                          universal_newlines=True).stdout.strip().splitlines()[-1]
    test = os.path.join(os.path.dirname(os.path.realpath(qemu)), "..", "..",
                        "tests", "virtio-balloon13-test")
    env = dict(os.environ, QTEST_QEMU_BINARY=qemu,
               QTEST_QEMU_STORAGE_DAEMON_BINARY="/bin/false")
    out = subprocess.run([test, "--tap", "-k", "-m", "slow", "-p",
                          "/x86_64/virtio-balloon13/bench/fragmented"],
                         env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, universal_newlines=True)
    runs = {}
    for m in LINE.finditer(out.stdout):
        name = m.group("layout") + (m.group("wd") or "")
        runs[name] = {k: float(v) for k, v in m.groupdict().items()
                      if k not in ("layout", "wd")}
    if out.returncode or len(runs) != 4:
        sys.exit("devices.py: the qtest bench failed (status %d, %d of 4 "
                 "results):\n%s" % (out.returncode, len(runs), out.stdout[-3000:]))
    return runs


def balloon13d_once():
    subprocess.run(["make", "-s", "-C", os.path.join(TOP, "host")],
                   check=True, stdout=subprocess.DEVNULL)
    path = os.path.join(TOP, "host", "build", "bench-fragmented.json")
    subprocess.run([sys.executable, os.path.join(TOP, "host", "tests",
                                                 "fragmented.py"),
                    "--json", path], check=True, stdout=subprocess.DEVNULL)
    with open(path) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(TOP, "out", "bench-devices"))
    ap.add_argument("--from", dest="from_json", metavar="JSON",
                    help="no run: report the runs of an earlier devices.json")
    args = ap.parse_args()
    if args.reps < 1:
        sys.exit("devices.py: --reps must be at least 1")
    os.makedirs(args.out, exist_ok=True)

    if args.from_json:
        with open(args.from_json) as f:
            res = json.load(f)
    else:
        native, vu = [], []
        for _ in range(args.reps):
            native.append(native_once())
            vu.append(balloon13d_once())
        git = subprocess.run(["git", "-C", TOP, "describe", "--always",
                              "--dirty"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL,
                             universal_newlines=True).stdout.strip()
        res = {"date": time.strftime("%Y-%m-%d"), "reps": args.reps,
               "load": os.getloadavg()[0], "native": native,
               "balloon13d": vu, "git": git}
    native, vu, git = res["native"], res["balloon13d"], res["git"]

    def worst(key, names=("contiguous", "fragmented")):
        return max(r[n][key] for r in native for n in names)

    bql = {k: worst(k) for k in ("dev_output", "query", "dev_batch")}
    bql_max = max(bql.values())
    # Whole milliseconds: the mean of the runs, not the median.
    down = {n: statistics.mean(r[n]["downtime"] for r in native)
            for n in native[0]}
    runs = {n: ", ".join("%d" % r[n]["downtime"] for r in native)
            for n in native[0]}
    ratio = down["fragmented"] / max(down["contiguous"], 1.0)
    ratio_wd = (down["fragmented+withdraw"] /
                max(down["contiguous+withdraw"], 1.0))
    wait = {m: max(r[m]["worst_get_config_ms"] for r in vu) for m in vu[0]}
    res["summary"] = {"bql_max_ms": bql_max, "bql": bql, "downtime_ms": down,
                      "downtime_ratio": ratio,
                      "downtime_ratio_withdraw": ratio_wd,
                      "vhost_user_wait_ms": wait}
    with open(os.path.join(args.out, "devices.json"), "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")

    md = ["# Device side of a fragmented balloon (%s, git %s, %d runs, "
          "load %.2f)" % (res["date"], git, args.reps, res["load"]), "",
          "1 GiB in alternating 4 KiB blocks (fragmented) or contiguous "
          "ones, a quarter then withdrawn by writes; `bench/devices.py`.  "
          "QEMU reports downtime in whole milliseconds.",
          "Wall times are seen by the qtest over its socket, so they "
          "include the host's scheduling (and a clock step may run more "
          "than one batch); the device times its own work in the main "
          "loop (x-output-max-us, x-scan-batch-max-us).",
          "", "| native device | contiguous | fragmented | goal | "
          "worst / goal | over the goal |", "|---|---|---|---|---|---|"]
    count = {"kick": ("kicks_over", 262144 // 8192), "query": (None, None),
             "batch": ("batches_over", None), "dev_output": (None, None),
             "dev_batch": (None, None)}
    for key, what in (
            ("dev_output", "outputq dispatch, timed by the device"),
            ("kick", "page list of 8192 blocks, wall time of its kick"),
            ("query", "query-balloon, wall time"),
            ("dev_batch", "timer scan batch, timed by the device"),
            ("batch", "virtual clock step running a scan batch, wall time")):
        c, fr = worst(key, ("contiguous",)), worst(key, ("fragmented",))
        over_key, per_run = count[key]
        names = ("contiguous", "fragmented")
        over = "-"
        if over_key:
            over = "%d of %d" % (
                sum(r[n][over_key] for r in native for n in names),
                sum(r[n]["batches"] if per_run is None else per_run
                    for r in native for n in names))
        md.append("| %s (max, ms) | %.2f | %.2f | %.0f ms | %.2f | %s |"
                  % (what, c, fr, BQL_GOAL_MS, max(c, fr) / BQL_GOAL_MS,
                     over))
    for wd, r in (("", ratio), ("+withdraw", ratio_wd)):
        md.append("| migration downtime %s WITHDRAW (mean, ms; runs) | "
                  "%.1f (%s) | %.1f (%s) | 2x contiguous | %.2f | |"
                  % ("with" if wd else "without", down["contiguous" + wd],
                     runs["contiguous" + wd], down["fragmented" + wd],
                     runs["fragmented" + wd], r / DOWNTIME_GOAL_RATIO))
    md += ["", "| balloon13d, fragmented | worst GET_CONFIG wait (ms) | "
           "goal | worst / goal |", "|---|---|---|---|"]
    for m, w in wait.items():
        md.append("| %s | %.1f | %.0f ms | %.2f |"
                  % (m, w, WAIT_GOAL_MS, w / WAIT_GOAL_MS))
    with open(os.path.join(args.out, "devices.md"), "w") as f:
        f.write("\n".join(md) + "\n")

    print("devices: native BQL hold max %.2f ms (goal %.0f ms, ratio %.2f); "
          "downtime fragmented/contiguous %.2f (goal %.0f, WITHDRAW %.2f); "
          "balloon13d vhost-user wait max %.1f ms (goal %.0f ms, ratio %.2f)"
          % (bql_max, BQL_GOAL_MS, bql_max / BQL_GOAL_MS, ratio,
             DOWNTIME_GOAL_RATIO, ratio_wd, max(wait.values()), WAIT_GOAL_MS,
             max(wait.values()) / WAIT_GOAL_MS))


if __name__ == "__main__":
    main()
