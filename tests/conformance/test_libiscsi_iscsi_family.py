"""libiscsi's iscsi-test-cu, iSCSI family, against the running portal: 0 FAIL, 0 CRASH, 0 SKIP.

How tests are run and classified: libiscsi_runner.py (one invocation per test).
"""

from __future__ import annotations

from libiscsi_runner import INITIATOR_1, INITIATOR_2, counts, cu_binary, list_tests, report, run_test
from portal_process import running_portal

REQUIRED_SUITES = ("iSCSIcmdsn", "iSCSIdatasn", "iSCSIResiduals", "iSCSITMF", "iSCSISendTargets", "iSCSINop",
                   "iSCSICHAP")
CHAP_USER, CHAP_PASSWORD = "libiscsi-user", "libiscsi-secret1"
# The CHAP suite logs in as iscsi-test-cu's second initiator name.  The CHAP portal has
# ACLs on (per-client CHAP), the other portal runs without ACLs.


def test_iscsi_family_passes_with_no_failure_crash_or_skip(capsys):
    """Every test against a CHAP + ACL portal; every test but the CHAP suite again against a
    portal without authentication or ACLs."""
    binary = cu_binary()
    suites = list_tests(binary, "iSCSI")
    missing = [s for s in REQUIRED_SUITES if s not in suites]
    assert not missing, f"iscsi-test-cu lacks suites {missing}: is it libiscsi >= 1.20?"
    runs: dict[str, list] = {"CHAP+ACL portal": [], "open portal": []}
    with running_portal("127.0.4.10", "--ramdisk", "64M") as plain, \
            running_portal("127.0.4.11", "--ramdisk", "64M", "--acl", INITIATOR_1, "--acl", INITIATOR_2,
                           "--chap", f"{CHAP_USER}:{CHAP_PASSWORD}") as chap:
        for suite, tests in suites.items():
            for test in tests:
                name = f"iSCSI.{suite}.{test}"
                chap_url = chap.url(0, CHAP_USER, CHAP_PASSWORD)
                runs["CHAP+ACL portal"].append(run_test(binary, name, [chap_url]))
                if suite != "iSCSICHAP":
                    runs["open portal"].append(run_test(binary, name, [plain.url(0)]))
    totals = counts(o for outcomes in runs.values() for o in outcomes)
    with capsys.disabled():
        for label, outcomes in runs.items():
            print("\n" + report(f"iscsi-test-cu iSCSI family, {label}", outcomes))
    assert totals["failed"] == totals["crashed"] == totals["skipped"] == 0
    assert len(runs["CHAP+ACL portal"]) >= 21 and totals["passed"] == sum(len(o) for o in runs.values())
