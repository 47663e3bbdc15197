#!/usr/bin/python3
"""make check's own counting, tested: scripts/tap.py on the ways a stage
can fail, crash or say nothing, and scripts/check.sh's stage runner on a
missing, unrunnable or crashing command.

    python3 tests/check/test_tap.py [--tap FILE]

TAP results, ids check/tap/<case> and check/stage/<case>.  Python 3
standard library only.
"""

import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, "scripts"))
import tap  # noqa: E402


def write(d, name, text):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def statuses(results):
    return {r.id: r.status for r in results}


def case_clean(d):
    p = write(d, "a.tap", "TAP version 14\n1..3\nok 1 - s/a\nnot ok 2 - s/b\n"
              "# why\nok 3 - s/c # SKIP not here\n")
    res = tap.tally([p], plans=True)
    assert tap.count(res) == (1, 1, 1), tap.count(res)
    assert [r.reason for r in res if r.id == "s/b"] == ["why"], res


def case_missing_results(d):
    p = write(d, "a.tap", "TAP version 14\n1..3\nok 1 - s/a\n")
    st = statuses(tap.tally([p], label="s"))
    assert st == {"s/a": "pass", "s/missing-2": "fail", "s/missing-3": "fail"}, st


def case_no_plan(d):
    p = write(d, "a.tap", "ok 1 - s/a\n")
    st = statuses(tap.tally([p], plans=True, label="s"))
    assert st == {"s/a": "pass", "s/a.tap/no-plan": "fail"}, st


def case_no_file(d):
    st = statuses(tap.tally([os.path.join(d, "none.tap")], label="s"))
    assert st == {"s/none.tap/no-results": "fail"}, st


def case_empty(d):
    p = write(d, "a.tap", "TAP version 14\n1..0\n")
    st = statuses(tap.tally([p], label="s"))
    assert st == {"s/a.tap/no-results": "fail"}, st


def case_duplicate(d):
    p = write(d, "a.tap", "1..1\nok 1 - s/a\n")
    q = write(d, "b.tap", "1..1\nok 1 - s/a\n")
    res = tap.tally([p, q])
    st = statuses(res)
    assert st == {"s/a": "pass", "s/a/reported-2-times": "fail"}, st


def case_bail_out(d):
    p = write(d, "a.tap", "1..2\nok 1 - s/a\nBail out! disk full\n")
    st = statuses(tap.tally([p], label="s"))
    assert st["s/bail-out"] == "fail" and st["s/missing-2"] == "fail", st


def case_todo(d):
    p = write(d, "a.tap", "1..1\nnot ok 1 - s/a # TODO later\n")
    assert statuses(tap.tally([p])) == {"s/a": "fail"}


def case_ktap_nested(d):
    p = write(d, "k.ktap", "KTAP version 1\n1..1\n    KTAP version 1\n"
              "    # Subtest: suite\n    1..2\n    ok 1 case_a\n"
              "        # Subtest: par\n        ok 1 p=1\n"
              "        not ok 2 p=2\n    not ok 2 par\nnot ok 1 suite\n")
    st = statuses(tap.tally([p + "=kunit"]))
    assert st == {"kunit/suite/case_a": "pass", "kunit/suite/par/p=1": "pass",
                  "kunit/suite/par/p=2": "fail"}, st


def case_ktap_died(d):
    # The kernel died in the second case of a suite that announced three.
    p = write(d, "k.ktap", "KTAP version 1\n1..1\n    KTAP version 1\n"
              "    # Subtest: suite\n    1..3\n    ok 1 case_a\n")
    st = statuses(tap.tally([p + "=kunit"]))
    assert st.get("kunit/suite/missing-2") == "fail", st
    assert st.get("kunit/suite/missing-3") == "fail", st
    assert st.get("kunit/missing-1") == "fail", st


def case_from_lines(d):
    out = os.path.join(d, "h.tap")
    tap.from_lines(["PASS a\n", "noise\n", "FAIL b: broke\n",
                    "SKIP host/c (needs root)\n"], "host", out)
    res = tap.tally([out], plans=True)
    assert statuses(res) == {"host/a": "pass", "host/b": "fail",
                             "host/c": "skip"}, statuses(res)


def summary_of(d, rows):
    table = write(d, "stages.tsv", "".join("%s\t%s\t%d\t1\n" % r for r in rows))
    p = subprocess.run([sys.executable, os.path.join(TOP, "scripts", "tap.py"),
                        "summary", table], stdout=subprocess.PIPE, text=True)
    return p.returncode, p.stdout


def case_exit_status(d):
    p = write(d, "a.tap", "1..1\nok 1 - s/a\n")
    rc, out = summary_of(d, [("s", p, 3)])
    assert rc == 1 and "s/exit-status" in out, out
    assert out.rstrip().splitlines()[-1] == "1 passed, 1 failed, 0 skipped", out
    rc, out = summary_of(d, [("s", p, 0)])
    assert rc == 0 and out.rstrip().endswith("1 passed, 0 failed, 0 skipped"), out


def stage_run(d, command):
    """Run scripts/check.sh's stage() and lines() on a command, then the
    summary; returns its last line."""
    script = r'''
set -uo pipefail
VB13_TOP=%(top)s
O=%(d)s
t0=$(date +%%s)
fg_log=0
eval "$(sed -n '/^stage() {/,/^}/p; /^lines() {/,/^}/p' %(top)s/scripts/check.sh)"
: >"$O/stages.tsv"
cd "$VB13_TOP"
stage s "$O/s.tap" %(cmd)s >/dev/null
python3 scripts/tap.py summary "$O/stages.tsv"
''' % {"top": TOP, "d": d, "cmd": command}
    p = subprocess.run(["bash", "-c", script], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    return p.stdout.rstrip().splitlines()[-1], p.stdout


def case_stage_missing_script(d):
    last, out = stage_run(d, "bash scripts/no-such-script.sh")
    assert last == "0 passed, 1 failed, 0 skipped", out


def case_stage_missing_tool(d):
    last, out = stage_run(d, "no-such-tool-vb13 --strict")
    assert last == "0 passed, 1 failed, 0 skipped", out


def case_stage_not_executable(d):
    script = write(d, "t.sh", "#!/bin/sh\necho PASS a\n")
    os.chmod(script, 0o644)
    last, out = stage_run(d, "lines s " + script)
    assert last == "0 passed, 1 failed, 0 skipped", out


def case_stage_crash(d):
    script = write(d, "t.sh", "#!/bin/sh\nprintf '1..3\\nok 1 - s/a\\n' >\"$VB13_TAP\"\n"
                   "kill -SEGV $$\n")
    os.chmod(script, 0o755)
    last, out = stage_run(d, script)
    assert last == "1 passed, 2 failed, 0 skipped", out


def case_stage_lines_exit(d):
    # "PASS" lines and then a non-zero exit (a suite that died quietly).
    script = write(d, "t.sh", "#!/bin/sh\necho PASS a\nexit 2\n")
    os.chmod(script, 0o755)
    last, out = stage_run(d, "lines s " + script)
    assert last == "1 passed, 1 failed, 0 skipped" and "s/exit-status" in out, out


CASES = [(n[5:].replace("_", "-"), f) for n, f in sorted(globals().items())
         if n.startswith("case_")]


def main():
    dest = sys.argv[2] if sys.argv[1:2] == ["--tap"] else os.environ.get("VB13_TAP")
    out = tap.Writer(dest, echo=sys.stdout) if dest else tap.Writer(sys.stdout)
    out.plan(len(CASES))
    failed = 0
    for name, func in CASES:
        group = "stage" if name.startswith("stage-") else "tap"
        tid = "check/%s/%s" % (group, name[6:] if group == "stage" else name)
        with tempfile.TemporaryDirectory() as d:
            try:
                func(d)
            except Exception as e:      # an assertion or a broken helper
                out.not_ok(tid, "%s: %s" % (type(e).__name__, e))
                failed += 1
            else:
                out.ok(tid)
    out.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
