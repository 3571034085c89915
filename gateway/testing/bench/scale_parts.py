"""Building blocks of ``scripts/bench --scale``: the load driver, RBD images, sets of
gateway daemons, watching their ready files, figures from /proc and the metrics endpoint."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from gateway.testing.bench import fio as fiomod
from gateway.testing.minicluster import MiniCluster

LOAD_SOURCE = Path(__file__).with_name("scale_load.c")


def load_driver() -> Path:
    """``scale_load`` compiled against libiscsi (cached by source hash)."""
    digest = hashlib.sha256(LOAD_SOURCE.read_bytes()).hexdigest()[:12]
    binary = fiomod.CACHE / f"scale_load-{digest}"
    if not binary.exists():
        binary.parent.mkdir(parents=True, exist_ok=True)
        tmp = binary.with_suffix(f".{os.getpid()}")
        subprocess.run(["cc", "-O2", "-Wall", "-o", str(tmp), str(LOAD_SOURCE), "-liscsi"], check=True,
                       capture_output=True, timeout=120)
        os.replace(tmp, binary)
    return binary


def percentiles(values: list[float], qs: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
    """Nearest-rank percentiles plus min, max and count (keys ``p50``, ``p99``, ``max`` ...)."""
    if not values:
        return {"count": 0}
    xs = sorted(values)
    out = {f"p{q}": xs[max(0, -(-q * len(xs) // 100) - 1)] for q in qs}
    out.update(min=xs[0], max=xs[-1], count=len(xs))
    return out


def parse_metrics(text: str) -> dict[str, int]:
    """Clients logged in, and (client, LUN) pairs with commands, from the gateway's metrics."""
    logged = sum(1 for m in re.finditer(r"^ceph_iscsi_client_login\{.*\} (\S+)$", text, re.M)
                 if float(m.group(1)) > 0)
    pairs = [m.group(1) for m in re.finditer(r'^ceph_iscsi_lun_iops\{(.*)\} (\S+)$', text, re.M)
             if float(m.group(2)) > 0]
    luns = {re.search(r'lun_name="([^"]*)"', p).group(1) for p in pairs}
    return {"clients_logged_in": logged, "client_lun_pairs_with_io": len(pairs), "luns_with_io": len(luns)}


class BenchImages:
    """The scale run's RBD images: created and prefilled before the gateway opens them."""

    def __init__(self, cluster: MiniCluster, names: list[str], size: int, fill: int) -> None:
        self.cluster, self.names, self.size, self.fill = cluster, names, size, fill

    def __enter__(self) -> BenchImages:
        import rbd

        self.rados = self.cluster.rados_connect()
        self.ioctx = self.rados.open_ioctx(self.cluster.pool)
        existing = set(rbd.RBD().list(self.ioctx))
        chunk = b"\x5a" * (4 << 20)
        for name in self.names:
            if name not in existing:
                rbd.RBD().create(self.ioctx, name, self.size)
            with rbd.Image(self.ioctx, name) as img:  # memstore reads written data at its real cost
                for off in range(0, self.fill, len(chunk)):
                    img.write(chunk[:min(len(chunk), self.fill - off)], off)
        return self

    def __exit__(self, *exc: object) -> None:
        import rbd

        for name in self.names:
            try:
                rbd.RBD().remove(self.ioctx, name)
            except Exception as e:  # the cluster may be going away with them
                print(f"  could not remove {name}: {e}")
        self.ioctx.close()
        self.rados.shutdown()


def gateway_set(cluster: MiniCluster, workdir: Path, tag: str):
    from gateway.testing.gateways import GatewayCluster

    obj = f"bench-{tag}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return GatewayCluster(cluster, workdir / tag, gateway_conf=obj,
                          config={"logger_level": "WARNING", "minimum_gateways": 1})


def close_gateway_set(gc) -> None:
    """Stop the gateways, then remove the config objects (after the store's watches closed)."""
    objects = (gc.gateway_conf, f"{gc.gateway_conf}.status")
    gc.close()
    rados = gc.cluster.rados_connect()
    try:
        with rados.open_ioctx(gc.cluster.pool) as ioctx:
            for obj in objects:
                try:
                    ioctx.remove_object(obj)
                except Exception:  # already gone
                    pass
    finally:
        rados.shutdown()


def scrape(gw) -> dict[str, int]:
    try:
        with urllib.request.urlopen(gw.metrics_url, timeout=10) as rsp:
            return parse_metrics(rsp.read().decode())
    except OSError as e:
        return {"error": str(e)}


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def loop_cpu(pid: int) -> float:
    """CPU seconds of the daemon's main thread: the asyncio loop (the GIL-bound part)."""
    try:
        fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ReadyWatcher:
    """Polls each gateway's ready file every ``interval`` s: first time each shows a version."""

    def __init__(self, gateways: dict, interval: float = 0.001) -> None:
        self.gateways, self.interval = gateways, interval
        self.target = 0
        self.seen: dict[str, float] = {}
        self.cond = threading.Condition()
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def expect(self, version: int) -> None:
        with self.cond:
            self.target, self.seen = version, {}

    def wait_all(self, timeout: float) -> dict[str, float]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.seen) == len(self.gateways), timeout)
            return dict(self.seen)

    def _run(self) -> None:
        mtimes: dict[str, int] = {}
        while not self.stop:
            for name, gw in self.gateways.items():
                try:
                    m = os.stat(gw.ready_path).st_mtime_ns
                except OSError:
                    continue
                if m == mtimes.get(name):
                    continue
                info = gw.ready()
                if info is None:
                    continue
                mtimes[name] = m
                now = time.monotonic()
                with self.cond:
                    reached = self.target and info.get("applied_version", -1) >= self.target
                    if reached and name not in self.seen:
                        self.seen[name] = now
                        self.cond.notify_all()
            time.sleep(self.interval)


def size_arg(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)
