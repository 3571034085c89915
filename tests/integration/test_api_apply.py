"""A gateway that is down never blocks a change: the API commits, waits for the live
gateways, and says which applied it, which are pending and which are down; the gateway
applies the change when it comes back, and the API then reports it applied.

The gateways are two real rbd-target-gw processes."""

import concurrent.futures

from support.api_fixtures import GW_A, GW_B, api_env_real  # noqa: F401 - fixture
from support.harness import ApiServer, free_port


def test_with_one_gateway_crashed_a_disk_is_added_reported_pending_then_applied(api_env_real):
    api_env = api_env_real
    c = api_env.client
    iqn = api_env.new_target()
    disk = api_env.new_disk()
    api_env.gateways[GW_B].kill()  # a crash: its last heartbeat is still fresh
    body = c.ok("PUT", f"/api/targetlun/{iqn}", data={"disk": disk})
    assert body["message"] == "Target LUN mapping updated successfully"
    assert (body["applied"], body["pending"], body["down"]) == ([GW_A], [GW_B], [])
    status = c.ok("GET", "/api/status", params={"version": body["version"]})
    assert status["gateways"][GW_B]["state"] == "pending"
    assert status["gateways"][GW_B]["applied_version"] < body["version"]
    assert c.ok("GET", "/api/config")["targets"][iqn]["disks"][disk]["lun_id"] == 0

    api_env.gateways.start(GW_B)
    status = c.ok("GET", "/api/status", params={"version": body["version"], "wait": "30"})
    assert status["applied"] == [GW_A, GW_B] and status["pending"] == []
    assert status["gateways"][GW_B]["state"] == "applied"
    assert disk in api_env.store.read_statuses()[GW_B].details["disks"]


def test_a_cleanly_stopped_gateway_is_down_at_once_and_catches_up_when_started(api_env_real):
    api_env = api_env_real
    c = api_env.client
    iqn = api_env.new_target()
    api_env.gateways[GW_B].stop()
    body = c.ok("PUT", f"/api/client/{iqn}/iqn.1994-05.com.example:while-down")
    assert (body["applied"], body["pending"], body["down"]) == ([GW_A], [], [GW_B])
    assert c.ok("GET", "/api/status")["gateways"][GW_B]["state"] == "down"
    api_env.gateways.start(GW_B)
    status = c.ok("GET", "/api/status", params={"version": body["version"], "wait": "30"})
    assert status["applied"] == [GW_A, GW_B]


def test_ping_is_503_while_this_nodes_gateway_is_down(api_env_real):
    api_env = api_env_real
    c = api_env.client
    api_env.new_target()
    assert c.get("/api/_ping").status_code == 200
    api_env.gateways[GW_A].stop()
    try:
        r = c.get("/api/_ping")
        assert r.status_code == 503 and r.json()["message"] == "pong" and "down" in r.json()["iscsi"]
        assert c.ok("GET", "/api/gatewayinfo") == {"num_sessions": 0, "state": "down"}
    finally:
        api_env.gateways.start(GW_A)
    assert c.get("/api/_ping").status_code == 200


def test_two_api_nodes_share_the_config_and_lose_no_concurrent_change(api_env_real):
    api_env = api_env_real
    other = ApiServer(api_env.cfg_dir, name="api-b", gateway_name=GW_B, api_port=free_port())
    other.start()
    try:
        iqn = api_env.new_target()
        names = [f"iqn.1994-05.com.example:concurrent-{i}" for i in range(8)]
        clients = [api_env.client, other.client()]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda i: clients[i % 2].put(f"/api/client/{iqn}/{names[i]}"), range(8)))
        assert [r.status_code for r in results] == [200] * 8
        assert other.client().ok("GET", f"/api/clients/{iqn}")["clients"] == sorted(names)
        assert other.client().ok("GET", "/api/sysinfo/hostname") == {"data": GW_B}
    finally:
        other.stop()
