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

usage:
  tap.py count FILE[=PREFIX]...   "N passed, N failed, N skipped"; exit 1
                                  if anything failed
  tap.py list FILE[=PREFIX]...    one line per result: status and id
  tap.py failures FILE[=PREFIX]...  the ids that failed, with reasons
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
                self.results.append(("missing-%d" % k, FAIL,
                                     "announced by its plan, never reported"))
            self.plan = self.seen


def _split(desc):
    """description -> (name, directive or None, reason)."""
    m = DIRECTIVE.search(desc)
    if not m:
        return desc.strip(), None, ""
    return desc[:m.start()].strip(), m.group(1).upper(), m.group(2).strip()


VERSION = re.compile(r"^(\s*)K?TAP version \d+")


def parse(lines, prefix="", source="-"):
    """Parse TAP/KTAP lines; return the list of leaf Results in order."""
    stack = [_Level(0)]
    closed = []     # levels closed since the last result line

    def close_to(indent):
        while len(stack) > 1 and stack[-1].indent > indent:
            lvl = stack.pop()
            lvl.finish()
            closed.append(lvl)

    bail = []
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
            continue
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
    close_to(-1)
    stack[0].finish()
    top = stack[0].results
    for c in closed:    # subtests whose own result line never came
        top.append((c.name or "unfinished", "parent",
                    c.results + [("result", FAIL, "never reported")]))

    out = []

    def walk(entries, path):
        for name, status, extra in entries:
            here = "/".join(p for p in (path, name) if p)
            if status == "parent":
                walk(extra, here)
            else:
                out.append(Result(here, status, extra, source))

    walk(top, prefix)
    for why in bail:
        out.append(Result("/".join(p for p in (prefix, "bail-out") if p),
                          FAIL, why, source))
    return out


def read(spec):
    """FILE or FILE=PREFIX -> list of Results (never empty for a bad file)."""
    path, _, prefix = spec.partition("=")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            res = parse(f, prefix, path)
    except OSError as e:
        res = []
        why = e.strerror
    else:
        why = "no test results in it"
    if not res:
        res = [Result("%s/%s/no-results" % (prefix or "tap",
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


def main(argv):
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
