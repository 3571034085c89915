"""scripts/demo up / status --json / down, on 127.0.11.x and free ports with the session cluster
(the real demo's 127.0.0.1:3260 may be in use on a shared machine)."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

from gateway_support import iscsi_luns

from gateway.testing.gateways import ROOT, free_port
from gateway.testing.minicluster import pid_alive

REQUIRED = {"ceph_conf", "cfg", "api_url", "api_user", "api_password", "target_iqn", "portals", "gateways",
            "initiators", "luns"}


def demo(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "scripts" / "demo"), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def test_demo_up_status_down(ceph_cluster, tmp_path):
    addresses = ("127.0.11.21", "127.0.11.22")
    port = free_port(addresses[0])
    opts = ["--dir", str(tmp_path / "demo"), "--addresses", ",".join(addresses), "--port", str(port),
            "--metrics-port", "0", "--api-port", str(free_port(addresses[0])),
            "--cluster-dir", str(ceph_cluster.dir), "--gateway-conf", f"demo-{uuid.uuid4().hex[:8]}"]
    up = demo("up", *opts)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "iscsiadm -m discovery" in up.stdout and "qemu-img" in up.stdout and "iscsi-ls" in up.stdout
        status = demo("status", "--json", *opts)
        assert status.returncode == 0, status.stderr
        state = json.loads(status.stdout)
        assert set(state) >= REQUIRED
        assert state["running"] is True
        assert state["portals"] == [f"{ip}:{port}" for ip in addresses]
        assert [g["portal"] for g in state["gateways"]] == state["portals"]
        assert all(g["pid"] and {"name", "api_url"} <= set(g) for g in state["gateways"])
        assert state["luns"] == [{"lun": 0, "pool": "rbd", "image": "demo", "size": 1 << 30}]
        assert Path(state["cfg"]).exists() and Path(state["ceph_conf"]).exists()
        a, b = state["initiators"]
        assert (a["chap_user"], a["chap_password"]) == (b["chap_user"], b["chap_password"])
        # Both initiators log in through both gateways with the one shared secret.
        for ini in (a, b):
            for portal in state["portals"]:
                assert iscsi_luns(portal, ini["iqn"], ini["chap_user"], ini["chap_password"]) == [0]
    finally:
        down = demo("down", *opts)
    assert down.returncode == 0, down.stderr
    status = demo("status", "--json", *opts)
    assert status.returncode == 1 and json.loads(status.stdout)["running"] is False
    assert not any(pid_alive(g["pid"]) for g in state["gateways"])
    ceph_cluster.rbd("rm", "rbd/demo")
