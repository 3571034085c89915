"""The Ceph Dashboard's call sequence with a real initiator logging in and doing I/O in the
middle, against the real ``rbd-target-api`` and two real ``rbd-target-gw``.

What it proves: a target created exactly as the Dashboard creates it (two gateways, one
disk, one client with mutual CHAP) accepts a login from that client through each gateway
(qemu-io's libiscsi driver, with CHAP), data written through one gateway is read back
through the other and is in the RBD image; while logged in the API reports the session
(targetinfo, clientinfo LOGGED_IN) and refuses to delete the client; after logout the
Dashboard tears everything down.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest
import rbd
from support.dashboard import Dashboard, DashboardTarget
from support.harness import ApiServer, ConfigDir, Gateways, free_port

from gateway.config.rados_store import RadosConfigStore

GW_A, GW_B = "gw-a.test", "gw-b.test"
IP_A, IP_B = "127.0.7.11", "127.0.7.12"
INITIATOR = "iqn.1994-05.com.redhat:dashboard-initiator"
# One-way CHAP: qemu's iscsi driver (used for the I/O) has no option for mutual CHAP; the
# API integration test covers mutual CHAP in the Dashboard sequence.
CHAP = {"user": "dashboarduser", "password": "dashboardpass1", "mutual_user": "", "mutual_password": ""}


def qemu_io(portal: str, port: int, iqn: str, *commands: str) -> str:
    opts = (f"driver=iscsi,transport=tcp,portal={portal}:{port},target={iqn},lun=0,"
            f"user={CHAP['user']},password={CHAP['password']},initiator-name={INITIATOR}")
    args = ["qemu-io", "--image-opts", opts]
    for c in commands:
        args += ["-c", c]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "error" not in done.stdout.lower(), done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def cluster_with_real_gateways(ceph_cluster, tmp_path):
    iscsi_port = free_port()
    cfg_dir = ConfigDir(tmp_path, ceph_cluster, gateway_name=GW_A, iscsi_port=iscsi_port)
    rados_client = ceph_cluster.rados_connect()
    store = RadosConfigStore(rados_client.open_ioctx(ceph_cluster.pool), cfg_dir.gateway_conf)
    gateways = Gateways(cfg_dir, store, {GW_A: [IP_A], GW_B: [IP_B]}, real=True)
    api = ApiServer(cfg_dir)
    try:
        api.start()
        gateways.start()
        yield api, gateways, rados_client, iscsi_port
    finally:
        gateways.stop_all()
        api.stop()
        store.close()
        rados_client.shutdown()


def test_dashboard_target_serves_a_chap_initiator_through_both_gateways(cluster_with_real_gateways,
                                                                       ceph_cluster):
    api, gateways, rados_client, iscsi_port = cluster_with_real_gateways
    dashboard = Dashboard(api.client())
    dashboard.check_gateway()
    image = f"dash-{uuid.uuid4().hex[:8]}"
    with rados_client.open_ioctx(ceph_cluster.pool) as io:
        rbd.RBD().create(io, image, 64 << 20, old_format=False, features=61)
    t = DashboardTarget(iqn=f"iqn.2001-07.com.ceph:{uuid.uuid4().hex[:12]}",
                        portals={GW_A: [IP_A], GW_B: [IP_B]}, disk=(ceph_cluster.pool, image),
                        client=INITIATOR, chap=CHAP, disk_controls={})
    dashboard.create(t)
    status = api.client().ok("GET", "/api/status", params={"wait": "30"})
    assert status["pending"] == [] and status["down"] == []

    qemu_io(IP_A, iscsi_port, t.iqn, "write -P 0x5a 0 1M")
    qemu_io(IP_B, iscsi_port, t.iqn, "read -P 0x5a 0 1M")
    with rados_client.open_ioctx(ceph_cluster.pool) as io, rbd.Image(io, image, read_only=True) as img:
        assert img.read(0, 1 << 20) == b"\x5a" * (1 << 20)

    # while an initiator is logged in, the API sees it (a long-running read keeps the session)
    reader = subprocess.Popen(["qemu-io", "--image-opts",
                               f"driver=iscsi,transport=tcp,portal={IP_A}:{iscsi_port},target={t.iqn},"
                               f"lun=0,user={CHAP['user']},password={CHAP['password']},"
                               f"initiator-name={INITIATOR}",
                               "-c", "sleep 5000", "-c", "read 0 4k"])
    try:
        deadline = time.monotonic() + 10
        info = dashboard.info(t)
        # targetinfo and clientinfo are two requests: wait until a heartbeat covers both
        while (not info["client"]["state"] or not info["target"]["num_sessions"]) \
                and time.monotonic() < deadline:
            time.sleep(0.2)
            info = dashboard.info(t)
        assert info["client"]["state"] == {"LOGGED_IN": [GW_A]}
        assert info["target"]["num_sessions"] == 1, info
        assert api.client().delete(f"/api/client/{t.iqn}/{INITIATOR}").status_code == 409
    finally:
        reader.wait(60)

    deadline = time.monotonic() + 30
    while dashboard.info(t)["target"]["num_sessions"] and time.monotonic() < deadline:
        time.sleep(0.5)
    dashboard.delete(t)
    assert t.iqn not in dashboard.get_config()["targets"]
