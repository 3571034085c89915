"""Running ``rbd-target-api`` and gateways for tests: cfg files, processes, an HTTP client.

Everything binds to this branch's loopback range (127.0.7.x) on free ports.  The gateways
are ``fake_gateway.py`` processes (TEST-ONLY stand-ins) started with the same ``--cfg``
that ``rbd-target-gw`` takes: once the daemon exists, ``GatewayProcess.command`` is the one
line to change.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

HOST = "127.0.7.1"
API_PASSWORD = "s3cret-" + uuid.uuid4().hex[:12]
REPO = Path(__file__).resolve().parents[2]
FAKE_GATEWAY = Path(__file__).with_name("fake_gateway.py")


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def write_cfg(path: Path, values: dict[str, Any]) -> Path:
    lines = ["[config]"] + [f"{k} = {v}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class ConfigDir:
    """A ``ceph_config_dir``: the mini cluster's ceph.conf, plus whatever a test adds (keys,
    certificates) and one cfg file per process."""

    def __init__(self, root: Path, cluster: Any, gateway_conf: str | None = None, **common: Any) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "ceph.conf"
        if not conf.exists():
            conf.symlink_to(cluster.conf_path)
        self.gateway_conf = gateway_conf or f"gateway.conf.test-{uuid.uuid4().hex[:8]}"
        self.common = {
            "cluster_name": "ceph", "ceph_config_dir": str(self.root), "pool": cluster.pool,
            "gateway_conf": self.gateway_conf, "api_user": "admin", "api_password": API_PASSWORD,
            "api_secure": "false", "log_to_stderr": "true", "log_to_file": "false", "logger_level": "DEBUG",
            "apply_timeout": 3, "gateway_heartbeat_interval": 1, "gateway_dead_after": 8,
            "config_poll_interval": 5, "time_out": 10, "loop_delay": 1,
            # Every node of a cluster shares these (they are part of the checkconf hash).
            "api_host": HOST, "api_port": free_port(HOST), "trusted_ip_list": HOST,
            "prometheus_port": free_port(HOST),
        }
        self.common.update(common)

    def cfg(self, name: str, **values: Any) -> Path:
        return write_cfg(self.root / f"{name}.cfg", {**self.common, **values})


class Process:
    """A child process with its output in a log file, stopped by its own pid."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.command = command
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=REPO, start_new_session=True)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        rc = self.proc.returncode
        self.proc = None
        return rc

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class ApiClient:
    """requests, aimed at one API, with its credentials."""

    def __init__(self, base: str, auth: tuple[str, str] | None, verify: Any = False,
                 source: str | None = None) -> None:
        self.base = base
        self.session = requests.Session()
        self.session.auth = auth
        self.verify = verify  # per request: REQUESTS_CA_BUNDLE would override a session setting
        if source:
            from requests.adapters import HTTPAdapter

            class SourceAdapter(HTTPAdapter):
                def init_poolmanager(self, *args, **kwargs):
                    kwargs["source_address"] = (source, 0)
                    return super().init_poolmanager(*args, **kwargs)

            self.session.mount("http://", SourceAdapter())
            self.session.mount("https://", SourceAdapter())

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 120)
        kw.setdefault("verify", self.verify)
        return self.session.request(method, self.base + path, **kw)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def put(self, path: str, **kw: Any) -> requests.Response:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        return self.request("DELETE", path, **kw)

    def ok(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        """The JSON answer of a request that must succeed (with the body in the failure)."""
        r = self.request(method, path, **kw)
        assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text}"
        return r.json()


class ApiServer:
    """A real ``rbd-target-api`` process."""

    def __init__(self, cfg_dir: ConfigDir, name: str = "api", **values: Any) -> None:
        merged = {**cfg_dir.common, **values}
        self.host = str(merged["api_host"])
        self.port = int(merged["api_port"])
        self.scheme = "https" if str(merged["api_secure"]).lower() == "true" else "http"
        self.cfg = cfg_dir.cfg(name, **values)
        host = self.host
        exe = Path(sys.executable).with_name("rbd-target-api")
        command = [str(exe)] if exe.exists() else [sys.executable, "-m", "api.server"]
        self.process = Process([*command, "--cfg", str(self.cfg)], cfg_dir.root / f"{name}.log")
        shown = f"[{host}]" if ":" in host else host
        self.base = f"{self.scheme}://{shown}:{self.port}"

    def client(self, auth: tuple[str, str] | None = ("admin", API_PASSWORD), **kw: Any) -> ApiClient:
        return ApiClient(self.base, auth, **kw)

    def start(self, timeout: float = 60.0) -> None:
        self.process.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.running:
                raise RuntimeError(f"rbd-target-api exited: {self.process.output()[-3000:]}")
            try:
                if requests.get(self.base + "/api", timeout=2, verify=False).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"rbd-target-api did not answer within {timeout}s: "
                           f"{self.process.output()[-3000:]}")

    def stop(self) -> int | None:
        return self.process.stop()


class GatewayProcess:
    """One gateway of the test cluster: the real ``rbd-target-gw`` (``real=True``), or the
    TEST-ONLY fake that follows the store the same way and can pretend sessions exist."""

    def __init__(self, cfg_dir: ConfigDir, name: str, addresses: list[str], real: bool = False) -> None:
        self.name = name
        self.addresses = addresses
        self.real = real
        self.sessions_file = cfg_dir.root / f"{name}.sessions.json"
        self.sessions_file.write_text("{}")
        self.cfg = cfg_dir.cfg(name, gateway_name=name)
        if real:
            # Several gateways share one host here: each serves metrics on its own address.
            command = [str(Path(sys.executable).with_name("rbd-target-gw")), "--cfg", str(self.cfg),
                       "--prometheus-host", addresses[0]]
        else:
            command = [sys.executable, str(FAKE_GATEWAY), "--cfg", str(self.cfg), "--sessions",
                       str(self.sessions_file), *[a for ip in addresses for a in ("--ip", ip)]]
        self.process = Process(command, cfg_dir.root / f"{name}.log")

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        """A clean stop: the gateway says it is going (down at once)."""
        self.process.stop(signal.SIGTERM)

    def kill(self) -> None:
        """A crash: the last status stays until its heartbeat ages out."""
        self.process.stop(signal.SIGKILL)

    def set_sessions(self, sessions: dict[str, Any]) -> None:
        """Pretend initiators are logged in (the fake reports them with its next heartbeat)."""
        assert not self.real, "a real gateway reports the sessions initiators really open"
        tmp = self.sessions_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(sessions))
        os.replace(tmp, self.sessions_file)


class Gateways:
    """The gateways of a test cluster, by name; waits until each reports."""

    def __init__(self, cfg_dir: ConfigDir, store: Any, names_and_ips: dict[str, list[str]],
                 real: bool = False) -> None:
        self.store = store
        self.members = {n: GatewayProcess(cfg_dir, n, ips, real) for n, ips in names_and_ips.items()}

    def __getitem__(self, name: str) -> GatewayProcess:
        return self.members[name]

    def start(self, *names: str, timeout: float = 60.0) -> None:
        names = names or tuple(self.members)
        since = time.time()
        for n in names:
            self.members[n].start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = self.store.read_statuses()
            if all(n in statuses and statuses[n].started >= since - 1 and statuses[n].heartbeat > 0
                   for n in names):
                return
            for n in names:
                if not self.members[n].process.running:
                    raise RuntimeError(f"gateway {n} exited: {self.members[n].process.output()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"gateways {names} did not report within {timeout}s")

    def stop_all(self) -> None:
        for m in self.members.values():
            m.stop()

    def wait_applied(self, version: int, timeout: float = 30.0) -> None:
        report = self.store.wait_applied(version, list(self.members), timeout=timeout, dead_after=8)
        assert report.complete and not report.down, report


@contextmanager
def running(*things: Any) -> Iterator[None]:
    started = []
    try:
        for t in things:
            t.start()
            started.append(t)
        yield
    finally:
        for t in reversed(started):
            (t.stop_all if isinstance(t, Gateways) else t.stop)()
