"""The live target registry: runtime changes, session table, discovery catalogue."""

from __future__ import annotations

import pytest
from iscsi_harness import INITIATOR, TARGET, make_registry, read10

from gateway.portal.registry import ClientAcl, PortalSpec, TargetControls, Tpg
from gateway.settings import SettingsError
from tcmu_handler.api import LunTable
from tcmu_handler.factory import memory_disk

OTHER = "iqn.2024-01.org.example:other"


class FakeLive:
    def __init__(self) -> None:
        self.closed: str | None = None
        self.controls: TargetControls | None = None

    def close(self, reason: str) -> None:
        self.closed = reason

    def apply_controls(self, controls: TargetControls) -> None:
        self.controls = controls


def session(reg, name=INITIATOR, isid=b"\x80\0\0\0\0\1"):
    from iscsi_harness import Pair

    from gateway.iscsi.initiator import Initiator
    pair = Pair(reg, Initiator(name, TARGET, isid=isid))
    assert pair.do_login().status == (0, 0)
    live = FakeLive()
    pair.authority.record.live = live
    return pair, live


def test_removing_a_client_closes_only_its_sessions():
    reg, _ = make_registry(clients=(INITIATOR, OTHER))
    _, mine = session(reg)
    _, other = session(reg, OTHER)
    reg.remove_client(TARGET, INITIATOR)
    assert mine.closed and other.closed is None
    assert [s["initiator"] for s in reg.list_sessions()] == [OTHER]


def test_lun_table_change_is_seen_by_an_existing_session():
    reg, _ = make_registry()
    pair, _ = session(reg)
    assert pair.command(read10(0, 1), read_length=512, lun=1).status == 2       # LUN 1 not mapped
    reg.set_luns(TARGET, {0: memory_disk(1 << 20), 1: memory_disk(1 << 20)}, client_iqn=INITIATOR)
    # The change is announced first (REPORTED LUNS DATA HAS CHANGED), then LUN 1 works.
    res = pair.command(read10(0, 1), read_length=512, lun=1)
    assert res.status == 2 and (res.sense[2] & 0xF, res.sense[12], res.sense[13]) == (0x06, 0x3F, 0x0E)
    assert pair.command(read10(0, 1), read_length=512, lun=1).status == 2   # power-on UA of LUN 1
    assert pair.command(read10(0, 1), read_length=512, lun=1).status == 0


def test_replacing_a_client_keeps_its_lun_table_object_for_live_sessions():
    reg, disk = make_registry()
    pair, live = session(reg)
    table = pair.authority.record.luns
    reg.set_client(TARGET, ClientAcl(INITIATOR, LunTable({0: disk, 3: disk})))
    assert pair.authority.record.luns is table and set(table.luns) == {0, 3}
    assert live.closed is None


def test_disabling_the_tpg_closes_its_sessions_and_refuses_new_logins():
    reg, _ = make_registry()
    _, live = session(reg)
    target = reg.targets[TARGET]
    target.tpgs[1] = Tpg(1, [PortalSpec("127.0.4.1", 3260)], enabled=False)
    reg.set_target(target)
    assert live.closed
    from iscsi_harness import Pair

    from gateway.iscsi.initiator import Initiator
    assert Pair(reg, Initiator(INITIATOR, TARGET)).do_login().status == (0x02, 0x03)


def test_control_changes_reach_live_sessions():
    reg, _ = make_registry()
    _, live = session(reg)
    reg.set_controls(TARGET, TargetControls.from_dict({"cmdsn_depth": "64"}))
    assert live.controls.cmdsn_depth == 64


def test_invalid_control_names_the_key():
    with pytest.raises(SettingsError, match="cmdsn_depth"):
        TargetControls.from_dict({"cmdsn_depth": "9999"})


def test_removing_the_target_closes_every_session():
    reg, _ = make_registry(clients=(INITIATOR, OTHER))
    lives = [session(reg)[1], session(reg, OTHER)[1]]
    reg.remove_target(TARGET)
    assert all(live.closed for live in lives) and reg.list_sessions() == []


def test_list_sessions_reports_identity_and_path():
    reg, _ = make_registry()
    pair, _ = session(reg)
    [info] = reg.list_sessions()
    assert info == {"initiator": INITIATOR, "isid": "800000000001", "tsih": pair.authority.record.tsih,
                    "peer": "127.0.4.99:40000", "target": TARGET, "tpgt": 1, "discovery": False,
                    "connections": 1}


def test_send_targets_announces_advertised_addresses_of_every_gateway():
    reg, _ = make_registry()
    target = reg.targets[TARGET]
    target.tpgs[3] = Tpg(3, [PortalSpec("172.17.0.2", 3260, advertise_ip="203.0.113.7", advertise_port=13260),
                             PortalSpec("fd00::5", 3261)])
    [(name, portals)] = reg.catalogue("All", None)
    assert name == TARGET
    assert [p.text() for p in portals] == ["127.0.4.1:3260,1", "10.0.0.2:3260,2", "203.0.113.7:13260,3",
                                           "[fd00::5]:3261,3"]
    assert reg.catalogue("iqn.2000-01.org.none:x", None) == []


def test_enabled_portals_are_those_this_gateway_listens_on():
    reg, _ = make_registry()
    assert reg.enabled_portals() == {("127.0.4.1", 3260)}


def test_tsih_is_unique_among_live_sessions():
    reg, _ = make_registry()
    tsihs = {session(reg, isid=bytes([0x80, 0, 0, 0, 0, i]))[0].authority.record.tsih for i in range(5)}
    assert len(tsihs) == 5 and 0 not in tsihs


def test_ipv4_mapped_local_address_matches_the_ipv4_portal():
    reg, _ = make_registry()
    authority = reg.authority(("::ffff:127.0.4.1", 3260, 0, 0), ("::ffff:127.0.4.9", 5000, 0, 0))
    assert authority.resolve(INITIATOR, TARGET, False).status == (0, 0)
