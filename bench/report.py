#!/usr/bin/python3
"""Turn bench/bench.py's results.json into results.md, plots and ratios.

    report.py DIR [--no-plots]

Reads DIR/results.json, writes DIR/results.md (tables), DIR/summary.json
(the medians and spreads everything below is computed from) and, unless
--no-plots, DIR/throughput.png and DIR/scaling.png (python3-matplotlib).
Prints the targets and, as its last line,
    ratios: inflate13/legacy=.. deflate13/legacy=.. inflate13/alloc_bound=.. reclaimed/ballooned=.. inflate_vu/native=.. deflate_vu/native=..
for the Debian-default configuration (4 KiB blocks, init_on_alloc=1).

    report.py --merge RESULTS.json DIR RUN.json

After a run of some configurations (bench/run.sh --configs): keeps
DIR/results.json as RUN.json, and makes DIR/results.json RESULTS.json
with those configurations replaced, each naming its run.

"13" is device 13 served by balloon13d over vhost-user ("dev13"); the last
two are its time over the native device's (virtio-balloon13-pci) in the
same VM: what the vhost-user path costs.
"""

import json
import os
import statistics
import sys

MiB = 1 << 20
GiB = 1 << 30
TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = "pb12-ioa1"
BALLOONS = ("legacy", "dev13", "native")
LABELS = {"legacy": "legacy", "dev13": "device 13 (balloon13d)",
          "native": "device 13 (native)"}


def spread(values):
    """median, min, max and quartiles of a list of numbers."""
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else [v[0]] * 3
    return {"median": statistics.median(v), "min": v[0], "max": v[-1],
            "q1": q[0], "q3": q[2], "n": len(v)}


def thr(size, s):
    """Throughput spread (MiB/s) from a time spread: median of the
    throughputs is size/median time; min/max swap."""
    if not s:
        return None
    f = lambda t: (size / MiB) / t if t else float("inf")  # noqa: E731
    return {"median": f(s["median"]), "min": f(s["max"]), "max": f(s["min"]),
            "q1": f(s["q3"]), "q3": f(s["q1"]), "n": s["n"]}


def summarize_ops(runs):
    """Spreads of the interesting fields of a list of measure() results."""
    if not runs:
        return None
    size = runs[0]["bytes"]
    out = {"bytes": size}
    for key in ("time_s", "first_s", "log_first_s", "log_done_s",
                "guest_kworker_s", "guest_sys_s", "guest_user_s",
                "guest_seen_to_done_s", "qemu_cpu_s", "daemon_cpu_s",
                "vcpu_cpu_s", "status_call_ms", "progress_call_ms", "reclaimed", "huge_before",
                "huge_after"):
        vals = [r.get(key) for r in runs if r.get(key) is not None]
        if vals:
            out[key] = spread(vals)
    out["throughput_mib_s"] = thr(size, out["time_s"])
    fresh, again = [], []
    for r in runs:
        d = r.get("daemon") or r.get("native")
        if not d or not d.get("bytes_received") or "block_bytes" not in d:
            continue
        received = d["bytes_received"] // d["block_bytes"]
        (fresh if d.get("new_blocks", 0) * 2 >= received else again).append(
            r["time_s"])
    if fresh:
        out["time_s_fresh_blocks"] = spread(fresh)
    if again:
        out["time_s_reballooned_blocks"] = spread(again)
    if "reclaimed" in out:
        out["reclaimed_ratio"] = spread([r["reclaimed"] / size for r in runs])
    out["kworker_s_per_gib"] = spread([r["guest_kworker_s"] / (size / GiB)
                                       for r in runs])
    out["sys_s_per_gib"] = spread([r["guest_sys_s"] / (size / GiB)
                                   for r in runs])
    return out


def summarize(results):
    summ = {}
    for name, r in results["configs"].items():
        if "pair" in r:
            s = {"vm": r.get("vm", {}), "load": [r.get("load_start"),
                                                  r.get("load_end")]}
            for bl in BALLOONS:
                if bl in r["pair"]:
                    s[bl] = {d: summarize_ops(r["pair"][bl][d])
                             for d in ("inflate", "deflate")}
            s["allocbench"] = {}
            for v, runs in r.get("allocbench", {}).items():
                size = runs[0]["bytes"]
                t = spread([x["alloc_s"] for x in runs])
                s["allocbench"][v] = {
                    "bytes": size, "max_order": runs[0]["max_order"],
                    "block_order": runs[0]["block_order"], "alloc_s": t,
                    "free_s": spread([x["free_s"] for x in runs]),
                    "throughput_mib_s": thr(size, t)}
            hp = r.get("host_punch")
            if hp and hp.get("punch_s"):
                t = spread(hp["punch_s"])
                s["host_punch"] = {"bytes": hp["bytes"], "step": hp["step"],
                                   "thp": hp["thp"], "punch_s": t,
                                   "throughput_mib_s": thr(hp["bytes"], t)}
            summ[name] = s
        elif "scale" in r:
            s = {"vm": r.get("vm", {}), "load": [r.get("load_start"),
                                                  r.get("load_end")]}
            for bl, sizes in r["scale"].items():
                s[bl] = {}
                for size, d in sorted(sizes.items(), key=lambda kv: int(kv[0])):
                    s[bl][size] = {k: summarize_ops(v) for k, v in d.items()}
                    inf = s[bl][size]["inflate"]
                    inf["s_per_gib"] = spread([x["time_s"] / (int(size) / GiB)
                                               for x in d["inflate"]])
            summ[name] = s
    return summ


def med(s, key, sub="median"):
    try:
        return s[key][sub]
    except (KeyError, TypeError):
        return None


def ratios(s):
    """The four headline ratios of one pair configuration (None if missing)."""
    try:
        li, di = s["legacy"]["inflate"], s["dev13"]["inflate"]
        ld, dd = s["legacy"]["deflate"], s["dev13"]["deflate"]
    except (KeyError, TypeError):
        return None
    ab = s.get("allocbench", {}).get("driver_orders")
    out = {
        "inflate13/legacy": li["time_s"]["median"] / di["time_s"]["median"],
        "deflate13/legacy": ld["time_s"]["median"] / dd["time_s"]["median"],
        "inflate13/alloc_bound": (ab["alloc_s"]["median"] /
                                  di["time_s"]["median"]) if ab else None,
        "reclaimed/ballooned": di["reclaimed_ratio"]["median"],
    }
    ov = overhead(s)
    if ov:
        out["inflate_vu/native"] = ov["inflate"]
        out["deflate_vu/native"] = ov["deflate"]
    return out


def overhead(s):
    """The vhost-user path's time over the native device's, in the same
    VM, per direction (None without the native device)."""
    try:
        return {d: s["dev13"][d]["time_s"]["median"] /
                s["native"][d]["time_s"]["median"]
                for d in ("inflate", "deflate")}
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def ratio_line(r):
    def f(v):
        return "n/a" if v is None else ("%.3f" % v if v < 10 else "%.1f" % v)
    return "ratios: " + " ".join("%s=%s" % (k, f(v)) for k, v in r.items())


def bound_text(s, serial):
    """The best inflate13/legacy ratio this VM allows, with its parts:
    legacy's median over the guest allocator bound and the host discard
    bound, added up when the whole target is one page list (serial), else
    the larger of the two (the guest allocates while the daemon
    discards)."""
    try:
        a = s["allocbench"]["driver_orders"]["alloc_s"]["median"]
        h = s["host_punch"]["punch_s"]["median"]
        legacy = s["legacy"]["inflate"]["time_s"]["median"]
    except (KeyError, TypeError):
        return "-"
    return "%.1fx (allocator %.3f s %s host discard %.3f s)" % (
        legacy / ((a + h) if serial else max(a, h)), a,
        "+" if serial else "||", h)


def targets(summ):
    """(setting, target, value text, met, bound text) rows for each
    init_on_alloc setting and guest RAM backing."""
    rows = []
    for ioa in (1, 0):
        s12 = summ.get("pb12-ioa%d" % ioa)
        sc = summ.get("scale-ioa%d" % ioa)
        tag = "init_on_alloc=%d" % ioa
        # Page lists close by bytes of memory (1 MiB growing to 16 MiB),
        # so with 2 MiB blocks too the guest allocates while the daemon
        # discards.
        for pb, want, serial in ((12, 10, False), (21, 20, False)):
            for thp, label in (("", "4 KiB host pages"),
                               ("-thp", "2 MiB host pages")):
                sx = summ.get("pb%d%s-ioa%d" % (pb, thp, ioa))
                r = ratios(sx) if sx else None
                if r:
                    rows.append((
                        "%s, %s" % (tag, label),
                        "device-13 inflate >= 10x legacy" if pb == 12 else
                        "2 MiB blocks >= 20x legacy (same VM)",
                        "%.2fx" % r["inflate13/legacy"],
                        r["inflate13/legacy"] >= want,
                        bound_text(sx, serial)))
        tag += ", 4 KiB host pages"
        if s12 and ratios(s12):
            r = ratios(s12)
            if r["inflate13/alloc_bound"] is not None:
                rows.append((tag, "device-13 inflate >= 50% of allocator bound",
                             "%.0f%%" % (100 * r["inflate13/alloc_bound"]),
                             r["inflate13/alloc_bound"] >= 0.5, "-"))
            rows.append((tag, "deflate at least as fast as legacy",
                         "%.2fx" % r["deflate13/legacy"],
                         r["deflate13/legacy"] >= 1, "-"))
            rows.append((tag, "host memory reclaimed >= 99% of balloon",
                         "%.2f%%" % (100 * r["reclaimed/ballooned"]),
                         r["reclaimed/ballooned"] >= 0.99, "-"))
            k13 = med(s12["dev13"]["inflate"], "kworker_s_per_gib")
            kl = med(s12["legacy"]["inflate"], "kworker_s_per_gib")
            if k13 is not None and kl is not None:
                rows.append((tag, "device-13 guest CPU per GiB below legacy",
                             "%.3f vs %.3f s/GiB (kworker)" % (k13, kl),
                             k13 < kl, "-"))
        if sc and sc.get("dev13"):
            per = {int(k): v["inflate"]["s_per_gib"]["median"]
                   for k, v in sc["dev13"].items() if int(k) >= GiB}
            if len(per) >= 2:
                lo, hi = min(per.values()), max(per.values())
                rows.append((tag.split(",")[0],
                             "device-13 s/GiB flat within 20% (1-12 GiB)",
                             "%.3f..%.3f s/GiB (max/min %.2f)" % (lo, hi, hi / lo),
                             hi / lo <= 1.2, "-"))
    return rows


def fmt_spread(s, scale=1.0, digits=3):
    if not s:
        return "-"
    d = "%%.%df" % digits
    return (d + " [" + d + "-" + d + "]") % (s["median"] * scale,
                                           s["min"] * scale, s["max"] * scale)


def markdown(results, summ):
    m = results["meta"]
    out = ["# virtio_balloon13 benchmark results", ""]
    out.append("Run %s to %s on %s (%s, %s CPUs), git %s. %s." % (
        m.get("started"), m.get("finished"), m.get("host"), m.get("host_kernel"),
        m.get("nproc"), m.get("git"), m.get("notes")))
    out.append("Host load average (1/5/15 min) at start %s, at end %s; "
               "the 2 host cores were shared with other builds."
               % (m.get("load_start"), m.get("load_end")))
    if any(r.get("run") for r in results["configs"].values()):
        out.append("Configurations that name a run of their own below were "
                   "measured again later (`bench.py --configs`, their run "
                   "files in bench/results/runs/); the rest come from this "
                   "run.")
    out.append("")
    out.append("Cells are `median [min-max]` over the repetitions. Times are "
               "wall-clock from the host's request (balloon13d `resize` over "
               "its control socket; QMP `balloon`; the native device's "
               "`target-size` over QMP qom-set): the native device's "
               "inflate until its `counters` (qom-get, polled every 1-2 ms) "
               "show the whole target received (it discards each page list "
               "before returning it), device-13 inflate until "
               "the daemon has received and discarded the whole target "
               "(followed in its `-v` log, which it writes after each page "
               "list; `status` `bytes_received` is checked afterwards: "
               "polling `status` itself slows the daemon, see the profile), "
               "legacy until `query-balloon` reaches the value (polled every "
               "1-5 ms), device-13 deflate (both devices) until the guest's sysfs "
               "`size_bytes` is 0 (a guest poller signals over the serial "
               "channel; 2 ms polls). Guest CPU: the run time of the guest's "
               "kworker/ksoftirqd threads (schedstat, ns) over the operation "
               "(both balloons work in kworkers); `sys` is /proc/stat "
               "system+irq+softirq (10 ms ticks). vCPU thread, QEMU and "
               "daemon CPU are host CPU time over the operation (10 ms "
               "ticks). Reclaimed: the drop of the guest-RAM memfd's "
               "allocated blocks (= QEMU's RssShmem here), measured before "
               "the request and when done, after the guest had used all its "
               "free memory (memtouch, then allocbench's fill). First: "
               "request to the first page list, device 13 from the daemon's "
               "log (ms; the first page list of a run names 1 MiB or one "
               "block, later ones up to 16 MiB), "
               "legacy the first change of `query-balloon` actual. The "
               "allocator bound is bench/allocbench.ko allocating and "
               "freeing the same amount with the driver's gfp flags and "
               "orders, no device involved.")
    out.append("")
    for name, s in summ.items():
        r = results["configs"][name]
        vm = s.get("vm", {})
        out.append("## %s" % name)
        out.append("")
        if r.get("run"):
            out.append("Run %s, git %s; %s." % (
                r["run"].get("started"), r["run"].get("git"),
                r["run"].get("file")))
            out.append("")
        out.append("Guest %s MiB (%s), kernel %s, `%s`, %s; device-13 "
                   "page_bits %s; host load %s -> %s; VM elapsed %s s." % (
                       vm.get("guest_ram_bytes", 0) // MiB,
                       vm.get("guest_ram_backing", "memfd (4 KiB pages)"),
                       vm.get("kernel"),
                       vm.get("cmdline"), vm.get("mem_auto_init"),
                       vm.get("page_bits"), s["load"][0], s["load"][1],
                       r.get("elapsed_s")))
        out.append("")
        if "legacy" in s or "dev13" in s and "pair" in r:
            if "pair" in r:
                out += pair_table(s)
        if "scale" in r:
            out += scale_table(s)
        if "profile" in r:
            out += profile_md(r["profile"])
    for name, r in results["configs"].items():
        if "error" in r or "skipped" in r:
            out.append("## %s: %s" % (name, "skipped" if "skipped" in r
                                       else "FAILED"))
            out.append("")
            out.append("```\n%s\n```" % (r.get("error") or r.get("skipped")))
            out.append("")
    rows = targets(summ)
    if rows:
        out += ["## Targets", "",
                "Best possible: legacy's median time over the bounds "
                "measured in the same VM: the guest allocator (allocbench) "
                "and the host discarding the same memory "
                "(madvise(MADV_REMOVE) of written shared memory in 4 MiB "
                "runs, no guest or daemon). `||`: page lists of at most "
                "16 MiB whatever the block size, so the guest allocates "
                "while the daemon discards and the larger bound is the "
                "limit.", "",
                "| setting | target | measured | met | best possible here |",
                "|---|---|---|---|---|"]
        out += ["| %s | %s | %s | %s | %s |" % (
            t, n, v, "yes" if ok else "**no**", b)
                for t, n, v, ok, b in rows]
        out.append("")
    for name, s in summ.items():
        r = ratios(s) if "dev13" in s else None
        if r and "inflate" in (s.get("dev13") or {}):
            out.append("- %s: `%s`" % (name, ratio_line(r)))
    out.append("")
    out += bound_md(summ)
    out += pressure_md(results)
    out += reporting_md(results) + withdraw_md(results) + churn_md(results)
    out += thp_md(results)
    return "\n".join(out)


def pair_table(s):
    out = ["| balloon | op | time s | MiB/s | first s | guest kworker s | "
           "guest sys s | reclaimed MiB | vCPU thread s | QEMU CPU s | "
           "daemon CPU s |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for bl in BALLOONS:
        for d in ("inflate", "deflate"):
            o = (s.get(bl) or {}).get(d)
            if not o:
                continue
            first = o.get("log_first_s") or o.get("first_s")
            out.append("| %s | %s %d MiB | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                LABELS[bl], d, o["bytes"] // MiB, fmt_spread(o["time_s"]),
                fmt_spread(o["throughput_mib_s"], digits=0),
                fmt_spread(first) if d == "inflate" else "-",
                fmt_spread(o.get("guest_kworker_s")),
                fmt_spread(o.get("guest_sys_s"), digits=2),
                fmt_spread(o.get("reclaimed"), 1 / MiB, 1) if d == "inflate" else "-",
                fmt_spread(o.get("vcpu_cpu_s"), digits=2),
                fmt_spread(o.get("qemu_cpu_s"), digits=2),
                fmt_spread(o.get("daemon_cpu_s"), digits=2)
                if bl == "dev13" else "-"))
    for v, o in s.get("allocbench", {}).items():
        out.append("| allocator bound (%s, orders %d..%d) | alloc %d MiB | %s | %s "
                   "| - | - | - | - | - | - | - |" % (
                       v, o["max_order"], o["block_order"], o["bytes"] // MiB,
                       fmt_spread(o["alloc_s"], digits=4),
                       fmt_spread(o["throughput_mib_s"], digits=0)))
        out.append("| allocator bound (%s) | free %d MiB | %s | - | - | - | - "
                   "| - | - | - | - |" % (v, o["bytes"] // MiB,
                                          fmt_spread(o["free_s"], digits=4)))
    hp = s.get("host_punch")
    if hp:
        out.append("| host bound (madvise(MADV_REMOVE), %s, %d MiB runs) | "
                   "discard %d MiB | %s | %s | - | - | - | - | - | - | - |" % (
                       "2 MiB THP tmpfs" if hp["thp"] else "4 KiB memfd",
                       hp["step"] // MiB, hp["bytes"] // MiB,
                       fmt_spread(hp["punch_s"], digits=4),
                       fmt_spread(hp["throughput_mib_s"], digits=0)))
    out.append("")
    o = (s.get("dev13") or {}).get("inflate") or {}
    notes = []
    for bl in BALLOONS:
        i = (s.get(bl) or {}).get("inflate") or {}
        if s.get("vm", {}).get("guest_ram_backing", "").startswith("file") \
                and i.get("huge_before"):
            notes.append("%s inflate: guest RAM in host huge pages %s -> %s "
                         "MiB" % (bl, fmt_spread(i["huge_before"], 1 / MiB, 0),
                                  fmt_spread(i.get("huge_after"), 1 / MiB, 0)))
    if o.get("time_s_fresh_blocks"):
        notes.append("device-13 inflate with blocks new to the daemon: %s s"
                     % fmt_spread(o["time_s_fresh_blocks"]))
    if o.get("time_s_reballooned_blocks"):
        notes.append("with blocks it had received before (re-ballooned): %s s"
                     % fmt_spread(o["time_s_reballooned_blocks"]))
    if o.get("status_call_ms"):
        notes.append("one `status` call afterwards: %s ms"
                     % fmt_spread(o["status_call_ms"], digits=1))
    if o.get("progress_call_ms"):
        notes.append("one `progress` call: %s ms"
                     % fmt_spread(o["progress_call_ms"], digits=2))
    n = (s.get("native") or {}).get("inflate") or {}
    if n.get("progress_call_ms"):
        notes.append("native: one qom-get of `counters`: %s ms"
                     % fmt_spread(n["progress_call_ms"], digits=2))
    ov = overhead(s)
    if ov:
        notes.append("the vhost-user path (balloon13d) over the native "
                     "device: inflate %.2fx, deflate %.2fx the time"
                     % (ov["inflate"], ov["deflate"]))
    if notes:
        out += ["- " + "; ".join(notes) + ".", ""]
    return out


def scale_table(s):
    out = ["| balloon | size | inflate s | s/GiB | deflate s | guest kworker s "
           "(inflate) |", "|---|---|---|---|---|---|"]
    for bl in ("dev13", "legacy"):
        for size, o in (s.get(bl) or {}).items():
            out.append("| %s | %d MiB | %s | %s | %s | %s |" % (
                bl, int(size) // MiB, fmt_spread(o["inflate"]["time_s"]),
                fmt_spread(o["inflate"]["s_per_gib"]),
                fmt_spread(o["deflate"]["time_s"]),
                fmt_spread(o["inflate"].get("guest_kworker_s"))))
    out.append("")
    return out


def worker_line(label, f, direction):
    w = (f.get(direction + "_trace") or {}).get("_worker")
    if not w:
        return []
    r = f[direction]
    return ["| %s | %s %d MiB | %.3f | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |" % (
        label, direction, r["bytes"] // MiB, r["time_s"], w["runs"],
        w["span_ms"], w["busy_ms"], w["idle_ms"], w["alloc_ms"],
        w["send_ms"], w["free_ms"])]


def profile_md(p):
    out = ["### Profile (extra runs, not in the tables above)", ""]
    rows = []
    for key, label in (("ftrace", "device 13"), ("ftrace_legacy", "legacy")):
        f = p.get(key) or {}
        if f.get("error"):
            out.append("- %s ftrace failed: %s" % (label, f["error"][:300]))
        for d in ("inflate", "deflate"):
            if d in f:
                rows += worker_line(label, f, d)
    if rows:
        out.append("Guest function_graph tracer (times inflated by tracing). "
                   "The worker is the balloon's work function (device 13: "
                   "vb13_resize_fn; legacy: update_balloon_size_func); idle "
                   "= the span minus the worker's run time, i.e. waiting for "
                   "the device; alloc = vb13_alloc_chunk / balloon_page_alloc "
                   "(including init_on_alloc zeroing); send = vb13_submit / "
                   "tell_host (legacy: includes the synchronous exit to QEMU "
                   "that discards the pages); free = vb13_free_acked / "
                   "leak_balloon.")
        out.append("")
        out.append("| balloon | op | time s | worker runs | span ms | busy ms "
                   "| idle ms | alloc ms | send ms | free ms |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        out += rows
        out.append("")
        for key, label in (("ftrace", "device 13"), ("ftrace_legacy", "legacy")):
            st = (p.get(key) or {}).get("inflate_trace") or {}
            fn = ", ".join("%s %d x %.1f ms" % (k, v["calls"], v["total_ms"])
                           for k, v in sorted(st.items()) if not k.startswith("_"))
            if fn:
                out.append("- %s inflate functions: %s" % (label, fn))
        out.append("")
    pl = (p.get("ftrace") or {}).get("pipeline") or {}
    if pl.get("messages"):
        out.append("- Device-13 inflate as a pipeline (traced run; ms from "
                   "the request): page lists queued by the guest %s ...; "
                   "discarded by the daemon %s ...; outputq callbacks in the "
                   "guest %s ... (%d messages, %d callbacks: %.2f messages "
                   "returned per callback)." % (
                       pl["queued_ms"][:8], pl["daemon_done_ms"][:8],
                       pl["callback_ms"][:8], pl["messages"], pl["callbacks"],
                       pl["messages_per_callback"] or 0))
    sp = p.get("status_poll") or {}
    if sp.get("inflate"):
        out.append("- Polling balloon13d `status` every %.0f ms during a "
                   "device-13 inflate: inflate took %.3f s; %d status calls, "
                   "median %.1f ms, max %.1f ms each (the daemon is single "
                   "threaded: page lists wait meanwhile). The bench follows "
                   "the daemon's -v log instead." % (
                       sp["interval_s"] * 1e3, sp["inflate"]["time_s"],
                       sp["status_calls"], sp["status_call_ms_median"] or 0,
                       sp["status_call_ms_max"] or 0))
    st = p.get("strace") or {}
    if "madvise" in st:
        d = st["inflate"].get("daemon", {})
        out.append("- balloon13d under strace during a 1 GiB inflate (%.3f s "
                   "with strace; %d new, %d re-ballooned blocks): "
                   "madvise(MADV_REMOVE) %d calls, %.0f MiB, %.3f s in total, "
                   "max %.4f s; mincore %d calls, %.3f s in total." % (
                       st["inflate"]["time_s"], d.get("new_blocks", -1),
                       d.get("reballooned_blocks", -1),
                       st["madvise"]["calls"], st["madvise"]["bytes"] / MiB,
                       st["madvise"]["total_s"], st["madvise"]["max_s"],
                       st["mincore"]["calls"], st["mincore"]["total_s"]))
    pf = p.get("perf") or {}
    if pf.get("top"):
        out.append("- QEMU under perf during a 1 GiB device-13 inflate "
                   "(%.3f s), symbols above 1.5%%: %s" % (
                       pf["inflate"]["time_s"],
                       "; ".join(" ".join(x.split()) for x in pf["top"][:12])))
    for k in ("status_poll", "strace", "perf"):
        if (p.get(k) or {}).get("error"):
            out.append("- %s failed: %s" % (k, p[k]["error"][:300]))
    out.append("")
    return out


def plots(results, summ, outdir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Throughput bars, one group per init_on_alloc setting; inflate and
    # the allocator bound left, deflate right.
    panels = [
        ("inflate 1 GiB", [
            ("legacy\n(4 KiB pages)", "pb12",
             lambda s: s["legacy"]["inflate"]["throughput_mib_s"]),
            ("device 13\n4 KiB blocks", "pb12",
             lambda s: s["dev13"]["inflate"]["throughput_mib_s"]),
            ("device 13\n2 MiB blocks", "pb21",
             lambda s: s["dev13"]["inflate"]["throughput_mib_s"]),
            ("allocator bound\norders 10..0", "pb12",
             lambda s: s["allocbench"]["driver_orders"]["throughput_mib_s"]),
            ("allocator bound\norders 10..9", "pb21",
             lambda s: s["allocbench"]["driver_orders"]["throughput_mib_s"]),
            ("legacy\nTHP host RAM", "pb21-thp",
             lambda s: s["legacy"]["inflate"]["throughput_mib_s"]),
            ("device 13\n2 MiB blocks\nTHP host RAM", "pb21-thp",
             lambda s: s["dev13"]["inflate"]["throughput_mib_s"])]),
        ("deflate 1 GiB", [
            ("legacy", "pb12",
             lambda s: s["legacy"]["deflate"]["throughput_mib_s"]),
            ("device 13\n4 KiB blocks", "pb12",
             lambda s: s["dev13"]["deflate"]["throughput_mib_s"]),
            ("device 13\n2 MiB blocks", "pb21",
             lambda s: s["dev13"]["deflate"]["throughput_mib_s"])]),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.5),
                             gridspec_kw={"width_ratios": [7, 3]})
    width = 0.38
    groups = [g for g in (1, 0) if any(k.endswith("ioa%d" % g) for k in summ)]
    colors = {1: "#4477aa", 0: "#ee7733"}
    for ax, (title, bars) in zip(axes, panels):
        plotted = False
        for gi, g in enumerate(groups):
            xs, ys, lo, hi = [], [], [], []
            for i, (label, pb, get) in enumerate(bars):
                try:
                    t = get(summ["%s-ioa%d" % (pb, g)])
                except (KeyError, TypeError):
                    continue
                xs.append(i + (gi - (len(groups) - 1) / 2) * width)
                ys.append(t["median"])
                lo.append(t["median"] - t["min"])
                hi.append(t["max"] - t["median"])
            plotted = plotted or bool(ys)
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, color=colors[g],
                   label="init_on_alloc=%d" % g)
            for x, y in zip(xs, ys):
                ax.text(x, y, "%.0f" % y, ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(bars)))
        ax.set_xticklabels([b[0] for b in bars], fontsize=8)
        if plotted:  # a subset run (--configs) may leave a panel empty
            ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("MiB/s (median; bars: min-max)")
    axes[0].legend(fontsize=8)
    fig.suptitle("2 GiB guest under TCG, %d repetitions; host load %s -> %s "
                 "(2 shared cores)" % (results["meta"].get("reps", 0),
                                      results["meta"].get("load_start"),
                                      results["meta"].get("load_end")))
    fig.tight_layout()
    fig.savefig(os.path.join(outdir, "throughput.png"), dpi=110)
    plt.close(fig)

    scales = [k for k in summ if k.startswith("scale-")]
    if scales:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 5))
        for k in scales:
            for bl, mk in (("dev13", "o-"), ("legacy", "s--")):
                pts = sorted((int(sz) / GiB, o["inflate"]["time_s"], o["inflate"]["s_per_gib"])
                             for sz, o in (summ[k].get(bl) or {}).items())
                if not pts:
                    continue
                label = "%s %s" % ("device 13" if bl == "dev13" else "legacy",
                                   k.replace("scale-ioa", "init_on_alloc="))
                x = [p[0] for p in pts]
                a1.errorbar(x, [p[1]["median"] for p in pts],
                            yerr=[[p[1]["median"] - p[1]["min"] for p in pts],
                                  [p[1]["max"] - p[1]["median"] for p in pts]],
                            fmt=mk, capsize=3, label=label)
                a2.errorbar(x, [p[2]["median"] for p in pts],
                            yerr=[[p[2]["median"] - p[2]["min"] for p in pts],
                                  [p[2]["max"] - p[2]["median"] for p in pts]],
                            fmt=mk, capsize=3, label=label)
        for a in (a1, a2):
            a.set_xscale("log", base=2)
            a.set_xlabel("balloon size, GiB")
            a.grid(alpha=0.3)
        a1.set_yscale("log")
        a1.set_ylabel("inflate time, s")
        a2.set_ylabel("inflate cost, s per GiB")
        a2.set_ylim(bottom=0)
        a1.legend(fontsize=8)
        fig.suptitle("Inflate time against size, 16 GiB guest, memory never "
                     "touched before (medians, bars min-max)")
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, "scaling.png"), dpi=110)
        plt.close(fig)


# ---- issue 8: inflate against the bound, pressure recovery -------------------

def bound_rows(summ):
    """Per pair configuration: device 13's inflate against the best bound
    measured in the same VM.  Page lists pipeline for every block size, so
    the bound is the larger of the allocator's and the host's time; the
    ratio is bound / device-13 time (goal >= 0.95).  Legacy's time over
    device 13's beside it, and the time to the first page list (daemon
    log, ms resolution; goal <= 1 ms)."""
    rows = []
    for name, s in summ.items():
        try:
            d = s["dev13"]["inflate"]
            a = s["allocbench"]["driver_orders"]["alloc_s"]["median"]
            h = s["host_punch"]["punch_s"]["median"]
        except (KeyError, TypeError):
            continue
        t = d["time_s"]["median"]
        bound = max(a, h)
        legacy = med((s.get("legacy") or {}).get("inflate") or {}, "time_s")
        first = med(d, "log_first_s")
        rows.append({"config": name, "page_bits": s["vm"].get("page_bits"),
                     "backing": s["vm"].get("guest_ram_backing", ""),
                     "dev13_s": t, "alloc_s": a, "punch_s": h,
                     "bound_s": bound, "ratio": bound / t,
                     "legacy_ratio": legacy / t if legacy else None,
                     "first_ms": None if first is None else first * 1000})
    return rows


def bound_md(summ):
    rows = bound_rows(summ)
    if not rows:
        return []
    out = ["## Device-13 inflate against the bound", "",
           "1 GiB, medians. Bound: the larger of the allocator bound and the "
           "host discard bound measured in the same VM (page lists pipeline "
           "for every block size). Ratio: bound / device-13 time, the goal "
           "is at least 0.95. First page list: from the daemon sending "
           "RESIZE to its log line for the first page list, which it writes "
           "after discarding it (1 ms resolution; the goal is at most 1 ms).",
           "",
           "| configuration | blocks | guest RAM | device 13 s | allocator s "
           "| host discard s | bound / device 13 | legacy / device 13 | "
           "first page list ms |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append("| %s | %s | %s | %.3f | %.3f | %.3f | **%.2f** | %s | %s |"
                   % (r["config"], "2 MiB" if r["page_bits"] == 21 else "4 KiB",
                      r["backing"], r["dev13_s"], r["alloc_s"], r["punch_s"],
                      r["ratio"], "-" if r["legacy_ratio"] is None else
                      "%.1fx" % r["legacy_ratio"],
                      "-" if r["first_ms"] is None else "%.0f" % r["first_ms"]))
    out.append("")
    return out


def bound_lines(summ):
    return ["bound %-14s device13/bound=%.3f (goal >= 0.95 %s) legacy/device13=%s "
            "first_page_list_ms=%s" % (
                r["config"], r["ratio"], "met" if r["ratio"] >= 0.95 else "MISSED",
                "n/a" if r["legacy_ratio"] is None else "%.1f" % r["legacy_ratio"],
                "n/a" if r["first_ms"] is None else "%.0f" % r["first_ms"])
            for r in bound_rows(summ)]


def pressure_summary(results):
    """{config: {way: {...}}} for the pressure configurations: medians of
    the workload's seconds, each also over the empty-balloon median."""
    out = {}
    for name, r in results["configs"].items():
        runs = r.get("runs") if r.get("config", {}).get("kind") == "pressure" \
            else None
        if not runs:
            continue
        ways = {}
        for way in ("empty", "dev13", "legacy"):
            rs = [x for x in runs if x["way"] == way]
            if not rs:
                continue
            ways[way] = {
                "n": len(rs),
                "seconds": spread([x.get("seconds") for x in rs]),
                "oom_kills": sum(x["oom_kills"] for x in rs),
                "steps_killed": sum(x.get("killed", 0) for x in rs),
                "released_mib": spread([x.get("released", 0) / MiB for x in rs]),
                "released_mib_s": spread([x["released_mib_s"] for x in rs]),
                "back_s": spread([x.get("back_s") for x in rs]),
                "balloon_mib": spread([x.get("balloon_before", 0) / MiB
                                       for x in rs]),
                "memtotal_mib": spread([x["memtotal_before"] / MiB for x in rs]),
            }
        e = ways.get("empty", {}).get("seconds")
        for w in ways.values():
            w["ratio"] = (w["seconds"]["median"] / e["median"]
                          if e and w["seconds"] else None)
        out[name] = {"ways": ways, "config": r["config"],
                     "load": [r.get("load_start"), r.get("load_end")]}
    return out


def pressure_md(results):
    summ = pressure_summary(results)
    out = []
    for name, p in summ.items():
        c = p["config"]
        out += ["## Pressure recovery (%s)" % name, "",
                "`memstep %d %d`: %d steps, each a process touching %d MiB "
                "and keeping it, one after another (%d MiB, about 40%% of the "
                "%s guest), with both balloons empty, against device 13 held "
                "by its floor, and against legacy virtio_balloon holding as "
                "much with deflate-on-oom (QEMU `-global "
                "virtio-balloon-device.deflate-on-oom=on`). Seconds: memstep's "
                "own clock, median [min-max]; ratio: over the empty-balloon "
                "median. Host load %s -> %s." % (
                    c["step_mib"], c["steps"], c["steps"], c["step_mib"],
                    c["step_mib"] * c["steps"], c["mem"], p["load"][0],
                    p["load"][1]), "",
                "| balloon | runs | seconds | ratio to empty | OOM kills | "
                "steps killed | balloon before MiB | MemTotal before MiB | "
                "released MiB | released MiB/s | back at target after s |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for way, label in (("empty", "none (empty)"),
                           ("dev13", "device 13, full (at the floor)"),
                           ("legacy", "legacy, deflate-on-oom")):
            w = p["ways"].get(way)
            if not w:
                continue
            out.append("| %s | %d | %s | %s | %d | %d | %s | %s | %s | %s | %s |" % (
                label, w["n"], fmt_spread(w["seconds"], digits=2),
                "-" if w["ratio"] is None else "**%.2fx**" % w["ratio"],
                w["oom_kills"], w["steps_killed"],
                fmt_spread(w["balloon_mib"], digits=0),
                fmt_spread(w["memtotal_mib"], digits=0),
                fmt_spread(w["released_mib"], digits=0),
                fmt_spread(w["released_mib_s"], digits=1),
                fmt_spread(w["back_s"], digits=1) if w["back_s"] else
                ("never (does not inflate again)" if way == "legacy" else "-")))
        out += ["", "Legacy virtio_balloon gives back 1 MiB per OOM "
                "notification, and with deflate-on-oom it does not take "
                "ballooned pages out of MemTotal, so its MemTotal stays at "
                "the full guest size while device 13's is the floor. Device "
                "13 gives back a batch per OOM notification (16 MiB, "
                "doubling while they keep coming), so it may give back up to "
                "twice what the workload needs; it refills to its target "
                "after the 5 s hold-off.", ""]
    return out


def pressure_lines(results):
    lines = []
    for name, p in pressure_summary(results).items():
        for way in ("dev13", "legacy"):
            w = p["ways"].get(way)
            if w and w["ratio"] is not None:
                lines.append(
                    "pressure %s %s/empty=%.2f%s oom_kills=%d released_mib_s=%.1f"
                    % (name, way, w["ratio"],
                       " (goal <= 1.5 %s)" % ("met" if w["ratio"] <= 1.5 and
                                              not w["oom_kills"] else "MISSED")
                       if way == "dev13" else "",
                       w["oom_kills"], w["released_mib_s"]["median"]))
    return lines


# ---- issue 15: free page reporting, explicit withdrawal, churn ------------------

def reporting_summary(results):
    """{config: {...}} for the reporting configurations: per mode (off,
    dev13, legacy) the share of 1 GiB freed that was back at 5 s and the
    seconds to 90% (medians; None where 90% was never reached counts as
    never), the page-fault workload's rate and its overhead against off,
    and the host's own discard time for the same memory (the bound)."""
    out = {}
    for name, r in results.get("configs", {}).items():
        if r.get("config", {}).get("kind") != "reporting" or not r.get("free"):
            continue
        c = r["config"]
        modes = {}
        for m in ("off", "dev13", "legacy"):
            fr = [x for x in r["free"] if x["mode"] == m]
            pf = [x for x in r.get("pagefault", []) if x["mode"] == m]
            if not fr and not pf:
                continue
            goal = [x["goal_s"] for x in fr]
            modes[m] = {
                "n": len(fr),
                "frac_at": spread([x["frac_at"] for x in fr]),
                # A run that never got there is slower than any that did.
                "goal_s": spread([g for g in goal if g is not None])
                if all(g is not None for g in goal) else None,
                "goal_missed": sum(g is None for g in goal),
                "rate": spread([x["rate"] for x in pf]),
                "reported_mib": spread([x.get("reported_mib") for x in pf
                                        if x.get("reported_mib") is not None])
                if any(x.get("reported_mib") is not None for x in pf) else None,
            }
        off = (modes.get("off") or {}).get("rate")
        for m, v in modes.items():
            v["overhead"] = (1 - v["rate"]["median"] / off["median"]
                             if off and v.get("rate") and m != "off" else None)
        hp = r.get("host_punch") or {}
        out[name] = {"config": c, "modes": modes,
                     "punch_s": spread(hp["punch_s"]) if hp.get("punch_s")
                     else None,
                     "load": [r.get("load_start"), r.get("load_end")]}
    return out


def _pct(x):
    return "-" if x is None else "%.1f%%" % (100 * x)


def reporting_md(results):
    out = []
    for name, s in reporting_summary(results).items():
        c = s["config"]
        out += ["## Free page reporting (%s)" % name, "",
                "One %s guest, device 13 (balloon13d, every feature) and "
                "QEMU's virtio-balloon with `free-page-reporting=on`; one "
                "driver reports at a time (the kernel takes one reporting "
                "device), `off` has neither bound. Modes interleaved, %d "
                "repetitions. **Freed**: the guest touches %d MiB and frees "
                "it (`memtouch` exits); the share of it back on the host "
                "(the guest-RAM memfd's allocated blocks) 5 s after the "
                "free, and when 90%% was back (goal: 90%% within 5 s). The "
                "kernel's reporting waits 2 s after a free and takes about "
                "a sixteenth of each free list per pass, passes 2 s apart, "
                "whichever driver reports. **Page faults**: `pagefault "
                "--mib %d %d` (map, touch every 4 KiB page without THP, "
                "unmap, again), pages/s, after %d s of warm-up; overhead "
                "against `off` (goal: at most 3.3%%, the figure published "
                "when the kernel's free page reporting was merged). Host "
                "load %s -> %s." % (
                    c["mem"], c["reps"], c["free_mib"], c["pf_mib"], c["pf_s"],
                    c["pf_warm_s"], s["load"][0], s["load"][1]), "",
                "| reporting | freed: back at 5 s | 90% back after s | "
                "page faults/s | overhead vs off | MiB reported meanwhile |",
                "|---|---|---|---|---|---|"]
        for m, label in (("dev13", "device 13"), ("legacy", "legacy"),
                         ("off", "off")):
            v = s["modes"].get(m)
            if not v:
                continue
            out.append("| %s | %s | %s | %s | %s | %s |" % (
                label,
                "-" if not v["frac_at"] else "**%s** [%s-%s]" % (
                    _pct(v["frac_at"]["median"]), _pct(v["frac_at"]["min"]),
                    _pct(v["frac_at"]["max"])),
                ("-" if m == "off" else
                 "never (%d of %d runs)" % (v["goal_missed"], v["n"])
                 if v["goal_missed"] else
                 fmt_spread(v["goal_s"], digits=1) if v["goal_s"] else "-"),
                fmt_spread(v["rate"], digits=0) if v.get("rate") else "-",
                "-" if v["overhead"] is None else "**%s**" % _pct(v["overhead"]),
                fmt_spread(v["reported_mib"], digits=0)
                if v.get("reported_mib") else "-"))
        if s["punch_s"]:
            out += ["", "Bound: the host discards %d MiB of written shared "
                    "memory in %s s (`madvise(MADV_REMOVE)`, 4 MiB runs), so "
                    "all of the 5 s but the kernel's 2 s delay and its pacing "
                    "is there for reporting." % (
                        c["free_mib"], fmt_spread(s["punch_s"]))]
        out.append("")
    return out


def reporting_lines(results):
    lines = []
    for name, s in reporting_summary(results).items():
        m = s["modes"]
        d, lg = m.get("dev13"), m.get("legacy")
        if not d or not d.get("frac_at"):
            continue
        goal = s["config"]["goal_frac"]
        met = d["frac_at"]["median"] >= goal
        lines.append(
            "%s dev13_back_at_5s=%.3f (goal >= %.2f %s) "
            "legacy_back_at_5s=%s dev13/legacy=%s dev13_90pct_s=%s "
            "legacy_90pct_s=%s" % (
                name, d["frac_at"]["median"], goal, "met" if met else "MISSED",
                "n/a" if not lg or not lg.get("frac_at") else
                "%.3f" % lg["frac_at"]["median"],
                "n/a" if not lg or not lg.get("frac_at") or
                not lg["frac_at"]["median"] else
                "%.2f" % (d["frac_at"]["median"] / lg["frac_at"]["median"]),
                "never" if d["goal_missed"] else
                "%.1f" % d["goal_s"]["median"] if d["goal_s"] else "n/a",
                "n/a" if not lg else "never" if lg["goal_missed"] else
                "%.1f" % lg["goal_s"]["median"] if lg.get("goal_s") else "n/a"))
        if d.get("overhead") is not None:
            lines.append(
                "%s dev13_pagefault_overhead=%.4f (goal <= %.3f %s) "
                "legacy_pagefault_overhead=%s" % (
                    name, d["overhead"], s["config"]["goal_overhead"],
                    "met" if d["overhead"] <= s["config"]["goal_overhead"]
                    else "MISSED",
                    "n/a" if not lg or lg.get("overhead") is None else
                    "%.4f" % lg["overhead"]))
    return lines


def withdraw_summary(results):
    """{config: {...}}: deflate (and inflate) medians of device 13 with
    explicit withdrawal, by access, and legacy (pooled over the phases),
    and the allocator's free bound of the same VM."""
    out = {}
    for name, r in results.get("configs", {}).items():
        if r.get("config", {}).get("kind") != "withdraw" or not r.get("phases"):
            continue
        ways = {"explicit": {"inflate": [], "deflate": []},
                "access": {"inflate": [], "deflate": []},
                "legacy": {"inflate": [], "deflate": []}}
        for ph in r["phases"]:
            for d in ("inflate", "deflate"):
                ways[ph["way"]][d] += ph["pair"]["dev13"][d]
                ways["legacy"][d] += ph["pair"]["legacy"][d]
        s = {w: {d: summarize_ops(v[d]) for d in v if v[d]}
             for w, v in ways.items() if v["deflate"]}
        ab = (r.get("allocbench") or {}).get("driver_orders") or []
        out[name] = {"config": r["config"], "ways": s,
                     "free_s": spread([x["free_s"] for x in ab]) if ab else None,
                     "alloc_s": spread([x["alloc_s"] for x in ab]) if ab else None,
                     "load": [r.get("load_start"), r.get("load_end")]}
    return out


def withdraw_md(results):
    out = []
    for name, s in withdraw_summary(results).items():
        c = s["config"]
        out += ["## Deflate with explicit withdrawal (%s)" % name, "",
                "One 2 GiB guest, %d MiB inflated then deflated, medians "
                "[min-max] over the repetitions: device 13 through "
                "balloon13d offering `withdraw` (the driver names what it "
                "takes back in WITHDRAW messages and frees it when they come "
                "back), then through a balloon13d without it (withdrawal by "
                "access: the driver frees the blocks, no message), swapped "
                "in the same VM by hot-unplug and replug behind a PCIe root "
                "port, then with it again; legacy measured in every phase. "
                "Deflate ends when the guest's balloon is empty. Bound: the "
                "allocator freeing the same memory (`allocbench`) in the "
                "same VM. Host load %s -> %s." % (
                    c["size"] // MiB, s["load"][0], s["load"][1]), "",
                "| balloon | runs | deflate s | deflate / legacy | "
                "free bound / deflate | inflate s |", "|---|---|---|---|---|---|"]
        leg = med(s["ways"].get("legacy", {}).get("deflate") or {}, "time_s")
        fb = s["free_s"]["median"] if s["free_s"] else None
        for w, label in (("explicit", "device 13, explicit withdrawal"),
                         ("access", "device 13, withdrawal by access"),
                         ("legacy", "legacy")):
            v = s["ways"].get(w)
            if not v:
                continue
            t = v["deflate"]["time_s"]
            out.append("| %s | %d | %s | %s | %s | %s |" % (
                label, t["n"], fmt_spread(t),
                "-" if not leg else "%.2f" % (t["median"] / leg),
                "-" if not fb else "%.2f" % (fb / t["median"]),
                fmt_spread(v["inflate"]["time_s"]) if "inflate" in v else "-"))
        out.append("")
    return out


def withdraw_lines(results):
    lines = []
    for name, s in withdraw_summary(results).items():
        w = s["ways"]
        e = med((w.get("explicit") or {}).get("deflate") or {}, "time_s")
        a = med((w.get("access") or {}).get("deflate") or {}, "time_s")
        lg = med((w.get("legacy") or {}).get("deflate") or {}, "time_s")
        fb = s["free_s"]["median"] if s["free_s"] else None
        if e is None:
            continue
        lines.append("%s deflate_explicit_s=%.3f deflate_access_s=%s "
                     "explicit/access=%s explicit/legacy=%s "
                     "free_bound/explicit=%s" % (
                         name, e, "n/a" if a is None else "%.3f" % a,
                         "n/a" if not a else "%.2f" % (e / a),
                         "n/a" if not lg else "%.3f" % (e / lg),
                         "n/a" if not fb else "%.3f" % (fb / e)))
    return lines


def churn_md(results):
    out = []
    for name, r in results.get("configs", {}).items():
        if r.get("config", {}).get("kind") != "churn" or not r.get("runs"):
            continue
        out += ["## Churn with free page reporting on (%s)" % name, "",
                "tests/e2e's churn scenario (50 random resizes, the device "
                "frozen mid-inflation, 128 MiB of checksummed data, "
                "`memtouch --verify`, any kernel splat such as `BUG: Bad "
                "page state` a failure) with balloon13d offering every "
                "feature, free page reporting among them. Bad pages: 0 when "
                "it passed.", "",
                "| kernel | result | bad pages | REPORT messages | reported "
                "MiB | seconds |", "|---|---|---|---|---|---|"]
        for x in r["runs"]:
            out.append("| %s | %s | %s | %s | %s | %.0f |" % (
                x["series"], "passed" if x["passed"] else
                ("skipped: %s" % x["skipped"] if x.get("skipped") else "FAILED"),
                "0" if x["passed"] else "-",
                "-" if x["report_messages"] is None else x["report_messages"],
                "-" if x["reported_mib"] is None else "%.0f" % x["reported_mib"],
                x["seconds"]))
        out.append("")
    return out


def churn_lines(results):
    return ["%s %s bad_pages=%s report_messages=%s (goal 0 bad pages, "
            "reporting on: %s)" % (
                name, x["series"], 0 if x["passed"] else "n/a",
                x["report_messages"],
                "met" if x["passed"] and x["report_messages"] else "MISSED")
            for name, r in results.get("configs", {}).items()
            if r.get("config", {}).get("kind") == "churn"
            for x in r.get("runs", [])]


def thp_summary(results):
    """{config: {"empty": success, "half": success, "ratio": half/empty}}
    for the THP configurations: success = huge pages got over THP faults,
    summed over the repetitions."""
    out = {}
    for name, r in results.get("configs", {}).items():
        if r.get("config", {}).get("kind") != "thp" or not r.get("runs"):
            continue
        w = {}
        for way in ("empty", "half"):
            runs = [x for x in r["runs"] if x["way"] == way]
            got = sum(x["thp_alloc"] for x in runs)
            fell = sum(x["thp_fallback"] for x in runs)
            # The most that could get a huge page without compaction: the
            # whole free 2 MiB blocks there were (older results: unknown).
            can = sum(min(x["free_huge_blocks"], x["thp_alloc"] +
                          x["thp_fallback"]) for x in runs
                      if "free_huge_blocks" in x)
            known = all("free_huge_blocks" in x for x in runs)
            w[way] = {"n": len(runs), "alloc": got, "fallback": fell,
                      "success": got / (got + fell) if got + fell else None,
                      "bound": can / (got + fell) if known and got + fell
                      else None}
        e, h = w["empty"]["success"], w["half"]["success"]
        out[name] = {"config": r["config"], "ways": w,
                     "thp_enabled": r.get("thp_enabled"),
                     "ratio": h / e if e and h is not None else None}
    return out


def thp_md(results):
    summ = thp_summary(results)
    if not summ:
        return []
    out = ["## THP availability with the balloon half full", "",
           "A workload touching a share of the guest's RAM (`memtouch`; "
           "guest THP `always`), with device 13's balloon empty and holding "
           "50%, repetitions interleaved in one 2 GiB VM per block size and "
           "guest: `thp-pbN` touches 20%, its free memory fragmented first "
           "(`allocbench frag`: 30% of RAM taken in single pages, every "
           "other one kept, unmovable); `thp-fresh-pbN` touches 35% of a "
           "fresh guest. Success: "
           "THP faults that got a huge page (`thp_fault_alloc`) over all THP "
           "faults (`+ thp_fault_fallback`). Goal: half full within 5% of "
           "empty.", "",
           "Bound: the THP faults whole free 2 MiB blocks (/proc/buddyinfo "
           "just before the workload) could serve without compaction; a "
           "2 MiB balloon block takes one of them, so with 2 MiB blocks that "
           "is the honest ceiling.", "",
           "| config | block | runs | empty: success | half full: success | "
           "half full: bound | half: success/bound | ratio | goal |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name, t in summ.items():
        e, h = t["ways"]["empty"], t["ways"]["half"]
        hb = h.get("bound")
        out.append("| %s | %d KiB | %d | %s (%d/%d) | %s (%d/%d) | %s | %s "
                   "| %s | %s |" % (
            name, (1 << t["config"]["page_bits"]) // 1024, e["n"],
            "-" if e["success"] is None else "%.1f%%" % (100 * e["success"]),
            e["alloc"], e["alloc"] + e["fallback"],
            "-" if h["success"] is None else "%.1f%%" % (100 * h["success"]),
            h["alloc"], h["alloc"] + h["fallback"],
            "-" if hb is None else "%.1f%%" % (100 * hb),
            "-" if not hb or h["success"] is None else
            "%.3f" % (h["success"] / hb),
            "-" if t["ratio"] is None else "**%.3f**" % t["ratio"],
            "-" if t["ratio"] is None else
            ("met" if t["ratio"] >= 0.95 else "MISSED")))
    return out + [""]


def thp_lines(results):
    return ["thp %s half/empty=%.3f (goal >= 0.95 %s)" % (
        name, t["ratio"], "met" if t["ratio"] >= 0.95 else "MISSED")
        for name, t in thp_summary(results).items() if t["ratio"] is not None]


def render(results, outdir, make_plots=True):
    """Write summary.json, results.md (and plots); return the ratio lines
    (headline last)."""
    summ = summarize(results)
    with open(os.path.join(outdir, "summary.json"), "w") as f:
        json.dump(summ, f, indent=1)
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(markdown(results, summ))
    if make_plots:
        plots(results, summ, outdir)
    lines = []
    for t, n, v, ok, b in targets(summ):
        lines.append("target %-34s %-45s %-10s %-6s best possible %s" % (
            t, n, v, "met" if ok else "MISSED", b))
    lines += (bound_lines(summ) + pressure_lines(results) +
              thp_lines(results))
    lines += (reporting_lines(results) + withdraw_lines(results) +
              churn_lines(results))
    head = None
    for name, s in summ.items():
        r = ratios(s) if "dev13" in s and "legacy" in s else None
        if r:
            if name == MAIN or head is None:
                head = (name, r)
            lines.append("%s %s" % (name, ratio_line(r)))
    if head:
        lines.append(ratio_line(head[1]))
    return lines


def merge(old_path, stage, run_path):
    """A run of some configurations (`bench.py --configs`, results in
    stage/results.json): keep it as run_path, and make stage/results.json
    the results of old_path with those configurations replaced, each
    naming its run (the report says which were measured later)."""
    with open(os.path.join(stage, "results.json")) as f:
        new = json.load(f)
    with open(old_path) as f:
        results = json.load(f)
    os.makedirs(os.path.dirname(run_path) or ".", exist_ok=True)
    with open(run_path, "w") as f:
        json.dump(new, f, indent=1)
    for name, r in new["configs"].items():
        results["configs"][name] = dict(r, run={
            "started": new["meta"].get("started"),
            "git": new["meta"].get("git"),
            "file": os.path.relpath(run_path, TOP)})
    with open(os.path.join(stage, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--merge"]:
        if len(argv) != 4:
            print("usage: report.py --merge RESULTS.json DIR RUN.json",
                  file=sys.stderr)
            return 2
        merge(argv[1], argv[2], argv[3])
        return 0
    plots_on = "--no-plots" not in argv
    args = [a for a in argv if a != "--no-plots"]
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: report.py DIR [--no-plots]", file=sys.stderr)
        return 2
    with open(os.path.join(args[0], "results.json")) as f:
        results = json.load(f)
    for line in render(results, args[0], plots_on):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
