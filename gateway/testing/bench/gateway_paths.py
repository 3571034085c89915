"""Our gateway as a benchmark path: ``rbd-target-gw`` as users run it.

One gateway daemon (``python -m gateway.daemon``) with its own cfg file and config object on
the benchmark's mini cluster; the target, its portal, the disk, the LUN and an ACL entry for
fio's initiator are defined through the config operations (what the REST API does), and the
daemon applies them.  ``rbd cache = false`` comes from the cluster's ceph.conf (every client
of the mini cluster has it, fio's rbd engine and tgtd's bs_rbd included), and the daemon's
librbd backend forces it off anyway.  ``gateway-mem`` is the same daemon with
``data_backend = memory`` (the LUN lives in the daemon's RAM): the protocol cost alone.
"""

from __future__ import annotations

import os
import uuid

from gateway.testing.bench.fio import FIO_INITIATOR, iscsi_filename
from gateway.testing.bench.paths import BenchPath, Context, ensure_image

IQN = "iqn.2003-01.org.ceph.iscsi-gw:bench"


class GatewayPath(BenchPath):
    def __init__(self, memory: bool, image: str = "bench-gw") -> None:
        self.memory = memory
        self.name = "gateway-mem" if memory else "gateway"
        self.description = (
            "rbd-target-gw, data_backend = memory (protocol cost alone)" if memory else
            "rbd-target-gw: userspace iSCSI portal + librbd (ctypes, rbd_cache = false)")
        self.image = image
        self.gc = None
        self.port = 0

    def setup(self, ctx: Context) -> None:
        from gateway.config import operations as ops
        from gateway.testing.gateways import GatewayCluster, free_port

        self.ctx = ctx
        config = {"logger_level": "INFO", "minimum_gateways": 1}
        if self.memory:
            config.update(data_backend="memory", memory_disk_size_mb=ctx.image_size >> 20)
        else:
            ensure_image(ctx.cluster, self.image, ctx.image_size)
        obj = f"bench-{self.name}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.gc = gc = GatewayCluster(ctx.cluster, ctx.workdir / self.name, gateway_conf=obj, config=config)
        self.port = free_port(ctx.host)
        gw_name = f"bench-{self.name}"
        gc.add(gw_name, ctx.host, self.port)
        disk = f"{ctx.cluster.pool}/{self.image}"

        def define(cfg):
            ops.add_target(cfg, IQN)
            ops.add_portal(cfg, IQN, gw_name, [ctx.host], port=self.port)
            ops.add_disk(cfg, ctx.cluster.pool, self.image)
            ops.map_lun(cfg, IQN, disk)
            ops.add_client(cfg, IQN, FIO_INITIATOR)
            ops.add_client_lun(cfg, IQN, FIO_INITIATOR, disk)

        version = gc.store.update(define).version
        gc.start_all()
        gc.wait_applied(version, timeout=120)

    @property
    def gateway(self):
        return next(iter(self.gc.gateways.values())) if self.gc else None

    def engine_args(self) -> list[str]:
        return ["--ioengine=libiscsi", f"--filename={iscsi_filename(self.ctx.host, self.port, IQN, 0)}"]

    def prefill_args(self) -> list[str]:
        # The gateway holds the image's exclusive lock: prefill through it.
        return self.engine_args()

    def server_pids(self) -> list[int]:
        gw = self.gateway
        return [gw.pid] if gw is not None and gw.pid else []

    def teardown(self) -> None:
        if self.gc is None:
            return
        gc, self.gc = self.gc, None
        for gw in gc.gateways.values():
            gw.stop()
        store = gc.store
        for obj in (store.object_name, store.status_object):
            try:
                store.ioctx.remove_object(obj)
            except Exception:  # already gone, or the cluster is going away with it
                pass
        gc.close()
