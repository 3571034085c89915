"""``scripts/bench``: run the same fio jobs against every path, interleaved, and report.

    scripts/bench --quick                 # < 5 minutes, one repetition, short cells
    scripts/bench --json results.json     # figures and ratios as JSON
    scripts/bench --chart docs/performance.png
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short cells, one repetition (< 5 min)")
    p.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default 3; quick 1)")
    p.add_argument("--runtime", type=float, default=None, help="seconds per cell (default 15; quick 4)")
    p.add_argument("--paths", default=",".join(ALL_PATHS), help="comma-separated paths")
    p.add_argument("--workloads", default=",".join(fiomod.BY_NAME), help="comma-separated workloads")
    p.add_argument("--image-size", default="1G", help="image/LUN size (default 1G; quick 512M)")
    p.add_argument("--cluster", metavar="DIR", help="reuse (or create) the mini cluster in DIR")
    p.add_argument("--json", metavar="FILE", help="write every figure and the ratios as JSON")
    p.add_argument("--chart", metavar="PNG", help="write a chart of the ratios to rbd")
    args = p.parse_args(argv)

    reps = args.reps or (1 if args.quick else 3)
    runtime = args.runtime or (4.0 if args.quick else 15.0)
    size = _size(args.image_size if not (args.quick and args.image_size == "1G") else "512M")
    workloads = [fiomod.BY_NAME[w] for w in args.workloads.split(",")]
    path_names = args.paths.split(",")

    fio = fiomod.fio_with_libiscsi()
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    own_cluster = args.cluster is None
    cluster = MiniCluster(args.cluster or workdir / "cluster")
    t_start = time.monotonic()
    cluster.start()
    ctx = pathmod.Context(cluster=cluster, workdir=workdir, image_size=size)
    paths = build_paths(path_names)
    cells = []
    try:
        for path in paths:
            path.setup(ctx)
        osd_pid = cluster._read_pid("osd.0")
        for rep in range(reps):
            for wl in workloads:
                for path in paths:
                    fiomod.prefill(fio, path.prefill_args(), size, env=path.env())
                    before = {pid: pathmod.cpu_seconds(pid) for pid in path.server_pids()}
                    osd_before = pathmod.cpu_seconds(osd_pid)
                    res = fiomod.run_job(fio, path.engine_args(), wl, runtime, size, env=path.env())
                    server_cpu = sum(pathmod.cpu_seconds(pid) - t for pid, t in before.items())
                    cell = {"path": path.name, "workload": wl.name, "rep": rep, **res.__dict__,
                            "server_cpu_s": server_cpu,
                            "osd_cpu_s": pathmod.cpu_seconds(osd_pid) - osd_before,
                            "server_rss": max((pathmod.rss_bytes(p) for p in path.server_pids()),
                                              default=0)}
                    cells.append(cell)
                    print(f"  rep {rep + 1}/{reps} {wl.name:8} {path.name:12} "
                          f"{res.iops:9.0f} IOPS {res.mbps:8.1f} MB/s "
                          f"mean {res.lat_mean_us:7.0f} us p99 {res.lat_p99_us:7.0f} us", flush=True)
    finally:
        for path in paths:
            path.teardown()
        if own_cluster:
            cluster.destroy()
    medians = _medians(cells)
    result = {
        "config": {"reps": reps, "runtime_s": runtime, "image_size": size, "rbd_cache": False,
                   "workloads": [w.name for w in workloads], "paths": path_names,
                   "fio": str(fio), "elapsed_s": round(time.monotonic() - t_start, 1)},
        "paths": {p.name: p.description for p in paths},
        "cells": cells, "medians": medians, **ratios(medians),
    }
    print(render_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.chart:
        write_chart(result, Path(args.chart))
    return 0


def _medians(cells: list[dict]) -> dict:
    out: dict[str, dict[str, dict]] = {}
    keys = ("iops", "mbps", "lat_mean_us", "lat_p99_us", "server_cpu_s", "osd_cpu_s", "bytes",
            "server_rss")
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["path"], c["workload"]), []).append(c)
    for (path, wl), cs in groups.items():
        out.setdefault(path, {})[wl] = {k: statistics.median(c[k] for c in cs) for k in keys}
    return out


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1].upper() in units else int(text)


if __name__ == "__main__":
    sys.exit(main())
