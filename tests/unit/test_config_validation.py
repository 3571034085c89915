"""Every validation rule, accepted and rejected at its boundaries."""

from __future__ import annotations

import pytest

from gateway.config import operations as ops
from gateway.config import validation as v
from gateway.config.errors import ValidationError
from gateway.config.model import ChapAuth, ClusterConfig, TargetLun

DOMAIN = "iqn.2003-01.com.example:"


# ---- iSCSI names ---------------------------------------------------------------------------
@pytest.mark.parametrize("name, expected", [
    ("iqn.2003-01.com.example:t1", "iqn.2003-01.com.example:t1"),
    ("  IQN.2003-01.COM.Example:T1 ", "iqn.2003-01.com.example:t1"),
    ("iqn.2003-12.com.example", "iqn.2003-12.com.example"),
    ("iqn.1994-05.com.redhat:rh7-client:01.x", "iqn.1994-05.com.redhat:rh7-client:01.x"),
    (DOMAIN + "a" * (223 - len(DOMAIN)), DOMAIN + "a" * (223 - len(DOMAIN))),
])
def test_target_iqn_accepted_and_lower_cased(name, expected):
    assert v.normalize_iqn(name) == expected


@pytest.mark.parametrize("name, message", [
    ("", "is required"),
    (DOMAIN + "a" * (224 - len(DOMAIN)), "at most 223"),
    ("iqn.2003-01.com.example:t_1", "contains '_'"),
    ("iqn.2003-01.com.example:t 1", "contains ' '"),
    ("eui.0123456789abcdef", "must start with 'iqn.'"),
    ("iqn.03-01.com.example:t", "date yyyy-mm"),
    ("iqn.2003-00.com.example:t", "month 00"),
    ("iqn.2003-13.com.example:t", "month 13"),
    ("iqn.2003-01.example:t", "reversed domain"),
    ("iqn.2003-01.com..example:t", "reversed domain"),
    ("iqn.2003-01.-com.example:t", "reversed domain"),
])
def test_target_iqn_rejected_with_reason(name, message):
    with pytest.raises(ValidationError, match=message):
        v.normalize_iqn(name)


@pytest.mark.parametrize("name, expected", [
    ("iqn.1991-05.com.microsoft:win-host1", "iqn.1991-05.com.microsoft:win-host1"),
    ("eui.0123456789ABCDEF", "eui.0123456789abcdef"),
    ("naa.0123456789abcdef", "naa.0123456789abcdef"),
    ("NAA.0123456789ABCDEF0123456789ABCDEF", "naa.0123456789abcdef0123456789abcdef"),
])
def test_initiator_names_accept_iqn_eui_and_naa(name, expected):
    assert v.normalize_initiator_name(name) == expected


@pytest.mark.parametrize("name, message", [
    ("eui.0123456789abcde", "exactly 16 hex"),
    ("eui.0123456789abcdef0", "exactly 16 hex"),
    ("eui.0123456789abcdeg", "exactly 16 hex"),
    ("naa.0123456789abcdef01234567", "16 or 32 hex"),
    ("naa.0123456789abcdef0123456789abcdef0", "16 or 32 hex"),
    ("wwn.0123456789abcdef", "must start with 'iqn.', 'eui.' or 'naa.'"),
    ("iqn.2003-01.com.example:x_y", "contains '_'"),
])
def test_initiator_names_rejected_with_reason(name, message):
    with pytest.raises(ValidationError, match=message):
        v.normalize_initiator_name(name)


# ---- CHAP ------------------------------------------------------------------------------------
@pytest.mark.parametrize("username", ["a" * 8, "a" * 64, "user@x_y-z.:0"])
def test_chap_username_accepted(username):
    v.check_chap_username(username)


@pytest.mark.parametrize("username, message", [
    ("a" * 7, "8 to 64 characters long \\(got 7\\)"),
    ("a" * 65, "got 65"),
    ("user/name", "contains '/'"),
    ("user name", "contains ' '"),
])
def test_chap_username_rejected(username, message):
    with pytest.raises(ValidationError, match=message):
        v.check_chap_username(username)


@pytest.mark.parametrize("password", ["a" * 12, "a" * 16, "pw@_-/0123Zz"])
def test_chap_password_accepted(password):
    v.check_chap_password(password)


@pytest.mark.parametrize("password, message", [
    ("a" * 11, "12 to 16 characters long \\(got 11\\)"),
    ("a" * 17, "got 17"),
    ("password.12345", "contains '.'"),
    ("password:12345", "contains ':'"),
])
def test_chap_password_rejected(password, message):
    with pytest.raises(ValidationError, match=message):
        v.check_chap_password(password)


@pytest.mark.parametrize("auth", [
    ChapAuth(),
    ChapAuth("username1", "password1234"),
    ChapAuth("username1", "password1234", "username2", "password5678"),
    ChapAuth("username1", "password1234", "username1", "password5678"),
    ChapAuth("username1", "c" * 344, password_sealed=True),  # ciphertext is not checked as a secret
])
def test_chap_credentials_accepted(auth):
    v.check_chap(auth)


@pytest.mark.parametrize("auth, message", [
    (ChapAuth("username1"), "password is required with a CHAP username"),
    (ChapAuth(password="password1234"), "username is required with a CHAP password"),
    (ChapAuth("username1", "password1234", "username2"), "mutual CHAP password is required"),
    (ChapAuth("username1", "password1234", mutual_password="password5678"),
     "mutual CHAP username is required"),
    (ChapAuth(mutual_username="username2", mutual_password="password5678"), "needs one-way CHAP"),
    (ChapAuth("username1", "password1234", "username2", "password1234"), "must differ"),
    (ChapAuth("username1", "password1234", "username2", "short"), "mutual password must be 12 to 16"),
])
def test_chap_credentials_rejected(auth, message):
    with pytest.raises(ValidationError, match=message):
        v.check_chap(auth)


# ---- disks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a", "rbd", "My-Pool_1.x"])
def test_pool_and_image_names_accepted(name):
    assert v.check_pool_name(name) == name and v.check_image_name(name) == name


@pytest.mark.parametrize("name, message", [
    ("", "is required"), ("a/b", "contains '/'"), ("a b", "contains ' '"), ("a@b", "contains '@'"),
])
def test_pool_and_image_names_rejected(name, message):
    with pytest.raises(ValidationError, match=message):
        v.check_pool_name(name)
    with pytest.raises(ValidationError, match=message):
        v.check_image_name(name)


def test_disk_name_needs_pool_and_image():
    assert v.split_disk_name("rbd/img") == ("rbd", "img")
    with pytest.raises(ValidationError, match="pool/image"):
        v.split_disk_name("img")


@pytest.mark.parametrize("text, size", [
    ("1M", 1 << 20), ("10g", 10 << 30), ("2T", 2 << 40), (" 5G ", 5 << 30),
])
def test_sizes_accepted(text, size):
    assert v.parse_size(text) == size


@pytest.mark.parametrize("text, message", [
    ("0G", "greater than 0"), ("1.5G", "whole number"), ("10", "whole number"), ("10K", "whole number"),
    ("G", "whole number"), ("-1G", "whole number"),
])
def test_sizes_rejected(text, message):
    with pytest.raises(ValidationError, match=message):
        v.parse_size(text)


def test_snapshot_names():
    assert v.check_snapshot_name("snap-1 before upgrade") == "snap-1 before upgrade"
    for bad, message in (("", "required"), ("a/b", "'/'"), ("a@b", "'@'")):
        with pytest.raises(ValidationError, match=message):
            v.check_snapshot_name(bad)


@pytest.mark.parametrize("wwn", ["a", "4fc1071d-7e2f-4df0-95c8-925a617e2d62", "x" * 254])
def test_wwn_accepted(wwn):
    assert v.check_wwn(wwn) == wwn


@pytest.mark.parametrize("wwn", ["", "x" * 255, "has space", "a/b"])
def test_wwn_rejected(wwn):
    with pytest.raises(ValidationError, match="wwn"):
        v.check_wwn(wwn)


def test_backstore_only_user_rbd():
    assert v.check_backstore("user:rbd") == "user:rbd"
    with pytest.raises(ValidationError, match="not supported; use user:rbd"):
        v.check_backstore("block")


# ---- LUN ids, groups, gateways, addresses -------------------------------------------------------
@pytest.mark.parametrize("value, lun_id", [(0, 0), (255, 255), ("7", 7), (" 12 ", 12)])
def test_lun_ids_accepted(value, lun_id):
    assert v.check_lun_id(value) == lun_id


@pytest.mark.parametrize("value, message", [
    (-1, "out of range"), (256, "out of range"), ("x", "whole number"), (True, "whole number"),
    (1.5, "whole number"),
])
def test_lun_ids_rejected(value, message):
    with pytest.raises(ValidationError, match=message):
        v.check_lun_id(value)


@pytest.mark.parametrize("name", ["g", "a" * 32, "group@1_x-y"])
def test_group_names_accepted(name):
    assert v.check_group_name(name) == name


@pytest.mark.parametrize("name", ["", "a" * 33, "a.b", "a b", "grüppe"])
def test_group_names_rejected(name):
    with pytest.raises(ValidationError, match="1 to 32 characters"):
        v.check_group_name(name)


@pytest.mark.parametrize("name", ["gw1", "ceph-gw-1.example.com", "a" * 63, "1gw"])
def test_gateway_names_accepted(name):
    assert v.check_gateway_name(name) == name


@pytest.mark.parametrize("name", ["", "-gw", "gw-", "gw_1", "a" * 64, "gw..example", "x" * 254])
def test_gateway_names_rejected(name):
    with pytest.raises(ValidationError, match="host name or FQDN"):
        v.check_gateway_name(name)


@pytest.mark.parametrize("text, address", [
    ("192.0.2.1", "192.0.2.1"), ("2001:DB8:0:0::1", "2001:db8::1"), ("[::1]", "::1"),
    ("127.0.3.1", "127.0.3.1"),
])
def test_portal_addresses_accepted_and_normalised(text, address):
    assert v.check_ip_address(text) == address


@pytest.mark.parametrize("text, message", [
    ("300.1.1.1", "not an IPv4 or IPv6"), ("gw1", "not an IPv4 or IPv6"), ("0.0.0.0", "unspecified"),
    ("::", "unspecified"), ("224.0.0.1", "multicast"),
])
def test_portal_addresses_rejected(text, message):
    with pytest.raises(ValidationError, match=message):
        v.check_ip_address(text)


# ---- controls ---------------------------------------------------------------------------------
def test_controls_are_typed_and_defaults_are_not_stored():
    merged = v.merge_controls(v.TARGET_CONTROLS, {"nopin_timeout": 9},
                              {"cmdsn_depth": "512", "immediate_data": "no", "nopin_timeout": "5"})
    assert merged == {"cmdsn_depth": 512, "immediate_data": False}  # 5 is nopin_timeout's default


def test_controls_reset_with_empty_value():
    assert v.merge_controls(v.DISK_CONTROLS, {"qfull_timeout": 9}, {"qfull_timeout": ""}) == {}


def test_controls_default_comes_from_the_node_settings():
    assert v.merge_controls(v.DISK_CONTROLS, {}, {"qfull_timeout": 5}, {"qfull_timeout": 30}) == {
        "qfull_timeout": 5}


@pytest.mark.parametrize("table, controls, message", [
    (v.TARGET_CONTROLS, {"cmdsn_depth": 513}, "513 is out of range, allowed 1..512"),
    (v.TARGET_CONTROLS, {"cmdsn_depth": 0}, "out of range"),
    (v.TARGET_CONTROLS, {"immediate_data": "maybe"}, "expected a boolean"),
    (v.DISK_CONTROLS, {"hw_max_sectors": 8193}, "allowed 1..8192"),
    (v.DISK_CONTROLS, {"no_such": 1}, "unknown control 'no_such'"),
])
def test_controls_rejected(table, controls, message):
    with pytest.raises(ValidationError, match=message):
        v.merge_controls(table, {}, controls)


# ---- whole state -------------------------------------------------------------------------------
T = "iqn.2003-01.com.example:t"


def small_config() -> ClusterConfig:
    cfg = ClusterConfig()
    ops.add_target(cfg, T)
    ops.add_portal(cfg, T, "gw1", ["192.0.2.1"])
    ops.add_disk(cfg, "rbd", "d1")
    ops.add_disk(cfg, "rbd", "d2")
    ops.map_lun(cfg, T, "rbd/d1")
    return cfg


def test_consistent_state_has_no_violations():
    assert v.violations(small_config()) == []


def test_at_most_256_disks():
    cfg = ClusterConfig()
    for n in range(v.MAX_DISKS):
        ops.add_disk(cfg, "rbd", f"d{n}")
    assert v.violations(cfg) == []
    with pytest.raises(ValidationError, match="disk limit of 256 reached"):
        ops.add_disk(cfg, "rbd", "one-too-many")
    cfg.disks["rbd/extra"] = cfg.disks["rbd/d0"].__class__("rbd", "extra", wwn="w-extra",
                                                           backstore_object_name="rbd.extra")
    assert "257 disks are defined; the limit is 256" in v.violations(cfg)


def test_lun_ids_unique_per_target():
    cfg = small_config()
    with pytest.raises(ValidationError, match="LUN id 0 is already used by disk rbd/d1"):
        ops.map_lun(cfg, T, "rbd/d2", lun_id=0)
    cfg.targets[T].luns["rbd/d2"] = TargetLun("rbd/d2", 0, "gw1")
    assert any("share LUN id 0" in p for p in v.violations(cfg))


@pytest.mark.parametrize("breaks, problem", [
    (lambda cfg: cfg.targets[T].luns.__setitem__("rbd/zz", TargetLun("rbd/zz", 5, "gw1")), "not defined"),
    (lambda cfg: setattr(cfg.targets[T].luns["rbd/d1"], "owner", "gw9"), "not a gateway of the target"),
    (lambda cfg: setattr(cfg.targets[T].luns["rbd/d1"], "lun_id", 256), "not 0..255"),
    (lambda cfg: setattr(cfg.disks["rbd/d2"], "wwn", cfg.disks["rbd/d1"].wwn), "also used by disk"),
    (lambda cfg: setattr(cfg.targets[T], "auth", ChapAuth("username1", "password1234")),
     "target CHAP needs acl_enabled=false"),
    (lambda cfg: setattr(cfg.targets[T].portals["gw1"], "tpg_tag", 0), "not 1..65535"),
    (lambda cfg: cfg.gateways.pop("gw1"), "not a registered gateway"),
    (lambda cfg: cfg.stray.__setitem__("bogus/key", b"{"), "could not be read"),
])
def test_broken_states_are_reported(breaks, problem):
    cfg = small_config()
    breaks(cfg)
    assert any(problem in p for p in v.violations(cfg)), v.violations(cfg)


# ---- host-group membership ---------------------------------------------------------------------
C1, C2 = "iqn.1994-05.com.example:c1", "iqn.1994-05.com.example:c2"


def group_config() -> ClusterConfig:
    cfg = small_config()
    ops.add_client(cfg, T, C1)
    ops.add_client(cfg, T, C2)
    return cfg


def test_group_member_gets_exactly_the_group_disks():
    cfg = group_config()
    ops.update_group(cfg, T, "g1", add_members=[C1], add_disks=["rbd/d1"])
    assert cfg.targets[T].clients[C1].luns == {"rbd/d1": 0} and cfg.targets[T].clients[C1].group_name == "g1"
    assert v.violations(cfg) == []


def test_group_member_must_have_no_disks_of_its_own():
    cfg = group_config()
    ops.add_client_lun(cfg, T, C1, "rbd/d1")
    with pytest.raises(ValidationError, match="has disks mapped directly"):
        ops.update_group(cfg, T, "g1", add_members=[C1])


def test_group_member_must_not_be_in_another_group():
    cfg = group_config()
    ops.update_group(cfg, T, "g1", add_members=[C1])
    with pytest.raises(ValidationError, match="already in host group g1"):
        ops.update_group(cfg, T, "g2", add_members=[C1])


def test_group_member_must_be_a_client_of_the_target():
    with pytest.raises(ValidationError, match="not defined in target"):
        ops.update_group(group_config(), T, "g1", add_members=["iqn.1994-05.com.example:nobody"])


def test_group_disk_must_be_mapped_to_the_target():
    with pytest.raises(ValidationError, match="not mapped to target"):
        ops.update_group(group_config(), T, "g1", add_disks=["rbd/d2"])


def test_group_members_listed_twice_are_a_violation():
    cfg = group_config()
    ops.update_group(cfg, T, "g1", add_members=[C1])
    cfg.targets[T].groups["g1"].members.append(C1)
    assert any("more than once" in p for p in v.violations(cfg))
