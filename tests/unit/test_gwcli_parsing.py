"""Pure parts of gwcli: argument shapes, sizes, info blocks, the API's answers read tolerantly."""

from __future__ import annotations

import pytest

from gwcli import args
from gwcli.args import CommandError
from gwcli.format import human_size, info_block
from gwcli.shell import scrub_secrets
from gwcli.transport import ChangeReport
from gwcli.view import feature_names, parse_cluster, parse_disk, parse_gateway_status, parse_session

USAGE = "create ..."


@pytest.mark.parametrize(("num", "text"), [
    (0, "0b"), (512, "512b"), (1024, "1K"), (5120, "5K"), (1 << 30, "1G"), (3 << 29, "1.5G"),
    (90 << 30, "90G"), (1 << 40, "1T"), (123456789, "117.7M"), (None, "?")])
def test_human_size(num, text):
    assert human_size(num) == text


def test_info_block_aligns_labels_expands_dicts_and_stacks_lists():
    text = info_block([("client_iqn", "iqn.x:1"), ("luns", {"rbd/b": {"lun_id": 1}, "rbd/a": {"lun_id": 0}}),
                       ("ip_address", ["10.0.0.1", "10.0.0.2"]), ("auth", {}), ("alias", None)])
    assert text.splitlines() == [
        "Client Iqn .. iqn.x:1",
        "Luns",
        "- rbd/a .. lun_id=0",
        "- rbd/b .. lun_id=1",
        "Ip Address .. 10.0.0.1",
        "              10.0.0.2",
        "Auth       .. UNDEFINED",
        "Alias      ..",
    ]


# ---- disk create: long and short forms ------------------------------------------------------
@pytest.mark.parametrize(("given", "expected"), [
    (("rbd", "disk_1", "90G", None), ("rbd", "disk_1", "90G", 1)),
    (("rbd/disk_1", "90g", None, None), ("rbd", "disk_1", "90G", 1)),
    (("rbd/disk", "1G", "5", None), ("rbd", "disk", "1G", 5)),
    (("rbd/disk", "1G", None, "5"), ("rbd", "disk", "1G", 5)),
    (("rbd", "disk", "1t", "10"), ("rbd", "disk", "1T", 10)),
])
def test_disk_request_long_and_short_forms(given, expected):
    r = args.disk_request(*given, usage=USAGE)
    assert (r.pool, r.image, r.size, r.count) == expected


def test_disk_request_count_names_the_disks():
    assert args.disk_request("rbd/d", "1G", "3", None, usage=USAGE).names == ["rbd/d1", "rbd/d2", "rbd/d3"]


@pytest.mark.parametrize(("given", "message"), [
    (("rbd", None, "1G", None), "pool and image are required. Usage: create ..."),
    ((None, None, None, None), "pool and image are required"),
    (("rbd/d", "1G", "2", "3"), "count is given twice"),
    (("rbd/d", "0G", None, None), "size must be greater than 0"),
    (("rbd/d", "-1G", None, None), "size must be a whole number followed by M, G or T"),
    (("rbd/d", "1K", None, None), "size must be a whole number followed by M, G or T"),
    (("rbd/d", "1G", "0", None), "count must be a whole number 1..10, got '0'"),
    (("bad pool/d", "1G", None, None), "pool name 'bad pool' contains ' '"),
])
def test_disk_request_errors(given, message):
    with pytest.raises(CommandError) as e:
        args.disk_request(*given, usage=USAGE)
    assert message in str(e.value)


def test_clone_needs_no_size_and_is_checked():
    r = args.disk_request("rbd/c", None, None, None, "rbd/base@s1", usage=USAGE)
    assert (r.size, r.clone) == (None, "rbd/base@s1")
    for bad in ("rbd/base", "base@s1", "rbd/base@", "rbd/ba se@s"):
        with pytest.raises(CommandError):
            args.clone_source(bad)


# ---- CHAP, names, controls, QoS -------------------------------------------------------------
def test_chap_nochap_clears_all_four_fields():
    assert args.chap("nochap", None, None, None, "u") == dict.fromkeys(args.CHAP_FIELDS, "")


@pytest.mark.parametrize(("creds", "message"), [
    (("user1234", "", "", ""), "a CHAP password is required with a CHAP username"),
    (("user", "password1234", "", ""), "CHAP username must be 8 to 64 characters long (got 4)"),
    (("user1234", "pass", "", ""), "CHAP password must be 12 to 16 characters long (got 4)"),
    (("user1234", "password1234", "muser123", ""), "a mutual CHAP password is required"),
    (("user1234", "password1234", "muser123", "password1234"), "the mutual CHAP password must differ"),
    (("user 1234", "password1234", "", ""), "CHAP username contains ' '"),
])
def test_chap_errors_name_the_rule(creds, message):
    with pytest.raises(CommandError) as e:
        args.chap(*creds, usage="u")
    assert message in str(e.value)


def test_chap_requires_something():
    with pytest.raises(CommandError, match="to set or clear CHAP give u"):
        args.chap(None, None, None, None, "u")


def test_iqn_is_lower_cased_and_checked():
    assert args.target_iqn(" IQN.2003-01.COM.Example:T1 ") == "iqn.2003-01.com.example:t1"
    assert args.client_iqn("eui.0123456789ABCDEF") == "eui.0123456789abcdef"
    with pytest.raises(CommandError, match="must start with 'iqn.'"):
        args.target_iqn("eui.0123456789abcdef")
    with pytest.raises(CommandError, match="a target IQN is required"):
        args.target_iqn("")


def test_controls_are_typed_and_reset_by_empty_value():
    assert args.target_control("cmdsn_depth", "64") == {"cmdsn_depth": 64}
    assert args.target_control("immediate_data", "Yes") == {"immediate_data": True}
    assert args.target_control("initial_r2t", "") == {"initial_r2t": ""}
    assert args.disk_control("hw_max_sectors", "8192") == {"hw_max_sectors": 8192}
    with pytest.raises(CommandError, match=r"hw_max_sectors: 8193 is out of range, allowed 1\.\.8192"):
        args.disk_control("hw_max_sectors", "8193")
    with pytest.raises(CommandError, match="expected an integer 2..60"):
        args.target_control("dataout_timeout", "ten")


def test_qos_short_names_units_and_removal():
    assert args.qos_limits({"iops": "5000", "bps": "100M", "read_bps_burst": "1g", "write_iops": ""}) == {
        "iops_limit": 5000, "bps_limit": 100 << 20, "read_bps_burst": 1 << 30, "write_iops_limit": ""}
    assert args.qos_limits({"iops_burst_seconds": "3", "bps": "0"}) == {"iops_burst_seconds": 3,
                                                                         "bps_limit": ""}
    with pytest.raises(CommandError, match="give at least one setting"):
        args.qos_limits({})


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("Yes", True), ("0", False), (None, False)])
def test_bool_words(value, expected):
    assert args.parse_bool(value, "confirm") is expected


def test_ip_list_and_lun_id():
    assert args.ip_list("10.0.0.1, fd00::0:1") == ["10.0.0.1", "fd00::1"]
    assert args.lun_id("") is None and args.lun_id("12") == 12
    with pytest.raises(CommandError, match="is not an IPv4 or IPv6 address"):
        args.ip_list("10.0.0.256")


# ---- secrets never reach the history ---------------------------------------------------------
@pytest.mark.parametrize(("line", "clean"), [
    ("auth username=u1234567 password=secretsecret1", "auth username=u1234567 password=***"),
    ("auth u1234567 secretsecret1 m1234567 othersecret12", "auth u1234567 *** m1234567 ***"),
    ("/iscsi-targets discovery_auth username=u1234567 password=s mutual_username=m mutual_password=t",
     "/iscsi-targets discovery_auth username=u1234567 password=*** mutual_username=m mutual_password=***"),
    ("auth nochap", "auth nochap"),
    ("ls /", "ls /"),
])
def test_scrub_secrets(line, clean):
    assert scrub_secrets(line) == clean


# ---- what the API says after a change -----------------------------------------------------------
def test_change_report_outcome():
    body = {"message": "x", "applied": ["gw1"], "pending": [], "down": []}
    assert ChangeReport.from_body(body).outcome() == "ok"
    report = ChangeReport.from_body({"applied": ["gw1"], "pending": ["gw3"], "down": ["gw2"],
                                     "degraded": {"gw1": "disk rbd/a not opened"}})
    assert report.outcome() == "ok (pending on gw2: down, gw3: applying)"
    assert report.warnings() == ["gw1 applied it with problems: disk rbd/a not opened"]
    assert ChangeReport.from_body({"message": "ceph-iscsi style"}).outcome() == "ok"
    assert ChangeReport.from_body({"down": "gw1,gw2"}).outcome() == "ok (pending on gw1: down, gw2: down)"


# ---- tolerant reading of the API's answers -----------------------------------------------------
def test_gateway_status_shapes():
    names = ["a", "b", "c", "d", "e", "f"]
    body = {"gateways": {"a": {"state": "applied", "health": "ok"},
                         "b": {"state": "pending", "health": "degraded"},
                         "c": {"state": "down"}, "d": {"alive": True, "health": "error"},
                         "e": {"state": "PARTIAL"}}}
    states = {n: g.state for n, g in parse_gateway_status(body, names).items()}
    assert states == {"a": "UP", "b": "PARTIAL", "c": "DOWN", "d": "PARTIAL", "e": "PARTIAL", "f": "DOWN"}
    listed = parse_gateway_status([{"name": "a", "state": "UP"}], ["a"])
    assert listed["a"].state == "UP"
    assert parse_gateway_status({"gateways": {"a": {"weird": 1}}}, ["a"])["a"].state == "UNKNOWN"
    assert parse_gateway_status("garbage", ["a"])["a"].state == "DOWN"


def test_disk_detail_missing_fields_leave_unknowns():
    disk = parse_disk("rbd/a", {"pool": "rbd", "image": "a", "owner": "gw1"}, {})
    assert (disk.size, disk.state, disk.lock_owner, disk.owner, disk.exists) == (
        None, "Unknown", "Unknown", "gw1", True)
    full = parse_disk("rbd/a", {}, {"size": "10G", "features": 5,
                                    "snapshots": [{"name": "s", "size": 1}, "t"],
                                    "status": {"state": "Online", "lock_owner": "gw2"}, "parent": "rbd/b@s",
                                    "qos": {"iops_limit": 5}})
    assert (full.size, full.features, full.snapshots, full.state, full.lock_owner, full.parent) == (
        10 << 30, ["RBD_FEATURE_LAYERING", "RBD_FEATURE_EXCLUSIVE_LOCK"], [("s", 1), ("t", None)], "Online",
        "gw2", "rbd/b@s")
    assert parse_disk("rbd/a", {}, None, missing=True).state == "NOT FOUND"
    assert feature_names(["layering"]) == ["layering"]


def test_session_and_cluster_shapes():
    session = parse_session({"state": {"LOGGED_IN": ["gw1", "gw2"]}, "ip_address": "10.0.0.5"})
    assert (session.logged_in, session.ip_address) == (["gw1", "gw2"], ["10.0.0.5"])
    assert parse_session({"state": "LOGGED_IN"}).logged_in == ["?"]
    assert parse_session(None).logged_in == []
    checks = {"OSD_DOWN": {"summary": {"message": "1 osds down"}}}
    cluster = parse_cluster({"name": "c1", "health": {"status": "HEALTH_WARN", "checks": checks},
                             "pools": {"ec": {"type": "erasure", "k": 4, "m": 2}}}, "ceph")
    assert (cluster.name, cluster.health, cluster.checks, cluster.pools["ec"].desc) == (
        "c1", "HEALTH_WARN", ["1 osds down"], "4+2")
    assert parse_cluster(None, "ceph").available is False
