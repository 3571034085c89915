"""Run libiscsi's iscsi-test-cu one test per invocation and classify each outcome.

One invocation per test: iscsi-test-cu logs in once per suite, and a test that ends its
session (AbortTaskSimpleAsync, cold resets) would make the rest of its suite skip silently.
An invocation costs ~20 ms of logins.  A test counts as

* passed  -- CUnit ran it, no assertion failed, no "[SKIPPED]" between its "Test:" line and
  its verdict (suite set-up probes such as PERSISTENT RESERVE IN support are not tests);
* skipped -- it passed but said "[SKIPPED]" (iscsi-test-cu reports an unimplemented command
  as a pass with that marker);
* failed  -- an assertion failed;
* crashed -- killed by a signal, timed out, or no CUnit summary / the test did not run.

The binary is libiscsi 1.20's (scripts/build-libiscsi-test-tool): Debian 12's 1.19 lacks
suites and runs some tests differently.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pytest
from portal_process import LIBISCSI_TEST_CU

VERDICTS = ("passed", "failed", "crashed", "skipped")
# iscsi-test-cu's initiator names (the second one is used for second-initiator tests and
# for the second multipath URL).
INITIATOR_1 = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"
INITIATOR_2 = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2"


@dataclass
class Outcome:
    name: str
    verdict: str            # passed / failed / skipped / crashed
    detail: str = ""
    label: str = ""         # which run it belongs to (printed with the counts)


def cu_binary() -> str:
    if not os.access(LIBISCSI_TEST_CU, os.X_OK):
        pytest.fail(f"{LIBISCSI_TEST_CU} is missing: run scripts/install-deps "
                    "(it builds libiscsi 1.20's iscsi-test-cu)")
    return LIBISCSI_TEST_CU


def list_tests(binary: str, family: str) -> dict[str, list[str]]:
    """{suite: [test, ...]} of one family (``iSCSI``, ``SCSI``), in iscsi-test-cu's order."""
    out = subprocess.run([binary, "--list"], capture_output=True, text=True, timeout=30).stdout
    suites: dict[str, list[str]] = {}
    for line in out.splitlines():
        parts = line.strip().split(".")
        if len(parts) == 3 and parts[0] == family:
            suites.setdefault(parts[1], []).append(parts[2])
    return suites


def run_test(binary: str, name: str, urls: Sequence[str], *, timeout: float = 180,
             label: str = "") -> Outcome:
    """Run ``FAMILY.SUITE.TEST`` with ``--dataloss`` against ``urls`` (a second URL is the
    multipath device iscsi-test-cu's MultipathIO suite and second-initiator tests use)."""
    try:
        proc = subprocess.run([binary, "--dataloss", f"--test={name}", *urls], capture_output=True,
                              text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        return Outcome(name, "crashed", f"timed out after {timeout:g}s", label)
    out = proc.stdout + proc.stderr
    if proc.returncode < 0:
        return Outcome(name, "crashed", f"killed by signal {-proc.returncode}\n{out[-2000:]}", label)
    summary = re.search(r"^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", out, re.M)
    if summary is None:
        return Outcome(name, "crashed", f"no run summary (exit {proc.returncode})\n{out[-2000:]}", label)
    _total, ran, _passed, failed = map(int, summary.groups())
    short = name.rsplit(".", 1)[1]
    m = re.search(rf"Test: {re.escape(short)} \.\.\.(.*?)(passed|FAILED)", out, re.S)
    if ran != 1 or m is None:
        return Outcome(name, "crashed", f"test did not run\n{out[-2000:]}", label)
    if failed:
        return Outcome(name, "failed", out[m.start():m.start() + 3000], label)
    if "[SKIPPED]" in m.group(1):
        reason = re.search(r"\[SKIPPED\][^\n]*", m.group(1))
        return Outcome(name, "skipped", reason.group(0).strip() if reason else "", label)
    return Outcome(name, "passed", label=label)


def run_family(binary: str, family: str, urls: Sequence[str], *, label: str = "",
               only: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> list[Outcome]:
    """Every test of a family (or the ``only`` suites/tests), each in its own invocation."""
    wanted = set(only) if only is not None else None
    skip = set(exclude)
    outcomes = []
    for suite, tests in list_tests(binary, family).items():
        for test in tests:
            short = f"{suite}.{test}"
            if short in skip or suite in skip:
                continue
            if wanted is not None and short not in wanted and suite not in wanted:
                continue
            outcomes.append(run_test(binary, f"{family}.{short}", urls, label=label))
    return outcomes


def counts(outcomes: Iterable[Outcome]) -> dict[str, int]:
    tally = dict.fromkeys(VERDICTS, 0)
    for o in outcomes:
        tally[o.verdict] += 1
    return tally


def report(title: str, outcomes: Sequence[Outcome], details: bool = True) -> str:
    """One line of counts, then every test that did not simply pass."""
    c = counts(outcomes)
    lines = [f"{title} ({len(outcomes)} tests): {c['passed']} PASS, {c['failed']} FAIL, "
             f"{c['crashed']} CRASH, {c['skipped']} SKIP"]
    if details:
        for o in outcomes:
            if o.verdict != "passed":
                lines.append(f"  {o.verdict.upper()}: {o.name} {o.detail if o.verdict == 'skipped' else ''}")
                if o.verdict != "skipped":
                    lines.append(o.detail)
    return "\n".join(lines)
