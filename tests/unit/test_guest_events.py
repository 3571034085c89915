"""What the system-test guest reports, and the files the host hands to it (pure logic)."""

from __future__ import annotations

import subprocess

from gateway.testing.guest_events import (
    MultipathDevice,
    newc_archive,
    parse_events,
    parse_multipath_ll,
)

TGT_AFTER_CUT = """\
30.045571 | sda: prio = const (setting: emergency fallback - alua failed)
mpatha (360000000000000000e00000000010001) dm-0 IET,VIRTUAL-DISK
size=64M features='1 queue_if_no_path' hwhandler='0' wp=rw
|-+- policy='queue-length 0' prio=1 status=active
| `- 0:0:0:1 sda 8:0  active ready  running
`-+- policy='queue-length 0' prio=0 status=enabled
  `- 1:0:0:1 sdb 8:16 failed faulty running
"""

ALUA_TWO_MAPS = """\
mpatha (36001405aaaaaaaaaaaaaaaaaaaaaaaaa) dm-0 LIO-ORG,TCMU device
size=1.0G features='1 queue_if_no_path' hwhandler='1 alua' wp=rw
|-+- policy='queue-length 0' prio=50 status=active
| `- 2:0:0:0 sdb 8:16 active ready running
`-+- policy='queue-length 0' prio=10 status=enabled
  `- 3:0:0:0 sdc 8:32 active ghost running
mpathb dm-1 LIO-ORG,TCMU device
size=64M features='0' hwhandler='1 alua' wp=rw
`-+- policy='service-time 0' prio=50 status=enabled
  |- 2:0:0:1 sdd 8:48 active ready running
  `- 3:0:0:1 sde 8:64 active ready running
"""


def test_multipath_ll_parse_keeps_groups_and_states_despite_stderr_noise():
    (m,) = parse_multipath_ll(TGT_AFTER_CUT)
    assert (m.name, m.wwid, m.vendor, m.product) == (
        "mpatha", "360000000000000000e00000000010001", "IET", "VIRTUAL-DISK")
    assert (m.features, m.hwhandler) == ("1 queue_if_no_path", "0")
    assert [(g.prio, g.status) for g in m.groups] == [(1, "active"), (0, "enabled")]
    assert [(p.hctl, p.disk, p.dm_state, p.checker_state, p.dev_state) for p in m.paths] == [
        ("0:0:0:1", "sda", "active", "ready", "running"),
        ("1:0:0:1", "sdb", "failed", "faulty", "running"),
    ]


def test_multipath_ll_parse_reads_alua_groups_of_several_maps():
    a, b = parse_multipath_ll(ALUA_TWO_MAPS)
    assert a.hwhandler == "1 alua"
    assert sorted(g.prio for g in a.groups) == [10, 50]
    assert a.groups[1].paths[0].checker_state == "ghost"
    assert (b.name, b.wwid, b.product) == ("mpathb", "mpathb", "TCMU device")
    assert [len(g.paths) for g in b.groups] == [2]


def test_events_parse_progress_data_blocks_and_verdict():
    text = (
        "VMTEST[4.08] init (kernel 6.1.0)\r\n"
        "VMTEST[ 5.01] boot done\n"
        "VMDISCOVERY 127.0.6.1:3260,1 iqn.x:t\n"
        "VMDATA owner_portal=10.0.2.101:3260\n"
        "VMDATA note=a=b\n"
        "VMBLOCK multipath BEGIN\n"
        "VMBLOCK multipath | line one\n"
        "VMBLOCK multipath | \n"
        "VMBLOCK multipath |   indented\n"
        "VMBLOCK multipath END rc=0\n"
        "VMBLOCK rtpg BEGIN\n"
        "VMBLOCK rtpg | Illegal request\n"
        "VMBLOCK rtpg END rc=5\n"
        "VMWAIT cut\n"
        "RESULT: FAIL: no single multipath map with 2 active paths\n"
    )
    ev = parse_events(text)
    assert [(p.uptime, p.text) for p in ev.progress] == [(4.08, "init (kernel 6.1.0)"), (5.01, "boot done")]
    assert ev.uptime_of("boot") == 5.01
    assert ev.data == {"owner_portal": "10.0.2.101:3260", "note": "a=b"}
    assert ev.blocks["multipath"] == "line one\n\n  indented"
    assert ev.block_status == {"multipath": 0, "rtpg": 5}
    assert ev.waiting == ["cut"]
    assert ev.discovery == ["127.0.6.1:3260,1 iqn.x:t"]
    assert (ev.result, ev.reason) == ("FAIL", "no single multipath map with 2 active paths")


def test_events_without_verdict_leave_the_result_open():
    ev = parse_events("VMTEST[1.0] init\nVMBLOCK x BEGIN\nVMBLOCK x | cut sh")
    assert ev.result is None
    assert "x" not in ev.blocks     # an unterminated block is not reported


def test_multipath_conf_sets_alua_failover_for_the_given_disk():
    conf = MultipathDevice(vendor="LIO-ORG", product="TCMU device").config()
    for line in ('user_friendly_names yes', 'find_multipaths no', 'vendor "LIO-ORG"',
                 'product "TCMU device"', 'hardware_handler "1 alua"', 'prio alua',
                 'path_grouping_policy "failover"', 'no_path_retry queue', 'failback 60'):
        assert line in conf
    assert conf.count("{") == conf.count("}") == 3
    assert 'vendor "IET"' in MultipathDevice(vendor="IET", product="VIRTUAL-DISK").config()


def test_newc_archive_unpacks_with_cpio(tmp_path):
    files = {"/init": (0o100755, b"#!/bin/sh\necho hi\n"),
             "/vmtest/lib.sh": (0o100644, b"x" * 1001),
             "/etc/iscsi/initiatorname.iscsi": (0o100644, b"InitiatorName=iqn.x:y\n")}
    blob = newc_archive(files)
    assert len(blob) % 4 == 0
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], input=blob, cwd=out,
                   check=True, timeout=30)
    assert (out / "init").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (out / "init").stat().st_mode & 0o777 == 0o755
    assert (out / "vmtest" / "lib.sh").read_bytes() == b"x" * 1001
    assert (out / "etc" / "iscsi" / "initiatorname.iscsi").read_text() == "InitiatorName=iqn.x:y\n"
