"""fio with the libiscsi engine, and running fio jobs.

Debian's fio is built without the libiscsi engine, so we rebuild Debian's own fio source
package (same version as the installed binary) with ``--enable-libiscsi`` and cache the
binary under ``~/.cache/ceph-rbd-iscsi-gateway/``.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

FIO_VERSION = "3.33"
FIO_DEBIAN_REV = "3"
POOL_URL = "http://deb.debian.org/debian/pool/main/f/fio"
# The initiator name fio's libiscsi engine logs in with (fixed in its source).
FIO_INITIATOR = "iqn.2019-04.org.fio:fio"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ceph-rbd-iscsi-gateway"


class FioError(RuntimeError):
    pass


def fio_with_libiscsi() -> Path:
    """Path of a fio binary that has the libiscsi and rbd engines (built once, cached)."""
    out_dir = CACHE / f"fio-{FIO_VERSION}-{FIO_DEBIAN_REV}-libiscsi"
    binary = out_dir / "fio"
    if binary.exists():
        return binary
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if binary.exists():
            return binary
        with tempfile.TemporaryDirectory(prefix="fio-build-") as tmp:
            _build(Path(tmp), binary)
    return binary


def _build(tmp: Path, dest: Path) -> None:
    base = f"fio_{FIO_VERSION}"
    files = [f"{base}-{FIO_DEBIAN_REV}.dsc", f"{base}.orig.tar.gz", f"{base}.orig.tar.gz.asc",
             f"{base}-{FIO_DEBIAN_REV}.debian.tar.xz"]
    for f in files:
        _run(["curl", "-sSfL", "--retry", "3", "-o", str(tmp / f), f"{POOL_URL}/{f}"], tmp)
    _run(["dpkg-source", "--no-check", "-x", files[0], "src"], tmp)
    src = tmp / "src"
    _run(["./configure", "--enable-libiscsi", "--disable-native"], src)
    _run(["make", f"-j{os.cpu_count() or 2}", "fio"], src)
    check = subprocess.run([str(src / "fio"), "--enghelp"], capture_output=True, text=True)
    if "libiscsi" not in check.stdout or "rbd" not in check.stdout:
        raise FioError("the rebuilt fio lacks the libiscsi or rbd engine")
    shutil.copy2(src / "fio", dest.with_suffix(".tmp"))
    os.replace(dest.with_suffix(".tmp"), dest)


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FioError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def iscsi_filename(host: str, port: int, iqn: str, lun: int) -> str:
    """fio's libiscsi filename: colons are fio's file separator and must be escaped."""
    return f"iscsi\\://{host}\\:{port}/{iqn.replace(':', chr(92) + ':')}/{lun}"


@dataclass(frozen=True)
class Workload:
    name: str
    rw: str
    bs: str
    iodepth: int
    rwmixread: int | None = None

    def fio_args(self) -> list[str]:
        args = [f"--rw={self.rw}", f"--bs={self.bs}", f"--iodepth={self.iodepth}"]
        if self.rwmixread is not None:
            args.append(f"--rwmixread={self.rwmixread}")
        return args


WORKLOADS = (
    Workload("rr4k32", "randread", "4k", 32),
    Workload("rw4k32", "randwrite", "4k", 32),
    Workload("rr4k1", "randread", "4k", 1),
    Workload("rw64k16", "randrw", "64k", 16, 70),
    Workload("sw1m8", "write", "1M", 8),
    Workload("sr1m8", "read", "1M", 8),
)
BY_NAME = {w.name: w for w in WORKLOADS}


@dataclass
class FioResult:
    iops: float
    mbps: float  # MB/s (10^6 bytes)
    lat_mean_us: float
    lat_p99_us: float
    bytes: int
    fio_cpu_s: float = 0.0  # CPU seconds of fio itself (the client: librbd or libiscsi)


def run_job(fio: Path, engine_args: list[str], workload: Workload, runtime: float,
            size: int, env: dict[str, str] | None = None, ramp: float = 1.0) -> FioResult:
    """Run one fio job and return its aggregate (read + write) figures."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [str(fio), "--name=bench", *engine_args, *workload.fio_args(),
               "--time_based", f"--runtime={runtime}s", f"--ramp_time={ramp}s",
               f"--size={size}", "--norandommap", "--randrepeat=0", "--direct=1",
               "--group_reporting", "--output-format=json", f"--output={out.name}"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=runtime + ramp + 60)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise FioError(f"fio failed ({' '.join(cmd)}): {proc.stderr[-2000:]}")
        data = json.loads(Path(out.name).read_text())
    job = data["jobs"][0]
    if job.get("error"):
        raise FioError(f"fio job error {job['error']}: {proc.stderr[-1000:]}")
    out = _aggregate(job)
    # fio's own usr/sys figures count only its job thread; librbd's threads in fio's process
    # (the rbd path's client work) show up in the children's rusage.
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out.fio_cpu_s = total
    return out


def prefill(fio: Path, engine_args: list[str], size: int, env: dict[str, str] | None = None) -> None:
    """Rewrite the whole device sequentially (memstore reads a randomly written image slowly)."""
    cmd = [str(fio), "--name=prefill", *engine_args, "--rw=write", "--bs=1M", "--iodepth=8",
           f"--size={size}", "--direct=1", "--output-format=terse"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise FioError(f"prefill failed: {proc.stderr[-2000:]}")


def _aggregate(job: dict) -> FioResult:
    iops = mbps = 0.0
    total = 0
    lat_weighted = 0.0
    p99 = 0.0
    for d in ("read", "write"):
        part = job[d]
        n = part["total_ios"]
        if not n:
            continue
        iops += part["iops"]
        mbps += part["bw_bytes"] / 1e6
        total += part["io_bytes"]
        lat_weighted += part["lat_ns"]["mean"] * n
        pct = part["clat_ns"].get("percentile", {})
        p99 = max(p99, pct.get("99.000000", 0.0))
    n_all = job["read"]["total_ios"] + job["write"]["total_ios"]
    return FioResult(iops=iops, mbps=mbps, lat_mean_us=(lat_weighted / n_all / 1000) if n_all else 0,
                     lat_p99_us=p99 / 1000, bytes=total)
