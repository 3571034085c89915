"""A private tgtd (the Linux SCSI target framework) as a peer target for tests.

tgt is the reference the project compares itself with, and the target that proves
test harnesses before our own portal exists.  Each ``TgtTarget`` runs its own tgtd on
its own control port (``tgtd -f -C N``), so other tgtds on the machine are never
touched; it is stopped through that control port (tgtd ignores SIGTERM) and, failing
that, by SIGKILL of the pid recorded here.  Note: tgt has no ALUA (TPGS=0, REPORT
TARGET PORT GROUPS is rejected).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CONTROL_PORTS = range(600, 700)
CONTROL_DIR = "/var/run/tgtd"


class TgtError(RuntimeError):
    """tgtd did not start or refused a command."""


def _control_port_in_use(port: int) -> bool:
    """A running tgtd holds the flock of its control socket's lock file."""
    try:
        fd = os.open(f"{CONTROL_DIR}/socket.{port}.lock", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _die_with_parent() -> None:
    """Runs in the child before exec: tgtd gets SIGKILL if the test process dies."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG


def free_port(ip: str) -> int:
    """A TCP port that is free on ``ip`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class TgtLun:
    lun: int
    path: Path
    size: int


class TgtTarget:
    """One tgtd exporting one target with file-backed LUNs through several portals."""

    def __init__(self, workdir: str | os.PathLike, iqn: str, portals: list[tuple[str, int]], *,
                 backing_dir: str | os.PathLike = "/dev/shm") -> None:
        if not portals:
            raise ValueError("at least one portal")
        self.dir = Path(workdir)
        self.iqn = iqn
        self.portals = list(portals)
        self.backing_dir = Path(backing_dir)
        self.control_port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.luns: list[TgtLun] = []

    def tgtadm(self, *args: str, timeout: float = 30.0) -> str:
        """Run ``tgtadm -C <our port> --lld iscsi ARGS``."""
        cmd = ["tgtadm", "-C", str(self.control_port), "--lld", "iscsi", *args]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise TgtError(f"{' '.join(cmd)} timed out") from e
        if p.returncode != 0:
            raise TgtError(f"{' '.join(cmd)}: {p.stderr.strip() or p.stdout.strip()}")
        return p.stdout

    def start(self, timeout: float = 20.0) -> None:
        """Start tgtd on the first portal, add the others and the target."""
        self.dir.mkdir(parents=True, exist_ok=True)
        first = f"{self.portals[0][0]}:{self.portals[0][1]}"
        ports = list(CONTROL_PORTS)
        random.shuffle(ports)
        for port in ports[:10]:
            if _control_port_in_use(port):
                continue
            self.control_port = port
            log = open(self.dir / f"tgtd-{port}.log", "wb")
            self.proc = subprocess.Popen(["tgtd", "-f", "-C", str(port), "--iscsi", f"portal={first}"],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=_die_with_parent)
            log.close()
            if self._wait_ready(time.monotonic() + timeout):
                break
            self._kill()
        else:
            raise TgtError(f"tgtd did not start (logs in {self.dir})")
        for ip, port in self.portals[1:]:
            self.tgtadm("--op", "new", "--mode", "portal", "--param", f"portal={ip}:{port}")
        self.tgtadm("--op", "new", "--mode", "target", "--tid", "1", "-T", self.iqn)
        self.tgtadm("--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL")

    def _wait_ready(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                self.tgtadm("--op", "show", "--mode", "system", timeout=5)
                return True
            except TgtError:
                time.sleep(0.1)
        return False

    def add_lun(self, size: int) -> TgtLun:
        """A new LUN (1, 2, ...) backed by a sparse file of ``size`` bytes."""
        lun = len(self.luns) + 1
        path = self.backing_dir / f"tgt-{os.getpid()}-{self.control_port}-lun{lun}.img"
        with open(path, "wb") as f:
            f.truncate(size)
        self.tgtadm("--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", str(lun),
                    "-b", str(path))
        entry = TgtLun(lun, path, size)
        self.luns.append(entry)
        return entry

    def require_chap(self, user: str, password: str) -> None:
        """Require CHAP (initiator authenticates) for logins to the target."""
        self.tgtadm("--op", "new", "--mode", "account", "--user", user, "--password", password)
        self.tgtadm("--op", "bind", "--mode", "account", "--tid", "1", "--user", user)

    def remove_portal(self, ip: str, port: int) -> None:
        """Stop listening on a portal (existing connections stay)."""
        self.tgtadm("--op", "delete", "--mode", "portal", "--param", f"portal={ip}:{port}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self) -> None:
        """Ask tgtd to exit through its control port; SIGKILL our pid if it does not.

        tgtd refuses to exit while it has targets, so the target goes first (--force:
        even with sessions).  tgtd leaves its control socket files behind; ours are removed.
        """
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.tgtadm("--op", "delete", "--mode", "target", "--tid", "1", "--force", timeout=10)
                self.tgtadm("--op", "delete", "--mode", "system", timeout=10)
            except TgtError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._kill()
        port = self.control_port
        if self.proc is not None and port is not None and not _control_port_in_use(port):
            for suffix in ("", ".lock"):
                Path(f"{CONTROL_DIR}/socket.{port}{suffix}").unlink(missing_ok=True)
        for lun in self.luns:
            lun.path.unlink(missing_ok=True)
        self.luns = []

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def __enter__(self) -> TgtTarget:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
