"""ceph-iscsi ``gateway.conf``: import, export, and the older schemas."""

from __future__ import annotations

import copy
import json

import pytest
from config_store_contract import SAMPLE_V11, full_cipher, public_only_cipher

from gateway.config import ceph_iscsi
from gateway.config.errors import ValidationError

IGW = "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
WIN = "iqn.1991-05.com.microsoft:win-host1.example.com"
RH7 = "iqn.1994-05.com.redhat:rh7-client"


def sample() -> dict:
    return json.loads(SAMPLE_V11.read_text())


def without_added_fields(doc: dict) -> dict:
    """Drop what our export adds on purpose (the stable TPG tag)."""
    doc = copy.deepcopy(doc)
    for target in doc["targets"].values():
        for portal in target["portals"].values():
            portal.pop("tpg_tag")
    return doc


def test_realistic_v11_document_round_trips_exactly():
    cfg, problems = ceph_iscsi.import_document(sample())
    assert problems == []
    assert without_added_fields(ceph_iscsi.export_document(cfg, "plain")) == sample()


def test_import_maps_ceph_iscsi_fields_onto_the_model():
    cfg, _ = ceph_iscsi.import_document(sample())
    target = cfg.targets[IGW]
    assert cfg.version == 57
    assert {g: p.tpg_tag for g, p in target.portals.items()} == {"ceph-gw-1.example.com": 1,
                                                                 "ceph-gw-2.example.com": 2}
    assert target.luns["iscsi-pool/win_disk"].owner == "ceph-gw-1.example.com"
    assert target.clients[WIN].auth.mutual_username == "target-user"
    assert target.groups["mygroup"].disks == {"rbd/disk_1": 0, "rbd/disk_2": 1}
    assert cfg.disks["rbd/disk_1"].controls == {"qfull_timeout": 18} and cfg.disks["rbd/disk_1"].pool_id == 7


def test_export_computes_active_luns_and_orders_ip_list_by_tpg_tag():
    cfg, _ = ceph_iscsi.import_document(sample())
    target = cfg.targets[IGW]
    target.portals["ceph-gw-1.example.com"].tpg_tag = 3  # as if gw1 had been re-added later
    target.luns["rbd/disk_2"].owner = "ceph-gw-1.example.com"
    doc = ceph_iscsi.export_document(cfg)
    assert doc["targets"][IGW]["ip_list"] == ["192.168.100.202", "192.168.100.201"]
    assert doc["gateways"]["ceph-gw-1.example.com"]["active_luns"] == 4
    assert doc["disks"]["rbd/disk_2"]["owner"] == "ceph-gw-1.example.com"


def test_exported_tpg_tag_is_honoured_on_reimport():
    cfg, _ = ceph_iscsi.import_document(sample())
    cfg.targets[IGW].portals["ceph-gw-2.example.com"].tpg_tag = 7
    again, _ = ceph_iscsi.import_document(ceph_iscsi.export_document(cfg, "plain"))
    assert again.targets[IGW].portals["ceph-gw-2.example.com"].tpg_tag == 7


def test_unknown_fields_survive_a_round_trip():
    doc = sample()
    doc["disks"]["rbd/disk_1"]["future_field"] = {"x": 1}
    doc["targets"][IGW]["clients"][RH7]["note"] = "kept"
    doc["some_top_level"] = [1]
    cfg, _ = ceph_iscsi.import_document(doc)
    assert without_added_fields(ceph_iscsi.export_document(cfg, "plain")) == doc


# ---- secrets -----------------------------------------------------------------------------------
def test_export_redacts_secrets_by_default_and_a_redacted_export_does_not_import_cleanly():
    cfg, _ = ceph_iscsi.import_document(sample())
    doc = ceph_iscsi.export_document(cfg)
    auth = doc["targets"][IGW]["clients"][WIN]["auth"]
    assert auth["password"] == auth["mutual_password"] == ceph_iscsi.REDACTED
    assert auth["username"] == "win-host1-user"
    assert "windows_secret1" not in json.dumps(doc)
    _, problems = ceph_iscsi.import_document(doc)
    assert any("CHAP password was redacted in an export; set it again" in p for p in problems)


def test_encrypted_secrets_import_decrypted_and_export_as_asked():
    cipher = full_cipher()
    doc = sample()
    auth = doc["targets"][IGW]["clients"][WIN]["auth"]
    auth["password"], auth["password_encryption_enabled"] = cipher.encrypt("windows_secret1"), True
    cfg, problems = ceph_iscsi.import_document(doc, cipher)
    assert problems == [] and cfg.targets[IGW].clients[WIN].auth.password == "windows_secret1"
    plain = ceph_iscsi.export_document(cfg, "plain", cipher)
    assert without_added_fields(plain) == sample()
    stored = ceph_iscsi.export_document(cfg, "stored", cipher)["targets"][IGW]["clients"][WIN]["auth"]
    assert stored["password_encryption_enabled"] and cipher.decrypt(stored["password"]) == "windows_secret1"


def test_secret_this_node_cannot_decrypt_is_exported_as_ciphertext():
    doc = sample()
    sealed = full_cipher().encrypt("windows_secret1")
    auth = doc["targets"][IGW]["clients"][WIN]["auth"]
    auth["password"], auth["password_encryption_enabled"] = sealed, True
    cfg, _ = ceph_iscsi.import_document(doc, public_only_cipher())
    out = ceph_iscsi.export_document(cfg, "plain")["targets"][IGW]["clients"][WIN]["auth"]
    assert out["password"] == sealed and out["password_encryption_enabled"] is True


def test_unknown_secret_mode_is_rejected():
    cfg, _ = ceph_iscsi.import_document(sample())
    with pytest.raises(ValidationError, match="secrets must be one of"):
        ceph_iscsi.export_document(cfg, "clear")


# ---- older schemas -------------------------------------------------------------------------------
V3 = {
    "version": 3, "epoch": 5, "created": "2018/01/02 03:04:05", "updated": "2018/01/02 03:05:00",
    "disks": {"rbd.disk_1": {"pool": "rbd", "image": "disk_1", "wwn": "4fc1071d-7e2f-4df0-95c8-925a617e2d62",
                             "owner": "gw1", "created": "2018/01/02 03:04:06"}},
    "gateways": {
        "iqn": IGW, "ip_list": ["10.0.0.1", "10.0.0.2"], "created": "2018/01/02 03:04:05",
        "gw1": {"iqn": IGW, "active_luns": 1, "portal_ip_address": "10.0.0.1",
                "gateway_ip_list": ["10.0.0.1", "10.0.0.2"], "inactive_portal_ips": ["10.0.0.2"], "tpgs": 2,
                "created": "2018/01/02 03:04:07"},
        "gw2": {"iqn": IGW, "active_luns": 0, "portal_ip_address": "10.0.0.2",
                "gateway_ip_list": ["10.0.0.1", "10.0.0.2"], "inactive_portal_ips": ["10.0.0.1"], "tpgs": 2},
    },
    "clients": {RH7: {"auth": {"chap": "myiscsiusername/myiscsipassword"}, "group_name": "",
                      "luns": {"rbd.disk_1": {"lun_id": 0}}, "created": "2018/01/02 03:04:09"}},
    "groups": {},
    "controls": {"nopin_timeout": 9},
}


def test_v3_single_target_config_upgrades_to_the_model():
    cfg, problems = ceph_iscsi.import_document(V3)
    assert len(problems) == 1 and "gateways gw1, gw2 have short host names" in problems[0]
    target = cfg.targets[IGW]
    assert target.acl_enabled and target.controls == {"nopin_timeout": 9}
    assert {g: (p.tpg_tag, p.ip_addresses) for g, p in target.portals.items()} == {
        "gw1": (1, ["10.0.0.1"]), "gw2": (2, ["10.0.0.2"])}
    assert target.luns["rbd/disk_1"].lun_id == 0 and target.luns["rbd/disk_1"].owner == "gw1"
    client = target.clients[RH7]
    assert (client.auth.username, client.auth.password) == ("myiscsiusername", "myiscsipassword")
    assert client.luns == {"rbd/disk_1": 0}
    disk = cfg.disks["rbd/disk_1"]
    assert disk.backstore == "user:rbd" and disk.backstore_object_name == "rbd.disk_1"
    assert cfg.gateways["gw1"].created == "2018/01/02 03:04:07" and cfg.version == 5


def test_v6_disk_keys_use_pool_and_image_fields_not_every_dot():
    doc = {"version": 6, "epoch": 1, "discovery_auth": {"chap": "", "chap_mutual": ""}, "gateways": {},
           "disks": {"rbd.my.disk": {"pool": "rbd", "image": "my.disk", "wwn": "w1",
                                     "backstore": "user:rbd"}},
           "targets": {IGW: {"disks": ["rbd.my.disk"], "clients": {}, "groups": {}, "portals": {},
                             "controls": {}, "ip_list": [], "acl_enabled": True}}}
    cfg, _ = ceph_iscsi.import_document(doc)
    assert set(cfg.disks) == {"rbd/my.disk"} and set(cfg.targets[IGW].luns) == {"rbd/my.disk"}
    assert cfg.disks["rbd/my.disk"].backstore_object_name == "rbd.my.disk"


def test_v7_chap_strings_split_and_long_secrets_are_taken_as_ciphertext():
    sealed = full_cipher().encrypt("myiscsipassword")
    doc = {"version": 7, "epoch": 1, "gateways": {}, "disks": {},
           "discovery_auth": {"chap": "discovery-user/discovery-pw1", "chap_mutual": ""},
           "targets": {IGW: {"disks": [], "groups": {}, "portals": {}, "controls": {}, "ip_list": [],
                             "acl_enabled": True,
                             "clients": {RH7: {
                                 "auth": {"chap": f"myiscsiusername/{sealed}", "chap_mutual": ""},
                                 "group_name": "", "luns": {}}}}}}
    cfg, problems = ceph_iscsi.import_document(doc, full_cipher())
    assert problems == []
    assert cfg.discovery_auth.username == "discovery-user" and cfg.discovery_auth.password == "discovery-pw1"
    assert cfg.targets[IGW].clients[RH7].auth.password == "myiscsipassword"


def test_v8_portal_address_becomes_a_list_and_v10_disk_list_gets_sorted_lun_ids():
    doc = sample()
    doc["version"] = 8
    for target in doc["targets"].values():
        del target["auth"]
        target["disks"] = sorted(target["disks"], reverse=True)
        for portal in target["portals"].values():
            portal["portal_ip_address"] = portal.pop("portal_ip_addresses")[0]
        for client in target["clients"].values():
            client["auth"] = {"chap": "", "chap_mutual": ""}
    doc["discovery_auth"] = {"chap": "", "chap_mutual": ""}
    doc["targets"][IGW]["acl_enabled"] = True
    doc["version"] = 7  # exercise 7 -> 8 as well
    cfg, problems = ceph_iscsi.import_document(doc)
    assert problems == []  # FQDN gateway names: nothing to say about 9 -> 10
    target = cfg.targets[IGW]
    assert {d: lun.lun_id for d, lun in target.luns.items()} == {
        "iscsi-pool/win_disk": 0, "rbd/disk_1": 1, "rbd/disk_2": 2}
    assert target.portals["ceph-gw-2.example.com"].ip_addresses == ["192.168.100.202"]
    assert not target.auth.enabled


def test_rolling_upgrade_marker_is_dropped_with_a_note():
    doc = sample()
    doc["gateways_upgraded"] = ["ceph-gw-1.example.com"]
    cfg, problems = ceph_iscsi.import_document(doc)
    assert "gateways_upgraded" not in cfg.extra and any("rolling" in p for p in problems)


def test_newer_schema_is_refused():
    with pytest.raises(ValidationError, match="schema 12 is newer than 11"):
        ceph_iscsi.import_document({**sample(), "version": 12})


@pytest.mark.parametrize("doc", [
    {"version": 11, "targets": {IGW: {"disks": ["not", "a", "dict"]}}},
    {"version": 11, "disks": {"rbd/x": "string"}},
])
def test_malformed_document_is_refused_with_a_clear_error(doc):
    with pytest.raises(ValidationError, match="not a ceph-iscsi gateway.conf document"):
        ceph_iscsi.import_document(doc)


def test_inconsistent_document_imports_with_problems_listed():
    doc = sample()
    doc["targets"][IGW]["disks"]["rbd/ghost"] = {"lun_id": 9}
    cfg, problems = ceph_iscsi.import_document(doc)
    assert "rbd/ghost" in cfg.targets[IGW].luns
    assert any("rbd/ghost, which is not defined" in p for p in problems)


def test_dumps_formats_like_ceph_iscsi():
    text = ceph_iscsi.dumps({"b": 1, "a": [1]})
    assert text == '{\n    "a": [\n        1\n    ],\n    "b": 1\n}'
