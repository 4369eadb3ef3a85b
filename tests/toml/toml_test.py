#!/usr/bin/env python3
"""Runs toml-test style fixture trees against a decoder speaking the toml-test interface.

Usage: toml_test.py [--toml-version V] DECODER SUITE_DIR [SUITE_DIR...]

A SUITE_DIR holds valid/**.toml (each with a .json beside it) and invalid/**.toml,
either directly or under tests/. Which fixtures of a toml-test copy belong to TOML
version V (default 1.0.0) comes from the suite itself: its tests/files-toml-<V> list
(newer toml-test releases) or the exclusion list in its version.go (the copy vendored
by BurntSushi/toml). A directory with neither (our own fixtures) runs in full.

Valid fixtures must exit 0 with JSON equal to the expected JSON, compared the way
toml-test compares (floats numerically, date-times as instants or field values);
invalid fixtures must exit 1 with a single "line:column: message" on stderr.
"""

import concurrent.futures
import json
import math
import os
import re
import subprocess
import sys

ERROR_LINE = re.compile(r"^[1-9][0-9]*:[1-9][0-9]*: \S.*$")


def glob_to_regex(pattern):
    """Go's filepath.Match semantics for the patterns toml-test uses: '*' stays in one
    path segment, '?' is one character."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(ch))
    return re.compile("^" + "".join(out) + "$")


def version_go_excludes(path, version):
    """Exclusion patterns for `version` (following `inherit`) from toml-test's version.go."""
    source = open(path, encoding="utf-8").read()
    specs = {}
    for match in re.finditer(r'"([^"]+)":\s*versionSpec\{(.*?)\n\t\},', source, re.S):
        body = match.group(2)
        inherit = re.search(r'inherit:\s*"([^"]*)"', body)
        exclude = re.search(r"exclude:\s*\[\]string\{(.*?)\}", body, re.S)
        patterns = []
        if exclude:
            # Drop // comments, then collect the string literals.
            text = re.sub(r"//[^\n]*", "", exclude.group(1))
            patterns = re.findall(r'"([^"]*)"', text)
        specs[match.group(1)] = (inherit.group(1) if inherit else "", patterns)
    if version not in specs:
        raise SystemExit(f"{path}: no versionSpec for TOML {version} (have: {sorted(specs)})")
    excludes, seen = [], set()
    while version and version not in seen:
        seen.add(version)
        inherit, patterns = specs[version]
        excludes += patterns
        version = inherit
    return excludes


def list_fixtures(suite, version):
    """Returns (tests directory, fixture names without .toml, how they were selected)."""
    tests = os.path.join(suite, "tests")
    if not os.path.isdir(tests):
        tests = suite
    listing = os.path.join(tests, f"files-toml-{version}")
    if os.path.exists(listing):
        names = [line.strip() for line in open(listing, encoding="utf-8")]
        names = [n[: -len(".toml")] for n in names if n.endswith(".toml")]
        return tests, sorted(names), f"its files-toml-{version} list"
    version_go = os.path.join(suite, "version.go")
    if os.path.exists(version_go):
        excludes = [glob_to_regex(p) for p in version_go_excludes(version_go, version)]
        selection = f"its version.go exclusions for TOML {version}"
    else:
        excludes = []
        selection = "all fixtures"
    found = []
    for kind in ("valid", "invalid"):
        for dirpath, _, files in os.walk(os.path.join(tests, kind)):
            for name in files:
                if not name.endswith(".toml"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, name), tests)[: -len(".toml")]
                rel = rel.replace(os.sep, "/")
                if not any(p.match(rel) for p in excludes):
                    found.append(rel)
    return tests, sorted(found), selection


# ---- Semantic comparison -------------------------------------------------------------

DATETIME = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})?$"
)
DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
TIME = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?$")


def nanos(fraction):
    return int((fraction or "").ljust(9, "0")[:9])


def days_from_civil(y, m, d):
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def datetime_key(kind, text):
    """A comparable value: the instant for offset date-times, the fields otherwise."""
    if kind in ("datetime", "datetime-local"):
        m = DATETIME.match(text)
        if not m or (kind == "datetime") != (m.group(8) is not None):
            return None
        y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
        if kind == "datetime-local":
            return (y, mo, d, h, mi, s, nanos(m.group(7)))
        offset = 0
        if m.group(8) not in ("Z", "z"):
            sign = -1 if m.group(8)[0] == "-" else 1
            offset = sign * (int(m.group(8)[1:3]) * 60 + int(m.group(8)[4:6]))
        seconds = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset * 60
        return (seconds, nanos(m.group(7)))
    if kind == "date-local":
        m = DATE.match(text)
        return tuple(int(g) for g in m.groups()) if m else None
    if kind == "time-local":
        m = TIME.match(text)
        return (int(m.group(1)), int(m.group(2)), int(m.group(3)), nanos(m.group(4))) if m else None
    return None


def is_leaf(value):
    return isinstance(value, dict) and set(value) == {"type", "value"}


def compare(want, have, path="(root)"):
    """Returns None when equal, else a description of the first difference."""
    if is_leaf(want):
        if not is_leaf(have):
            return f"{path}: expected a {want['type']} value, got {json.dumps(have)[:80]}"
        kind = want["type"]
        if have["type"] != kind:
            return f"{path}: expected type {kind}, got {have['type']}"
        if kind == "array":  # older fixture format
            return compare(want["value"], have["value"], path)
        w, h = want["value"], have["value"]
        if not isinstance(h, str):
            return f"{path}: value is not a string: {h!r}"
        if kind == "float":
            try:
                wf, hf = float(w), float(h)
            except ValueError:
                return f"{path}: not a float: {h!r}"
            if math.isnan(wf) and math.isnan(hf):
                return None
            return None if wf == hf else f"{path}: expected float {w}, got {h}"
        if kind in ("datetime", "datetime-local", "date-local", "time-local"):
            wk, hk = datetime_key(kind, w), datetime_key(kind, h)
            if hk is None:
                return f"{path}: malformed {kind}: {h!r}"
            return None if wk == hk else f"{path}: expected {kind} {w}, got {h}"
        return None if w == h else f"{path}: expected {kind} {w!r}, got {h!r}"
    if isinstance(want, dict):
        if not isinstance(have, dict) or is_leaf(have):
            return f"{path}: expected a table, got {json.dumps(have)[:80]}"
        if set(want) != set(have):
            missing = sorted(set(want) - set(have))
            extra = sorted(set(have) - set(want))
            return f"{path}: keys differ: missing {missing}, unexpected {extra}"
        for key in want:
            diff = compare(want[key], have[key], f"{path}.{key}")
            if diff:
                return diff
        return None
    if isinstance(want, list):
        if not isinstance(have, list):
            return f"{path}: expected an array, got {json.dumps(have)[:80]}"
        if len(want) != len(have):
            return f"{path}: expected {len(want)} elements, got {len(have)}"
        for i, (w, h) in enumerate(zip(want, have)):
            diff = compare(w, h, f"{path}[{i}]")
            if diff:
                return diff
        return None
    return f"{path}: unexpected JSON in fixture: {want!r}"


# ---- Running -------------------------------------------------------------------------


def run_one(decoder, tests, name):
    """Returns (name, failure or None)."""
    with open(os.path.join(tests, name + ".toml"), "rb") as f:
        data = f.read()
    try:
        proc = subprocess.run([decoder], input=data, capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        return name, "timed out"
    stderr = proc.stderr.decode("utf-8", "replace")
    if name.startswith("invalid/"):
        lines = stderr.splitlines()
        if proc.returncode != 1:
            return name, f"expected exit 1, got {proc.returncode}; stderr: {stderr.strip()[:300]}"
        if len(lines) != 1 or not ERROR_LINE.match(lines[0]):
            return name, f"stderr is not one 'line:column: message' line: {stderr.strip()[:300]!r}"
        if proc.stdout:
            return name, "printed output on stdout for invalid input"
        return name, None
    if proc.returncode != 0 or stderr:
        return name, f"rejected (exit {proc.returncode}): {stderr.strip()[:300]}"
    try:
        have = json.loads(proc.stdout.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return name, f"output is not JSON: {e}"
    with open(os.path.join(tests, name + ".json"), encoding="utf-8") as f:
        want = json.load(f)
    return name, compare(want, have)


def main():
    args = sys.argv[1:]
    version = "1.0.0"
    if len(args) >= 2 and args[0] == "--toml-version":
        version, args = args[1], args[2:]
    if len(args) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    decoder, suites = os.path.abspath(args[0]), args[1:]
    jobs = []
    for suite in suites:
        tests, names, selection = list_fixtures(suite, version)
        print(f"toml-test: {suite}: {len(names)} fixtures ({selection})")
        if not names:
            print(f"toml-test: {suite}: no fixtures found", file=sys.stderr)
            return 1
        jobs += [(suite, tests, name) for name in names]
    valid_passed = invalid_passed = 0
    failures = []
    workers = max(2, os.cpu_count() or 2)
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda job: (job[0],) + run_one(decoder, job[1], job[2]), jobs)
        for suite, name, failure in results:
            if failure:
                failures.append(f"FAIL {suite}: {name}: {failure}")
            elif name.startswith("valid/"):
                valid_passed += 1
            else:
                invalid_passed += 1
    for failure in failures:
        print(failure)
    print(f"toml-test: {valid_passed} valid passed, {invalid_passed} invalid passed, "
          f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
