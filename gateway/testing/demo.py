"""The demo: a mini cluster, two gateways, the API and a target ready for initiators.

    scripts/demo run              foreground; Ctrl-C stops everything (``make demo``)
    scripts/demo up               detached; returns once logins work through every gateway
    scripts/demo status [--json]  what runs and how to use it
    scripts/demo down             stop the gateways, the APIs and the cluster

It brings up ``.demo/cluster`` (a mini Ceph cluster), ``rbd-target-gw`` on 127.0.0.1:3260 and
127.0.0.2:3260 (metrics on port 9287 of each address), ``rbd-target-api`` on port 5000 of each
address when the API is implemented, and through the config layer (not the API) a target with
one 1 GiB LUN (lun 0, ``rbd/demo``) and two allowed initiators -- libiscsi's iscsi-test-cu
names -- sharing one CHAP secret, so two-initiator tests such as reservations log in with one
URL.  ``--dir``, ``--addresses``, ``--port``, ``--metrics-port``, ``--api-port`` and
``--cluster-dir`` (an already running mini cluster, left running) exist for tests.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.testing.gateways import ROOT, GatewayCluster, GatewayError, GatewayProcess
from gateway.testing.minicluster import MiniCluster, MiniClusterError, pid_alive

DEMO_DIR = ROOT / ".demo"
TARGET_IQN = "iqn.2003-01.org.ceph.iscsi-gw:demo"
INITIATORS = ("iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test",
              "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2")
CHAP_USER, CHAP_PASSWORD = "demo-initiator", "demo-secret-1234"
API_USER, API_PASSWORD = "admin", "demo-api-secret"
POOL, IMAGE, SIZE = "rbd", "demo", 1 << 30
ADDRESSES = ("127.0.0.1", "127.0.0.2")
ISCSI_PORT, METRICS_PORT, API_PORT = 3260, 9287, 5000
STATE_FILE = "demo.json"


class DemoError(RuntimeError):
    """The demo could not start; the message says why."""


@dataclass
class Layout:
    """Where the demo runs (defaults: the README's addresses and ports)."""

    directory: Path = DEMO_DIR
    addresses: tuple[str, ...] = ADDRESSES
    port: int = ISCSI_PORT
    metrics_port: int = METRICS_PORT
    api_port: int = API_PORT
    cluster_dir: Path | None = None  # an existing cluster, left running
    gateway_conf: str = "gateway.conf"

    @property
    def names(self) -> list[str]:
        return [f"demo-gw{i}" for i in range(1, len(self.addresses) + 1)]

    @property
    def state_path(self) -> Path:
        return self.directory / STATE_FILE


class Demo:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        own = layout.cluster_dir is None
        self.cluster = MiniCluster(layout.directory / "cluster" if own else layout.cluster_dir)
        self.owns_cluster = own
        self.gc = GatewayCluster(self.cluster, layout.directory, gateway_conf=layout.gateway_conf,
                                 config={"api_port": layout.api_port, "api_user": API_USER,
                                         "api_password": API_PASSWORD, "api_secure": "false"})
        for name, ip in zip(layout.names, layout.addresses, strict=True):
            self.gc.add(name, ip, layout.port, metrics_port=layout.metrics_port)
        self.apis: dict[str, subprocess.Popen | int] = {}

    # ---- up -----------------------------------------------------------------------------
    def up(self, *, detach: bool) -> dict[str, Any]:
        state = self.read_state()
        if state and state.get("running"):
            return state
        self._check_ports_free()
        self.cluster.start()
        self._ensure_image()
        version = self.gc.store.update(self._desired_state).version
        self.gc.start_all(detach=True)
        try:
            self.gc.wait_applied(version, timeout=120)
            for gw in self.gc.gateways.values():
                gw.wait_ready(60, version)
            self._start_apis(detach=detach)
            self._wait_logins()
        except (GatewayError, DemoError):
            self.stop_processes()
            raise
        state = self.status(running=True)
        self.layout.state_path.write_text(json.dumps(state, indent=2) + "\n")
        return state

    def _check_ports_free(self) -> None:
        busy = []
        for ip in self.layout.addresses:
            for port, what in ((self.layout.port, "iSCSI"), (self.layout.metrics_port, "metrics"),
                               (self.layout.api_port, "API")):
                if port and not _port_free(ip, port):
                    busy.append(f"{ip}:{port} ({what})")
        if busy:
            raise DemoError(f"already in use: {', '.join(busy)}; stop what listens there "
                            "(or `scripts/demo down` if it is an earlier demo)")

    def _ensure_image(self) -> None:
        if IMAGE not in self.cluster.rbd("ls", POOL).split():
            self.cluster.rbd("create", "--size", f"{SIZE >> 20}M", f"{POOL}/{IMAGE}")

    def _image_wwn(self) -> str:
        from gateway.config.image_identity import ensure_image_wwn

        client = self.cluster.rados_connect()
        try:
            ioctx = client.open_ioctx(POOL)
            try:
                return ensure_image_wwn(ioctx, IMAGE)
            finally:
                ioctx.close()
        finally:
            client.shutdown()

    def _desired_state(self, cfg: Any) -> None:
        """Idempotent: what is already there stays (a restarted demo keeps its WWN and tags)."""
        from gateway.config import operations as ops
        from gateway.config.model import ChapAuth

        if TARGET_IQN not in cfg.targets:
            ops.add_target(cfg, TARGET_IQN)
        target = cfg.targets[TARGET_IQN]
        for name in self.layout.names:
            ip, port = self.gc.addresses[name]
            if name not in target.portals:
                ops.add_portal(cfg, TARGET_IQN, name, [ip], port=port)
            else:
                ops.set_portal_addresses(cfg, TARGET_IQN, name, [ip])
                ops.set_portal_endpoint(cfg, TARGET_IQN, name, port=port)
        for name in list(target.portals):
            if name not in self.layout.names:
                ops.remove_portal(cfg, TARGET_IQN, name)
        disk = f"{POOL}/{IMAGE}"
        if disk not in cfg.disks:
            ops.add_disk(cfg, POOL, IMAGE, self.wwn)
        if disk not in target.luns:
            ops.map_lun(cfg, TARGET_IQN, disk, lun_id=0)
        for iqn in INITIATORS:
            if iqn not in target.clients:
                ops.add_client(cfg, TARGET_IQN, iqn)
            ops.set_client_auth(cfg, TARGET_IQN, iqn, ChapAuth(CHAP_USER, CHAP_PASSWORD))
            if disk not in target.clients[iqn].luns:
                ops.add_client_lun(cfg, TARGET_IQN, iqn, disk)

    @property
    def wwn(self) -> str:
        if not hasattr(self, "_wwn"):
            self._wwn = self._image_wwn()
        return self._wwn

    def _start_apis(self, *, detach: bool) -> None:
        """``rbd-target-api`` per gateway, if the API is implemented (it says so otherwise)."""
        for name in self.layout.names:
            ip = self.gc.addresses[name][0]
            log = open(self.layout.directory / name / "api.log", "a")
            code = "import sys; from api.server import main; sys.exit(main())"
            cmd = [self.gc.gateways[name].python, "-c", code, "--cfg", str(self.gc.cfg_path(name))]
            proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            deadline = time.monotonic() + 60
            while not _port_open(ip, self.layout.api_port):
                if proc.poll() is not None:
                    text = (self.layout.directory / name / "api.log").read_text(errors="replace")
                    if "not implemented yet" in text:
                        return  # no API in this build: the demo runs without it
                    raise DemoError(f"rbd-target-api of {name} exited ({proc.returncode}):\n{text[-3000:]}")
                if time.monotonic() > deadline:
                    proc.kill()
                    raise DemoError(f"rbd-target-api of {name} not listening on {ip}:{self.layout.api_port}")
                time.sleep(0.1)
            self.apis[name] = proc

    def _wait_logins(self, timeout: float = 60) -> None:
        from gateway.iscsi.chap import ChapSecret
        from gateway.iscsi.initiator import Initiator, LoginOutcome

        for name in self.layout.names:
            ip, port = self.gc.addresses[name]
            deadline = time.monotonic() + timeout
            while not _login_works(ip, port, Initiator(INITIATORS[0], TARGET_IQN, chap=ChapSecret(
                    CHAP_USER, CHAP_PASSWORD)), LoginOutcome):
                if time.monotonic() > deadline:
                    raise DemoError(f"no login through {name} ({ip}:{port}) within {timeout} s; "
                                    f"see {self.gc.gateways[name].log_path}")
                time.sleep(0.2)

    # ---- status -------------------------------------------------------------------------
    def status(self, running: bool | None = None) -> dict[str, Any]:
        saved = self.read_state() or {}
        pids = {g["name"]: g.get("pid") for g in saved.get("gateways", [])}
        api_pids = saved.get("api_pids", {})
        for name, gw in self.gc.gateways.items():
            if gw.pid is not None:
                pids[name] = gw.pid
        for name, proc in self.apis.items():
            api_pids[name] = proc.pid if isinstance(proc, subprocess.Popen) else proc
        if running is None:
            running = bool(pids) and all(pid_alive(p) for p in pids.values() if p)
        api_urls = {n: f"http://{self.gc.addresses[n][0]}:{self.layout.api_port}" if n in api_pids else None
                    for n in self.layout.names}
        first = self.layout.names[0]
        return {
            "running": running,
            "ceph_conf": str(self.cluster.conf_path),
            "keyring": str(self.cluster.admin_keyring),
            "cfg": str(self.gc.cfg_path(first)),
            "api_url": api_urls[first],
            "api_user": API_USER,
            "api_password": API_PASSWORD,
            "target_iqn": TARGET_IQN,
            "portals": [self.gc.portal(n) for n in self.layout.names],
            "gateways": [{"name": n, "portal": self.gc.portal(n), "pid": pids.get(n),
                          "api_url": api_urls[n], "cfg": str(self.gc.cfg_path(n)),
                          "metrics_url": self._metrics_url(n), "log": str(self.gc.gateways[n].log_path)}
                         for n in self.layout.names],
            "initiators": [{"iqn": iqn, "chap_user": CHAP_USER, "chap_password": CHAP_PASSWORD}
                           for iqn in INITIATORS],
            "luns": [{"lun": 0, "pool": POOL, "image": IMAGE, "size": SIZE}],
            "api_pids": api_pids,
            "cluster_dir": str(self.cluster.dir),
        }

    def _metrics_url(self, name: str) -> str:
        info = self.gc.gateways[name].ready() or {}
        return f"http://{info['metrics']}/metrics" if info.get("metrics") else ""

    def read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.layout.state_path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    # ---- down ---------------------------------------------------------------------------
    def stop_processes(self) -> None:
        """APIs, then gateways (SIGTERM: they drain), by the pids recorded here."""
        state = self.read_state() or {}
        procs = list(self.apis.values()) + list(state.get("api_pids", {}).values())
        for proc in procs:
            _terminate(proc)
        for gw in self.gc.gateways.values():
            if gw.proc is not None:
                gw.stop()
        for g in state.get("gateways", []):
            if g.get("pid"):
                _terminate(g["pid"])
        self.apis.clear()

    def down(self) -> None:
        self.stop_processes()
        self.gc.close()
        if self.owns_cluster:
            self.cluster.stop()
        self.layout.state_path.unlink(missing_ok=True)


# ---- helpers --------------------------------------------------------------------------------
def _port_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def _port_open(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=1):
            return True
    except OSError:
        return False


def _login_works(ip: str, port: int, ini: Any, outcome_type: type) -> bool:
    try:
        sock = socket.create_connection((ip, port), timeout=5)
    except OSError:
        return False
    with sock:
        ini.start_login()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            out = ini.data_to_send()
            if out:
                sock.sendall(out)
            while (ev := ini.next_event()) is not None:
                if isinstance(ev, outcome_type):
                    return ev.status == (0, 0)
            try:
                data = sock.recv(65536)
            except OSError:
                return False
            if not data:
                return False
            ini.receive_data(data)
    return False


def _terminate(proc: subprocess.Popen | int, timeout: float = 30) -> None:
    if isinstance(proc, subprocess.Popen):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return
    if not pid_alive(proc):
        return
    os.kill(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(proc):
        if time.monotonic() > deadline:
            os.kill(proc, signal.SIGKILL)
            break
        time.sleep(0.1)


def usage_text(state: dict[str, Any]) -> str:
    """How to use the running demo: iscsiadm, libiscsi, qemu, the API."""
    iqn, portal = state["target_iqn"], state["portals"][0]
    ini, user, pw = INITIATORS[0], CHAP_USER, CHAP_PASSWORD
    url = f"iscsi://{user}%{pw}@{portal}/{iqn}/0"
    ip, port = portal.rsplit(":", 1)
    opts = (f"driver=iscsi,transport=tcp,portal={portal},target={iqn},lun=0,initiator-name={ini},"
            f"user={user},password-secret=chap")
    gws = "\n".join(f"  {g['name']}: iSCSI {g['portal']}  pid {g['pid']}  metrics {g['metrics_url'] or '-'}"
                    f"  API {g['api_url'] or '-'}  log {g['log']}" for g in state["gateways"])
    api = (f"  curl -u {state['api_user']}:{state['api_password']} {state['api_url']}/api/config"
           if state["api_url"] else "  (the REST API is not implemented in this build)")
    node = f"iscsiadm -m node -T {iqn} -I demo"
    return f"""The demo is running.
{gws}
  target {iqn}, LUN 0 = {POOL}/{IMAGE} (1 GiB); initiators {INITIATORS[0]} and
  {INITIATORS[1]}, CHAP user {user} password {pw}
  ceph: --conf {state['ceph_conf']} --keyring {state['keyring']}; cfg: {state['cfg']}

libiscsi:
  iscsi-ls -s -i {ini} iscsi://{user}%{pw}@{portal}
  iscsi-inq -i {ini} {url}
  iscsi-test-cu --dataloss --test=SCSI.Inquiry {url}      # both of its initiator names are allowed
QEMU:
  qemu-img info --object secret,id=chap,data={pw} --image-opts {opts}
  qemu-system-x86_64 ... --object secret,id=chap,data={pw} -drive {opts},if=virtio
Linux open-iscsi (dm-multipath groups both portals; see docs/gateway.md for multipath.conf):
  iscsiadm -m iface -I demo -o new
  iscsiadm -m iface -I demo -o update -n iface.initiatorname -v {ini}
  iscsiadm -m discovery -t sendtargets -p {ip}:{port} -I demo
  {node} -o update -n node.session.auth.authmethod -v CHAP
  {node} -o update -n node.session.auth.username -v {user}
  {node} -o update -n node.session.auth.password -v {pw}
  {node} -l
REST API:
{api}
Metrics:
  curl {state['gateways'][0]['metrics_url'] or 'http://' + ip + ':9287/metrics'}
"""


def layout_of(args: argparse.Namespace) -> Layout:
    layout = Layout()
    if args.dir:
        layout.directory = Path(args.dir).resolve()
    if args.addresses:
        layout.addresses = tuple(a.strip() for a in args.addresses.split(",") if a.strip())
    for attr in ("port", "metrics_port", "api_port"):
        if getattr(args, attr) is not None:
            setattr(layout, attr, getattr(args, attr))
    if args.cluster_dir:
        layout.cluster_dir = Path(args.cluster_dir).resolve()
    if args.gateway_conf:
        layout.gateway_conf = args.gateway_conf
    layout.directory.mkdir(parents=True, exist_ok=True)
    return layout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    verbs = {"run": "run in the foreground until Ctrl-C", "up": "start detached; return once logins work",
             "down": "stop everything", "status": "show what runs and how to use it"}
    subs = {verb: sub.add_parser(verb, help=text) for verb, text in verbs.items()}
    subs["run"].add_argument("--once", action="store_true", help="stop right after printing")
    subs["status"].add_argument("--json", action="store_true", help="machine-readable")
    for p in subs.values():
        p.add_argument("--dir", help=argparse.SUPPRESS)
        p.add_argument("--addresses", help=argparse.SUPPRESS)
        p.add_argument("--port", type=int, help=argparse.SUPPRESS)
        p.add_argument("--metrics-port", type=int, help=argparse.SUPPRESS)
        p.add_argument("--api-port", type=int, help=argparse.SUPPRESS)
        p.add_argument("--cluster-dir", help=argparse.SUPPRESS)
        p.add_argument("--gateway-conf", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    demo = Demo(layout_of(args))
    if args.verb == "status":
        state = demo.status()
        print(json.dumps(state, indent=2) if args.json else
              (usage_text(state) if state["running"] else "The demo is not running (scripts/demo up)."))
        return 0 if state["running"] else 1
    if args.verb == "down":
        demo.down()
        print("The demo is stopped.")
        return 0
    stop = []
    if args.verb == "run":
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.append(True))
    try:
        state = demo.up(detach=args.verb == "up")
    except (DemoError, GatewayError, MiniClusterError) as e:
        print(f"demo: {e}", file=sys.stderr)
        if args.verb == "run":
            demo.down()
        return 1
    print(usage_text(state), flush=True)
    if args.verb == "up":
        return 0
    try:
        if not args.once:
            print("Press Ctrl-C to stop the demo.", flush=True)
            while not stop:
                signal.pause()
    finally:
        print("Stopping the demo...", flush=True)
        demo.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Demo", "DemoError", "GatewayProcess", "Layout", "main"]
