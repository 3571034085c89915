"""Contract of the target, gateway, target-LUN, discovery and target auth endpoints against
the real API process and two gateways: status codes, ceph-iscsi shapes, stored effects."""

import json

from support.api_fixtures import GW_A, GW_B, IP_A, IP_B, api_env  # noqa: F401 - fixture

APPLIED_KEYS = {"message", "version", "applied", "pending", "down", "degraded"}
MISSING = "iqn.2003-01.com.example.test:missing"


def assert_applied(body: dict, message: str, gateways=(GW_A, GW_B)) -> None:
    assert set(body) >= APPLIED_KEYS, body
    assert body["message"] == message
    assert body["applied"] == sorted(gateways) and body["pending"] == [] and body["down"] == []


def test_target_create_list_show_and_conflicts(api_env):
    c = api_env.client
    iqn = "iqn.2003-01.com.example.test:Upper-Case-" + api_env.image_name()[4:]
    body = c.ok("PUT", f"/api/target/{iqn}", data={"controls": json.dumps({"cmdsn_depth": 64})})
    assert_applied(body, "Target defined successfully", gateways=())
    assert iqn.lower() in c.ok("GET", "/api/targets")["targets"]
    shown = c.ok("GET", f"/api/target/{iqn.lower()}")
    assert shown["controls"] == {"cmdsn_depth": 64} and shown["acl_enabled"] is True
    r = c.put(f"/api/target/{iqn}")
    assert r.status_code == 409 and "already exists" in r.json()["message"]
    for bad in ("iqn.2003-13.com.example:x", "iqn.bad", "eui.0123456789abcdef", "iqn.2003-01.com.ex ample:x"):
        r = c.put(f"/api/target/{bad}")
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["message"]
    assert c.get(f"/api/target/{MISSING}").status_code == 404


def test_target_reconfigure_validates_controls_and_mode(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    body = c.ok("PUT", f"/api/target/{iqn}", data={"mode": "reconfigure",
                                                   "controls": json.dumps({"nopin_timeout": 10})})
    assert_applied(body, "Target reconfigured.")
    assert body["controls"] == {"nopin_timeout": 10}
    assert c.ok("GET", "/api/config")["targets"][iqn]["controls"] == {"nopin_timeout": 10}
    body = c.ok("PUT", f"/api/target/{iqn}", json={"mode": "reconfigure", "controls": {"nopin_timeout": ""}})
    assert body["controls"] == {}
    for controls in ('{"nopin_timeout": 1}', '{"no_such_control": 1}', "not json", '["x"]'):
        r = c.put(f"/api/target/{iqn}", data={"mode": "reconfigure", "controls": controls})
        assert r.status_code == 400, (controls, r.text)
    r = c.put(f"/api/target/{iqn}", data={"mode": "rebuild"})
    assert r.status_code == 400 and "reconfigure" in r.json()["message"]
    r = c.put(f"/api/target/{MISSING}", data={"mode": "reconfigure", "controls": "{}"})
    assert r.status_code == 404


def test_target_delete_refused_while_disks_or_clients_remain(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    disk = api_env.mapped_disk(iqn)
    r = c.delete(f"/api/target/{iqn}")
    assert r.status_code == 400 and "remove them first" in r.json()["message"]
    c.ok("DELETE", f"/api/targetlun/{iqn}", data={"disk": disk})
    assert_applied(c.ok("DELETE", f"/api/target/{iqn}"), "Target deleted.")
    assert iqn not in c.ok("GET", "/api/targets")["targets"]
    assert c.delete(f"/api/target/{iqn}").status_code == 404
    other = api_env.new_target(gateways=())
    assert c.ok("DELETE", f"/api/_target/{other}")["message"] == "Target deleted."


def test_gateways_of_a_target_in_ceph_iscsi_shape(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    portals = c.ok("GET", f"/api/gateways/{iqn}")
    # ceph-iscsi's fields, plus our stable tpg_tag and the port (the test cfg's iscsi_port is
    # not the default 3260, so it is written out)
    assert portals[GW_A] == {"gateway_ip_list": [IP_A, IP_B], "portal_ip_addresses": [IP_A],
                             "inactive_portal_ips": [IP_B], "tpgs": 2, "tpg_tag": 1,
                             "port": api_env.cfg_dir.common["iscsi_port"]}
    assert portals[GW_B]["tpg_tag"] == 2
    assert c.ok("GET", f"/api/_gateway/{iqn}/{GW_B}") == portals[GW_B]
    one = c.ok("GET", f"/api/gateway/{iqn}/{GW_B}")
    assert one["state"] == "up" and one["sessions"] == 0 and one["portal_ip_addresses"] == [IP_B]
    assert c.get(f"/api/gateways/{MISSING}").status_code == 404
    assert c.get("/api/gateways/not-an-iqn").status_code == 400
    assert c.get(f"/api/gateway/{iqn}/gw-z.test").status_code == 404


def test_adding_a_gateway_checks_its_own_report_unless_skipchecks(api_env):
    c = api_env.client
    iqn = api_env.new_target(gateways=())
    r = c.put(f"/api/gateway/{iqn}/{GW_A}")
    assert r.status_code == 400 and "ip_address" in r.json()["message"]
    r = c.put(f"/api/gateway/{iqn}/{GW_A}", data={"ip_address": "192.0.2.99"})
    assert r.status_code == 400 and "does not have address" in r.json()["message"]
    r = c.put(f"/api/gateway/{iqn}/gw-never.test", data={"ip_address": "127.0.7.98"})
    assert r.status_code == 400 and "has not reported" in r.json()["message"]
    r = c.put(f"/api/gateway/{iqn}/bad_name!", data={"ip_address": IP_A})
    assert r.status_code == 400
    r = c.put(f"/api/gateway/{iqn}/{GW_A}", data={"ip_address": "not-an-ip", "skipchecks": "true"})
    assert r.status_code == 400
    body = c.ok("PUT", f"/api/gateway/{iqn}/{GW_A}", data={"ip_address": IP_A})
    assert_applied(body, "Gateway creation successful", gateways=(GW_A,))
    assert body["tpg_tag"] == 1
    r = c.put(f"/api/gateway/{iqn}/{GW_A}", data={"ip_address": IP_A})
    assert r.status_code == 409
    r = c.put(f"/api/gateway/{iqn}/{GW_B}", data={"ip_address": IP_A, "skipchecks": "true"})
    assert r.status_code == 409 and "already a portal" in r.json()["message"]
    body = c.ok("PUT", f"/api/gateway/{iqn}/gw-c.test",
                data={"ip_address": "127.0.7.13", "skipchecks": "true"})
    assert body["down"] == ["gw-c.test"] and body["applied"] == [GW_A]


def test_removing_a_gateway_keeps_other_tags_and_moves_its_luns(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    disks = [api_env.mapped_disk(iqn) for _ in range(2)]
    owners = {d: c.ok("GET", "/api/config")["disks"][d]["owner"] for d in disks}
    assert set(owners.values()) == {GW_A, GW_B}
    body = c.ok("DELETE", f"/api/gateway/{iqn}/{GW_A}", data={"force": "true"})
    assert_applied(body, "Gateway deletion successful")
    cfg = c.ok("GET", "/api/config")
    assert cfg["targets"][iqn]["portals"][GW_B]["tpg_tag"] == 2
    assert {cfg["disks"][d]["owner"] for d in disks} == {GW_B}
    assert c.delete(f"/api/gateway/{iqn}/{GW_A}").status_code == 404
    r = c.delete(f"/api/gateway/{iqn}/{GW_B}")
    assert r.status_code == 400 and "last gateway" in r.json()["message"]


def test_owner_move_and_drain(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    disks = [api_env.mapped_disk(iqn) for _ in range(2)]
    for disk, owner in zip(disks, (GW_A, GW_B), strict=True):
        body = c.ok("PUT", f"/api/disk/{disk}", data={"mode": "owner", "owner": owner})
        assert_applied(body, f"owner of {disk} is now {owner}")
    cfg = c.ok("GET", "/api/config")
    assert [cfg["disks"][d]["owner"] for d in disks] == [GW_A, GW_B]
    body = c.ok("PUT", f"/api/gateway/{iqn}/{GW_A}/drain")
    assert_applied(body, f"gateway {GW_A} drained: 1 LUN(s) moved")
    assert body["moved"] == {disks[0]: GW_B}
    cfg = c.ok("GET", "/api/config")
    assert {cfg["disks"][d]["owner"] for d in disks} == {GW_B}
    assert c.put(f"/api/disk/{disks[0]}", data={"mode": "owner", "owner": "gw-z.test"}).status_code == 404
    assert c.put(f"/api/disk/{disks[0]}", data={"mode": "owner"}).status_code == 400
    assert c.put(f"/api/gateway/{iqn}/gw-z.test/drain").status_code == 404
    unmapped = api_env.new_disk()
    r = c.put(f"/api/disk/{unmapped}", data={"mode": "owner", "owner": GW_A})
    assert r.status_code == 400 and "not mapped to a target" in r.json()["message"]


def test_target_lun_mapping(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    disk = api_env.new_disk()
    body = c.ok("PUT", f"/api/targetlun/{iqn}", data={"disk": disk, "lun_id": "5"})
    assert_applied(body, "Target LUN mapping updated successfully")
    assert body["lun_id"] == 5 and body["owner"] in (GW_A, GW_B)
    assert c.ok("GET", "/api/config")["targets"][iqn]["disks"][disk] == {"lun_id": 5}
    second = api_env.new_disk()
    r = c.put(f"/api/targetlun/{iqn}", data={"disk": second, "lun_id": "5"})
    assert r.status_code == 400 and "already used" in r.json()["message"]
    for data, status in (({}, 400), ({"disk": "nopool"}, 400), ({"disk": "rbd/missing-disk"}, 404),
                         ({"disk": second, "lun_id": "256"}, 400), ({"disk": disk}, 409)):
        r = c.put(f"/api/targetlun/{iqn}", data=data)
        assert r.status_code == status, (data, r.text)
    single = api_env.new_target(gateways=(GW_A,))
    r = c.put(f"/api/targetlun/{single}", data={"disk": second})
    assert r.status_code == 400 and "at least 2 gateways" in r.json()["message"]
    assert c.put(f"/api/targetlun/{MISSING}", data={"disk": second}).status_code == 404
    client = api_env.new_client(iqn)
    c.ok("PUT", f"/api/clientlun/{iqn}/{client}", data={"disk": disk})
    r = c.delete(f"/api/targetlun/{iqn}", data={"disk": disk})
    assert r.status_code == 400 and client in r.json()["message"]
    c.ok("DELETE", f"/api/clientlun/{iqn}/{client}", data={"disk": disk})
    assert_applied(c.ok("DELETE", f"/api/targetlun/{iqn}", data={"disk": disk}),
                   "Target LUN mapping updated successfully")
    assert c.delete(f"/api/targetlun/{iqn}", data={"disk": disk}).status_code == 404


def test_discovery_auth_is_stored_and_secrets_only_shown_on_request(api_env):
    c = api_env.client
    body = c.ok("PUT", "/api/discoveryauth", data={"username": "discoveryuser", "password": "discoverypass1"})
    assert body["message"] == "discovery auth successful"
    assert set(body["applied"]) >= {GW_A, GW_B} or body["applied"] == []
    auth = c.ok("GET", "/api/config")["discovery_auth"]
    assert auth["username"] == "discoveryuser" and auth["password"] == "<redacted>"
    auth = c.ok("GET", "/api/config", params={"decrypt_passwords": "True"})["discovery_auth"]
    assert auth["password"] == "discoverypass1"
    for data in ({"username": "short", "password": "discoverypass1"}, {"username": "discoveryuser"},
                 {"username": "discoveryuser", "password": "has space inside"},
                 {"mutual_username": "mutualuser", "mutual_password": "mutualpass12"}):
        r = c.put("/api/discoveryauth", data=data)
        assert r.status_code == 400, (data, r.text)
    c.ok("PUT", "/api/discoveryauth", data={})
    shown = c.ok("GET", "/api/config", params={"decrypt_passwords": "true"})
    assert shown["discovery_auth"]["password"] == ""


def test_target_auth_acl_modes_and_target_chap(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    chap = {"username": "targetuser1", "password": "targetpass123"}
    r = c.put(f"/api/targetauth/{iqn}", data=chap)
    assert r.status_code == 400 and "ACLs enabled" in r.json()["message"]
    r = c.put(f"/api/targetauth/{iqn}", data={"action": "toggle_acl"})
    assert r.status_code == 400 and "enable_acl" in r.json()["message"]
    client = api_env.new_client(iqn)
    r = c.put(f"/api/targetauth/{iqn}", data={"action": "disable_acl"})
    assert r.status_code == 400 and "client" in r.json()["message"]
    c.ok("DELETE", f"/api/client/{iqn}/{client}")
    assert_applied(c.ok("PUT", f"/api/targetauth/{iqn}", data={"action": "disable_acl"}),
                   "target auth disable_acl - successful")
    c.ok("PUT", f"/api/targetauth/{iqn}", data=chap)
    target = c.ok("GET", "/api/config", params={"decrypt_passwords": "true"})["targets"][iqn]
    assert target["acl_enabled"] is False and target["auth"]["password"] == chap["password"]
    r = c.put(f"/api/targetauth/{iqn}", data={"action": "enable_acl"})
    assert r.status_code == 400 and "target CHAP" in r.json()["message"]
    c.ok("PUT", f"/api/targetauth/{iqn}", data={})
    c.ok("PUT", f"/api/targetauth/{iqn}", data={"action": "enable_acl"})
    assert c.ok("GET", f"/api/target/{iqn}")["acl_enabled"] is True
    assert c.put(f"/api/targetauth/{MISSING}", data={}).status_code == 404
