"""Gateway daemons as child processes, for tests and the demo.

    cfg = write_cfg(tmp / "iscsi-gateway.cfg", ceph_config_dir=cluster.dir, gateway_conf="gw-test")
    gw = GatewayProcess("gw1", cfg, tmp / "gw1", metrics_host="127.0.11.1")
    gw.start()
    gw.wait_ready()          # the first config applied; gw.ready() has pid, portals, metrics
    gw.wait_applied(store, version)
    gw.stop()                # SIGTERM: drains; gw.kill() is kill -9, gw.pause()/resume() SIGSTOP/CONT

Processes are stopped by the pid recorded here, never by name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def write_cfg(path: str | os.PathLike, *, ceph_config_dir: str | os.PathLike, pool: str = "rbd",
              gateway_conf: str = "gateway.conf", config: Mapping[str, Any] | None = None,
              target: Mapping[str, Any] | None = None,
              device_status: Mapping[str, Any] | None = None) -> Path:
    """An iscsi-gateway.cfg for a mini cluster (``ceph_config_dir`` = the cluster directory)."""
    values = {"cluster_name": "ceph", "ceph_config_dir": str(ceph_config_dir), "pool": pool,
              "gateway_conf": gateway_conf, "api_secure": "false", "log_to_stderr": "true",
              "log_to_file": "false", "logger_level": "INFO", "gateway_heartbeat_interval": "1",
              **{k: str(v) for k, v in (config or {}).items()}}
    lines = ["[config]", *(f"{k} = {v}" for k, v in values.items())]
    if target:
        lines += ["", "[target]", *(f"{k} = {v}" for k, v in target.items())]
    if device_status:
        lines += ["", "[device_status]", *(f"{k} = {v}" for k, v in device_status.items())]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port(ip: str) -> int:
    """A port free on ``ip`` right now (bind to 0 and release)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


class GatewayError(RuntimeError):
    """A gateway did not start, or did not reach the awaited state."""


class GatewayProcess:
    """One ``rbd-target-gw`` child process."""

    def __init__(self, name: str, cfg: str | os.PathLike, workdir: str | os.PathLike, *,
                 metrics_host: str = "127.0.0.1", metrics_port: int = 0, args: tuple[str, ...] = (),
                 python: str | None = None) -> None:
        self.name = name
        self.cfg = Path(cfg)
        self.workdir = Path(workdir)
        self.metrics_host = metrics_host
        self.metrics_port = metrics_port
        self.args = tuple(args)
        self.python = python or _venv_python()
        self.proc: subprocess.Popen | None = None
        self.ready_path = self.workdir / "ready.json"
        self.log_path = self.workdir / "gateway.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def command(self) -> list[str]:
        return [self.python, "-m", "gateway.daemon", "--cfg", str(self.cfg), "--gateway-name", self.name,
                "--prometheus-host", self.metrics_host, "--prometheus-port", str(self.metrics_port),
                "--ready-file", str(self.ready_path), *self.args]

    def start(self, *, detach: bool = False) -> None:
        """Start the daemon (``detach``: in its own session, surviving the caller)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ready_path.unlink(missing_ok=True)
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(self.command(), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=detach)

    def ready(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.ready_path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float = 30.0, version: int | None = None) -> dict[str, Any]:
        """Wait until the daemon applied a config (``version`` or later); returns ready()."""
        deadline = time.monotonic() + timeout
        while True:
            info = self.ready()
            if info is not None and info.get("pid") == self.pid and \
                    (version is None or info.get("applied_version", -1) >= version):
                return info
            if not self.alive():
                code = self.proc.returncode if self.proc else "?"
                raise GatewayError(f"gateway {self.name} exited ({code}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise GatewayError(f"gateway {self.name} not ready within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def metrics_url(self) -> str:
        info = self.ready() or {}
        return f"http://{info.get('metrics', '')}/metrics"

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        """kill -9, as a crash."""
        if self.proc is not None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (drain), SIGKILL after ``timeout``; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


def _venv_python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


# ---- a set of gateways on one mini cluster ------------------------------------------------
class GatewayCluster:
    """Gateway processes sharing one config object on a mini cluster, each with its own
    cfg file (gateway name, metrics and API address), like separate nodes.

        gc = GatewayCluster(cluster, tmp, gateway_conf="gw-" + uuid)
        a = gc.add("gw-a", "127.0.11.1")              # port: a free one, unless given
        gc.store.update(lambda cfg: ...)              # the desired state (gateway.config.operations)
        gc.start_all(); gc.wait_applied(version)
        gc.close()                                    # stops the gateways (SIGTERM)
    """

    def __init__(self, cluster: Any, workdir: str | os.PathLike, *, gateway_conf: str = "gateway.conf",
                 config: Mapping[str, Any] | None = None, target: Mapping[str, Any] | None = None,
                 device_status: Mapping[str, Any] | None = None) -> None:
        self.cluster = cluster
        self.workdir = Path(workdir)
        self.gateway_conf = gateway_conf
        self.config = dict(config or {})
        self.target_settings = dict(target or {})
        self.device_status = dict(device_status or {})
        self.gateways: dict[str, GatewayProcess] = {}
        self.addresses: dict[str, tuple[str, int]] = {}
        self._store: Any = None

    @property
    def store(self) -> Any:
        """A RadosConfigStore on the shared config object (its own connection)."""
        if self._store is None:
            from gateway.config.rados_store import RadosConfigStore

            self._store = RadosConfigStore.connect(conffile=str(self.cluster.conf_path),
                                                   pool=self.cluster.pool, object_name=self.gateway_conf,
                                                   keyring=str(self.cluster.admin_keyring))
        return self._store

    def cfg_path(self, name: str) -> Path:
        return self.workdir / name / "iscsi-gateway.cfg"

    def add(self, name: str, ip: str, port: int | None = None, *, metrics_port: int = 0,
            config: Mapping[str, Any] | None = None) -> GatewayProcess:
        """Register a gateway (not started): its cfg, its portal address."""
        port = port or free_port(ip)
        cfg = write_cfg(self.cfg_path(name), ceph_config_dir=self.cluster.dir, pool=self.cluster.pool,
                        gateway_conf=self.gateway_conf,
                        config={"gateway_name": name, "api_host": ip, "prometheus_host": ip,
                                **self.config, **(config or {})},
                        target=self.target_settings, device_status=self.device_status)
        gw = GatewayProcess(name, cfg, self.workdir / name, metrics_host=ip, metrics_port=metrics_port)
        self.gateways[name] = gw
        self.addresses[name] = (ip, port)
        return gw

    def portal(self, name: str) -> str:
        ip, port = self.addresses[name]
        return f"{ip}:{port}"

    def start_all(self, *, detach: bool = False) -> None:
        for gw in self.gateways.values():
            if not gw.alive():
                gw.start(detach=detach)

    def wait_applied(self, version: int, names: list[str] | None = None,
                     timeout: float = 30.0) -> dict[str, float]:
        """Wait until each gateway reported ``version`` (or later) in the store; returns the
        seconds each one took from this call."""
        names = list(names or self.gateways)
        t0 = time.monotonic()
        took: dict[str, float] = {}
        while True:
            statuses = self.store.read_statuses()
            now = time.monotonic()
            for name in names:
                st = statuses.get(name)
                if name not in took and st is not None and st.applied_version >= version and st.heartbeat > 0:
                    took[name] = now - t0
            if len(took) == len(names):
                return took
            for name in names:
                gw = self.gateways[name]
                if not gw.alive():
                    raise GatewayError(f"gateway {name} is not running:\n{gw.log_tail()}")
            if now - t0 > timeout:
                missing = sorted(set(names) - set(took))
                raise GatewayError(f"gateways {missing} did not apply version {version} within {timeout} s")
            time.sleep(0.02)

    def close(self) -> None:
        for gw in self.gateways.values():
            gw.stop()
        if self._store is not None:
            self._store.close()
            self._store = None
