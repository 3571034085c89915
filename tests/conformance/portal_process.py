"""Run ``python -m gateway.portal`` as a child process on a 127.0.4.x address and a free port."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IQN = "iqn.2003-01.org.ceph.iscsi-gw:ramdisk"
# Where scripts/build-libiscsi-test-tool (run by install-deps) puts libiscsi 1.20's binary.
LIBISCSI_TEST_CU = os.environ.get("LIBISCSI_TEST_CU") or str(
    Path(os.environ.get("LIBISCSI_TEST_DIR")
         or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
         / "ceph-rbd-iscsi-gw/libiscsi-test-tool") / "iscsi-test-cu")


@dataclass
class Portal:
    ip: str
    port: int
    iqn: str
    proc: subprocess.Popen
    log_path: Path

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    def url(self, lun: int = 0, user: str | None = None, password: str | None = None) -> str:
        cred = f"{user}%{password}@" if user else ""
        return f"iscsi://{cred}{self.address}/{self.iqn}/{lun}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_portal(ip: str, *args: str, iqn: str = IQN):
    """Start a portal; on exit stop it and check it never crashed (no traceback, still alive)."""
    with tempfile.TemporaryDirectory(prefix="portal-") as tmp:
        log_path = Path(tmp) / "portal.log"
        with open(log_path, "w") as log_file:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.portal", "--listen", f"{ip}:0", "--target", iqn, *args],
                cwd=ROOT, stdout=subprocess.PIPE, stderr=log_file, text=True)
        try:
            line = proc.stdout.readline()
            m = re.match(r"listening on (\S+):(\d+) ", line)
            if not m:
                raise RuntimeError(f"portal did not start: {line!r}\n{log_path.read_text()}")
            portal = Portal(ip, int(m.group(2)), iqn, proc, log_path)
            yield portal
            assert proc.poll() is None, f"the portal died:\n{portal.log()[-3000:]}"
            assert "Traceback" not in portal.log(), portal.log()[-3000:]
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
