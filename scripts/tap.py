#!/usr/bin/python3
"""The one parser of test results: TAP (13/14) and KTAP, nested or flat.

Every stage of `make check` writes its results as TAP (or, for KUnit, the
KTAP the kernel prints); this module reads them all, so counting, the
spec's trace check and anything else that asks "did test X pass in this
run?" agree on the answer.

A result is a leaf test: a result line whose subtests printed no results
of their own.  Its id is the path of descriptions from the outermost test
down, joined with "/" (KTAP: suite/case/parameter), after an optional
prefix given for the file (e.g. "kunit").  A stage's own TAP lines carry
the full id as their description ("ok 3 - e2e/6.12/probe").

Failures the parser adds itself, so that a broken stage cannot look clean:
  <prefix>/<file>/no-results   the file is missing, unreadable or empty of
                               results
  <parent>/missing-<k>         a plan ("1..N") announced N results and
                               fewer came (the kernel or runner died)
  <prefix>/bail-out            a "Bail out!" line
  # TODO                       counts as a failure (no TODO tests here)

  <prefix>/<file>/no-plan      (tally with plans=True) a file whose top
                               level announced no plan: a producer that
                               died early could not be told from one done
  <id>/reported-<n>-times      (tally) an id reported more than once: every
                               test runs and counts once

A failed result's reason is its SKIP/TODO text, or else the first "# "
diagnostic line right after it (what Writer writes).

Writing TAP: Writer (below) is what the project's Python producers use;
from_lines() turns the "PASS id" / "FAIL id: why" / "SKIP id: why" lines
of a producer not converted yet into TAP.

usage:
  tap.py count FILE[=PREFIX]...   "N passed, N failed, N skipped"; exit 1
                                  if anything failed
  tap.py list FILE[=PREFIX]...    one line per result: status and id
  tap.py failures FILE[=PREFIX]...  the ids that failed, with reasons
  tap.py from-lines PREFIX OUT    stdin "PASS/FAIL/SKIP id" lines -> TAP
                                  file OUT (ids get PREFIX/ unless they
                                  start with it); copies stdin to stdout
  tap.py summary STAGES.tsv       make check's count: every stage of the
                                  table (id, TAP spec, exit status,
                                  seconds), a plan required, an exit
                                  status without a failed test counted as
                                  one, duplicates flagged; prints each
                                  stage's count, the failures, and last
                                  "N passed, N failed, N skipped"
"""

import collections
import os
import re
import sys

PASS, FAIL, SKIP = "pass", "fail", "skip"

Result = collections.namedtuple("Result", "id status reason source")

# printk time stamps ("[    1.234567] ") of a console log, and kunit.py's
# own prefixes, before a KTAP line.
STAMP = re.compile(r"^(?:\[[^\]]*\] ?)+")
RESULT = re.compile(r"^(\s*)(ok|not ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$")
PLAN = re.compile(r"^(\s*)1\.\.(\d+)\b")
SUBTEST = re.compile(r"^(\s*)#\s*Subtest:\s*(.*?)\s*$")
BAIL = re.compile(r"^\s*Bail out!(.*)$")
DIRECTIVE = re.compile(r"\s+#\s*(SKIP|TODO)\b\s*(.*)$", re.IGNORECASE)
DIAG = re.compile(r"^(\s*)#\s?(.*?)\s*$")


MISSING = "announced by its plan, never reported"


class _Level:
    """The tests at one indentation: their plan, the results so far, and
    the name a '# Subtest:' line gave the test they belong to."""

    def __init__(self, indent, name=None):
        self.indent = indent
        self.name = name
        self.plan = None
        self.seen = 0
        self.results = []   # (name, status, reason) or (name, "parent", [...])

    def finish(self):
        """Results a plan announced and that never came fail."""
        if self.plan is not None:
            for k in range(self.seen + 1, self.plan + 1):
                self.results.append(("missing-%d" % k, FAIL, MISSING))
            self.plan = self.seen


def _split(desc):
    """description -> (name, directive or None, reason)."""
    m = DIRECTIVE.search(desc)
    if not m:
        return desc.strip(), None, ""
    return desc[:m.start()].strip(), m.group(1).upper(), m.group(2).strip()


VERSION = re.compile(r"^(\s*)K?TAP version \d+")


def parse(lines, prefix="", source="-", label=""):
    """Parse TAP/KTAP lines; return the list of leaf Results in order.
    The failures the parser adds at the top level (missing-<k>, bail-out)
    get prefix, or else label (say, the stage's name), before their id."""
    stack = [_Level(0)]
    closed = []     # levels closed since the last result line

    def close_to(indent):
        while len(stack) > 1 and stack[-1].indent > indent:
            lvl = stack.pop()
            lvl.finish()
            closed.append(lvl)

    bail = []
    why = None      # (level, index) of a failed result still without reason
    for raw in lines:
        line = STAMP.sub("", raw.rstrip("\n"), count=1)
        m = BAIL.match(line)
        if m:
            bail.append(m.group(1).strip())
            continue
        for kind, rx in (("result", RESULT), ("plan", PLAN),
                         ("subtest", SUBTEST), ("version", VERSION)):
            m = rx.match(line)
            if m:
                break
        else:
            m = DIAG.match(line)
            if why and m and m.group(2):
                lvl, k = why
                name, status, _ = lvl.results[k]
                lvl.results[k] = (name, status, m.group(2))
            why = None
            continue
        why = None
        indent = len(m.group(1))
        close_to(indent)
        if indent > stack[-1].indent:
            stack.append(_Level(indent))
        lvl = stack[-1]
        if kind == "subtest":
            if lvl.seen or lvl.plan is not None and lvl.name:
                # A sibling's subtest after results at this depth.
                close_to(indent - 1)
                stack.append(_Level(indent))
                lvl = stack[-1]
            lvl.name = m.group(2)
        elif kind == "plan":
            lvl.plan = int(m.group(2))
        elif kind == "result":
            lvl.seen += 1
            name, directive, reason = _split(m.group(4))
            status = PASS if m.group(2) == "ok" else FAIL
            if directive == "SKIP":
                status = SKIP
            elif directive == "TODO":
                status, reason = FAIL, "TODO: " + reason
            if closed:
                nested = []
                for c in closed:
                    nested.extend(c.results)
                del closed[:]
                lvl.results.append((name, "parent", nested))
            else:
                lvl.results.append((name, status, reason))
                if status == FAIL and not reason:
                    why = (lvl, len(lvl.results) - 1)
    close_to(-1)
    stack[0].finish()
    top = stack[0].results
    for c in closed:    # subtests whose own result line never came
        top.append((c.name or "unfinished", "parent",
                    c.results + [("result", FAIL, "never reported")]))

    out = []

    def walk(entries, path):
        for name, status, extra in entries:
            if not path and status == FAIL and extra == MISSING:
                here = "/".join(p for p in (label, name) if p)
            else:
                here = "/".join(p for p in (path, name) if p)
            if status == "parent":
                walk(extra, here)
            else:
                out.append(Result(here, status, extra, source))

    walk(top, prefix)
    for why in bail:
        out.append(Result("/".join(p for p in (prefix or label, "bail-out") if p),
                          FAIL, why, source))
    return out


def read(spec, label=""):
    """FILE or FILE=PREFIX -> list of Results (never empty for a bad file).
    label names the failures the parser adds when there is no prefix."""
    path, _, prefix = spec.partition("=")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            res = parse(f, prefix, path, label)
    except OSError as e:
        res = []
        why = e.strerror
    else:
        why = "no test results in it"
    if not res:
        res = [Result("%s/%s/no-results" % (prefix or label or "tap",
                                            os.path.basename(path)),
                      FAIL, why, path)]
    return res


def read_results(specs):
    """Every result of several files, as {id: status}.  An id reported more
    than once is failed if any report failed, passed if any passed and
    none failed, otherwise skipped."""
    rank = {FAIL: 2, PASS: 1, SKIP: 0}
    merged = {}
    for spec in specs:
        for r in read(spec):
            old = merged.get(r.id)
            if old is None or rank[r.status] > rank[old]:
                merged[r.id] = r.status
    return merged


def count(results):
    c = collections.Counter(r.status for r in results)
    return c[PASS], c[FAIL], c[SKIP]


def has_plan(path):
    """Whether a TAP file's top level announces a plan ("1..N" unindented)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for raw in f:
                m = PLAN.match(STAMP.sub("", raw.rstrip("\n"), count=1))
                if m and not m.group(1):
                    return True
    except OSError:
        pass
    return False


def tally(specs, plans=False, label=""):
    """Every result of several files, each id once, in order: an id
    reported more than once keeps its worst status (as read_results) and
    adds the failure <id>/reported-<n>-times.  With plans, a file with
    results but no top-level plan adds the failure <prefix>/<file>/no-plan."""
    every, extra = [], []
    for spec in specs:
        path, _, prefix = spec.partition("=")
        res = read(spec, label)
        if plans and not res[0].id.endswith("/no-results") and not has_plan(path):
            extra.append(Result("%s/%s/no-plan" % (prefix or label or "tap",
                                                  os.path.basename(path)),
                                FAIL, "no top-level plan (1..N): a stage that "
                                "died early can't be told from one done", path))
        every.extend(res)
    return tally_results(every) + extra


class Writer:
    """Write a TAP 14 file (or stream) as results come, flushed line by
    line, so that a producer that dies leaves what it had.

        w = Writer("out/check/e2e.tap")      # or a file object
        w.plan(3)                            # before the results, if known
        w.ok("e2e/6.12/probe")
        w.not_ok("e2e/6.12/inflate", "size 0, want 512 MiB", details)
        w.skip("e2e/6.12-native/qmp", "no native device in this QEMU")
        w.close()                            # a plan at the end if none yet

    A description is the test's full id; the reason and any details follow
    as "# " lines (never mistaken for results).  echo: also write every
    line to this stream (e.g. sys.stdout)."""

    def __init__(self, dest, echo=None):
        self._own = isinstance(dest, str)
        if self._own:
            d = os.path.dirname(dest)
            if d:
                os.makedirs(d, exist_ok=True)
        self.f = open(dest, "w", encoding="utf-8") if self._own else dest
        self.echo = echo
        self.n = 0
        self.planned = None
        self._line("TAP version 14")

    def _line(self, text):
        for out in (self.f, self.echo):
            if out is not None:
                out.write(text + "\n")
                out.flush()

    def plan(self, n):
        if self.planned is None:
            self.planned = n
            self._line("1..%d" % n)

    def comment(self, text):
        for ln in str(text).splitlines() or [""]:
            self._line("# " + ln)

    def _result(self, ok, tid, directive=""):
        if any(c in tid for c in "#\n"):
            raise ValueError("a test id has no '#' or newline: %r" % tid)
        self.n += 1
        self._line("%s %d - %s%s" % ("ok" if ok else "not ok", self.n, tid,
                                     directive))

    def ok(self, tid):
        self._result(True, tid)

    def not_ok(self, tid, reason="", details=""):
        self._result(False, tid)
        if reason:
            self.comment(" ".join(str(reason).split()))
        if details:
            self.comment(details)

    def skip(self, tid, reason=""):
        self._result(True, tid, " # SKIP %s" % " ".join(str(reason).split()))

    def bail(self, reason):
        self._line("Bail out! %s" % " ".join(str(reason).split()))

    def close(self):
        if self.planned is None:
            self.plan(self.n)
        if self._own and not self.f.closed:
            self.f.close()


LINE = re.compile(r"^(PASS|FAIL|SKIP) (\S+?)(?::? (.*))?$")


def from_lines(lines, prefix, out, echo=None):
    """'PASS id' / 'FAIL id: why' / 'SKIP id: why' lines (anything else is
    copied to echo) -> TAP in out.  For producers that print those lines
    until they write TAP themselves; the plan is the count seen."""
    w = Writer(out)
    for raw in lines:
        if echo is not None:
            echo.write(raw)
            echo.flush()
        m = LINE.match(raw.rstrip("\n"))
        if not m:
            continue
        kind, tid, why = m.group(1), m.group(2), m.group(3) or ""
        if prefix and not tid.startswith(prefix + "/"):
            tid = prefix + "/" + tid
        if kind == "PASS":
            w.ok(tid)
        elif kind == "SKIP":
            w.skip(tid, why)
        else:
            w.not_ok(tid, why)
    w.close()
    return w.n


def summary(table):
    """make check's count from a stage table; prints it and returns the
    (passed, failed, skipped) of everything."""
    stages = []
    with open(table, encoding="utf-8") as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                sid, spec, rc, secs = line.rstrip("\n").split("\t")[:4]
                stages.append((sid, spec, int(rc), float(secs)))
    every = []
    print("%-22s %6s %6s %6s %5s %8s" % ("stage", "passed", "failed",
                                          "skipped", "exit", "seconds"))
    for sid, spec, rc, secs in stages:
        res = tally(spec.split(","), plans=True, label=sid)
        p, f, s = count(res)
        if rc != 0 and f == 0:
            res.append(Result("%s/exit-status" % sid, FAIL,
                              "the stage exited %d without a failed test of "
                              "its own" % rc, spec.split(",")[0].partition("=")[0]))
        every.extend(res)
        p, f, s = count(res)
        print("%-22s %6d %6d %6d %5d %8.0f" % (sid, p, f, s, rc, secs))
    # The same id from two stages (a scenario run twice) counts once.
    merged = tally_results(every)
    fails = [r for r in merged if r.status == FAIL]
    if fails:
        print("failed:")
        for r in fails:
            print("  %s%s" % (r.id, ": " + r.reason if r.reason else ""))
    p, f, s = count(merged)
    print("%d passed, %d failed, %d skipped" % (p, f, s))
    return p, f, s


def tally_results(results):
    """tally() over results already read."""
    rank = {FAIL: 2, PASS: 1, SKIP: 0}
    first = collections.OrderedDict()
    seen = collections.Counter()
    for r in results:
        seen[r.id] += 1
        old = first.get(r.id)
        if old is None or rank[r.status] > rank[old.status]:
            first[r.id] = r
    out = list(first.values())
    for rid, n in seen.items():
        if n > 1:
            out.append(Result("%s/reported-%d-times" % (rid, n), FAIL,
                              "every test runs and counts once",
                              first[rid].source))
    return out


def main(argv):
    if argv[1:2] == ["from-lines"] and len(argv) == 4:
        from_lines(sys.stdin, argv[2], argv[3], echo=sys.stdout)
        return 0
    if argv[1:2] == ["summary"] and len(argv) == 3:
        return 1 if summary(argv[2])[1] else 0
    if len(argv) < 3 or argv[1] not in ("count", "list", "failures"):
        sys.stderr.write(__doc__.split("usage:")[1])
        return 2
    results = []
    for spec in argv[2:]:
        results.extend(read(spec))
    if argv[1] == "list":
        for r in results:
            print("%-4s %s" % (r.status, r.id))
    elif argv[1] == "failures":
        for r in results:
            if r.status == FAIL:
                print("%s%s" % (r.id, ": " + r.reason if r.reason else ""))
    p, f, s = count(results)
    if argv[1] == "count":
        print("%d passed, %d failed, %d skipped" % (p, f, s))
    return 1 if f else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
