#!/usr/bin/env python3
"""Compare a SyTest TAP result with the list of failures we expect and explain.

usage: sytest_check.py RESULTS.tap [--expected tests/sytest-expected-failures.txt] [--baseline OLD.tap]

The expected-failures file has one line per test that may fail: `test name :: why`.
Exit status 1 when a test fails that is not listed (a regression or an unexplained failure);
listed tests that now pass are reported so the list can shrink. With --baseline, tests that
passed in OLD.tap and do not pass now are listed too.
"""
import argparse
import re
import sys
from collections import Counter
from pathlib import Path

LINE = re.compile(r"^(not )?ok \d+ (.*?)(?: \(\d+ subtests\))?(\s+# (skip|TODO).*)?$")


def read_tap(path):
    """Return [(name, status)] in order; status is pass, fail, skip or xfail; repeated names get #2, #3."""
    seen = Counter()
    out = []
    for raw in Path(path).read_text(errors="replace").splitlines():
        m = LINE.match(raw)
        if not m:
            continue
        name = m.group(2).strip()
        seen[name] += 1
        if seen[name] > 1:
            name = f"{name} [#{seen[name]}]"
        directive = (m.group(4) or "").lower()
        if directive == "todo":
            status = "xfail"
        elif directive == "skip":
            status = "skip"
        else:
            status = "fail" if m.group(1) else "pass"
        out.append((name, status))
    return out


def read_expected(path):
    expected = {}
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, why = line.partition(" :: ")
        if not sep or not why.strip():
            sys.exit(f"{path}: every line is `test name :: why`: {raw!r}")
        expected[name.strip()] = why.strip()
    return expected


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("tap")
    ap.add_argument("--expected", default=str(Path(__file__).resolve().parent.parent / "tests/sytest-expected-failures.txt"))
    ap.add_argument("--baseline")
    args = ap.parse_args()

    results = read_tap(args.tap)
    expected = read_expected(args.expected)
    counts = Counter(s for _, s in results)
    print(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped, {counts['xfail']} blacklisted")

    unexplained = [n for n, s in results if s == "fail" and n not in expected]
    now_pass = [n for n, s in results if s == "pass" and n in expected]
    for n in unexplained:
        print(f"UNEXPLAINED FAILURE: {n}")
    for n in now_pass:
        print(f"now passes (remove from the list): {n}")
    lost = []
    if args.baseline:
        before = dict(read_tap(args.baseline))
        lost = [n for n, s in results if s != "pass" and before.get(n) == "pass"]
        for n in lost:
            print(f"LOST (passed in baseline): {n}")
    return 1 if unexplained or lost else 0


if __name__ == "__main__":
    sys.exit(main())
