"""ceph-iscsi's identity allocation rules (reference H.5) and the operations that use them."""

from __future__ import annotations

import uuid

import pytest

from gateway.config import allocation
from gateway.config import operations as ops
from gateway.config.errors import AlreadyExists, NotFound, ValidationError
from gateway.config.model import ChapAuth, ClusterConfig, TargetLun

T, T2 = "iqn.2003-01.com.example:t", "iqn.2003-01.com.example:t2"
C1, C2 = "iqn.1994-05.com.example:c1", "iqn.1994-05.com.example:c2"


def config(gateways=("gw1", "gw2"), disks=4) -> ClusterConfig:
    cfg = ClusterConfig()
    ops.add_target(cfg, T)
    for n, gw in enumerate(gateways):
        ops.add_portal(cfg, T, gw, [f"192.0.2.{n + 1}"])
    for n in range(disks):
        ops.add_disk(cfg, "rbd", f"d{n}")
    return cfg


# ---- target LUN ids ---------------------------------------------------------------------------
def test_target_lun_id_is_lowest_free_from_zero_and_reuses_gaps():
    cfg = config()
    assert [ops.map_lun(cfg, T, f"rbd/d{n}").lun_id for n in range(3)] == [0, 1, 2]
    ops.unmap_lun(cfg, T, "rbd/d1")
    assert ops.map_lun(cfg, T, "rbd/d3").lun_id == 1
    assert cfg.targets[T].luns["rbd/d2"].lun_id == 2  # nothing renumbered


def test_target_lun_id_explicit_must_be_free():
    cfg = config()
    assert ops.map_lun(cfg, T, "rbd/d0", lun_id="9").lun_id == 9
    with pytest.raises(ValidationError, match="LUN id 9 is already used by disk rbd/d0"):
        ops.map_lun(cfg, T, "rbd/d1", lun_id=9)


def test_target_lun_ids_run_out_after_256():
    target = config().targets[T]
    for n in range(256):
        target.luns[f"rbd/x{n}"] = TargetLun(f"rbd/x{n}", n)
    with pytest.raises(ValidationError, match="no free LUN id in target"):
        allocation.target_lun_id(target)


# ---- owners ----------------------------------------------------------------------------------------
def test_owner_is_gateway_with_fewest_luns_ties_to_lowest_tag():
    cfg = config(gateways=("gw1", "gw2", "gw3"))
    owners = [ops.map_lun(cfg, T, f"rbd/d{n}").owner for n in range(4)]
    assert owners == ["gw1", "gw2", "gw3", "gw1"]


def test_owner_counts_luns_of_all_targets():
    cfg = config()
    ops.add_target(cfg, T2)
    ops.add_portal(cfg, T2, "gw1", ["192.0.2.11"])
    ops.map_lun(cfg, T2, "rbd/d0")  # gw1 now owns one LUN elsewhere
    assert ops.map_lun(cfg, T, "rbd/d1").owner == "gw2"
    assert cfg.active_luns("gw1") == 1 and cfg.active_luns("gw2") == 1


def test_explicit_owner_must_serve_the_target():
    cfg = config()
    with pytest.raises(NotFound, match="gw9 does not serve target"):
        ops.map_lun(cfg, T, "rbd/d0", owner="gw9")


def test_mapping_needs_minimum_gateways():
    cfg = config(gateways=("gw1",))
    with pytest.raises(ValidationError, match="at least 2 gateways must serve"):
        ops.map_lun(cfg, T, "rbd/d0", minimum_gateways=2)


def test_disk_maps_to_one_target_only():
    cfg = config()
    ops.add_target(cfg, T2)
    ops.add_portal(cfg, T2, "gw1", ["192.0.2.11"])
    ops.map_lun(cfg, T, "rbd/d0")
    with pytest.raises(AlreadyExists, match=f"already mapped to target {T}"):
        ops.map_lun(cfg, T2, "rbd/d0")


# ---- TPG tags -------------------------------------------------------------------------------------
def test_tpg_tags_are_stable_when_a_gateway_leaves_and_the_gap_is_reused():
    cfg = config(gateways=("gw1", "gw2", "gw3"), disks=0)
    assert [cfg.targets[T].portals[g].tpg_tag for g in ("gw1", "gw2", "gw3")] == [1, 2, 3]
    ops.remove_portal(cfg, T, "gw2")
    assert {g: p.tpg_tag for g, p in cfg.targets[T].portals.items()} == {"gw1": 1, "gw3": 3}
    assert ops.add_portal(cfg, T, "gw4", ["192.0.2.4"]).tpg_tag == 2


def test_removed_gateway_hands_its_luns_to_the_least_loaded_survivor():
    cfg = config(gateways=("gw1", "gw2", "gw3"))
    for n in range(4):
        ops.map_lun(cfg, T, f"rbd/d{n}")  # gw1: d0, d3; gw2: d1; gw3: d2
    ops.remove_portal(cfg, T, "gw1")
    owners = {d: lun.owner for d, lun in cfg.targets[T].luns.items()}
    assert owners == {"rbd/d0": "gw2", "rbd/d1": "gw2", "rbd/d2": "gw3", "rbd/d3": "gw3"}
    assert "gw1" not in cfg.gateways


def test_last_gateway_cannot_leave_while_disks_remain():
    cfg = config(gateways=("gw1",))
    ops.map_lun(cfg, T, "rbd/d0")
    with pytest.raises(ValidationError, match="last gateway of target"):
        ops.remove_portal(cfg, T, "gw1")


def test_portal_address_belongs_to_one_gateway_of_a_target():
    cfg = config()
    with pytest.raises(AlreadyExists, match="192.0.2.1 is already a portal of gateway gw1"):
        ops.add_portal(cfg, T, "gw3", ["192.0.2.1"])
    with pytest.raises(ValidationError, match="at least one portal address"):
        ops.add_portal(cfg, T, "gw3", [])


# ---- client and group LUN ids ------------------------------------------------------------------
def clients_config() -> ClusterConfig:
    cfg = config()
    for n in range(4):
        ops.map_lun(cfg, T, f"rbd/d{n}")  # target ids 0..3
    ops.add_client(cfg, T, C1)
    ops.add_client(cfg, T, C2)
    return cfg


def test_client_lun_id_prefers_the_target_lun_id():
    cfg = clients_config()
    assert ops.add_client_lun(cfg, T, C1, "rbd/d2") == 2
    assert ops.add_client_lun(cfg, T, C2, "rbd/d2") == 2  # same disk elsewhere does not block it


def test_client_lun_id_falls_back_to_lowest_free_when_target_id_is_taken():
    cfg = clients_config()
    cfg.targets[T].clients[C1].luns = {"rbd/d3": 2}  # C1 sees d3 at id 2
    assert ops.add_client_lun(cfg, T, C1, "rbd/d2") == 0
    # another client uses id 2 for a different disk: C2 gets its lowest free id too
    assert ops.add_client_lun(cfg, T, C2, "rbd/d2") == 0


def test_client_lun_id_is_kept_once_given():
    cfg = clients_config()
    cfg.targets[T].clients[C1].luns = {"rbd/d2": 7}
    assert allocation.client_lun_id(cfg.targets[T], cfg.targets[T].clients[C1], "rbd/d2") == 7


def test_client_lun_needs_the_disk_mapped_to_the_target():
    cfg = config()
    ops.add_client(cfg, T, C1)
    with pytest.raises(NotFound, match="map it first"):
        ops.add_client_lun(cfg, T, C1, "rbd/d0")


def test_group_lun_id_prefers_target_id_else_lowest_unused_in_group():
    cfg = clients_config()
    group = ops.update_group(cfg, T, "g", add_members=[C1, C2], add_disks=["rbd/d2"])
    assert group.disks == {"rbd/d2": 2}
    group.disks["rbd/d2"] = 3  # pretend the group placed d2 at d3's target id
    ops.update_group(cfg, T, "g", add_disks=["rbd/d3"])
    assert group.disks == {"rbd/d2": 3, "rbd/d3": 0}
    assert cfg.targets[T].clients[C1].luns == cfg.targets[T].clients[C2].luns == group.disks


def test_group_removal_keeps_member_masking_and_frees_membership():
    cfg = clients_config()
    ops.update_group(cfg, T, "g", add_members=[C1], add_disks=["rbd/d1"])
    with pytest.raises(ValidationError, match="member of host group g"):
        ops.remove_client(cfg, T, C1)
    with pytest.raises(ValidationError, match="change the group's disks instead"):
        ops.add_client_lun(cfg, T, C1, "rbd/d0")
    ops.remove_group(cfg, T, "g")
    assert cfg.targets[T].clients[C1].luns == {"rbd/d1": 1} and not cfg.targets[T].clients[C1].group_name


def test_group_disk_removal_unmasks_members():
    cfg = clients_config()
    ops.update_group(cfg, T, "g", add_members=[C1], add_disks=["rbd/d1", "rbd/d2"])
    ops.update_group(cfg, T, "g", remove_disks=["rbd/d1"])
    assert cfg.targets[T].clients[C1].luns == {"rbd/d2": 2}
    with pytest.raises(ValidationError, match="belongs to host group g"):
        ops.unmap_lun(cfg, T, "rbd/d2")


# ---- disks, WWNs, backstore names ----------------------------------------------------------------
def test_backstore_object_names_avoid_collisions():
    cfg = ClusterConfig()
    assert ops.add_disk(cfg, "a.b", "c").backstore_object_name == "a.b.c"
    assert ops.add_disk(cfg, "a", "b.c").backstore_object_name == "a.b.c.1"


def test_generated_wwn_is_a_random_uuid_and_explicit_wwn_is_unique():
    cfg = ClusterConfig()
    disk = ops.add_disk(cfg, "rbd", "d0")
    assert uuid.UUID(disk.wwn).version == 4
    with pytest.raises(AlreadyExists, match=f"wwn {disk.wwn} is already used by disk rbd/d0"):
        ops.add_disk(cfg, "rbd", "d1", wwn=disk.wwn)
    assert ops.add_disk(cfg, "rbd", "d2", wwn="serial-2").wwn == "serial-2"


def test_disk_in_use_cannot_be_removed():
    cfg = clients_config()
    ops.add_client_lun(cfg, T, C1, "rbd/d0")
    with pytest.raises(ValidationError, match=f"in use by target {T}, client {C1}"):
        ops.remove_disk(cfg, "rbd/d0")
    with pytest.raises(ValidationError, match=f"mapped to client\\(s\\) {C1}"):
        ops.unmap_lun(cfg, T, "rbd/d0")


# ---- targets and ACL mode ----------------------------------------------------------------------
def test_target_chap_only_without_acls_and_acls_off_only_without_clients():
    cfg = clients_config()
    chap = ChapAuth("target-user", "target-secret")
    with pytest.raises(ValidationError, match="target CHAP applies only with acl_enabled=false"):
        ops.set_target_auth(cfg, T, chap)
    with pytest.raises(ValidationError, match="remove them before disabling ACLs"):
        ops.set_acl_enabled(cfg, T, False)
    for c in (C1, C2):
        ops.remove_client(cfg, T, c)
    ops.set_acl_enabled(cfg, T, False)
    ops.set_target_auth(cfg, T, chap)
    with pytest.raises(ValidationError, match="clear it before enabling ACLs"):
        ops.set_acl_enabled(cfg, T, True)
    with pytest.raises(ValidationError, match="ACLs disabled"):
        ops.add_client(cfg, T, C1)


def test_target_with_clients_or_disks_cannot_be_removed():
    cfg = clients_config()
    with pytest.raises(ValidationError, match="still has 2 client\\(s\\) and 4 disk\\(s\\)"):
        ops.remove_target(cfg, T)


def test_removing_an_empty_target_forgets_gateways_serving_nothing_else():
    cfg = config(disks=0)
    ops.add_target(cfg, T2)
    ops.add_portal(cfg, T2, "gw1", ["192.0.2.1"])
    ops.remove_target(cfg, T)
    assert set(cfg.gateways) == {"gw1"} and set(cfg.targets) == {T2}


def test_lookups_name_what_is_missing():
    cfg = config()
    with pytest.raises(NotFound, match="target iqn.2003-01.com.example:nope does not exist"):
        ops.get_target(cfg, "iqn.2003-01.com.example:nope")
    with pytest.raises(NotFound, match="disk rbd/nope is not defined"):
        ops.map_lun(cfg, T, "rbd/nope")
    with pytest.raises(NotFound, match="client .* is not defined in target"):
        ops.set_client_auth(cfg, T, C1, ChapAuth())
