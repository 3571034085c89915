"""libiscsi's iscsi-test-cu, iSCSI family, against the running portal: 0 FAIL, 0 CRASH, 0 SKIP.

Each test runs in its own iscsi-test-cu invocation: iscsi-test-cu logs in once per suite, and
some tests (AbortTaskSimpleAsync) end by destroying the session, which would make the rest
of their suite skip silently.  A test counts as skipped if "[SKIPPED]" appears between its
"Test:" line and its verdict (suite set-up probes such as PERSISTENT RESERVE IN support are
not tests).  The binary is libiscsi 1.20's (scripts/build-libiscsi-test-tool): Debian 12's
1.19 lacks three of the suites.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

import pytest
from portal_process import LIBISCSI_TEST_CU, running_portal

REQUIRED_SUITES = ("iSCSIcmdsn", "iSCSIdatasn", "iSCSIResiduals", "iSCSITMF", "iSCSISendTargets", "iSCSINop",
                   "iSCSICHAP")
CHAP_USER, CHAP_PASSWORD = "libiscsi-user", "libiscsi-secret1"
# iscsi-test-cu's initiator names; the CHAP suite logs in as the second one.  The CHAP
# portal has ACLs on (per-client CHAP), the other portal runs without ACLs.
INITIATOR_1 = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"
INITIATOR_2 = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2"


@dataclass
class Outcome:
    name: str
    verdict: str            # passed / failed / skipped / crashed
    detail: str = ""


def cu_binary() -> str:
    if not os.access(LIBISCSI_TEST_CU, os.X_OK):
        pytest.fail(f"{LIBISCSI_TEST_CU} is missing: run scripts/install-deps "
                    "(it builds libiscsi 1.20's iscsi-test-cu)")
    return LIBISCSI_TEST_CU


def list_iscsi_tests(binary: str) -> dict[str, list[str]]:
    out = subprocess.run([binary, "--list"], capture_output=True, text=True, timeout=30).stdout
    suites: dict[str, list[str]] = {}
    for line in out.splitlines():
        parts = line.strip().split(".")
        if len(parts) == 3 and parts[0] == "iSCSI":
            suites.setdefault(parts[1], []).append(parts[2])
    return suites


def run_test(binary: str, name: str, url: str) -> Outcome:
    try:
        proc = subprocess.run([binary, "--dataloss", f"--test={name}", url], capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        return Outcome(name, "crashed", "timed out")
    out = proc.stdout + proc.stderr
    if proc.returncode < 0:
        return Outcome(name, "crashed", f"killed by signal {-proc.returncode}\n{out[-2000:]}")
    summary = re.search(r"^\s+tests\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", out, re.M)
    if summary is None:
        return Outcome(name, "crashed", f"no run summary (exit {proc.returncode})\n{out[-2000:]}")
    total, ran, passed, failed = map(int, summary.groups())
    short = name.rsplit(".", 1)[1]
    m = re.search(rf"Test: {re.escape(short)} \.\.\.(.*?)(passed|FAILED)", out, re.S)
    if ran != 1 or m is None:
        return Outcome(name, "crashed", f"test did not run\n{out[-2000:]}")
    if failed:
        return Outcome(name, "failed", out[m.start():m.start() + 3000])
    if "[SKIPPED]" in m.group(1):
        return Outcome(name, "skipped", m.group(1).strip())
    return Outcome(name, "passed")


def test_iscsi_family_passes_with_no_failure_crash_or_skip(capsys):
    """Every test against a CHAP + ACL portal; every test but the CHAP suite again against a
    portal without authentication or ACLs."""
    binary = cu_binary()
    suites = list_iscsi_tests(binary)
    missing = [s for s in REQUIRED_SUITES if s not in suites]
    assert not missing, f"iscsi-test-cu lacks suites {missing}: is it libiscsi >= 1.20?"
    runs: dict[str, list[Outcome]] = {"CHAP+ACL portal": [], "open portal": []}
    with running_portal("127.0.4.10", "--ramdisk", "64M") as plain, \
            running_portal("127.0.4.11", "--ramdisk", "64M", "--acl", INITIATOR_1, "--acl", INITIATOR_2,
                           "--chap", f"{CHAP_USER}:{CHAP_PASSWORD}") as chap:
        for suite, tests in sorted(suites.items()):
            for test in tests:
                name = f"iSCSI.{suite}.{test}"
                runs["CHAP+ACL portal"].append(run_test(binary, name, chap.url(0, CHAP_USER, CHAP_PASSWORD)))
                if suite != "iSCSICHAP":
                    runs["open portal"].append(run_test(binary, name, plain.url(0)))
    verdicts = ("passed", "failed", "crashed", "skipped")
    totals = dict.fromkeys(verdicts, 0)
    with capsys.disabled():
        for label, outcomes in runs.items():
            counts = {v: sum(1 for o in outcomes if o.verdict == v) for v in verdicts}
            for v in verdicts:
                totals[v] += counts[v]
            print(f"\niscsi-test-cu iSCSI family, {label} ({len(outcomes)} tests): {counts['passed']} PASS, "
                  f"{counts['failed']} FAIL, {counts['crashed']} CRASH, {counts['skipped']} SKIP")
            for o in outcomes:
                if o.verdict != "passed":
                    print(f"  {o.verdict.upper()}: {o.name}\n{o.detail}")
    assert totals["failed"] == totals["crashed"] == totals["skipped"] == 0
    assert len(runs["CHAP+ACL portal"]) >= 21 and totals["passed"] == sum(len(o) for o in runs.values())
