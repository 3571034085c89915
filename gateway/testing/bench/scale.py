"""``scripts/bench --scale``: many LUNs and sessions on one gateway, and config propagation.

1. *Scale*: one ``rbd-target-gw`` (RBD backend) is started on an empty config, then ONE
   commit defines a target, its portal, ``--scale-luns`` disks and LUNs and one ACL entry
   (with every LUN) per session initiator; we time commit -> applied, record the daemon's
   RSS empty / with the LUNs idle / under load, then ``scale_load`` (a small libiscsi
   program, ``scale_load.c``) logs in ``--scale-sessions`` sessions, each seeing every LUN
   through REPORT LUNS, and drives 4k random reads, then writes, on random LUNs from every
   session at once.  fio's libiscsi engine cannot do this: it opens one session per LUN.
2. *Propagation*: ``--scale-gateways`` daemons share one config object; ``--scale-changes``
   small commits (add / remove an ACL client, alternately) one after another; for each,
   the time from the commit returning until each gateway's ready file (written right after
   its status report) shows the version, polled every 1 ms, and until the status object
   shows it on all of them (``store.wait_applied``: what the REST API waits for).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from gateway.testing.bench import paths as pathmod
from gateway.testing.bench.scale_parts import (
    BenchImages,
    ReadyWatcher,
    close_gateway_set,
    gateway_set,
    load_driver,
    loop_cpu,
    percentiles,
    scrape,
    size_arg,
    threads,
)
from gateway.testing.minicluster import MiniCluster

IQN = "iqn.2003-01.org.ceph.iscsi-gw:scale"
INITIATOR = "iqn.2026-01.org.bench:scale"  # session i logs in as INITIATOR-<i:02d>
PROP_CLIENT = "iqn.2026-01.org.bench:propagation"
REGION = 16 << 20  # I/O (and prefill) within the first 16 MiB of each LUN: memstore holds it all
HOST_PREFIX = "127.0.9."
# (direction, commands in flight per session): saturation, then latency at a light load, then writes.
PHASES = (("read", 32), ("read", 2), ("write", 32))


# ---- pure helpers (unit tested) ---------------------------------------------------------
def _mib(n: float) -> str:
    return f"{n / (1 << 20):.1f}"


def render_scale(result: dict) -> str:
    """A readable summary of ``run_scale``'s result."""
    lines = []
    s = result.get("scale")
    if s:
        rss = s["rss"]
        lines += [f"Scale: {s['luns']} LUNs x {s['sessions']} sessions on one gateway "
                  f"(RBD images of {_mib(s['image_size'])} MiB, I/O in the first {_mib(s['region'])} MiB)",
                  f"  config commit {s['commit_ms']:.0f} ms, applied {s['apply_ms']:.0f} ms after the commit",
                  f"  RSS MiB: empty {_mib(rss['empty'])}, {s['luns']} LUNs idle {_mib(rss['luns_idle'])} "
                  f"({_mib(rss['per_lun'])} per LUN), under load {_mib(rss['load_max'])} "
                  f"({_mib(rss['per_session'])} per session), peak (VmHWM) {_mib(rss['hwm'])}; "
                  f"{rss.get('threads_idle', '?')} threads idle",
                  f"  {'phase':10} {'sessions':>8} {'LUNs':>5} {'IOPS':>8} {'MB/s':>7} {'mean us':>8} "
                  f"{'p99 us':>7} {'gw cores':>8} {'errors':>6}"]
        for ph in s["phases"]:
            lines.append(f"  {ph['phase']:10} {ph['sessions_established']:>4}/{ph['sessions']:<3} "
                         f"{ph['luns_touched']:>5} {ph['iops']:8.0f} {ph['mbps']:7.1f} "
                         f"{ph['lat_mean_us']:8.0f} {ph['lat_p99_us']:7.0f} {ph['gateway_cores']:8.2f} "
                         f"{ph['errors']:>6}")
        for ph in s["phases"]:
            g = ph.get("gateway_view", {})
            lines.append(f"  {ph['phase']}: gateway loop thread {ph.get('loop_cores', 0):.2f} cores, "
                         f"OSD {ph.get('osd_cores', 0):.2f}, driver "
                         f"{ph.get('driver_cores', 0):.2f}; gateway {ph.get('gateway_threads')} threads, "
                         f"saw {g.get('clients_logged_in', '?')} clients logged in, "
                         f"{g.get('luns_with_io', '?')} LUNs with I/O; "
                         f"{ph['sessions_logged_out']} logged out cleanly, {ph['sessions_dropped']} dropped")
        lines.append(f"  after: gateway alive {s['alive_after']}, clients still logged in "
                     f"{s['clients_logged_in_after']}")
    p = result.get("propagation")
    if p:
        lines += ["", f"Propagation: {p['gateways']} gateways, {p['changes']} changes ({p['change']})",
                  f"  {'ms after commit':24} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}"]
        rows = [("commit (update call)", p["commit_ms"]), ("all gateways (ready)", p["all_ms"]),
                ("status object (API)", p["api_ms"])]
        rows += [(f"  {name}", st) for name, st in sorted(p["per_gateway_ms"].items())]
        for label, st in rows:
            cells = " ".join(f"{st.get(k, 0):7.1f}" for k in ("p50", "p90", "p99", "max"))
            lines.append(f"  {label:24} {cells}")
    load = result.get("load_average", {})
    if load:
        lines.append(f"\nload average at start {load.get('start')}, end {load.get('end')}; "
                     f"{result['config'].get('cpus')} CPUs")
    return "\n".join(lines)


# ---- the run ----------------------------------------------------------------------------
def run_scale(cluster: MiniCluster, workdir: Path, args: argparse.Namespace) -> dict:
    runtime = args.runtime or (5.0 if args.quick else 15.0)
    ramp = args.ramp if args.ramp is not None else 2.0
    size = size_arg(args.image_size or "64M")
    result = {"config": {"luns": args.scale_luns, "sessions": args.scale_sessions,
                         "gateways": args.scale_gateways, "changes": args.scale_changes,
                         "runtime_s": runtime, "ramp_s": ramp, "image_size": size,
                         "region": min(size, REGION),
                         "phases": [f"{rw} qd{d}" for rw, d in PHASES], "bs": 4096,
                         "cpus": pathmod.cpu_count(),
                         "driver": "scale_load.c (libiscsi 1 session = 1 context, all LUNs on it)"},
              "load_average": {"start": pathmod.loadavg()}}
    result["scale"] = run_luns(cluster, workdir, args, runtime, ramp, size)
    result["propagation"] = run_propagation(cluster, workdir, args)
    result["load_average"]["end"] = pathmod.loadavg()
    return result


def run_luns(cluster: MiniCluster, workdir: Path, args: argparse.Namespace, runtime: float, ramp: float,
             size: int) -> dict:
    from gateway.config import operations as ops
    from gateway.testing.gateways import free_port

    driver = load_driver()
    host = HOST_PREFIX + "1"
    names = [f"scale-{i:03d}" for i in range(args.scale_luns)]
    region = min(size, REGION)
    print(f"  scale: creating and prefilling {len(names)} images", flush=True)
    with BenchImages(cluster, names, size, region):
        gc = gateway_set(cluster, workdir, "scale")
        try:
            port = free_port(host)
            gw = gc.add("scale-gw", host, port)
            gc.start_all()
            gw.wait_ready(timeout=60)
            time.sleep(1)
            rss = {"empty": pathmod.rss_bytes(gw.pid)}
            initiators = [f"{INITIATOR}-{i:02d}" for i in range(args.scale_sessions)]

            def define(cfg):
                ops.add_target(cfg, IQN)
                ops.add_portal(cfg, IQN, "scale-gw", [host], port=port)
                for name in names:
                    ops.add_disk(cfg, cluster.pool, name)
                    ops.map_lun(cfg, IQN, f"{cluster.pool}/{name}")
                for ini in initiators:
                    ops.add_client(cfg, IQN, ini)
                    for name in names:
                        ops.add_client_lun(cfg, IQN, ini, f"{cluster.pool}/{name}")

            watcher = ReadyWatcher({"scale-gw": gw})
            t0 = time.monotonic()
            version = gc.store.update(define).version
            t1 = time.monotonic()
            watcher.expect(version)
            t2 = watcher.wait_all(300).get("scale-gw")
            watcher.stop = True
            if t2 is None:
                raise RuntimeError(f"the gateway did not apply version {version}:\n{gw.log_tail()}")
            time.sleep(2)
            rss["luns_idle"] = pathmod.rss_bytes(gw.pid)
            print(f"  scale: {len(names)} LUNs applied {(t2 - t1) * 1000:.0f} ms after the commit",
                  flush=True)
            rss["threads_idle"] = threads(gw.pid)
            osd = cluster._read_pid("osd.0")
            phases = [_phase(driver, gw, osd, f"{host}:{port}", rw, depth, args.scale_sessions, runtime, ramp,
                             region) for rw, depth in PHASES]
            rss["load_max"] = max(ph.pop("rss_max") for ph in phases)
            rss["hwm"] = pathmod.rss_bytes(gw.pid, "VmHWM")
            rss["per_lun"] = (rss["luns_idle"] - rss["empty"]) / max(1, len(names))
            rss["per_session"] = (rss["load_max"] - rss["luns_idle"]) / max(1, args.scale_sessions)
            after = _settled_logins(gw)
            return {"luns": len(names), "sessions": args.scale_sessions, "image_size": size, "region": region,
                    "commit_ms": (t1 - t0) * 1000, "apply_ms": (t2 - t1) * 1000, "config_version": version,
                    "rss": rss, "phases": phases, "alive_after": gw.alive(),
                    "clients_logged_in_after": after}
        finally:
            close_gateway_set(gc)


def _settled_logins(gw, timeout: float = 10.0) -> int | str:
    deadline = time.monotonic() + timeout
    while True:
        got = scrape(gw).get("clients_logged_in", "?")
        if got == 0 or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def _phase(driver: Path, gw, osd: int | None, portal: str, rw: str, depth: int, sessions: int,
           runtime: float, ramp: float, region: int) -> dict:
    cmd = [str(driver), portal, IQN, INITIATOR, str(sessions), str(depth), "4096", str(region),
           str(runtime), str(ramp), rw]
    cpu0, loop0 = pathmod.cpu_seconds(gw.pid), loop_cpu(gw.pid)
    osd0 = pathmod.cpu_seconds(osd) if osd else 0.0
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rss_max, view, mid, nthreads = 0, {}, None, 0
    try:
        while proc.poll() is None:
            rss_max = max(rss_max, pathmod.rss_bytes(gw.pid))
            if mid is None and time.monotonic() - t0 > ramp + runtime / 2:
                mid, view = time.monotonic(), scrape(gw)  # during the measured window
                nthreads = threads(gw.pid)
            time.sleep(0.25)
            if time.monotonic() - t0 > runtime + ramp + 300:
                proc.kill()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    wall = time.monotonic() - t0
    cpu, loop_s = pathmod.cpu_seconds(gw.pid) - cpu0, loop_cpu(gw.pid) - loop0
    osd_cpu = (pathmod.cpu_seconds(osd) - osd0) if osd else 0.0
    if not out.strip():
        raise RuntimeError(f"scale_load failed ({proc.returncode}): {err[-2000:]}")
    res = json.loads(out)
    res.update(phase=f"{rw} qd{depth}", gateway_cpu_s=cpu, wall_s=wall, gateway_cores=cpu / wall,
               loop_cores=loop_s / wall,
               osd_cores=osd_cpu / wall, driver_cores=res["driver_cpu_s"] / wall, rss_max=rss_max,
               gateway_threads=nthreads, gateway_view=view, load1=pathmod.loadavg()[0],
               driver_stderr=err[-2000:])
    print(f"  scale {rw} qd{depth}/session: {res['sessions_established']}/{sessions} sessions, "
          f"{res['luns_touched']} LUNs, "
          f"{res['iops']:.0f} IOPS, p99 {res['lat_p99_us']:.0f} us, gateway {res['gateway_cores']:.2f} cores",
          flush=True)
    return res


# ---- propagation ------------------------------------------------------------------------
def run_propagation(cluster: MiniCluster, workdir: Path, args: argparse.Namespace) -> dict:
    from gateway.config import operations as ops

    n = args.scale_gateways
    image = "scale-prop"
    with BenchImages(cluster, [image], 64 << 20, 0):
        gc = gateway_set(cluster, workdir, "propagation")
        watcher = None
        try:
            names = [f"prop-gw{i + 1}" for i in range(n)]
            for i, name in enumerate(names):
                gc.add(name, f"{HOST_PREFIX}{i + 2}")

            def define(cfg):
                ops.add_target(cfg, IQN)
                for name in names:
                    ip, port = gc.addresses[name]
                    ops.add_portal(cfg, IQN, name, [ip], port=port)
                ops.add_disk(cfg, cluster.pool, image)
                ops.map_lun(cfg, IQN, f"{cluster.pool}/{image}")

            version = gc.store.update(define).version
            gc.start_all()
            gc.wait_applied(version, timeout=120)
            watcher = ReadyWatcher(gc.gateways)
            commit, all_ms, api = [], [], []
            per: dict[str, list[float]] = {name: [] for name in names}
            for k in range(args.scale_changes):
                change = ops.add_client if k % 2 == 0 else ops.remove_client
                t0 = time.monotonic()
                version = gc.store.update(change, IQN, PROP_CLIENT).version
                t1 = time.monotonic()
                watcher.expect(version)
                report = gc.store.wait_applied(version, names, timeout=30)
                t2 = time.monotonic()
                seen = watcher.wait_all(30)
                if not report.complete or len(seen) != n:
                    raise RuntimeError(f"change {k} (version {version}) did not reach every gateway: "
                                       f"{report.as_dict()} ready {sorted(seen)}")
                commit.append((t1 - t0) * 1000)
                api.append((t2 - t1) * 1000)
                for name, t in seen.items():
                    per[name].append((t - t1) * 1000)
                all_ms.append((max(seen.values()) - t1) * 1000)
            result = {"gateways": n, "changes": args.scale_changes,
                      "change": "add / remove an ACL client, alternately (store.update + operations)",
                      "observed": "ready file polled every 1 ms (written after the status report); "
                                  "API view = store.wait_applied (status watch + read)",
                      "commit_ms": percentiles(commit), "all_ms": percentiles(all_ms),
                      "api_ms": percentiles(api),
                      "per_gateway_ms": {k: percentiles(v) for k, v in per.items()},
                      "samples_all_ms": [round(x, 2) for x in all_ms],
                      "alive_after": all(gw.alive() for gw in gc.gateways.values())}
            all_st = result["all_ms"]
            print(f"  propagation: p50 {all_st['p50']:.1f} ms, p99 {all_st['p99']:.1f} ms "
                  f"over {args.scale_changes} changes", flush=True)
            return result
        finally:
            if watcher is not None:
                watcher.stop = True
            close_gateway_set(gc)
