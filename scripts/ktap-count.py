#!/usr/bin/python3
"""Count the test cases in a KTAP file: print "passed failed skipped".

usage: scripts/ktap-count.py KTAPFILE

Only leaves count: a plain test case, or each parameter of a parameterised
case, never the suites or the parameterised case that contain them.  A leaf
is a result line whose subtests printed no results of their own.  A result
that a plan line ("1..N") announced but that never came (the kernel died
part-way) counts as failed, so a crash cannot look like a clean run.
"""
import re
import sys

PREFIX = re.compile(r'^(?:\[[^\]]*\])+ ?')  # printk time stamp of a console log
RESULT = re.compile(r'^(\s*)(ok|not ok)\s+\d+\b(.*)$')
PLAN = re.compile(r'^(\s*)1\.\.(\d+)\s*$')
SKIP = re.compile(r'#\s*skip\b', re.IGNORECASE)


def count(lines):
    passed = failed = skipped = 0
    plans = {}          # indentation -> [announced, seen] for open plans
    prev_indent = None  # indentation of the previous result line

    def close_plans(deeper_than):
        # Deepest first: a test still in progress when the output ended
        # counts through its own missing subtests, not once more itself.
        missing = 0
        in_progress = False
        for indent in sorted((i for i in plans if i > deeper_than),
                             reverse=True):
            announced, seen = plans.pop(indent)
            missing += max(0, announced - seen - in_progress)
            in_progress = deeper_than < 0
        return missing

    for line in lines:
        line = PREFIX.sub('', line.rstrip('\n'), count=1)
        m = PLAN.match(line)
        if m:
            plans[len(m.group(1))] = [int(m.group(2)), 0]
            continue
        m = RESULT.match(line)
        if not m:
            continue
        indent = len(m.group(1))
        failed += close_plans(indent)
        if indent in plans:
            plans[indent][1] += 1
        leaf = prev_indent is None or prev_indent <= indent
        prev_indent = indent
        if not leaf:
            continue
        if SKIP.search(m.group(3)):
            skipped += 1
        elif m.group(2) == 'ok':
            passed += 1
        else:
            failed += 1
    failed += close_plans(-1)
    return passed, failed, skipped


def main(argv):
    if len(argv) != 2 or argv[1].startswith('-'):
        print('usage: ktap-count.py KTAPFILE', file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding='utf-8', errors='replace') as f:
            passed, failed, skipped = count(f)
    except OSError as e:
        print(f'ktap-count.py: {argv[1]}: {e.strerror}', file=sys.stderr)
        return 1
    print(passed, failed, skipped)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
