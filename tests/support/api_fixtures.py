"""Fixtures for API tests against the mini cluster: a real ``rbd-target-api`` process and
two gateways (gw-a on the API's node, gw-b), each with its own config object.

Import them into a test module: ``from support.api_fixtures import api_env  # noqa: F401``.
``api_env`` runs TEST-ONLY fake gateways (``tests/support/fake_gateway.py``: they follow the
store like ``rbd-target-gw`` and can pretend initiators are logged in, for the session-
dependent contract tests); ``api_env_real`` runs two real ``rbd-target-gw`` processes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import rados
import rbd

from gateway.config.rados_store import RadosConfigStore
from support.harness import ApiClient, ApiServer, ConfigDir, Gateways, free_port

GW_A, GW_B = "gw-a.test", "gw-b.test"
IP_A, IP_B = "127.0.7.11", "127.0.7.12"
POOL = "rbd"


@dataclass
class ApiEnv:
    cfg_dir: ConfigDir
    cluster: Any
    store: RadosConfigStore
    gateways: Gateways
    api: ApiServer
    client: ApiClient
    images: set[str] = field(default_factory=set)

    # ---- building blocks (through the API) ------------------------------------------------
    def new_target(self, gateways: tuple[str, ...] = (GW_A, GW_B)) -> str:
        iqn = f"iqn.2003-01.com.example.test:{uuid.uuid4().hex[:10]}"
        self.client.ok("PUT", f"/api/target/{iqn}")
        for gw in gateways:
            ip = IP_A if gw == GW_A else IP_B
            self.client.ok("PUT", f"/api/gateway/{iqn}/{gw}", data={"ip_address": ip})
        return iqn

    def image_name(self) -> str:
        name = f"api-{uuid.uuid4().hex[:10]}"
        self.images.add(name)
        return name

    def new_disk(self, size: str = "16M", **params: str) -> str:
        name = self.image_name()
        self.client.ok("PUT", f"/api/disk/{POOL}/{name}", data={"mode": "create", "size": size, **params})
        return f"{POOL}/{name}"

    def mapped_disk(self, iqn: str) -> str:
        disk = self.new_disk()
        self.client.ok("PUT", f"/api/targetlun/{iqn}", data={"disk": disk})
        return disk

    def new_client(self, iqn: str) -> str:
        name = f"iqn.1994-05.com.example:host-{uuid.uuid4().hex[:8]}"
        self.client.ok("PUT", f"/api/client/{iqn}/{name}")
        return name

    # ---- looking at what really happened --------------------------------------------------
    def rbd_image(self, name: str, pool: str = POOL):
        io = self.cluster.open_ioctx(pool)
        try:
            return rbd.Image(io, name, read_only=True), io
        except Exception:
            io.close()
            raise

    def image_exists(self, name: str, pool: str = POOL) -> bool:
        with self.cluster.open_ioctx(pool) as io:
            return name in rbd.RBD().list(io)


def _remove_image(io: Any, name: str) -> None:
    try:
        with rbd.Image(io, name) as img:
            for snap in list(img.list_snaps()):
                if img.is_protected_snap(snap["name"]):
                    img.unprotect_snap(snap["name"])
                img.remove_snap(snap["name"])
        rbd.RBD().remove(io, name)
    except (rbd.ImageNotFound, rbd.ImageBusy):
        pass


def _cleanup(env: ApiEnv) -> None:
    with env.cluster.open_ioctx(POOL) as io:
        names = set(rbd.RBD().list(io))
        # clones first: their parents' snapshots cannot go while they exist
        for name in sorted(n for n in env.images | {f"{i}{k}" for i in env.images for k in range(1, 11)}
                           if n in names):
            _remove_image(io, name)
        for name in sorted(n for n in env.images if n in set(rbd.RBD().list(io))):
            _remove_image(io, name)
        for obj in (env.cfg_dir.gateway_conf, env.cfg_dir.gateway_conf + ".status"):
            try:
                io.remove_object(obj)
            except rados.ObjectNotFound:
                pass


@pytest.fixture(scope="module")
def api_env(ceph_cluster, tmp_path_factory) -> Iterator[ApiEnv]:
    """The API with two TEST-ONLY fake gateways (they can pretend sessions exist)."""
    yield from _api_env(ceph_cluster, tmp_path_factory, real=False)


@pytest.fixture(scope="module")
def api_env_real(ceph_cluster, tmp_path_factory) -> Iterator[ApiEnv]:
    """The API with two real ``rbd-target-gw`` processes."""
    yield from _api_env(ceph_cluster, tmp_path_factory, real=True)


def _api_env(ceph_cluster, tmp_path_factory, real: bool) -> Iterator[ApiEnv]:
    cfg_dir = ConfigDir(tmp_path_factory.mktemp("api"), ceph_cluster, gateway_name=GW_A,
                        iscsi_port=free_port(IP_A))
    cluster = ceph_cluster.rados_connect()
    store = RadosConfigStore(cluster.open_ioctx(POOL), cfg_dir.gateway_conf)
    gateways = Gateways(cfg_dir, store, {GW_A: [IP_A], GW_B: [IP_B]}, real=real)
    api = ApiServer(cfg_dir)
    env = ApiEnv(cfg_dir, cluster, store, gateways, api, api.client())
    try:
        api.start()
        gateways.start()
        yield env
    finally:
        gateways.stop_all()
        api.stop()
        _cleanup(env)
        store.close()
        cluster.shutdown()
