"""Our gateway as a benchmark path: the portal serving an RBD image, or a RAM disk.

The portal runs as its own process (as in production), with uvloop when installed and
``rbd cache = false`` from the cluster's conf; fio reaches it with the libiscsi engine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gateway.testing.bench.fio import iscsi_filename
from gateway.testing.bench.paths import BenchPath, Context, ensure_image

IQN = "iqn.2003-01.org.ceph.iscsi-gw:ramdisk"
REPO = Path(__file__).resolve().parents[3]


class GatewayPath(BenchPath):
    def __init__(self, memory: bool, port: int | None = None, image: str = "bench-gw") -> None:
        self.memory = memory
        self.name = "gateway-mem" if memory else "gateway"
        self.description = ("our portal on the memory backend (protocol cost alone)" if memory else
                            "our gateway: userspace iSCSI portal + librbd via ctypes")
        self.port = port or (3274 if memory else 3273)
        self.image = image
        self.proc: subprocess.Popen | None = None

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        args = [sys.executable, "-m", "gateway.portal", "--listen", f"{ctx.host}:{self.port}",
                "--log-level", "WARNING"]
        if self.memory:
            args += ["--ramdisk", str(ctx.image_size)]
        else:
            ensure_image(ctx.cluster, self.image, ctx.image_size)
            args += ["--rbd", f"{ctx.cluster.pool}/{self.image}", "--ceph-conf", str(ctx.cluster.conf_path)]
        log = open(ctx.workdir / f"{self.name}.log", "ab")
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=log,
                                     stdin=subprocess.DEVNULL, env=ctx.ceph_env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 30
        line = self.proc.stdout.readline().decode()
        if "listening on" not in line or time.monotonic() > deadline:
            self.teardown()
            raise RuntimeError(f"{self.name} did not start: {line!r} (log {ctx.workdir / self.name}.log)")

    def engine_args(self) -> list[str]:
        return ["--ioengine=libiscsi", f"--filename={iscsi_filename(self.ctx.host, self.port, IQN, 0)}"]

    def prefill_args(self) -> list[str]:
        # The portal holds the exclusive lock (managed mode): prefill through it.
        return self.engine_args()

    def env(self) -> dict[str, str]:
        return self.ctx.ceph_env

    def server_pids(self) -> list[int]:
        return [self.proc.pid] if self.proc else []

    def teardown(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None
