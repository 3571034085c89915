"""A throwaway single-node Ceph cluster that the project owns.

One mon, an optional mgr and one memstore OSD, all bound to 127.0.0.1 on ports
chosen for the cluster directory, cephx on, and everything (conf, keyrings,
data, logs, pids, admin sockets) under that directory.  Daemons are stopped by
the pids recorded here, never by name, so two clusters in two directories (and
any other Ceph on the machine) do not disturb each other.

Usage from Python::

    cluster = MiniCluster("/tmp/c1")
    cluster.start()            # creates on first use, < 10 s to a usable pool
    cluster.conf_path          # pass to rados.Rados(conffile=...)
    cluster.stop()
    cluster.destroy()

or from the shell: ``scripts/minicluster start|stop|status|destroy DIR``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

MON_ID = "a"
OSD_ID = 0
MGR_ID = "x"
DEFAULT_POOL = "rbd"
# Ports are taken from this window; each cluster takes a block of PORT_BLOCK.
PORT_FIRST = 16800
PORT_LAST = 29999
PORT_BLOCK = 40
MEMSTORE_BYTES = 4 << 30


class MiniClusterError(RuntimeError):
    """The cluster could not be created, started or queried."""


@dataclass(frozen=True)
class ClusterStatus:
    running: dict[str, int | None]  # daemon name -> pid (None when not running)
    healthy: bool
    conf_path: str

    def as_dict(self) -> dict:
        return {"running": self.running, "healthy": self.healthy, "conf": self.conf_path}


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still answers kill(0); look at its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class MiniCluster:
    """A single-node Ceph cluster living entirely under ``directory``."""

    def __init__(self, directory: str | os.PathLike, *, with_mgr: bool = False,
                 pool: str = DEFAULT_POOL, die_with_parent: bool = False) -> None:
        self.dir = Path(directory).resolve()
        self.with_mgr = with_mgr
        self.pool = pool
        # For a cluster owned by a test run: its daemons get SIGTERM when the process that
        # started them dies, so an interrupted run leaves nothing behind.
        self.die_with_parent = die_with_parent
        self._log_start: dict[str, int] = {}  # stderr offset where each daemon's run began

    # ---- paths -----------------------------------------------------------------
    @property
    def conf_path(self) -> Path:
        return self.dir / "ceph.conf"

    @property
    def admin_keyring(self) -> Path:
        return self.dir / "ceph.client.admin.keyring"

    @property
    def _state_path(self) -> Path:
        return self.dir / "cluster.json"

    def _pid_path(self, name: str) -> Path:
        return self.dir / "run" / f"{name}.pid"

    def _daemons(self) -> list[str]:
        names = [f"mon.{MON_ID}", f"osd.{OSD_ID}"]
        if self.with_mgr or self._state().get("with_mgr"):
            names.append(f"mgr.{MGR_ID}")
        return names

    def _state(self) -> dict:
        try:
            return json.loads(self._state_path.read_text())
        except FileNotFoundError:
            return {}

    @property
    def mon_port(self) -> int:
        return int(self._state()["mon_port"])

    # ---- public verbs ------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        """Create the cluster if needed, start every daemon, wait for the pool.

        On failure the daemons this call started are stopped again, and the error says why
        (with the log of this start only, not of earlier runs).
        """
        deadline = time.monotonic() + timeout
        started: list[str] = []
        try:
            self._start(deadline, started)
        except BaseException:
            self._stop_started(started)
            raise

    def _start(self, deadline: float, started: list[str]) -> None:
        if not self._state_path.exists():
            self._create()
        elif self.with_mgr and not self._state().get("with_mgr"):
            state = self._state()
            state["with_mgr"] = True
            self._state_path.write_text(json.dumps(state))
        self._forget_dead()
        self._start_daemon(f"mon.{MON_ID}", started)
        self._wait_mon(deadline)
        if not self._state().get("osd_created"):
            self._create_osd()
        self._start_daemon(f"osd.{OSD_ID}", started)
        if f"mgr.{MGR_ID}" in self._daemons():
            self._ensure_mgr_key()
            self._start_daemon(f"mgr.{MGR_ID}", started)
        self._wait_osd_up(deadline)
        if not self._state().get("pool_created"):
            self._create_pool(deadline)
        try:
            self._wait_pool_usable(deadline)
        except MiniClusterError as e:
            if self._state().get("osd_created") and f"osd.{OSD_ID}" in started:
                raise MiniClusterError(
                    f"{e}. The OSD keeps its data in memory (memstore) and saves it only when "
                    f"stopped cleanly: if it was killed (kill -9, a crash, the machine or session "
                    f"ending), the pool's data is gone. Run `scripts/minicluster destroy "
                    f"{self.dir}` and start again.") from e
            raise

    def _forget_dead(self) -> None:
        """Drop the pid files of daemons that are no longer running (killed, not stopped)."""
        for name in self._daemons():
            pid = self._read_pid(name)
            if pid is not None and not pid_alive(pid):
                _reap(pid)
                self._pid_path(name).unlink(missing_ok=True)

    def _stop_started(self, started: list[str], timeout: float = 10.0) -> None:
        """SIGTERM first: a memstore OSD saves its data only on a clean stop."""
        pids = {name: pid for name in reversed(started) if (pid := self._read_pid(name)) is not None}
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids.values():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + timeout
            while any(pid_alive(p) for p in pids.values()) and time.monotonic() < deadline:
                for p in pids.values():
                    _reap(p)
                time.sleep(0.05)
        for name, pid in pids.items():
            _reap(pid)
            self._pid_path(name).unlink(missing_ok=True)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the daemons of this cluster by their recorded pids."""
        for name in reversed(self._daemons()):
            pid = self._read_pid(name)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for name in reversed(self._daemons()):
            pid = self._read_pid(name)
            if pid is None:
                continue
            while pid_alive(pid) and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.05)
            if pid_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                for _ in range(100):
                    _reap(pid)
                    if not pid_alive(pid):
                        break
                    time.sleep(0.02)
            _reap(pid)
            self._pid_path(name).unlink(missing_ok=True)

    def destroy(self) -> None:
        """Stop the cluster and remove its directory."""
        if self.dir.exists():
            self.stop()
            shutil.rmtree(self.dir)

    def status(self) -> ClusterStatus:
        running = {}
        for name in self._daemons():
            pid = self._read_pid(name)
            running[name] = pid if pid is not None and pid_alive(pid) else None
        healthy = False
        if all(running.values()) and running:
            try:
                self.ceph("osd", "pool", "ls", timeout=10)
                healthy = True
            except MiniClusterError:
                healthy = False
        return ClusterStatus(running, healthy, str(self.conf_path))

    def env(self) -> dict[str, str]:
        """Environment for ceph/rbd/rados command-line tools aimed at this cluster."""
        env = dict(os.environ)
        env["CEPH_CONF"] = str(self.conf_path)
        env["CEPH_ARGS"] = f"--conf {self.conf_path} --keyring {self.admin_keyring}"
        return env

    def ceph(self, *args: str, timeout: float = 30.0) -> str:
        return self._tool("ceph", *args, timeout=timeout)

    def rbd(self, *args: str, timeout: float = 60.0) -> str:
        return self._tool("rbd", *args, timeout=timeout)

    def rados_connect(self, name: str = "client.admin", op_timeout: float | None = None):
        """A connected ``rados.Rados`` handle (caller shuts it down)."""
        import rados

        conf = {"keyring": str(self.admin_keyring)}
        if op_timeout is not None:
            conf["rados_osd_op_timeout"] = str(op_timeout)
        cluster = rados.Rados(conffile=str(self.conf_path), name=name, conf=conf)
        cluster.connect(timeout=10)
        return cluster

    # ---- creation ------------------------------------------------------------------
    def _create(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for sub in ("run", "log", "mon", "osd", "mgr"):
            (self.dir / sub).mkdir(exist_ok=True)
        ports = self._allocate_ports()
        fsid = str(uuid.uuid4())
        self._write_conf(fsid, ports)
        self._authtool("--create-keyring", str(self.dir / "mon.keyring"), "--gen-key",
                       "-n", "mon.", "--cap", "mon", "allow *")
        self._authtool("--create-keyring", str(self.admin_keyring), "--gen-key",
                       "-n", "client.admin", "--cap", "mon", "allow *", "--cap", "osd",
                       "allow *", "--cap", "mds", "allow *", "--cap", "mgr", "allow *")
        self._authtool(str(self.dir / "mon.keyring"), "--import-keyring", str(self.admin_keyring))
        monmap = self.dir / "monmap"
        _run(["monmaptool", "--create", "--clobber", "--fsid", fsid,
              "--addv", MON_ID, f"[v2:127.0.0.1:{ports['mon']}]", str(monmap)])
        _run(["ceph-mon", "--conf", str(self.conf_path), "--mkfs", "-i", MON_ID,
              "--monmap", str(monmap), "--keyring", str(self.dir / "mon.keyring")])
        self._state_path.write_text(json.dumps({
            "fsid": fsid, "mon_port": ports["mon"], "port_min": ports["min"],
            "port_max": ports["max"], "with_mgr": self.with_mgr,
        }))

    def _allocate_ports(self) -> dict[str, int]:
        """Pick a free block of ports, starting at a place derived from the directory."""
        span = (PORT_LAST - PORT_FIRST) // PORT_BLOCK
        start = hash_dir(self.dir) % span
        for i in range(span):
            base = PORT_FIRST + ((start + i) % span) * PORT_BLOCK
            block = range(base, base + PORT_BLOCK)
            if all(_port_free(p) for p in block):
                return {"mon": base, "min": base + 1, "max": base + PORT_BLOCK - 1}
        raise MiniClusterError("no free block of ports for the mini cluster")

    def _write_conf(self, fsid: str, ports: dict[str, int]) -> None:
        d = self.dir
        conf = f"""[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{ports['mon']}]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind port min = {ports['min']}
ms bind port max = {ports['max']}
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = {d}/ceph.$name.keyring
run dir = {d}/run
admin socket = {d}/run/$cluster-$name.asok
log file = {d}/log/$name.log
pid file = {d}/run/$name.daemon.pid
crash dir = {d}/log/crash
log to stderr = false
err to stderr = true
mon cluster log file = {d}/log/cluster.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
paxos propose interval = 0.05
mon osd down out interval = 0
rbd default features = 61
rbd cache = false
debug ms = 0

[client]
# Many clients (tests, gateways, fio, tgtd) share this conf: no shared admin socket path,
# and no per-client log files piling up.
admin socket =
log file =

[mon]
mon data = {d}/mon/$name
mon initial members = {MON_ID}

[osd]
osd data = {d}/osd/$name
osd objectstore = memstore
memstore device bytes = {MEMSTORE_BYTES}
osd max object name len = 256
osd max object namespace len = 64
osd fast shutdown = false
osd op num shards = 1
osd op num threads per shard = 2

[mgr]
mgr data = {d}/mgr/$name
mgr initial modules =
"""
        self.conf_path.write_text(conf)

    def _create_osd(self) -> None:
        osd_uuid = str(uuid.uuid4())
        osd_dir = self.dir / "osd" / f"osd.{OSD_ID}"
        osd_dir.mkdir(parents=True, exist_ok=True)
        keyring = self.dir / f"ceph.osd.{OSD_ID}.keyring"
        self._authtool("--create-keyring", str(keyring), "--gen-key", "-n", f"osd.{OSD_ID}")
        key = _run(["ceph-authtool", str(keyring), "-p", "-n", f"osd.{OSD_ID}"]).strip()
        secrets = self.dir / "osd-secrets.json"
        secrets.write_text(json.dumps({"cephx_secret": key}))
        try:
            self.ceph("osd", "new", osd_uuid, "-i", str(secrets))
        finally:
            secrets.unlink(missing_ok=True)
        _run(["ceph-osd", "--conf", str(self.conf_path), "-i", str(OSD_ID), "--mkfs",
              "--osd-uuid", osd_uuid, "--keyring", str(keyring)])
        self.ceph("osd", "crush", "add", f"osd.{OSD_ID}", "1.0", "host=localhost", "root=default")
        self._update_state(osd_created=True)

    def _ensure_mgr_key(self) -> None:
        keyring = self.dir / f"ceph.mgr.{MGR_ID}.keyring"
        if keyring.exists():
            return
        (self.dir / "mgr" / f"mgr.{MGR_ID}").mkdir(parents=True, exist_ok=True)
        out = self.ceph("auth", "get-or-create", f"mgr.{MGR_ID}", "mon", "allow profile mgr",
                        "osd", "allow *", "mds", "allow *")
        keyring.write_text(out if out.endswith("\n") else out + "\n")

    def _create_pool(self, deadline: float) -> None:
        self.ceph("osd", "pool", "create", self.pool, "8", "8")
        self.ceph("osd", "pool", "set", self.pool, "size", "1", "--yes-i-really-mean-it")
        self.ceph("osd", "pool", "application", "enable", self.pool, "rbd")
        self._update_state(pool_created=True)

    def _update_state(self, **kw) -> None:
        state = self._state()
        state.update(kw)
        self._state_path.write_text(json.dumps(state))

    # ---- daemons -------------------------------------------------------------------
    def _start_daemon(self, name: str, started: list[str] | None = None) -> None:
        pid = self._read_pid(name)
        if pid is not None and pid_alive(pid):
            return
        kind, ident = name.split(".", 1)
        cmd = [f"ceph-{kind}", "-f", "--conf", str(self.conf_path), "-i", ident]
        log = open(self.dir / "log" / f"{name}.stderr", "ab")
        self._log_start[name] = log.tell()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True, close_fds=True,
                                preexec_fn=_die_with_parent if self.die_with_parent else None)
        log.close()
        self._pid_path(name).write_text(str(proc.pid))
        if started is not None:
            started.append(name)

    def _read_pid(self, name: str) -> int | None:
        try:
            return int(self._pid_path(name).read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _wait_mon(self, deadline: float) -> None:
        self._wait(deadline, "the monitor to form a quorum",
                   lambda: self._try("quorum_status"))

    def _wait_osd_up(self, deadline: float) -> None:
        def up() -> bool:
            out = self._try("osd", "dump", "--format=json")
            if not out:
                return False
            osds = json.loads(out).get("osds", [])
            return any(o["osd"] == OSD_ID and o["up"] == 1 for o in osds)
        self._wait(deadline, f"osd.{OSD_ID} to come up", up)

    def _wait_pool_usable(self, deadline: float) -> None:
        """A write and a read of an object in the pool both succeed."""
        def usable() -> bool:
            try:
                # A bounded op: a cluster whose OSD lost its PGs must fail, not hang.
                r = self.rados_connect(op_timeout=5)
            except Exception:
                return False
            try:
                with r.open_ioctx(self.pool) as io:
                    io.write_full("minicluster.probe", b"ok")
                    return io.read("minicluster.probe") == b"ok"
            except Exception:
                return False
            finally:
                r.shutdown()
        self._wait(deadline, f"pool {self.pool} to accept I/O", usable)
        if not self._state().get("rbd_initialised"):
            self.rbd("pool", "init", self.pool)
            self._update_state(rbd_initialised=True)

    def _wait(self, deadline: float, what: str, probe) -> None:
        while True:
            self._check_daemons_alive(what)
            if probe():
                return
            if time.monotonic() > deadline:
                raise MiniClusterError(f"timed out waiting for {what} (logs in {self.dir / 'log'})")
            time.sleep(0.1)

    def _check_daemons_alive(self, what: str) -> None:
        for name in self._daemons():
            pid = self._read_pid(name)
            if pid is not None and not pid_alive(pid):
                _reap(pid)
                err = (self.dir / "log" / f"{name}.stderr")
                text = err.read_bytes()[self._log_start.get(name, 0):] if err.exists() else b""
                tail = text.decode(errors="replace")[-2000:]
                raise MiniClusterError(f"{name} exited while waiting for {what}: {tail}")

    # ---- tools ---------------------------------------------------------------------
    def _try(self, *args: str) -> str | None:
        try:
            return self.ceph(*args, "--connect-timeout", "3", timeout=5)
        except MiniClusterError:
            return None

    def _tool(self, tool: str, *args: str, timeout: float) -> str:
        cmd = [tool, "--conf", str(self.conf_path), "--keyring", str(self.admin_keyring), *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise MiniClusterError(f"{tool} {' '.join(args)}: timed out after {timeout}s") from e
        if proc.returncode != 0:
            raise MiniClusterError(f"{tool} {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def _authtool(self, *args: str) -> None:
        _run(["ceph-authtool", *args])


def hash_dir(path: Path) -> int:
    """A stable (process-independent) number for a directory path."""
    h = 2166136261
    for b in str(path).encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise MiniClusterError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (Linux prctl PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
