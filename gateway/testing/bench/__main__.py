"""``scripts/bench``: run the same fio jobs against every path, interleaved, and report.

    scripts/bench --quick                 # < 5 minutes, one repetition, short cells
    scripts/bench --json results.json     # figures and ratios as JSON
    scripts/bench --chart docs/performance.png
    scripts/bench --scale --json scale.json   # 64 LUNs x 16 sessions, config propagation

Every cell (one workload on one path) is preceded by a sequential rewrite of its image
(memstore reads a randomly written image at half speed), and the cells run interleaved:
rep 1 (all workloads x all paths), rep 2, ...; the table shows medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from gateway.testing.bench import fio as fiomod
from gateway.testing.bench import paths as pathmod
from gateway.testing.bench.report import ratios, render_table, write_chart
from gateway.testing.minicluster import MiniCluster

ALL_PATHS = ("rbd", "gateway", "tgt", "gateway-mem", "tgt-shm")
MEDIAN_KEYS = ("iops", "mbps", "lat_mean_us", "lat_p99_us", "server_cpu_s", "osd_cpu_s", "fio_cpu_s",
               "bytes", "server_rss", "server_rss_peak", "load1", "server_cores", "osd_cores", "fio_cores")


def build_paths(names: list[str]) -> list[pathmod.BenchPath]:
    made = []
    for name in names:
        if name == "rbd":
            made.append(pathmod.RbdDirect())
        elif name == "tgt":
            made.append(pathmod.TgtRbd(port=3271, control_port=41))
        elif name == "tgt-shm":
            made.append(pathmod.TgtShm(port=3272, control_port=42))
        elif name in ("gateway", "gateway-mem"):
            from gateway.testing.bench.gateway_paths import GatewayPath

            made.append(GatewayPath(memory=(name == "gateway-mem")))
        else:
            raise SystemExit(f"unknown path {name!r}; choose from {', '.join(ALL_PATHS)}")
    return made


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short cells, one repetition (< 5 min)")
    p.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default 3; quick 1)")
    p.add_argument("--runtime", type=float, default=None, help="seconds per cell (default 15; quick 4)")
    p.add_argument("--ramp", type=float, default=None, help="fio ramp seconds per cell (default 2; quick 1)")
    p.add_argument("--paths", default=",".join(ALL_PATHS), help="comma-separated paths")
    p.add_argument("--workloads", default=",".join(fiomod.BY_NAME), help="comma-separated workloads")
    p.add_argument("--image-size", default=None, help="image/LUN size (default 1G; quick 512M)")
    p.add_argument("--cluster", metavar="DIR", help="reuse (or create) the mini cluster in DIR")
    p.add_argument("--json", metavar="FILE", help="write every figure and the ratios as JSON")
    p.add_argument("--chart", metavar="PNG",
                   help="write a chart of the ratios (RBD paths to librbd, the protocol alone to tgt-shm)")
    p.add_argument("--scale", action="store_true",
                   help="instead: 64 LUNs x 16 sessions on one gateway, and config propagation")
    p.add_argument("--scale-luns", type=int, default=64)
    p.add_argument("--scale-sessions", type=int, default=16)
    p.add_argument("--scale-gateways", type=int, default=3, help="gateways for the propagation test")
    p.add_argument("--scale-changes", type=int, default=100)
    p.add_argument("--hold", metavar="SECONDS", type=float, default=0,
                   help="after setup, keep the paths up this long (to attach a profiler), then run")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    own_cluster = args.cluster is None
    cluster = MiniCluster(args.cluster or workdir / "cluster")
    t_start = time.monotonic()
    cluster.start()
    try:
        if args.scale:
            from gateway.testing.bench.scale import run_scale

            result = run_scale(cluster, workdir, args)
        else:
            result = run_matrix(cluster, workdir, args)
    finally:
        if own_cluster:
            cluster.destroy()
    result["config"]["elapsed_s"] = round(time.monotonic() - t_start, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.scale:
        from gateway.testing.bench.scale import render_scale

        print(render_scale(result))
        return 0
    print(render_table(result))
    if args.chart:
        write_chart(result, Path(args.chart))
    return 0


def run_matrix(cluster: MiniCluster, workdir: Path, args: argparse.Namespace) -> dict:
    reps = args.reps or (1 if args.quick else 3)
    runtime = args.runtime or (4.0 if args.quick else 15.0)
    ramp = args.ramp if args.ramp is not None else (1.0 if args.quick else 2.0)
    size = _size(args.image_size or ("512M" if args.quick else "1G"))
    workloads = [fiomod.BY_NAME[w] for w in args.workloads.split(",")]
    path_names = args.paths.split(",")
    fio = fiomod.fio_with_libiscsi()
    ctx = pathmod.Context(cluster=cluster, workdir=workdir, image_size=size)
    paths = build_paths(path_names)
    cells = []
    load = {"start": pathmod.loadavg()}
    try:
        for path in paths:
            path.setup(ctx)
            print(f"  {path.name}: {path.description}", flush=True)
        if args.hold:
            pids = {p.name: p.server_pids() for p in paths}
            print(f"  holding {args.hold:.0f} s; server pids {pids}", flush=True)
            time.sleep(args.hold)
        osd_pid = cluster._read_pid("osd.0")
        for rep in range(reps):
            for wl in workloads:
                for path in paths:
                    fiomod.prefill(fio, path.prefill_args(), size, env=path.env())
                    cell = run_cell(fio, path, wl, runtime, ramp, size, osd_pid)
                    cell["rep"] = rep
                    cells.append(cell)
                    print(f"  rep {rep + 1}/{reps} {wl.name:8} {path.name:12} "
                          f"{cell['iops']:9.0f} IOPS {cell['mbps']:8.1f} MB/s "
                          f"mean {cell['lat_mean_us']:7.0f} us p99 {cell['lat_p99_us']:7.0f} us "
                          f"load {cell['load1']:.1f}", flush=True)
    finally:
        for path in paths:
            try:
                path.teardown()
            except Exception as e:  # tear the others down anyway
                print(f"  teardown of {path.name} failed: {e}", file=sys.stderr)
    load["end"] = pathmod.loadavg()
    medians = _medians(cells)
    return {
        "config": {"reps": reps, "runtime_s": runtime, "ramp_s": ramp, "image_size": size,
                   "rbd_cache": False,
                   "rbd_cache_note": "rbd cache = false in the mini cluster's ceph.conf for every client "
                                     "(fio rbd engine, tgtd bs_rbd, the gateway, which also forces it)",
                   "prefill": "sequential 1M rewrite of the whole image before every cell",
                   "workloads": [w.name for w in workloads], "paths": path_names,
                   "fio": str(fio), "cpus": pathmod.cpu_count()},
        "load_average": load,
        "paths": {p.name: p.description for p in paths},
        "cells": cells, "medians": medians, **ratios(medians),
    }


def run_cell(fio, path: pathmod.BenchPath, wl: fiomod.Workload, runtime: float, ramp: float, size: int,
             osd_pid: int | None) -> dict:
    pids = path.server_pids()
    before = {pid: pathmod.cpu_seconds(pid) for pid in pids}
    osd_before = pathmod.cpu_seconds(osd_pid) if osd_pid else 0.0
    load1 = pathmod.loadavg()[0]
    t0 = time.monotonic()
    res = fiomod.run_job(fio, path.engine_args(), wl, runtime, size, env=path.env(), ramp=ramp)
    wall = time.monotonic() - t0
    # CPU over the whole fio run (start, login, ramp included) as cores busy, scaled to the
    # measured runtime: the steady state dominates, so this is CPU per measured I/O.
    server = sum(pathmod.cpu_seconds(pid) - t for pid, t in before.items())
    osd = (pathmod.cpu_seconds(osd_pid) - osd_before) if osd_pid else 0.0
    res.fio_cpu_s = res.fio_cpu_s / wall * runtime
    return {"path": path.name, "workload": wl.name, **res.__dict__, "fio_cores": res.fio_cpu_s / runtime,
            "server_cpu_s": server / wall * runtime, "osd_cpu_s": osd / wall * runtime,
            "server_cores": server / wall, "osd_cores": osd / wall, "wall_s": wall,
            "server_rss": max((pathmod.rss_bytes(p) for p in pids), default=0),
            "server_rss_peak": max((pathmod.rss_bytes(p, "VmHWM") for p in pids), default=0),
            "load1": load1}


def _medians(cells: list[dict]) -> dict:
    out: dict[str, dict[str, dict]] = {}
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["path"], c["workload"]), []).append(c)
    for (path, wl), cs in groups.items():
        out.setdefault(path, {})[wl] = {k: statistics.median(c[k] for c in cs) for k in MEDIAN_KEYS}
    return out


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


if __name__ == "__main__":
    sys.exit(main())
