#!/usr/bin/python3
"""Trace the device-13 spec's normative statements to the tests of a run.

The spec (spec/, LaTeX) labels every normative statement:
    \\req{B13-DRV-PAGES-02} The driver MUST name ...
inside a \\drivernormative or \\devicenormative section; the statement is
the rest of its paragraph and holds key words of one kind (MUST/MUST NOT,
SHOULD/SHOULD NOT, MAY).  spec/trace.tsv maps each label to the tests that
check it, as test-id patterns (e2e/*/inflate, kunit/<suite>/<case>, ...;
a pattern also matches the subtests of the id it names).

usage:
  spec-trace.py [--spec DIR] [--table FILE] RESULTS[=PREFIX]...
      TAP, one line per statement (spec/trace/<label>), after the checks of
      the sources (spec/lint/<check>).  RESULTS are this run's TAP/KTAP
      files, read with scripts/tap.py's read_results().  A MUST or SHOULD
      fails when no test is listed for it, or when any listed pattern
      matched no result that passed or matched one that failed; a MAY with
      no test is skipped, one with tests is checked like the others.  A
      table row naming a label the spec no longer has fails.  Exit 1 if
      anything failed.
  spec-trace.py lint [--spec DIR] [--table FILE] [--draft]
      The checks of the sources alone (make spec): labels, key words,
      sections, conformance lists, references, the table's rows, no
      TODO-like markers, and every measured value present in measured.tex
      (--draft: missing values allowed).
  spec-trace.py list [--spec DIR] [--table FILE]
      Every statement: label, key word, tests listed; then counts.
  spec-trace.py --self-test
      The checker against sample sources and results made up to fail in
      every way it must catch; TAP (spec/trace-selftest/<case>).
"""

import collections
import fnmatch
import os
import re
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tap  # noqa: E402  (scripts/tap.py: the one parser of results)

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LABEL = re.compile(r"^B13-(DRV|DEV)-[A-Z]+-[0-9]{2}$")
REQ = re.compile(r"\\req\{([^}]*)\}")
REQREF = re.compile(r"\\reqref\{([^}]*)\}")
KEYWORD_MENTION = re.compile(r"\\keyword\{[^}]*\}")
# Longest first, so that MUST NOT is not read as MUST.
KEYWORDS = re.compile(r"\b(MUST NOT|MUST|SHALL NOT|SHALL|REQUIRED|"
                      r"SHOULD NOT|SHOULD|NOT RECOMMENDED|RECOMMENDED|"
                      r"MAY|OPTIONAL)\b")
LEVEL = {"MUST NOT": "MUST", "MUST": "MUST", "SHALL NOT": "MUST",
         "SHALL": "MUST", "REQUIRED": "MUST", "SHOULD NOT": "SHOULD",
         "SHOULD": "SHOULD", "NOT RECOMMENDED": "SHOULD",
         "RECOMMENDED": "SHOULD", "MAY": "MAY", "OPTIONAL": "MAY"}
NORMATIVE = re.compile(r"\\(driver|device)normative\{[^}]*\}\{[^}]*\}\{([^}]*)\}")
CONFORMANCE = re.compile(r"\\conformance\{")
SECTIONING = re.compile(r"\\(part|chapter|section|subsection|subsubsection|"
                        r"paragraph|subparagraph)\*?\{")
NORMREF = re.compile(r"\\ref\{(driver|device)normative:([^}]*)\}")
MEASURED_USE = re.compile(r"\\measured\{([^}#]*)\}")
MEASURED_SET = re.compile(r"^\s*\\setmeasured\{([^}]*)\}\{(.*)\}\s*$")
UNFINISHED = re.compile(r"\b(TODO|TBD|FIXME|XXX)\b")

Statement = collections.namedtuple(
    "Statement", "label level keyword kind file line text")


def strip_comment(line):
    """A LaTeX line without its comment (an unescaped %)."""
    out, i = [], 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            out.append(line[i:i + 2])
            i += 2
            continue
        if c == "%":
            break
        out.append(c)
        i += 1
    return "".join(out)


class Spec:
    """The statements of the .tex files under a directory, and what is
    wrong with how they are written (self.problems: check -> messages)."""

    def __init__(self, root):
        self.root = root
        self.statements = []
        self.problems = collections.defaultdict(list)
        self.sections = {"driver": [], "device": []}     # normative labels
        self.conformance = {"driver": [], "device": []}  # their references
        self.reqrefs = []
        self.measured_used = {}
        self.files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for f in sorted(filenames):
                self.files.append(os.path.join(dirpath, f))
        for path in self.files:
            if path.endswith(".tex"):
                self._parse(path)
        seen = {}
        for st in self.statements:
            if st.label in seen:
                self.problem("labels", st, "label %s also at %s"
                             % (st.label, seen[st.label]))
            else:
                seen[st.label] = "%s:%d" % (self.rel(st.file), st.line)
        self.by_label = {st.label: st for st in self.statements}

    def rel(self, path):
        return os.path.relpath(path, self.root)

    def problem(self, check, where, msg):
        if isinstance(where, Statement):
            where = (where.file, where.line)
        self.problems[check].append("%s:%d: %s"
                                    % (self.rel(where[0]), where[1], msg))

    def _parse(self, path):
        with open(path, encoding="utf-8") as f:
            raw = f.readlines()
        context = None          # None, "driver", "device" or "conformance"
        para, start = [], 0
        in_listing = False
        for n, line in enumerate(raw, 1):
            text = strip_comment(line.rstrip("\n"))
            for m in MEASURED_USE.finditer(text):
                self.measured_used.setdefault(m.group(1), (path, n))
            for m in REQREF.finditer(text):
                self.reqrefs.append((m.group(1), path, n))
            if re.search(r"\\begin\{lstlisting\}", text):
                in_listing = True
            if in_listing:
                if re.search(r"\\end\{lstlisting\}", text):
                    in_listing = False
                continue
            m = NORMATIVE.search(text)
            if m or CONFORMANCE.search(text) or SECTIONING.search(text):
                self._paragraph(path, start, para, context)
                para, start = [], n + 1
                if m:
                    context = m.group(1)
                    self.sections[context].append(m.group(2))
                elif CONFORMANCE.search(text):
                    context = "conformance"
                else:
                    context = None
                continue
            for m in NORMREF.finditer(text):
                self.conformance[m.group(1)].append((m.group(2), path, n))
            if not text.strip():
                self._paragraph(path, start, para, context)
                para, start = [], n + 1
            else:
                if not para:
                    start = n
                para.append(text)
        self._paragraph(path, start, para, context)

    def _paragraph(self, path, line, lines, context):
        if not lines:
            return
        text = " ".join(s.strip() for s in lines)
        scan = KEYWORD_MENTION.sub("", text)
        reqs = REQ.findall(scan)
        words = KEYWORDS.findall(REQ.sub("", scan))
        where = (path, line)
        if context in ("driver", "device"):
            if not reqs:
                if words:
                    self.problem("statements", where, "normative text (%s) "
                                 "without a \\req{} label" % words[0])
                return
            if len(reqs) > 1 or not re.match(r"\s*\\req\{", scan):
                self.problem("statements", where, "one \\req{} per paragraph, "
                             "at its start (found %s)" % ", ".join(reqs))
            label = reqs[0]
            want = "DRV" if context == "driver" else "DEV"
            if not LABEL.match(label):
                self.problem("labels", where, "label %r is not B13-<DRV|DEV>-"
                             "<AREA>-<NN>" % label)
            elif label.split("-")[1] != want:
                self.problem("labels", where, "%s in a %snormative section"
                             % (label, context))
            levels = sorted({LEVEL[w] for w in words})
            if not words:
                self.problem("keywords", where, "%s has no key word" % label)
            elif len(levels) > 1:
                self.problem("keywords", where, "%s mixes %s: split it"
                             % (label, " and ".join(levels)))
            body = REQ.sub("", text, count=1).strip()
            self.statements.append(Statement(
                label, levels[0] if words else None, words[0] if words else None,
                context, path, line, body))
        else:
            if reqs:
                self.problem("statements", where, "\\req{%s} outside a "
                             "normative section" % reqs[0])
            if words and context != "conformance":
                self.problem("keywords", where, "key word %s outside a "
                             "normative section (use \\keyword{} to name one)"
                             % words[0])


def read_table(path):
    """trace.tsv -> (rows {label: (patterns, line)}, problems)."""
    rows, problems = {}, []
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        return rows, ["%s: %s" % (path, e.strerror)]
    with f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cols = line.split("\t")
            label = cols[0].strip()
            pats = cols[1].split() if len(cols) > 1 else []
            if not LABEL.match(label):
                problems.append("%s:%d: %r is not a label" % (path, n, label))
                continue
            if label in rows:
                problems.append("%s:%d: second row for %s (first at line %d)"
                                % (path, n, label, rows[label][1]))
                continue
            bad = [p for p in pats if "/" not in p]
            if bad:
                problems.append("%s:%d: %s: not test ids: %s"
                                % (path, n, label, " ".join(bad)))
            rows[label] = (pats, n)
    return rows, problems


def lint(spec, table_path, draft=False, measured=True):
    """[(check, problems)] for the sources; an empty list of problems is a
    pass."""
    checks = []
    for name in ("statements", "labels", "keywords"):
        checks.append((name, spec.problems.get(name, [])))

    found = {k: {label for label, _, _ in spec.conformance[k]}
             for k in spec.conformance}
    prob = []
    for kind in ("driver", "device"):
        for label in spec.sections[kind]:
            if label not in found[kind]:
                prob.append("%snormative:%s is in no conformance list"
                            % (kind, label))
        for label, path, n in spec.conformance[kind]:
            if label not in spec.sections[kind]:
                prob.append("%s:%d: %snormative:%s does not exist"
                            % (spec.rel(path), n, kind, label))
    checks.append(("conformance", prob))

    checks.append(("references", [
        "%s:%d: \\reqref{%s}: no such statement" % (spec.rel(p), n, label)
        for label, p, n in spec.reqrefs if label not in spec.by_label]))

    prob = []
    for path in spec.files:
        try:
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    m = UNFINISHED.search(line)
                    if m:
                        prob.append("%s:%d: %s" % (spec.rel(path), n,
                                                   line.strip()))
        except (OSError, UnicodeDecodeError):
            continue
    checks.append(("unfinished", prob))

    rows, prob = read_table(table_path)
    prob += ["%s has no row in %s" % (st.label, os.path.basename(table_path))
             for st in spec.statements if st.label not in rows]
    prob += ["%s: row for a label the spec does not have"
             % label for label in rows if label not in spec.by_label]
    checks.append(("table", prob))

    if measured:
        checks.append(("measured", check_measured(spec, draft)))
    return checks


def check_measured(spec, draft):
    path = os.path.join(spec.root, "measured.tex")
    values, prob = {}, []
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                m = MEASURED_SET.match(strip_comment(line))
                if m:
                    values[m.group(1)] = (m.group(2).strip(), n)
    except OSError as e:
        return ["measured.tex: %s" % e.strerror]
    for key, (p, n) in sorted(spec.measured_used.items()):
        if key not in values:
            if not draft:
                prob.append("%s:%d: \\measured{%s} has no value in "
                            "measured.tex" % (spec.rel(p), n, key))
        elif not values[key][0] and not draft:
            prob.append("measured.tex:%d: %s is still empty"
                        % (values[key][1], key))
    for key, (_, n) in sorted(values.items()):
        if key not in spec.measured_used:
            prob.append("measured.tex:%d: %s is not used" % (n, key))
    return prob


def matches(pattern, ids):
    sub = pattern + "/*"
    return [i for i in ids if fnmatch.fnmatchcase(i, pattern) or
            fnmatch.fnmatchcase(i, sub)]


def trace(spec, rows, results):
    """[(label, status, reasons)] for every statement in document order,
    then for every row whose label the spec no longer has.  status is
    tap.PASS, tap.FAIL or tap.SKIP."""
    out = []
    for st in spec.statements:
        pats = rows.get(st.label, ([], 0))[0]
        if not pats:
            if st.level == "MAY":
                out.append((st.label, tap.SKIP, ["MAY, no test listed"]))
            else:
                out.append((st.label, tap.FAIL, ["%s with no test in the "
                                                 "table" % (st.level or "?")]))
            continue
        why = []
        for p in pats:
            got = matches(p, results)
            status = collections.Counter(results[i] for i in got)
            if not got:
                why.append("%s: no such test in this run" % p)
            elif status[tap.FAIL]:
                why.append("%s: failed: %s" % (p, " ".join(
                    sorted(i for i in got if results[i] == tap.FAIL)[:5])))
            elif not status[tap.PASS]:
                why.append("%s: only skipped in this run" % p)
        out.append((st.label, tap.FAIL if why else tap.PASS,
                    why or ["%s: %s" % (st.level, " ".join(pats))]))
    for label in sorted(rows):
        if label not in spec.by_label:
            out.append((label, tap.FAIL, [
                "row at line %d names a label the spec no longer has"
                % rows[label][1]]))
    return out


class Tap:
    def __init__(self, stream=sys.stdout):
        self.lines, self.failed, self.stream = [], 0, stream

    def add(self, status, name, diag=()):
        self.lines.append((status, name, list(diag)))
        self.failed += status == tap.FAIL

    def emit(self, trailer=()):
        w = self.stream.write
        w("TAP version 13\n1..%d\n" % len(self.lines))
        for k, (status, name, diag) in enumerate(self.lines, 1):
            if status == tap.SKIP:
                w("ok %d - %s # SKIP %s\n" % (k, name, "; ".join(diag)))
                continue
            w("%s %d - %s\n" % ("ok" if status == tap.PASS else "not ok",
                                k, name))
            for d in diag:
                w("# %s\n" % d)
        for t in trailer:
            w("# %s\n" % t)
        return 1 if self.failed else 0


def add_lint(t, checks):
    for name, prob in checks:
        t.add(tap.FAIL if prob else tap.PASS, "spec/lint/" + name, prob)


def summary(spec, rows):
    levels = collections.Counter(st.level for st in spec.statements)
    tested = collections.Counter(st.level for st in spec.statements
                                 if rows.get(st.label, ([], 0))[0])
    return ["%d normative statements: %s; with tests listed: %s" % (
        len(spec.statements),
        ", ".join("%s %d" % (k, levels[k]) for k in ("MUST", "SHOULD", "MAY")),
        ", ".join("%s %d" % (k, tested[k]) for k in ("MUST", "SHOULD", "MAY")))]


def run(args, stream=sys.stdout):
    spec_dir = os.path.join(TOP, "spec")
    table = None
    mode, draft, results = "trace", False, []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--spec":
            spec_dir, i = args[i + 1], i + 1
        elif a == "--table":
            table, i = args[i + 1], i + 1
        elif a == "--draft":
            draft = True
        elif a in ("lint", "list") and mode == "trace" and not results:
            mode = a
        elif a.startswith("-"):
            stream.write(__doc__.split("usage:")[1])
            return 2
        else:
            results.append(a)
        i += 1
    table = table or os.path.join(spec_dir, "trace.tsv")
    spec = Spec(spec_dir)
    rows = read_table(table)[0]
    t = Tap(stream)
    if mode == "lint":
        add_lint(t, lint(spec, table, draft=draft))
        return t.emit(summary(spec, rows))
    if mode == "list":
        for st in spec.statements:
            stream.write("%-22s %-10s %s\n" % (st.label, st.keyword or "?",
                         " ".join(rows.get(st.label, ([], 0))[0]) or "-"))
        stream.write("%s\n" % summary(spec, rows)[0])
        return 0
    add_lint(t, lint(spec, table, measured=False))
    res = tap.read_results(results) if results else {}
    for label, status, why in trace(spec, rows, res):
        t.add(status, "spec/trace/" + label, why)
    return t.emit(summary(spec, rows))


# ---- self-test ----------------------------------------------------------

SAMPLE_TEX = r"""\section{Sample}
Text that only describes, and names \keyword{MUST} as a word.

\drivernormative{\paragraph}{Sample}{Sample / One}

\req{B13-DRV-T-01} The driver MUST pass.

\req{B13-DRV-T-02} The driver MUST have a test but has none.

\req{B13-DRV-T-03} The driver SHOULD pass its test, which fails.

\req{B13-DRV-T-04} The driver MUST pass a test that did not run.

\req{B13-DRV-T-05} The driver MAY do without a test.

\req{B13-DRV-T-06} The driver MUST pass a test that was only skipped.

\req{B13-DRV-T-07} The driver MUST pass every parameter of a case.

\req{B13-DRV-T-08} The driver SHOULD NOT fail on any series that ran.

\devicenormative{\paragraph}{Sample}{Sample / One}

\req{B13-DEV-T-01} The device MUST pass on every series, and fails on one.

\req{B13-DEV-T-02} The device MAY do something whose test fails.

\req{B13-DEV-T-03} The device MUST fail when one of its patterns matches
nothing, even though the other passes.

\conformance{\subsection}{Sample Conformance}
A driver MUST conform to:
\begin{itemize}
\item \ref{drivernormative:Sample / One}
\item \ref{devicenormative:Sample / One}
\end{itemize}
"""

SAMPLE_TABLE = """# label\ttests\tnote
B13-DRV-T-01\te2e/*/one kunit/suite/one
B13-DRV-T-02\t\tno test yet
B13-DRV-T-03\thost/logic/three
B13-DRV-T-04\te2e/*/four
B13-DRV-T-05\t
B13-DRV-T-06\tbench/six
B13-DRV-T-07\tkunit/suite/param
B13-DRV-T-08\te2e/*/eight
B13-DEV-T-01\te2e/*/nine
B13-DEV-T-02\thost/logic/ten
B13-DEV-T-03\te2e/*/one e2e/*/nonesuch
B13-DRV-T-99\te2e/*/one\ta statement that was removed
"""

SAMPLE_E2E = """TAP version 13
1..6
ok 1 - e2e/6.1/one
ok 2 - e2e/6.12-native/one
ok 3 - e2e/6.1/eight
ok 4 - e2e/6.12/eight # SKIP no THP here
ok 5 - e2e/6.1/nine
not ok 6 - e2e/6.12-native/nine
"""

SAMPLE_OTHER = """TAP version 13
1..4
ok 1 - host/logic/ten
not ok 2 - host/logic/three
ok 3 - bench/six # SKIP no shmem THP
not ok 4 - host/logic/ten
"""

SAMPLE_KTAP = """KTAP version 1
1..1
    KTAP version 1
    # Subtest: suite
    1..2
    ok 1 one
        KTAP version 1
        # Subtest: param
        ok 1 page_bits=12
        ok 2 page_bits=21
    ok 2 param
ok 1 suite
"""

EXPECT_TRACE = {
    "B13-DRV-T-01": tap.PASS, "B13-DRV-T-02": tap.FAIL,
    "B13-DRV-T-03": tap.FAIL, "B13-DRV-T-04": tap.FAIL,
    "B13-DRV-T-05": tap.SKIP, "B13-DRV-T-06": tap.FAIL,
    "B13-DRV-T-07": tap.PASS, "B13-DRV-T-08": tap.PASS,
    "B13-DEV-T-01": tap.FAIL, "B13-DEV-T-02": tap.FAIL,
    "B13-DEV-T-03": tap.FAIL, "B13-DRV-T-99": tap.FAIL,
}

# Broken sources: each lint check must catch its fault, and only it.
_DRV = "\\drivernormative{\\paragraph}{X}{X}\n\n"
_DEV = "\\devicenormative{\\paragraph}{X}{X}\n\n"


def _conf(*refs):
    return ("\n\\conformance{\\subsection}{C}\n\\begin{itemize}\n" +
            "".join("\\item \\ref{%snormative:%s}\n" % r for r in refs) +
            "\\end{itemize}\n")


BROKEN = {
    "statements": _DRV + "The driver MUST be labelled.\n" + _conf(("driver", "X")),
    "labels": (_DEV + "\\req{B13-DRV-X-01} The device MUST carry a DEV "
               "label.\n" + _conf(("device", "X"))),
    "keywords": (_DRV + "\\req{B13-DRV-X-01} The driver MUST do one thing "
                 "and MAY do another.\n" + _conf(("driver", "X"))),
    "unfinished": (_DRV + "\\req{B13-DRV-X-01} The driver MUST do what is "
                   "TBD.\n" + _conf(("driver", "X"))),
    "references": (_DRV + "\\req{B13-DRV-X-01} The driver MUST see "
                   "\\reqref{B13-DEV-X-07}.\n" + _conf(("driver", "X"))),
    "conformance": ("\\drivernormative{\\paragraph}{X}{Unlisted}\n\n"
                    "\\req{B13-DRV-X-01} The driver MUST be listed.\n" +
                    _conf(("driver", "X"))),
    "measured": (_DRV + "\\req{B13-DRV-X-01} The driver MUST take "
                 "\\measured{not-there} seconds.\n" + _conf(("driver", "X"))),
    "table": (_DRV + "\\req{B13-DRV-X-02} The driver MUST have a row.\n" +
              _conf(("driver", "X"))),
}


def self_test():
    t = Tap()
    tmp = tempfile.mkdtemp(prefix="spec-trace-")
    try:
        spec_dir = os.path.join(tmp, "spec")
        os.makedirs(spec_dir)
        with open(os.path.join(spec_dir, "sample.tex"), "w") as f:
            f.write(SAMPLE_TEX)
        with open(os.path.join(spec_dir, "measured.tex"), "w") as f:
            f.write("")
        table = os.path.join(spec_dir, "trace.tsv")
        with open(table, "w") as f:
            f.write(SAMPLE_TABLE)
        files = []
        for name, text in (("e2e.tap", SAMPLE_E2E), ("other.tap", SAMPLE_OTHER),
                           ("kunit.ktap", SAMPLE_KTAP)):
            with open(os.path.join(tmp, name), "w") as f:
                f.write(text)
            files.append(os.path.join(tmp, name))
        files[2] += "=kunit"

        spec = Spec(spec_dir)
        rows, prob = read_table(table)
        res = tap.read_results(files)
        got = {label: status for label, status, _ in trace(spec, rows, res)}
        for label, want in sorted(EXPECT_TRACE.items()):
            t.add(tap.PASS if got.get(label) == want else tap.FAIL,
                  "spec/trace-selftest/%s-%s" % (label, want),
                  [] if got.get(label) == want else
                  ["got %s" % got.get(label)])
        t.add(tap.PASS if set(got) == set(EXPECT_TRACE) else tap.FAIL,
              "spec/trace-selftest/all-statements-reported",
              sorted(set(got) ^ set(EXPECT_TRACE)))

        # The command line: a trace run over these results exits 1, and
        # reports each failure as a TAP failure tap.py reads back.
        out = os.path.join(tmp, "trace.tap")
        with open(out, "w") as f:
            rc = run(["--spec", spec_dir] + files, stream=f)
        back = tap.read_results([out])
        want = {"spec/trace/" + k: v for k, v in EXPECT_TRACE.items()}
        ok = rc == 1 and all(back.get(k) == v for k, v in want.items())
        t.add(tap.PASS if ok else tap.FAIL,
              "spec/trace-selftest/command-line-tap",
              [] if ok else ["exit %d, results %s" % (rc, back)])

        # The sample is well formed except for its stale table row.
        checks = dict(lint(spec, table, measured=True))
        clean = all(not v for k, v in checks.items() if k != "table")
        stale = len(checks["table"]) == 1 and "B13-DRV-T-99" in checks["table"][0]
        t.add(tap.PASS if clean and stale else tap.FAIL,
              "spec/trace-selftest/lint-clean-sample",
              [] if clean and stale else ["%s" % checks])

        # Each fault is caught by its check, and only by it.
        for check, text in sorted(BROKEN.items()):
            d = os.path.join(tmp, "broken-" + check)
            os.makedirs(d)
            with open(os.path.join(d, "x.tex"), "w") as f:
                f.write(text)
            with open(os.path.join(d, "measured.tex"), "w") as f:
                f.write("")
            with open(os.path.join(d, "trace.tsv"), "w") as f:
                for st in Spec(d).statements:
                    if check != "table":
                        f.write("%s\te2e/*/x\n" % st.label)
            c = dict(lint(Spec(d), os.path.join(d, "trace.tsv")))
            failing = sorted(k for k, v in c.items() if v)
            t.add(tap.PASS if failing == [check] else tap.FAIL,
                  "spec/trace-selftest/lint-catches-" + check,
                  [] if failing == [check] else ["failing checks: %s (%s)"
                                                 % (failing, c)])
        # An empty measured value fails make spec, and not the draft.
        d = os.path.join(tmp, "broken-empty-value")
        os.makedirs(d)
        with open(os.path.join(d, "x.tex"), "w") as f:
            f.write("\\section{S}\nIt took \\measured{later}.\n")
        with open(os.path.join(d, "measured.tex"), "w") as f:
            f.write("\\setmeasured{later}{}\n")
        open(os.path.join(d, "trace.tsv"), "w").close()
        final = dict(lint(Spec(d), os.path.join(d, "trace.tsv")))["measured"]
        draft = dict(lint(Spec(d), os.path.join(d, "trace.tsv"),
                          draft=True))["measured"]
        ok = len(final) == 1 and "later" in final[0] and not draft
        t.add(tap.PASS if ok else tap.FAIL,
              "spec/trace-selftest/empty-measured-value",
              [] if ok else ["final %s, draft %s" % (final, draft)])
    finally:
        shutil.rmtree(tmp)
    return t.emit()


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if argv[1:2] in (["-h"], ["--help"]):
        sys.stdout.write(__doc__)
        return 0
    return run(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
