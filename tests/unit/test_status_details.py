"""The gateway details schema: what the daemon reports and how the API reads it."""

import time

from api.live import LiveState
from gateway.config.status import GatewayStatus
from gateway.config.status_details import (
    ClientSessions,
    DiskState,
    GatewayDetails,
    PortalState,
    TargetSessions,
)

T = "iqn.2003-01.com.example:t1"
C = "iqn.1994-05.com.redhat:host1"


def details(**kw) -> dict:
    base = GatewayDetails(
        software_version="1", checkconf="abc", ip_addresses=["10.0.0.1"],
        portals=[PortalState("10.0.0.1", 3260, True)],
        targets={T: TargetSessions(2, {C: ClientSessions("host1", ["10.0.0.50"], 2)})},
        disks={"rbd/d1": DiskState(size=1 << 30, lock_owner=True)})
    for k, v in kw.items():
        setattr(base, k, v)
    return base.to_dict()


def test_details_round_trip():
    raw = details()
    parsed = GatewayDetails.from_dict(raw)
    assert parsed.to_dict() == raw
    assert parsed.iscsi_listening is True
    assert parsed.sessions() == 2 and parsed.sessions(T) == 2 and parsed.sessions("iqn.2003-01.x.y:z") == 0
    assert parsed.logged_in(T, C).alias == "host1"


def test_unreported_parts_read_as_unknown_not_as_zero():
    parsed = GatewayDetails.from_dict({"schema": 1})
    assert parsed.portals is None and parsed.iscsi_listening is None
    assert parsed.targets is None and parsed.disks is None


def test_malformed_parts_are_dropped_without_raising():
    raw = {"schema": "one", "ip_addresses": ["10.0.0.1", 5], "portals": [{"port": 1}, "x", {"address": "a"}],
           "targets": {T: {"sessions": -3, "clients": {C: {"alias": 7, "sessions": "many"}, 9: {}}},
                       "bad": []},
           "disks": {"rbd/d1": {"size": "big", "state": "on fire", "lock_owner": "yes"}, "rbd/d2": 4}}
    parsed = GatewayDetails.from_dict(raw)
    assert parsed.ip_addresses == ["10.0.0.1"]
    assert [p.address for p in parsed.portals] == ["a"] and parsed.iscsi_listening is False
    assert parsed.targets[T].sessions == 0 and parsed.targets[T].clients[C].alias == ""
    assert parsed.disks["rbd/d1"].size is None and parsed.disks["rbd/d1"].state == "error"
    assert parsed.disks["rbd/d1"].lock_owner is False and "rbd/d2" not in parsed.disks
    assert GatewayDetails.from_dict("not a dict").ip_addresses == []


def status(name: str, age: float = 0.0, **kw) -> GatewayStatus:
    return GatewayStatus(name, 5, heartbeat=time.time() - age, details=details(**kw))


def test_a_gateway_past_dead_after_contributes_nothing():
    live = LiveState({"gw1": status("gw1"), "gw2": status("gw2", age=60)}, dead_after=10)
    assert live.num_sessions(["gw1", "gw2", "gw3"], T) == 2
    assert live.down(["gw1", "gw2", "gw3"]) == ["gw2", "gw3"]
    assert live.client_info(T, C, ["gw1", "gw2"]) == {"alias": "host1", "state": {"LOGGED_IN": ["gw1"]},
                                                      "ip_address": ["10.0.0.50"]}
    assert live.logged_in(T, ["gw1", "gw2"]) == {C: ["gw1"]}


def test_disk_status_summarises_the_live_gateways():
    live = LiveState({"gw1": status("gw1"), "gw2": status("gw2", disks={"rbd/d1": DiskState(
        size=1 << 30, state="degraded", message="lock lost")})}, dead_after=10)
    st = live.disk_status("rbd/d1", ["gw1", "gw2"])
    assert st["state"] == "Degraded - gw2: lock lost" and st["lock_owner"] == "gw1"
    assert set(st["gateways"]) == {"gw1", "gw2"}
    assert live.disk_status("rbd/d1", ["gw1"])["state"] == "Online"
    assert live.disk_status("rbd/d1", ["gw3"]) == {"state": "Unknown", "lock_owner": "", "gateways": {},
                                                   "unknown": ["gw3"]}
    assert live.disk_status("rbd/d1", [])["state"] == "Unmapped"
