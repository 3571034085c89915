"""Contract of the client, client auth, client LUN, client info and host group endpoints.

Logged-in initiators are simulated through the TEST-ONLY fake gateway's session file; with
the real rbd-target-gw these checks need a real initiator login instead."""

import time

from support.api_fixtures import GW_A, GW_B, api_env  # noqa: F401 - fixture

MISSING_CLIENT = "iqn.1994-05.com.example:nobody"
CHAP = {"username": "clientuser1", "password": "clientpass123"}


def wait_logged_in(c, iqn, client, want: bool) -> dict:
    deadline = time.monotonic() + 30
    while True:
        info = c.ok("GET", f"/api/clientinfo/{iqn}/{client}")
        if bool(info["state"]) == want or time.monotonic() > deadline:
            return info
        time.sleep(0.2)


def test_client_create_show_list_and_errors(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    name = "iqn.1994-05.com.example:Host-" + api_env.image_name()[4:]
    body = c.ok("PUT", f"/api/client/{iqn}/{name}", data=CHAP)
    assert body["message"] == "client create/update successful"
    assert body["applied"] == [GW_A, GW_B] and body["pending"] == body["down"] == []
    assert c.ok("GET", f"/api/clients/{iqn}") == {"clients": [name.lower()]}
    shown = c.ok("GET", f"/api/client/{iqn}/{name}")
    assert shown["auth"]["username"] == CHAP["username"] and shown["auth"]["password"] == "<redacted>"
    assert shown["luns"] == {} and shown["group_name"] == ""
    assert c.put(f"/api/client/{iqn}/{name}").status_code == 409
    assert c.put(f"/api/client/{iqn}/not-an-initiator").status_code == 400
    assert c.put(f"/api/client/{iqn}/eui.0123456789abcdef").status_code == 200  # eui names are initiators
    assert c.put(f"/api/client/{iqn}/{api_env.image_name()}", data={"password": "short"}).status_code == 400
    assert c.put(f"/api/client/iqn.2003-01.com.example.test:missing/{name}").status_code == 404
    assert c.get(f"/api/client/{iqn}/{MISSING_CLIENT}").status_code == 404
    single = api_env.new_target(gateways=(GW_A,))
    r = c.put(f"/api/client/{single}/{name}")
    assert r.status_code == 400 and "at least 2 gateways" in r.json()["message"]


def test_client_auth(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    name = api_env.new_client(iqn)
    mutual = {**CHAP, "mutual_username": "targetuser1", "mutual_password": "mutualpass123"}
    assert c.ok("PUT", f"/api/clientauth/{iqn}/{name}", data=mutual)["message"] == "client auth successful"
    shown = c.ok("GET", "/api/config", params={"decrypt_passwords": "true"})
    auth = shown["targets"][iqn]["clients"][name]["auth"]
    assert (auth["password"], auth["mutual_password"]) == ("clientpass123", "mutualpass123")
    for data in ({"username": "clientuser1"}, {**CHAP, "password": "x" * 17},
                 {**CHAP, "mutual_username": "targetuser1", "mutual_password": CHAP["password"]}):
        r = c.put(f"/api/clientauth/{iqn}/{name}", data=data)
        assert r.status_code == 400, (data, r.text)
    assert c.put(f"/api/clientauth/{iqn}/{MISSING_CLIENT}", data=CHAP).status_code == 404
    c.ok("PUT", f"/api/clientauth/{iqn}/{name}", data={})
    assert c.ok("GET", f"/api/client/{iqn}/{name}")["auth"]["username"] == ""


def test_client_luns(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    disk = api_env.mapped_disk(iqn)
    name = api_env.new_client(iqn)
    body = c.ok("PUT", f"/api/clientlun/{iqn}/{name}", data={"disk": disk})
    assert body["message"] == "client masking update successful" and body["lun_id"] == 0
    assert c.ok("GET", f"/api/clientlun/{iqn}/{name}") == {"message": {disk: {"lun_id": 0}}}
    assert c.ok("GET", f"/api/_clientlun/{iqn}/{name}") == {"message": {disk: {"lun_id": 0}}}
    assert c.put(f"/api/clientlun/{iqn}/{name}", data={"disk": disk}).status_code == 409
    unmapped = api_env.new_disk()
    r = c.put(f"/api/clientlun/{iqn}/{name}", data={"disk": unmapped})
    assert r.status_code == 404 and "map it first" in r.json()["message"]
    assert c.put(f"/api/clientlun/{iqn}/{name}", data={}).status_code == 400
    c.ok("DELETE", f"/api/clientlun/{iqn}/{name}", data={"disk": disk})
    assert c.delete(f"/api/clientlun/{iqn}/{name}", data={"disk": disk}).status_code == 404
    assert c.get(f"/api/clientlun/{iqn}/{MISSING_CLIENT}").status_code == 404


def test_client_info_and_sessions_come_from_the_gateways_reports(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    name = api_env.new_client(iqn)
    assert c.ok("GET", f"/api/clientinfo/{iqn}/{name}") == {"alias": "", "state": {}, "ip_address": [],
                                                            "unknown": []}
    assert c.ok("GET", f"/api/targetinfo/{iqn}") == {"num_sessions": 0, "unknown": []}
    session = {iqn: {name: {"alias": "host-a", "ip_addresses": ["127.0.7.50"]}}}
    api_env.gateways[GW_A].set_sessions(session)
    api_env.gateways[GW_B].set_sessions(session)
    try:
        deadline = time.monotonic() + 30
        while len(c.ok("GET", f"/api/clientinfo/{iqn}/{name}")["state"].get("LOGGED_IN", [])) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        info = c.ok("GET", f"/api/clientinfo/{iqn}/{name}")
        assert info == {"alias": "host-a", "state": {"LOGGED_IN": [GW_A, GW_B]}, "ip_address": ["127.0.7.50"],
                        "unknown": []}
        assert c.ok("GET", f"/api/targetinfo/{iqn}")["num_sessions"] == 2
        assert c.ok("GET", "/api/gatewayinfo") == {"num_sessions": 1, "state": "up"}
        assert c.ok("GET", f"/api/_targetinfo/{iqn}") == {"num_sessions": 1}
        assert c.ok("GET", f"/api/_clientinfo/{iqn}/{name}")["state"] == "LOGGED_IN"
        r = c.delete(f"/api/client/{iqn}/{name}")
        assert r.status_code == 409 and "logged in" in r.json()["message"]
    finally:
        api_env.gateways[GW_A].set_sessions({})
        api_env.gateways[GW_B].set_sessions({})
    wait_logged_in(c, iqn, name, False)
    assert c.ok("DELETE", f"/api/client/{iqn}/{name}")["message"] == "client delete successful"
    assert c.delete(f"/api/client/{iqn}/{name}").status_code == 404
    assert c.get(f"/api/clientinfo/{iqn}/{name}").status_code == 404
    assert c.get("/api/targetinfo/iqn.2003-01.com.example.test:missing").status_code == 404


def test_host_groups(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    disks = [api_env.mapped_disk(iqn) for _ in range(2)]
    members = [api_env.new_client(iqn) for _ in range(2)]
    body = c.ok("PUT", f"/api/hostgroup/{iqn}/group1", data={"members": members[0], "disks": disks[0]})
    assert body["message"] == "hostgroup create/update successful"
    c.ok("PUT", f"/api/hostgroup/{iqn}/group1", json={"members": [members[1]], "disks": [disks[1]]})
    assert c.ok("GET", f"/api/hostgroups/{iqn}") == {"groups": ["group1"]}
    group = c.ok("GET", f"/api/hostgroup/{iqn}/group1")
    assert group == {"members": members, "disks": {disks[0]: {"lun_id": 0}, disks[1]: {"lun_id": 1}}}
    assert c.ok("GET", f"/api/clientlun/{iqn}/{members[1]}")["message"] == group["disks"]
    for method in ("GET", "PUT", "DELETE"):
        r = c.request(method, f"/api/hostgroup/{iqn}/group1", data={"action": "replace"})
        assert r.status_code == 405 and "Invalid hostgroup action" in r.json()["message"]
    r = c.delete(f"/api/client/{iqn}/{members[0]}")
    assert r.status_code == 400 and "host group" in r.json()["message"]
    loner = api_env.new_client(iqn)
    c.ok("PUT", f"/api/clientlun/{iqn}/{loner}", data={"disk": disks[0]})
    r = c.put(f"/api/hostgroup/{iqn}/group1", data={"members": loner})
    assert r.status_code == 400 and "disks mapped directly" in r.json()["message"]
    c.ok("PUT", f"/api/hostgroup/{iqn}/group1", data={"action": "remove", "members": members[0]})
    assert c.ok("GET", f"/api/hostgroup/{iqn}/group1")["members"] == [members[1]]
    assert c.put(f"/api/hostgroup/{iqn}/bad group!", data={}).status_code == 400
    assert c.put(f"/api/hostgroup/{iqn}/group2", data={"disks": "rbd/not-mapped"}).status_code == 404
    r = c.put(f"/api/hostgroup/{iqn}/nogroup", data={"action": "remove", "members": loner})
    assert r.status_code == 404
    body = c.ok("DELETE", f"/api/hostgroup/{iqn}/group1")
    assert body["message"] == "Group definition 'group1' deleted"
    assert c.ok("GET", f"/api/clientlun/{iqn}/{members[1]}")["message"] == group["disks"]  # masking kept
    assert c.get(f"/api/hostgroup/{iqn}/group1").status_code == 404
    assert c.delete(f"/api/hostgroup/{iqn}/group1").status_code == 404
