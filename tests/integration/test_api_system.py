"""Contract of the endpoints about the API and the cluster: index, sysinfo, settings, config,
ping, status."""

from support.api_fixtures import GW_A, GW_B, api_env  # noqa: F401 - fixture

from gateway.settings import TARGET_CONTROLS


def test_index_lists_public_endpoints_in_ceph_iscsi_shape(api_env):
    r = api_env.api.client(auth=None).get("/api")
    entries = r.json()["api"]
    by_url = {e[0].split(" : ")[0]: e for e in entries}
    assert by_url["/api/targets"][1] == "Methods: GET"
    assert by_url["/api/target/<target_iqn>"][1] == "Methods: DELETE,GET,PUT"
    assert by_url["/api/targets"][0] == "/api/targets : List targets defined in the configuration."
    assert not any("/_" in url for url in by_url)


def test_sysinfo(api_env):
    c = api_env.client
    assert c.ok("GET", "/api/sysinfo/hostname") == {"data": GW_A}
    assert isinstance(c.ok("GET", "/api/sysinfo/ip_addresses")["data"], list)
    checkconf = c.ok("GET", "/api/sysinfo/checkconf")["data"]
    assert len(checkconf) == 64 and checkconf == api_env.store.read_statuses()[GW_B].details["checkconf"]
    assert c.ok("GET", "/api/sysinfo/checkversions") == {"data": "checks passed"}
    assert c.get("/api/sysinfo/os").status_code == 404


def test_settings_has_what_the_dashboard_reads(api_env):
    s = api_env.client.ok("GET", "/api/settings")
    assert s["api_version"] == 2
    assert s["target_default_controls"]["cmdsn_depth"] == 128
    assert s["target_controls_limits"]["cmdsn_depth"] == {"min": 1, "max": 512, "type": "int"}
    assert s["target_controls_limits"]["immediate_data"] == {"type": "bool"}
    assert set(s["target_default_controls"]) == set(TARGET_CONTROLS)
    assert s["disk_default_controls"]["user:rbd"]["qfull_timeout"] == 5
    assert s["disk_controls_limits"]["user:rbd"]["hw_max_sectors"] == {"min": 1, "max": 8192, "type": "int"}
    assert s["required_rbd_features"] == {"user:rbd": 4} and s["unsupported_rbd_features"] == {"user:rbd": 0}
    assert s["backstores"] == ["user:rbd"] and s["default_backstore"] == "user:rbd"
    assert s["config"]["minimum_gateways"] == 2
    assert "iops_limit" in s["disk_qos_limits"]["user:rbd"]


def test_config_document_is_ceph_iscsi_schema_11(api_env):
    c = api_env.client
    iqn = api_env.new_target()
    doc = c.ok("GET", "/api/config")
    assert doc["version"] == 11 and isinstance(doc["epoch"], int)
    assert {"disks", "gateways", "targets", "discovery_auth", "created", "updated"} <= set(doc)
    assert doc["targets"][iqn]["ip_list"] == ["127.0.7.11", "127.0.7.12"]
    assert set(doc["gateways"]) >= {GW_A, GW_B}
    assert c.get("/api/config", params={"decrypt_passwords": "perhaps"}).status_code == 400


def test_ping_answers_pong_while_this_gateway_serves(api_env):
    c = api_env.client
    api_env.new_target()  # makes this node (gw-a) a configured gateway
    r = c.get("/api/_ping")
    assert r.status_code == 200 and r.json() == {"message": "pong", "iscsi": "up"}


def test_status_reports_each_gateway(api_env):
    c = api_env.client
    api_env.new_target()
    status = c.ok("GET", "/api/status", params={"wait": "5"})
    assert status["version"] == status["current_version"]
    assert status["applied"] == [GW_A, GW_B] and status["pending"] == [] and status["down"] == []
    gw = status["gateways"][GW_B]
    assert gw["state"] == "applied" and gw["health"] == "ok" and gw["applied_version"] >= status["version"]
    future = c.ok("GET", "/api/status", params={"version": status["version"] + 1000})
    assert future["pending"] == [GW_A, GW_B]
    assert c.get("/api/status", params={"version": "-1"}).status_code == 400
    assert c.get("/api/status", params={"wait": "1e9"}).status_code == 400


def test_cluster_reports_health_daemons_and_pools(api_env):
    c = api_env.client.ok("GET", "/api/cluster")
    assert c["health"]["status"].startswith("HEALTH_")
    assert c["osds"] == {"total": 1, "up": 1, "in": 1}
    assert c["mons"]["total"] == 1 and c["mons"]["quorum"] == ["a"]
    assert c["pools"]["rbd"]["type"] == "replicated" and c["pools"]["rbd"]["size"] == 1
    assert c["version"].startswith("ceph version 16.")
    assert c["client_name"] == "client.admin" and c["conf"].endswith(".conf")
