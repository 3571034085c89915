"""libiscsi's iscsi-test-cu, SCSI family, through two gateways on an RBD image of the mini cluster.

Two portal processes (TPG 1 and 2, implicit ALUA, the exclusive-lock failover policy as
deployed) export the same fresh RBD image; iscsi-test-cu gets gateway 1 as its device and
gateway 2 as the multipath device.  So MultipathIO runs across two gateways, and every
second-initiator test (Reserve6.*, ProutReserve.*, ProutPreempt ...) sends its second
initiator's commands through the other gateway: reservations, LUN resets and lock moves are
checked cluster-wide.  ReadOnly runs against a read-only LUN; the tests libiscsi runs only
when a physical block holds several logical blocks run again on a 512e disk.

Asserted: 0 FAIL, 0 CRASH, every SKIP in ALLOWED_SKIPS (features the disk does not offer,
mirrored in docs/scsi.md), every entry of ALLOWED_SKIPS really skipped (so the list stays
true), and the counts are printed.  How tests are run and classified: libiscsi_runner.py.
"""

from __future__ import annotations

import fnmatch
import uuid

import pytest
import rbd
from libiscsi_runner import INITIATOR_1, INITIATOR_2, counts, cu_binary, report, run_family
from portal_process import running_portal
from support.rbd_images import remove_image

TARGET = "iqn.2003-01.org.ceph.iscsi-gw:libiscsi-scsi"
MiB = 1 << 20

# Tests that skip because the disk does not offer what they test -- and why.
ALLOWED_SKIPS = {
    "OrWrite.*": "ORWRITE is not offered: librbd has no atomic read-modify-write beyond "
                 "one-block COMPARE AND WRITE",
    "WriteAtomic16.*": "WRITE ATOMIC(16) is not offered: librbd has no multi-object atomic write",
    "Sanitize.*": "SANITIZE is not offered (it would destroy the image; the suite also needs "
                  "--allow-sanitize)",
    "PreventAllow.*": "the medium is not removable (RMB=0): a LUN claiming removable media is "
                      "handled as such by Linux, ESXi and Windows",
    "StartStopUnit.Simple": "it ejects and loads the medium, which only removable media can",
    "ReadOnly.ReadOnlySBC": "every write command the disk offers is refused with DATA PROTECT as "
                            "the test expects; only its ORWRITE step skips (ORWRITE is not offered)",
}
# libiscsi runs these only when LBPPB > 1: they skip on the 512-byte-physical disk and must
# pass on the 512e disk.
LBPPB_TESTS = ("CompareAndWrite.InvalidDataOutSize", "WriteSame10.InvalidDataOutSize",
               "WriteSame16.InvalidDataOutSize", "WriteSame10.UnmapUnaligned", "WriteSame16.UnmapUnaligned")


def _short(name: str) -> str:
    return name.split(".", 1)[1]


def skip_reason(short: str) -> str | None:
    if short in LBPPB_TESTS:
        return "runs only when LBPPB > 1: passes on the 512e disk"
    for pattern, reason in ALLOWED_SKIPS.items():
        if fnmatch.fnmatchcase(short, pattern):
            return reason
    return None


@pytest.fixture
def images(ceph_cluster):
    """Fresh images (reservations persist in RADOS next to an image, so never reuse one)."""
    cluster = ceph_cluster.rados_connect()
    ioctx = cluster.open_ioctx(ceph_cluster.pool)
    tag = uuid.uuid4().hex[:8]
    names = {"main": (f"scsi-{tag}", 64 * MiB), "ro": (f"scsi-ro-{tag}", 16 * MiB),
             "e512": (f"scsi-512e-{tag}", 64 * MiB)}
    for name, size in names.values():
        rbd.RBD().create(ioctx, name, size, old_format=False,
                         features=rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
                         | rbd.RBD_FEATURE_OBJECT_MAP | rbd.RBD_FEATURE_FAST_DIFF)
    yield {key: f"{ceph_cluster.pool}/{name}" for key, (name, _size) in names.items()}
    for name, _size in names.values():
        remove_image(ioctx, name)
    ioctx.close()
    cluster.shutdown()


def gateway(ip: str, tpg: int, ceph_cluster, *images: str):
    """One gateway of the target: its own process, TPG tag and RADOS clients."""
    args = [arg for image in images for arg in (image if isinstance(image, list) else ["--rbd", image])]
    return running_portal(ip, *args, "--ceph-conf", str(ceph_cluster.conf_path), "--acl", INITIATOR_1,
                          "--acl", INITIATOR_2, "--tpg", str(tpg), "--alua-tpgs", "1,2", iqn=TARGET)


def test_scsi_family_through_two_gateways_passes_with_only_allowed_skips(ceph_cluster, images, capsys):
    binary = cu_binary()
    # One after the other: the first start records the image's WWN that the second reads.
    with gateway("127.0.10.11", 1, ceph_cluster, images["main"], ["--read-only-rbd", images["ro"]]) as gw1, \
            gateway("127.0.10.12", 2, ceph_cluster, images["main"], ["--read-only-rbd", images["ro"]]) as gw2:
        main = run_family(binary, "SCSI", [gw1.url(0), gw2.url(0)], exclude=["ReadOnly"],
                          label="two gateways")
        read_only = run_family(binary, "SCSI", [gw1.url(1), gw2.url(1)], only=["ReadOnly"],
                               label="read-only LUN")
    with running_portal("127.0.10.13", "--rbd", images["e512"], "--physical-block-size", "4096",
                        "--ceph-conf", str(ceph_cluster.conf_path), iqn=TARGET) as gw512e:
        e512 = run_family(binary, "SCSI", [gw512e.url(0)], only=LBPPB_TESTS, label="512e")
    runs = {"SCSI family, two gateways, RBD image": main, "SCSI.ReadOnly, read-only RBD LUN": read_only,
            "LBPPB > 1 tests, 512e RBD image": e512}
    everything = main + read_only + e512
    total = counts(everything)
    with capsys.disabled():
        for title, outcomes in runs.items():
            print("\n" + report(f"iscsi-test-cu {title}", outcomes))
        print(f"total ({len(everything)} runs): {total['passed']} PASS, {total['failed']} FAIL, "
              f"{total['crashed']} CRASH, {total['skipped']} SKIP")
    bad = [o for o in everything if o.verdict in ("failed", "crashed")]
    assert not bad, "\n".join(f"{o.verdict}: {o.name} ({o.label})\n{o.detail}" for o in bad)
    unexplained = [o.name for o in everything
                   if o.verdict == "skipped" and skip_reason(_short(o.name)) is None]
    assert not unexplained, f"skips of features the disk claims: {unexplained}"
    skipped = {_short(o.name) for o in main + read_only if o.verdict == "skipped"}
    stale = [p for p in ALLOWED_SKIPS if not any(fnmatch.fnmatchcase(s, p) for s in skipped)]
    assert not stale, f"allowed skips that no longer skip (update the list and docs/scsi.md): {stale}"
    assert all(o.verdict == "passed" for o in e512) and len(e512) == len(LBPPB_TESTS)
    assert len(main) >= 200 and len(read_only) == 1
