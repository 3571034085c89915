"""The I/O paths the benchmark compares, each able to set itself up and tear down.

Every path that goes through librbd uses the same ceph.conf, which sets
``rbd cache = false`` for all clients (as the gateway runs in production).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from gateway.testing.bench.fio import iscsi_filename
from gateway.testing.minicluster import MiniCluster

TGT_IQN = "iqn.2026-11.org.bench:tgt"


@dataclass
class Context:
    cluster: MiniCluster
    workdir: Path
    image_size: int
    host: str = "127.0.9.1"
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def ceph_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["CEPH_CONF"] = str(self.cluster.conf_path)
        return env


class BenchPath:
    """One way of reaching a block device, as fio arguments."""

    name = "?"
    description = ""

    def setup(self, ctx: Context) -> None:  # pragma: no cover - interface
        self.ctx = ctx

    def engine_args(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def prefill_args(self) -> list[str]:
        """fio engine arguments that reach the same storage for the sequential prefill."""
        return self.engine_args()

    def server_pids(self) -> list[int]:
        """Processes doing the target's work (their CPU is charged to the path)."""
        return []

    def teardown(self) -> None:
        pass


class RbdDirect(BenchPath):
    name = "rbd"
    description = "fio's rbd engine straight into librbd (the limit of this cluster)"

    def __init__(self, image: str = "bench-rbd") -> None:
        self.image = image

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        ensure_image(ctx.cluster, self.image, ctx.image_size)

    def engine_args(self) -> list[str]:
        return rbd_engine_args(self.ctx, self.image)

    def env(self) -> dict[str, str]:
        return self.ctx.ceph_env


class Tgtd:
    """A private tgtd (own control port), stopped through tgtadm or by its pid."""

    def __init__(self, control_port: int, portal: str, log: Path) -> None:
        self.control_port = control_port
        self.portal = portal
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.tids: list[int] = []

    def start(self, env: dict[str, str]) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                ["tgtd", "-f", "-C", str(self.control_port), "--iscsi", f"portal={self.portal}"],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.adm("--op", "show", "--mode", "sys", check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"tgtd did not start (log {self.log})")

    def adm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(["tgtadm", "-C", str(self.control_port), "--lld", "iscsi", *args],
                              capture_output=True, text=True, timeout=30)
        if check and proc.returncode != 0:
            raise RuntimeError(f"tgtadm {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def export(self, tid: int, iqn: str, bstype: str, backing: str, bsopts: str | None = None) -> None:
        self.adm("--op", "new", "--mode", "target", "--tid", str(tid), "-T", iqn)
        self.tids.append(tid)
        args = ["--op", "new", "--mode", "logicalunit", "--tid", str(tid), "--lun", "1",
                "--bstype", bstype, "--backing-store", backing]
        if bsopts:
            args += ["--bsopts", bsopts]
        self.adm(*args)
        self.adm("--op", "bind", "--mode", "target", "--tid", str(tid), "-I", "ALL")

    def stop(self) -> None:
        if self.proc is None:
            return
        # tgtd ignores SIGTERM and refuses to stop while targets exist: delete them first.
        for tid in self.tids:
            self.adm("--op", "delete", "--mode", "target", "--tid", str(tid), "--force", check=False)
        subprocess.run(["tgtadm", "-C", str(self.control_port), "--op", "delete", "--mode", "system"],
                       capture_output=True, timeout=30)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


class TgtPath(BenchPath):
    """tgtd exporting one LUN, driven by fio's libiscsi engine."""

    def __init__(self, name: str, port: int, control_port: int) -> None:
        self.name = name
        self.port = port
        self.control_port = control_port
        self.tgtd: Tgtd | None = None

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tgtd = Tgtd(self.control_port, f"{ctx.host}:{self.port}", ctx.workdir / f"{self.name}.log")
        self.tgtd.start(ctx.ceph_env)
        self.export()

    def export(self) -> None:
        raise NotImplementedError

    def engine_args(self) -> list[str]:
        return ["--ioengine=libiscsi",
                f"--filename={iscsi_filename(self.ctx.host, self.port, TGT_IQN, 1)}"]

    def server_pids(self) -> list[int]:
        return [self.tgtd.proc.pid] if self.tgtd and self.tgtd.proc else []

    def teardown(self) -> None:
        if self.tgtd:
            self.tgtd.stop()


class TgtRbd(TgtPath):
    description = "tgtd 1.0.85 with bs_rbd (Debian tgt + tgt-rbd) on an identical image"

    def __init__(self, port: int, control_port: int, image: str = "bench-tgt") -> None:
        super().__init__("tgt", port, control_port)
        self.image = image

    def prefill_args(self) -> list[str]:
        return rbd_engine_args(self.ctx, self.image)

    def env(self) -> dict[str, str]:
        return self.ctx.ceph_env

    def export(self) -> None:
        ensure_image(self.ctx.cluster, self.image, self.ctx.image_size)
        self.tgtd.export(1, TGT_IQN, "rbd", f"{self.ctx.cluster.pool}/{self.image}",
                         f"conf={self.ctx.cluster.conf_path};id=admin")


class TgtShm(TgtPath):
    description = "tgtd with a file in /dev/shm (protocol cost alone)"

    def __init__(self, port: int, control_port: int) -> None:
        super().__init__("tgt-shm", port, control_port)
        self.file = Path(f"/dev/shm/bench-tgt-shm-{os.getpid()}")

    def export(self) -> None:
        with open(self.file, "wb") as f:
            f.truncate(self.ctx.image_size)
        self.tgtd.export(1, TGT_IQN, "rdwr", str(self.file))

    def teardown(self) -> None:
        super().teardown()
        self.file.unlink(missing_ok=True)


def rbd_engine_args(ctx: Context, image: str) -> list[str]:
    return ["--ioengine=rbd", "--clientname=admin", f"--pool={ctx.cluster.pool}", f"--rbdname={image}"]


def ensure_image(cluster: MiniCluster, name: str, size: int) -> None:
    if name not in cluster.rbd("ls", cluster.pool).split():
        cluster.rbd("create", "--size", f"{size >> 20}M", f"{cluster.pool}/{name}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its threads, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int, key: str = "VmRSS") -> int:
    """Resident set (``VmHWM``: its peak) of a process, in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def loadavg() -> tuple[float, float, float]:
    """The machine's 1, 5 and 15 minute load averages (others share it: recorded per cell)."""
    parts = Path("/proc/loadavg").read_text().split()
    return float(parts[0]), float(parts[1]), float(parts[2])


def cpu_count() -> int:
    return os.cpu_count() or 0
