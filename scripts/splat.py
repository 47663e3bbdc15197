#!/usr/bin/python3
"""The one list of kernel messages that fail a test: a kernel log line
matching SPLAT is a report (BUG, WARNING, KASAN, lockdep, a lockup, an OOM
kill, ...), whichever test saw it: the e2e scenarios (tests/e2e/e2elib.py),
the debug kernel's checks and KUnit's console (scripts/kunit.sh).

    splat.py FILE...     print each matching line with what follows it
                         (at most 80 lines); exit 1 if any matched

Python 3 standard library only.
"""

import re
import sys

SPLAT = re.compile(
    r"WARNING:|BUG:|kernel BUG|Oops|general protection|KASAN|UBSAN|"
    r"Call Trace|Kernel panic|soft lockup|hard LOCKUP|"
    r"blocked for more than|INFO: task .* blocked|rcu: INFO|"
    r"detected stalls? on CPU|suspected memory leak|"
    r"list_(add|del) corruption|Out of memory|oom-kill")


def splats(lines):
    """The lines of lines (an iterable of str) that are reports."""
    return [ln for ln in lines if SPLAT.search(ln)]


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    found = 0
    shown = 0
    for path in argv[1:]:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError as e:
            print("splat.py: %s: %s" % (path, e.strerror), file=sys.stderr)
            return 2
        after = 0
        for i, ln in enumerate(lines):
            hit = SPLAT.search(ln)
            if hit:
                found += 1
                after = 12
            if after and shown < 80:
                print("%s:%d%s%s" % (path, i + 1, ":" if hit else "-", ln))
                shown += 1
                after -= 1
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
