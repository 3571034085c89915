"""Reconcile in memory: config -> portal registry, disks, ALUA and locks of one gateway.

Two or three Reconcilers share one table of memory images, as gateways share RBD images.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.config import operations as ops
from gateway.config.model import ChapAuth, ClusterConfig
from gateway.daemon.disks import MemoryDisks
from gateway.daemon.locks import LockKeeper
from gateway.daemon.reconcile import Reconciler
from gateway.portal.registry import SessionRecord, TargetRegistry
from tcmu_handler.alua import AccessState
from tcmu_handler.api import Nexus
from tcmu_handler.lock import LockState

IQN = "iqn.2003-01.com.example:gw-test"
ALICE = "iqn.2024-01.org.example:alice"
BOB = "iqn.2024-01.org.example:bob"
DISK1, DISK2 = "rbd/disk1", "rbd/disk2"


def base_config(gateways=("gw1", "gw2")) -> ClusterConfig:
    cfg = ClusterConfig(version=1)
    ops.add_target(cfg, IQN)
    for i, gw in enumerate(gateways, start=1):
        ops.add_portal(cfg, IQN, gw, [f"127.0.11.{i}"], port=3260 + i)
    ops.add_disk(cfg, "rbd", "disk1")
    ops.map_lun(cfg, IQN, DISK1)
    ops.add_client(cfg, IQN, ALICE, ChapAuth("aliceuser", "alicepassword"))
    ops.add_client_lun(cfg, IQN, ALICE, DISK1)
    ops.add_client(cfg, IQN, BOB)
    ops.add_client_lun(cfg, IQN, BOB, DISK1)
    return cfg


def bump(cfg: ClusterConfig, fn, *args, **kw) -> ClusterConfig:
    new = cfg.copy()
    fn(new, *args, **kw)
    new.version += 1
    return new


class FakeLive:
    def __init__(self):
        self.closed = None

    def close(self, reason):
        self.closed = reason

    def apply_controls(self, controls):
        pass


def add_session(registry: TargetRegistry, initiator: str, tpgt: int) -> FakeLive:
    live = FakeLive()
    tsih = registry._new_tsih()
    table = registry.targets[IQN].clients[initiator].luns
    nexus = Nexus(initiator, f"{initiator},i,0x1", IQN, f"{IQN},t,0x{tpgt:04x}", tpgt, tpgt)
    registry.sessions[tsih] = SessionRecord(tsih, initiator, b"\x01" * 6, IQN, tpgt, ("127.0.0.1", 1), (),
                                            False, nexus, table, live)
    return live


class Cluster:
    """N gateways' reconcilers sharing memory images."""

    def __init__(self, names=("gw1", "gw2")):
        self.images = {}
        self.openers = {n: MemoryDisks(4 << 20, self.images) for n in names}
        self.recs = {n: Reconciler(n, TargetRegistry(), self.openers[n], locks=self._keeper()) for n in names}

    @staticmethod
    def _keeper():
        k = LockKeeper()
        k.retry_interval = 0.01
        k.take_window = 0.5
        return k

    async def apply(self, cfg):
        return {n: await r.apply(cfg) for n, r in self.recs.items()}

    async def close(self):
        for r in self.recs.values():
            await r.close()


def run(coro):
    return asyncio.run(coro)


async def settle(seconds=0.1):
    await asyncio.sleep(seconds)


def test_every_gateway_knows_every_tpg_and_enables_only_its_own():
    async def scenario():
        c = Cluster()
        cfg = base_config()
        done = await c.apply(cfg)
        assert not done["gw1"].problems and not done["gw2"].problems
        for i, name in enumerate(("gw1", "gw2"), start=1):
            t = c.recs[name].registry.targets[IQN]
            assert sorted(t.tpgs) == [1, 2]
            assert {tag: tpg.enabled for tag, tpg in t.tpgs.items()} == {1: i == 1, 2: i == 2}
            assert c.recs[name].registry.enabled_portals() == {(f"127.0.11.{i}", 3260 + i)}
            # SendTargets through either gateway lists both paths.
            (_, portals), = c.recs[name].registry.catalogue("All", None)
            assert sorted((p.address, p.port, p.tpgt) for p in portals) == \
                [("127.0.11.1", 3261, 1), ("127.0.11.2", 3262, 2)]
        await c.close()
    run(scenario())


def test_discovery_announces_the_advertised_address_while_the_gateway_listens_on_its_own():
    async def scenario():
        c = Cluster()
        cfg = bump(base_config(), ops.set_portal_endpoint, IQN, "gw2", advertise=["10.0.2.102:3260"])
        await c.apply(cfg)
        (_, portals), = c.recs["gw1"].registry.catalogue("All", None)
        assert sorted((p.address, p.port, p.tpgt) for p in portals) == \
            [("10.0.2.102", 3260, 2), ("127.0.11.1", 3261, 1)]
        assert c.recs["gw2"].registry.enabled_portals() == {("127.0.11.2", 3262)}
        await c.close()
    run(scenario())


def test_acls_carry_chap_and_each_clients_luns():
    async def scenario():
        c = Cluster()
        cfg = base_config()
        ops.add_disk(cfg, "rbd", "disk2")
        ops.map_lun(cfg, IQN, DISK2)
        ops.add_client_lun(cfg, IQN, ALICE, DISK2)
        await c.apply(cfg)
        t = c.recs["gw1"].registry.targets[IQN]
        disks = c.recs["gw1"].disks
        assert t.clients[ALICE].chap.incoming.username == "aliceuser"
        assert t.clients[ALICE].chap.incoming.password == "alicepassword"
        assert t.clients[BOB].chap is None
        assert t.clients[ALICE].luns.luns == {0: disks[DISK1].disk, 1: disks[DISK2].disk}
        assert t.clients[BOB].luns.luns == {0: disks[DISK1].disk}
        await c.close()
    run(scenario())


def test_a_sealed_chap_secret_refuses_that_clients_logins_and_is_reported():
    async def scenario():
        c = Cluster(("gw1",))
        cfg = base_config(("gw1",))
        cfg.targets[IQN].clients[ALICE].auth.password_sealed = True
        done = await c.apply(cfg)
        assert any(ALICE in p and "decrypt" in p for p in done["gw1"].problems)
        chap = c.recs["gw1"].registry.targets[IQN].clients[ALICE].chap
        assert chap is not None and chap.incoming.password != "alicepassword"
        await c.close()
    run(scenario())


def test_host_group_members_see_the_groups_disks():
    async def scenario():
        c = Cluster(("gw1",))
        cfg = base_config(("gw1",))
        ops.add_disk(cfg, "rbd", "disk2")
        ops.map_lun(cfg, IQN, DISK2)
        carol = "iqn.2024-01.org.example:carol"
        ops.add_client(cfg, IQN, carol)
        ops.update_group(cfg, IQN, "g1", add_disks=[DISK2], add_members=[carol])
        await c.apply(cfg)
        t = c.recs["gw1"].registry.targets[IQN]
        assert t.clients[carol].luns.luns == {1: c.recs["gw1"].disks[DISK2].disk}
        await c.close()
    run(scenario())


def test_target_controls_and_discovery_auth_are_applied():
    async def scenario():
        c = Cluster(("gw1",))
        cfg = base_config(("gw1",))
        ops.set_target_controls(cfg, IQN, {"cmdsn_depth": 64, "immediate_data": "no"})
        ops.set_discovery_auth(cfg, ChapAuth("discoveryuser", "discoverypass"))
        c.recs["gw1"].target_defaults = {"nopin_timeout": 9}
        await c.apply(cfg)
        reg = c.recs["gw1"].registry
        ctl = reg.targets[IQN].controls
        assert (ctl.cmdsn_depth, ctl.immediate_data, ctl.nopin_timeout) == (64, False, 9)
        assert reg.discovery_chap.incoming.username == "discoveryuser"
        await c.close()
    run(scenario())


def test_owner_is_optimized_everywhere_and_the_rtpg_data_is_identical_on_every_gateway():
    async def scenario():
        c = Cluster(("gw1", "gw2", "gw3"))
        cfg = base_config(("gw1", "gw2", "gw3"))
        assert cfg.targets[IQN].luns[DISK1].owner == "gw1"
        await c.apply(cfg)
        models = [r.disks[DISK1].disk.alua for r in c.recs.values()]
        assert all(m == models[0] for m in models)
        ao, ano = AccessState.ACTIVE_OPTIMIZED, AccessState.ACTIVE_NON_OPTIMIZED
        assert {g.group_id: g.state for g in models[0].groups} == {1: ao, 2: ano, 3: ano}
        assert len({m.rtpg(True) for m in models}) == 1
        await c.close()
    run(scenario())


def test_owner_takes_the_free_lock_and_an_owner_move_hands_it_over():
    async def scenario():
        c = Cluster()
        cfg = base_config()
        await c.apply(cfg)
        await settle()
        d1, d2 = c.recs["gw1"].disks[DISK1].disk, c.recs["gw2"].disks[DISK1].disk
        assert d1.lock.state is LockState.LOCKED and d2.lock.state is LockState.UNLOCKED
        moved = bump(cfg, ops.set_lun_owner, IQN, DISK1, "gw2")
        await c.apply(moved)
        await settle(0.3)
        assert d1.lock.state is LockState.UNLOCKED and d2.lock.state is LockState.LOCKED
        assert {g.group_id: g.state for g in d1.alua.groups} == {
            1: AccessState.ACTIVE_NON_OPTIMIZED, 2: AccessState.ACTIVE_OPTIMIZED}
        assert d1.alua == d2.alua
        # Nobody was fenced: a planned move releases and takes, it does not break.
        assert not d1.backend.image.locks.blocklisted
        await c.close()
    run(scenario())


def test_a_new_owner_does_not_fence_a_live_holder():
    async def scenario():
        c = Cluster()
        cfg = base_config()
        await c.apply(cfg)
        await settle()
        d1 = c.recs["gw1"].disks[DISK1].disk
        # gw1 keeps the lock (say its release failed): the new owner must not break it.
        d1.lock.release = _never_released
        await c.apply(bump(cfg, ops.set_lun_owner, IQN, DISK1, "gw2"))
        await settle(0.6)
        d2 = c.recs["gw2"].disks[DISK1].disk
        assert d1.backend.image.locks.owner == d1.backend.client
        assert d2.lock.state is LockState.UNLOCKED and not d1.backend.image.locks.blocklisted
        await c.close()
    run(scenario())


async def _never_released() -> bool:
    return False


def test_drain_moves_every_lun_away_from_a_gateway():
    cfg = base_config(("gw1", "gw2", "gw3"))
    ops.add_disk(cfg, "rbd", "disk2")
    ops.map_lun(cfg, IQN, DISK2, owner="gw1")
    moved = ops.drain_gateway(cfg, "gw1")
    assert set(moved) == {DISK1, DISK2}
    assert all(lun.owner != "gw1" for lun in cfg.targets[IQN].luns.values())
    assert sorted(moved.values()) == ["gw2", "gw3"]  # least loaded first


def test_removing_a_client_closes_only_its_sessions():
    async def scenario():
        c = Cluster(("gw1",))
        cfg = base_config(("gw1",))
        await c.apply(cfg)
        reg = c.recs["gw1"].registry
        alice, bob = add_session(reg, ALICE, 1), add_session(reg, BOB, 1)
        new = bump(cfg, ops.remove_client_lun, IQN, BOB, DISK1)
        ops.remove_client(new, IQN, BOB)
        await c.recs["gw1"].apply(new)
        assert bob.closed and alice.closed is None
        assert BOB not in reg.targets[IQN].clients
        await c.close()
    run(scenario())


def test_removing_a_gateway_keeps_the_other_tags_and_sessions():
    async def scenario():
        c = Cluster(("gw1", "gw2", "gw3"))
        cfg = base_config(("gw1", "gw2", "gw3"))
        await c.apply(cfg)
        s1 = add_session(c.recs["gw1"].registry, ALICE, 1)
        s3 = add_session(c.recs["gw3"].registry, ALICE, 3)
        new = bump(cfg, ops.remove_portal, IQN, "gw2")
        await c.apply(new)
        assert s1.closed is None and s3.closed is None
        for name in ("gw1", "gw3"):
            assert sorted(c.recs[name].registry.targets[IQN].tpgs) == [1, 3]
        assert IQN not in c.recs["gw2"].registry.targets
        assert not c.recs["gw2"].disks
        await c.close()
    run(scenario())


def test_removed_gateways_sessions_are_closed():
    async def scenario():
        c = Cluster()
        cfg = base_config()
        await c.apply(cfg)
        s2 = add_session(c.recs["gw2"].registry, ALICE, 2)
        await c.apply(bump(cfg, ops.remove_portal, IQN, "gw2"))
        assert s2.closed
        await c.close()
    run(scenario())


def test_a_disk_that_cannot_be_opened_is_a_problem_and_appears_on_retry():
    async def scenario():
        c = Cluster(("gw1",))
        cfg = base_config(("gw1",))
        c.openers["gw1"].missing.add(DISK1)
        done = await c.recs["gw1"].apply(cfg)
        assert any(DISK1 in p for p in done.problems)
        assert c.recs["gw1"].registry.targets[IQN].clients[ALICE].luns.luns == {}
        assert DISK1 in c.recs["gw1"].disk_problems
        c.openers["gw1"].missing.clear()
        done = await c.recs["gw1"].apply(cfg)
        assert not done.problems and DISK1 not in c.recs["gw1"].disk_problems
        assert 0 in c.recs["gw1"].registry.targets[IQN].clients[ALICE].luns.luns
        await c.close()
    run(scenario())


def test_changed_disk_controls_swap_in_a_new_instance_in_place():
    async def scenario():
        c = Cluster(("gw1",))
        cfg = base_config(("gw1",))
        await c.apply(cfg)
        reg = c.recs["gw1"].registry
        table = reg.targets[IQN].clients[ALICE].luns
        old = c.recs["gw1"].disks[DISK1].disk
        new_cfg = bump(cfg, ops.set_disk_controls, DISK1, {"hw_max_sectors": 128})
        done = await c.recs["gw1"].apply(new_cfg)
        new = c.recs["gw1"].disks[DISK1].disk
        assert done.opened == [DISK1] and done.closed == [DISK1]
        assert new is not old and new.config.hw_max_sectors == 128 and old.backend.closed
        # The client's table object is kept (live sessions use it) and now holds the new disk.
        assert reg.targets[IQN].clients[ALICE].luns is table and table.luns == {0: new}
        await c.close()
    run(scenario())


def test_unmapping_a_disk_closes_it_and_nothing_else():
    async def scenario():
        c = Cluster(("gw1",))
        cfg = base_config(("gw1",))
        ops.add_disk(cfg, "rbd", "disk2")
        ops.map_lun(cfg, IQN, DISK2)
        await c.apply(cfg)
        keep = c.recs["gw1"].disks[DISK1].disk
        new = cfg.copy()
        ops.unmap_lun(new, IQN, DISK2)
        new.version += 1
        done = await c.recs["gw1"].apply(new)
        assert done.closed == [DISK2] and c.recs["gw1"].disks[DISK1].disk is keep
        await c.close()
    run(scenario())


def test_an_undefined_disk_is_reported_not_fatal():
    async def scenario():
        c = Cluster(("gw1",))
        cfg = base_config(("gw1",))
        del cfg.disks[DISK1]
        done = await c.recs["gw1"].apply(cfg)
        assert any("not defined" in p for p in done.problems)
        assert IQN in c.recs["gw1"].registry.targets
        await c.close()
    run(scenario())


@pytest.mark.parametrize("enabled", [False, True])
def test_acl_mode_decides_which_lun_table_logins_get(enabled):
    async def scenario():
        c = Cluster(("gw1",))
        cfg = ClusterConfig(version=1)
        ops.add_target(cfg, IQN)
        ops.add_portal(cfg, IQN, "gw1", ["127.0.11.1"])
        ops.add_disk(cfg, "rbd", "disk1")
        ops.map_lun(cfg, IQN, DISK1)
        if not enabled:
            ops.set_acl_enabled(cfg, IQN, False)
            ops.set_target_auth(cfg, IQN, ChapAuth("targetuser", "targetpassword"))
        await c.apply(cfg)
        t = c.recs["gw1"].registry.targets[IQN]
        assert t.acl_enabled is enabled
        if enabled:
            assert t.clients == {}
        else:
            assert t.luns.luns == {0: c.recs["gw1"].disks[DISK1].disk}
            assert t.chap.incoming.username == "targetuser"
        await c.close()
    run(scenario())
