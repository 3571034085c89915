"""Three rbd-target-gw processes on 127.0.11.1-3 sharing one config object on the mini cluster.

Real initiators where the claim is about iSCSI behaviour (libiscsi's iscsi-ls for discovery
and LUN lists, qemu-io for I/O); our own initiator where exact bytes or held sessions matter
(RTPG data, a session that must survive a change).  The tests of this module share the
gateways and run in file order; each reads the state it needs from the store.
"""

from __future__ import annotations

import asyncio
import signal
import time
import urllib.request
import uuid

import pytest
from gateway_support import (
    CHAP_PASSWORD,
    CHAP_USER,
    INITIATOR_A,
    INITIATOR_B,
    Session,
    iscsi_loggable,
    iscsi_ls,
    iscsi_luns,
    rtpg,
    rtpg_states,
)
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import operations as ops
from gateway.config.model import ChapAuth
from gateway.testing.gateways import GatewayCluster

IQN = "iqn.2003-01.com.example.gw-test:daemon"
NAMES = ("gw-a", "gw-b", "gw-c")


def _rbd_create(cluster, image: str, size: str = "64M") -> None:
    cluster.rbd("create", "--size", size, f"{cluster.pool}/{image}")


@pytest.fixture(scope="module")
def trio(ceph_cluster, tmp_path_factory):
    tag = uuid.uuid4().hex[:8]
    obj = f"gw-daemon-{tag}"
    images = [f"gwd-{tag}-0", f"gwd-{tag}-1"]
    for image in images:
        _rbd_create(ceph_cluster, image)
    gc = GatewayCluster(ceph_cluster, tmp_path_factory.mktemp("trio"), gateway_conf=obj)
    for i, name in enumerate(NAMES, start=1):
        gc.add(name, f"127.0.11.{i}")
    pool = ceph_cluster.pool

    def setup(cfg):
        ops.add_target(cfg, IQN)
        for name in NAMES:
            ip, port = gc.addresses[name]
            ops.add_portal(cfg, IQN, name, [ip], port=port)
        ops.add_disk(cfg, pool, images[0])
        ops.map_lun(cfg, IQN, f"{pool}/{images[0]}")
        ops.add_client(cfg, IQN, INITIATOR_A, ChapAuth(CHAP_USER, CHAP_PASSWORD))
        ops.add_client_lun(cfg, IQN, INITIATOR_A, f"{pool}/{images[0]}")

    version = gc.store.update(setup).version
    gc.images = images
    gc.start_all()
    took = gc.wait_applied(version, timeout=60)
    print(f"\nthree gateways started and applied version {version}: "
          + ", ".join(f"{n} {t:.2f} s" for n, t in sorted(took.items())))
    yield gc
    gc.close()
    for name, gw in gc.gateways.items():
        assert "Traceback" not in gw.log_tail(200000), f"{name}:\n{gw.log_tail()}"
    for image in images:
        ceph_cluster.rbd("rm", f"{pool}/{image}")


def _ordered_portals(gc, names=NAMES) -> list[tuple[str, int]]:
    cfg = gc.store.load()
    return sorted((f"{gc.portal(n)}", cfg.targets[IQN].portals[n].tpg_tag) for n in names)


def test_every_gateway_answers_discovery_with_every_portal_and_its_stable_tag(trio):
    expected = _ordered_portals(trio)
    assert sorted(tag for _, tag in expected) == [1, 2, 3]
    for name in NAMES:
        found = sorted((portal, tag) for target, portal, tag in iscsi_ls(trio.portal(name)) if target == IQN)
        assert found == expected, name


def test_rtpg_is_identical_through_every_gateway_and_the_owner_is_optimized(trio):
    cfg = trio.store.load()
    owner = cfg.targets[IQN].luns[f"{trio.cluster.pool}/{trio.images[0]}"].owner
    tags = {n: p.tpg_tag for n, p in cfg.targets[IQN].portals.items()}

    async def scenario():
        answers = {}
        for name in NAMES:
            s = Session(*trio.addresses[name], IQN)
            await s.login()
            res = await s.command_past_unit_attention(rtpg(), read_length=1024)
            assert res.status == 0
            answers[name] = res.data
            s.close()
        return answers

    answers = asyncio.run(scenario())
    assert len(set(answers.values())) == 1, answers
    states = rtpg_states(answers[NAMES[0]])
    assert states == {tag: 0 if n == owner else 1 for n, tag in tags.items()}


def test_a_change_through_the_store_is_live_on_every_gateway(trio):
    """Adding a client: measured from the commit to each gateway reporting it applied, and to a
    login of the new client succeeding through every gateway (printed, not asserted)."""
    disk = f"{trio.cluster.pool}/{trio.images[0]}"

    def add(cfg):
        ops.add_client(cfg, IQN, INITIATOR_B, ChapAuth(CHAP_USER, CHAP_PASSWORD))
        ops.add_client_lun(cfg, IQN, INITIATOR_B, disk)

    t0 = time.monotonic()
    version = trio.store.update(add).version
    applied = trio.wait_applied(version, timeout=30)
    live = {}
    for name in NAMES:
        deadline = time.monotonic() + 30
        while not iscsi_loggable(*trio.addresses[name], IQN, INITIATOR_B):
            assert time.monotonic() < deadline, f"{INITIATOR_B} cannot log in through {name}"
            time.sleep(0.02)
        live[name] = time.monotonic() - t0
    print("\nnew client: applied after " + ", ".join(f"{n} {applied[n] * 1000:.0f} ms" for n in NAMES)
          + "; login works through " + ", ".join(f"{n} by {live[n] * 1000:.0f} ms" for n in NAMES))
    assert iscsi_luns(trio.portal("gw-b"), INITIATOR_B) == [0]


def test_owner_move_and_drain_change_alua_everywhere_and_move_the_lock(trio):
    disk = f"{trio.cluster.pool}/{trio.images[0]}"
    cfg = trio.store.load()
    tags = {n: p.tpg_tag for n, p in cfg.targets[IQN].portals.items()}
    new_owner = next(n for n in NAMES if n != cfg.targets[IQN].luns[disk].owner)
    version = trio.store.update(ops.set_lun_owner, IQN, disk, new_owner).version
    trio.wait_applied(version)
    _wait_lock_owner(trio, disk, new_owner)

    async def states_through(name):
        s = Session(*trio.addresses[name], IQN)
        await s.login()
        res = await s.command_past_unit_attention(rtpg(), read_length=1024)
        s.close()
        return rtpg_states(res.data)

    for name in NAMES:
        assert asyncio.run(states_through(name)) == {t: 0 if n == new_owner else 1 for n, t in tags.items()}
    done = trio.store.update(ops.drain_gateway, new_owner)
    assert done.result and new_owner not in done.result.values()
    trio.wait_applied(done.version)
    moved_to = done.result[disk]
    _wait_lock_owner(trio, disk, moved_to)
    assert asyncio.run(states_through(new_owner))[tags[moved_to]] == 0


def _wait_lock_owner(gc, disk: str, gateway: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        st = gc.store.read_statuses()
        holders = [n for n, s in st.items() if s.details.get("disks", {}).get(disk, {}).get("lock_owner")]
        if holders == [gateway]:
            return
        assert time.monotonic() < deadline, f"lock holders {holders}, expected {gateway}"
        time.sleep(0.1)


def test_removing_a_client_closes_its_sessions_and_keeps_the_others(trio):
    async def scenario():
        a = Session(*trio.addresses["gw-a"], IQN, INITIATOR_A)
        b = Session(*trio.addresses["gw-a"], IQN, INITIATOR_B)
        await a.login()
        await b.login()
        version = await asyncio.to_thread(lambda: trio.store.update(_remove_client_b).version)
        await asyncio.to_thread(trio.wait_applied, version)
        assert not await b.alive(3), "the removed client's session is still open"
        assert await a.alive(), "an unrelated session was dropped"
        a.close()

    asyncio.run(scenario())


def _remove_client_b(cfg):
    target = cfg.targets[IQN]
    for disk in list(target.clients[INITIATOR_B].luns):
        ops.remove_client_lun(cfg, IQN, INITIATOR_B, disk)
    ops.remove_client(cfg, IQN, INITIATOR_B)


def test_a_gateway_that_was_down_converges_on_start(trio):
    gw = trio.gateways["gw-c"]
    assert gw.stop() == 0  # SIGTERM drains and exits cleanly
    st = trio.store.read_statuses()["gw-c"]
    assert st.heartbeat == 0, "a cleanly stopped gateway reports itself down at once"
    disk2 = f"{trio.cluster.pool}/{trio.images[1]}"

    def add_lun(cfg):
        ops.add_disk(cfg, trio.cluster.pool, trio.images[1])
        ops.map_lun(cfg, IQN, disk2, owner="gw-c")
        ops.add_client_lun(cfg, IQN, INITIATOR_A, disk2)

    version = trio.store.update(add_lun).version
    trio.wait_applied(version, ["gw-a", "gw-b"])
    gw.start()
    took = trio.wait_applied(version, ["gw-c"], timeout=60)
    print(f"\ngw-c restarted and converged to version {version} in {took['gw-c']:.2f} s")
    assert iscsi_luns(trio.portal("gw-c")) == [0, 1]
    _wait_lock_owner(trio, disk2, "gw-c")


def test_removing_a_gateway_renumbers_nothing_and_drops_no_session_elsewhere(trio):
    before = dict(_ordered_portals(trio))

    async def scenario():
        held = {}
        for name in NAMES:
            isid = bytes([0x80, 0, 0, 0, 0, len(held)])
            held[name] = Session(*trio.addresses[name], IQN, INITIATOR_A, isid=isid)
            await held[name].login()
        version = await asyncio.to_thread(lambda: trio.store.update(ops.remove_portal, IQN, "gw-b").version)
        await asyncio.to_thread(trio.wait_applied, version)
        assert not await held["gw-b"].alive(3), "the removed gateway kept its session"
        for name in ("gw-a", "gw-c"):
            assert await held[name].alive(), f"the session through {name} was dropped"
            res = await held[name].command_past_unit_attention(rtpg(), read_length=1024)
            assert sorted(rtpg_states(res.data)) == sorted(before[trio.portal(n)] for n in ("gw-a", "gw-c"))
            held[name].close()

    asyncio.run(scenario())
    after = sorted((p, t) for target, p, t in iscsi_ls(trio.portal("gw-a")) if target == IQN)
    assert after == sorted((trio.portal(n), before[trio.portal(n)]) for n in ("gw-a", "gw-c"))


def test_metrics_parse_with_the_prometheus_parser(trio):
    names = set()
    for name in ("gw-a", "gw-c"):
        with urllib.request.urlopen(trio.gateways[name].metrics_url, timeout=10) as r:
            text = r.read().decode()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        names |= set(fams)
        assert all(s.labels.get("gw_name") == name for f in fams.values() for s in f.samples
                   if "gw_name" in s.labels)
        version = fams["ceph_iscsi_gateway_config_version"].samples[0].value
        assert version == trio.store.read_version()
    for required in ("ceph_iscsi_gateway_tpg_total", "ceph_iscsi_lun_mapped", "ceph_iscsi_lun_size_bytes",
                     "ceph_iscsi_lun_iops", "ceph_iscsi_lun_read_bytes", "ceph_iscsi_lun_write_bytes",
                     "ceph_iscsi_client_login", "ceph_iscsi_client_lun", "ceph_iscsi_scrape_duration_seconds",
                     "ceph_iscsi_lun_latency_seconds", "ceph_iscsi_sessions", "ceph_iscsi_lun_lock_acquired",
                     "ceph_iscsi_gateway_lock_moves"):
        assert required in names, required


def test_sighup_rereads_the_settings_file(trio):
    gw = trio.gateways["gw-a"]
    text = gw.cfg.read_text()
    gw.cfg.write_text(text + "\n[target]\ncmdsn_depth = 16\n")
    gw.signal(signal.SIGHUP)

    async def window():
        s = Session(*trio.addresses["gw-a"], IQN)
        await s.login()
        s.close()
        return s.ini.max_cmdsn - s.ini.cmdsn + 1

    deadline = time.monotonic() + 20
    while asyncio.run(window()) != 16:
        assert time.monotonic() < deadline, "the new cmdsn_depth default was not applied"
        time.sleep(0.2)
    assert gw.alive()
