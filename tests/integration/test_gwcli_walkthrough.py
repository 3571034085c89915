"""Acceptance of issue 8: the seed's gwcli walkthrough, typed into the interactive shell in a
real terminal, creates a target that an initiator logs in to with CHAP and reads and writes.

Everything is real: the mini cluster, ``rbd-target-api``, two ``rbd-target-gw`` (gateways
ceph-gw-1 on 127.0.8.1 and ceph-gw-2 on 127.0.8.2, one iSCSI port), gwcli under pexpect,
libiscsi's iscsi-inq and qemu-io as initiators, and librbd to check where the data landed.

The two gateways share one settings file except ``gateway_name`` (``checkconf`` must
match), so the metrics exporter is off here (both would bind the same port).
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pexpect
import pytest
import requests

BIN = Path(sys.executable).parent
HOSTS = ("127.0.8.1", "127.0.8.2")
GATEWAYS = ("ceph-gw-1", "ceph-gw-2")
TARGET = "iqn.2003-01.com.redhat.iscsi-gw:iscsi-igw"
CLIENT = "iqn.1994-05.com.redhat:rh7-client"
CHAP_USER, CHAP_PASSWORD = "myiscsiusername", "myiscsipassword"
DISK = "rbd/disk_1"
TIMEOUT = 60


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Daemon:
    """A process of ours, stopped by its pid (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, command: list[str], log: Path) -> None:
        self.name = name
        self.log = log
        self.handle = log.open("wb")
        self.process = subprocess.Popen(command, stdout=self.handle, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.handle.close()


@pytest.fixture
def stack(ceph_cluster, tmp_path):
    """rbd-target-api and two rbd-target-gw on one fresh config object."""
    (tmp_path / "ceph.conf").symlink_to(ceph_cluster.conf_path)
    api_port, iscsi_port = free_port(HOSTS[0]), free_port(HOSTS[0])
    common = {
        "cluster_name": "ceph", "ceph_config_dir": str(tmp_path), "pool": ceph_cluster.pool,
        "gateway_conf": f"gateway.conf.gwcli-{uuid.uuid4().hex[:8]}",
        "api_host": HOSTS[0], "api_port": api_port, "api_secure": "false",
        "api_user": "gwcli-walk", "api_password": secrets.token_hex(12),
        "trusted_ip_list": ",".join(HOSTS), "iscsi_port": iscsi_port, "prometheus_exporter": "false",
        "apply_timeout": 10, "gateway_heartbeat_interval": 1, "gateway_dead_after": 8,
        "log_to_stderr": "true", "log_to_file": "false", "logger_level": "DEBUG",
    }

    def cfg(name: str, gateway: str) -> Path:
        path = tmp_path / f"{name}.cfg"
        values = {**common, "gateway_name": gateway}
        path.write_text("[config]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))
        return path

    _remove_image(ceph_cluster)
    daemons = []
    try:
        api = Daemon("api", [str(BIN / "rbd-target-api"), "--cfg", str(cfg("api", GATEWAYS[0]))],
                     tmp_path / "api.log")
        daemons.append(api)
        for name in GATEWAYS:
            daemons.append(Daemon(name, [str(BIN / "rbd-target-gw"), "--cfg", str(cfg(name, name))],
                                  tmp_path / f"{name}.log"))
        base = f"http://{HOSTS[0]}:{api_port}"
        deadline = time.monotonic() + TIMEOUT
        while not (_api_up(base) and _reported(ceph_cluster, common["gateway_conf"], GATEWAYS)):
            for d in daemons:
                assert d.alive(), f"{d.name} exited:\n{d.output()}"
            assert time.monotonic() < deadline, "API and gateways not up: " + "\n".join(
                f"--- {d.name}\n{d.output()}" for d in daemons)
            time.sleep(0.5)
        yield {"base": base, "cfg": tmp_path / "api.cfg", "iscsi_port": iscsi_port, "home": tmp_path,
               "daemons": daemons}
    finally:
        for d in reversed(daemons):
            d.stop()
        _remove_image(ceph_cluster)


def _api_up(base: str) -> bool:
    try:
        return requests.get(f"{base}/api", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _reported(ceph_cluster, object_name: str, names: tuple[str, ...]) -> bool:
    """Every gateway has a fresh status report (the API only lists configured gateways)."""
    from gateway.config.rados_store import RadosConfigStore

    store = RadosConfigStore.connect(conffile=str(ceph_cluster.conf_path), pool=ceph_cluster.pool,
                                     object_name=object_name)
    try:
        statuses = store.read_statuses()
    finally:
        store.close()
    return all(n in statuses and statuses[n].alive(time.time(), 8) for n in names)


def _remove_image(ceph_cluster) -> None:
    """The seed's image name is fixed: remove it (and its snapshots) before and after."""
    import rbd

    client = ceph_cluster.rados_connect()
    try:
        with client.open_ioctx(ceph_cluster.pool) as io:
            try:
                with rbd.Image(io, DISK.split("/")[1]) as image:
                    for snap in list(image.list_snaps()):
                        if image.is_protected_snap(snap["name"]):
                            image.unprotect_snap(snap["name"])
                        image.remove_snap(snap["name"])
                rbd.RBD().remove(io, DISK.split("/")[1])
            except rbd.ImageNotFound:
                pass
    finally:
        client.shutdown()


def prompt(path: str) -> str:
    if len(path) > 30:
        path = f"{path[:13]}...{path[-13:]}"
    return f"{path}> "


def type_line(child: pexpect.spawn, line: str, path: str) -> str:
    """Type a line, wait for the prompt of ``path``; what the command printed (no colours)."""
    child.sendline(line)
    child.expect_exact(prompt(path))
    return re.sub(r"\033\[[0-9;]*[A-Za-z]", "", child.before).partition("\n")[2]


def initiator_url(host: str, port: int, password: str = CHAP_PASSWORD) -> str:
    return f"iscsi://{CHAP_USER}%{password}@{host}:{port}/{TARGET}/0"


def qemu_io(host: str, port: int, *commands: str) -> subprocess.CompletedProcess:
    opts = (f"driver=iscsi,transport=tcp,portal={host}:{port},target={TARGET},lun=0,user={CHAP_USER},"
            f"password={CHAP_PASSWORD},initiator-name={CLIENT}")
    argv = ["qemu-io", "--image-opts", opts]
    for c in commands:
        argv += ["-c", c]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def test_seed_walkthrough_creates_a_target_an_initiator_uses_with_chap(stack, ceph_cluster):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(stack["home"]), "TERM": "xterm"}
    child = pexpect.spawn(str(BIN / "gwcli"), ["--cfg", str(stack["cfg"]), "--api", stack["base"]], env=env,
                          encoding="utf-8", timeout=TIMEOUT, dimensions=(50, 140))
    tp = f"/iscsi-targets/{TARGET}"
    try:
        child.expect_exact(prompt("/"))
        # the seed's session, as the issue writes it
        type_line(child, "cd /iscsi-targets", "/iscsi-targets")
        assert type_line(child, f"create {TARGET}", "/iscsi-targets").strip() == "ok"
        type_line(child, f"cd {TARGET}", tp)
        for name, host in zip(GATEWAYS, HOSTS, strict=True):
            assert type_line(child, f"gateways create {name} {host}", tp).strip().endswith("ok")
        assert type_line(child, "/disks create pool=rbd image=disk_1 size=90G", tp).strip() == "ok"
        assert type_line(child, f"hosts create {CLIENT}", f"{tp}/hosts/{CLIENT}").strip() == "ok"
        assert type_line(child, f"auth username={CHAP_USER} password={CHAP_PASSWORD}",
                         f"{tp}/hosts/{CLIENT}").strip() == "ok"
        assert type_line(child, "disk add rbd/disk_1", f"{tp}/hosts/{CLIENT}").strip() == "ok"
        tree = type_line(child, "ls /", f"{tp}/hosts/{CLIENT}")
        assert re.search(r"\[Up: 2/2, Portals: 2\]", tree), tree
        assert re.search(rf"{re.escape(CLIENT)} \.+ \[Auth: CHAP, Disks: 1\(90G\)\]", tree), tree
        assert re.search(r"disk_1 \.+ \[rbd/disk_1 \(Online, 90G\)\]", tree), tree
    finally:
        child.sendline("exit")
        child.expect(pexpect.EOF)
        child.close()

    port = stack["iscsi_port"]
    # CHAP login through each gateway: the LUN answers INQUIRY.
    for host in HOSTS:
        inq = subprocess.run(["iscsi-inq", "-i", CLIENT, initiator_url(host, port)], capture_output=True,
                             text=True, timeout=60)
        assert inq.returncode == 0, f"login through {host} failed: {inq.stderr}"
    # A wrong CHAP secret is refused.
    bad = subprocess.run(["iscsi-inq", "-i", CLIENT, initiator_url(HOSTS[0], port, "wrongpassword1")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    # Write through one gateway, read back through the other, then check the RBD image itself.
    wrote = qemu_io(HOSTS[0], port, "write -P 0x5a 0 1M", "flush")
    assert wrote.returncode == 0, wrote.stdout + wrote.stderr
    assert "wrote 1048576/1048576 bytes" in wrote.stdout
    read = qemu_io(HOSTS[1], port, "read -P 0x5a 0 1M")
    assert read.returncode == 0 and "read 1048576/1048576 bytes" in read.stdout, read.stdout + read.stderr
    assert "Pattern verification failed" not in read.stdout
    import rbd

    client = ceph_cluster.rados_connect()
    try:
        with client.open_ioctx(ceph_cluster.pool) as io, rbd.Image(io, "disk_1", read_only=True) as image:
            assert image.size() == 90 << 30
            assert image.read(0, 1 << 20) == b"\x5a" * (1 << 20)
    finally:
        client.shutdown()
