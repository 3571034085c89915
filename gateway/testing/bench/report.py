"""Tables, ratios, targets and the chart of a benchmark run (pure functions of the medians)."""

from __future__ import annotations

from pathlib import Path

RATIO_PAIRS = (("gateway", "rbd"), ("gateway", "tgt"), ("gateway-mem", "tgt-shm"))
MBPS_WORKLOADS = ("sw1m8", "sr1m8")
SERVER_PATHS = ("gateway", "tgt", "gateway-mem", "tgt-shm")
# Issue 9's targets: (pair, workloads, minimum ratio).
TARGETS = (
    ("gateway/rbd", ("rr4k32", "rw4k32", "rr4k1", "rw64k16"), 0.90),
    ("gateway/rbd", ("sw1m8", "sr1m8"), 0.95),
    ("gateway/tgt", ("rr4k32", "rw4k32", "sw1m8"), 1.5),
    ("gateway/tgt", ("rr4k1", "rw64k16", "sr1m8"), 1.0),
    ("gateway-mem/tgt-shm", ("rr4k32", "rw4k32", "rr4k1", "rw64k16", "sw1m8", "sr1m8"), 1.0),
)
LATENCY_TARGET_US = 50.0


def metric(workload: str) -> str:
    """The figure a workload is judged by: MB/s for 1M transfers, IOPS otherwise."""
    return "mbps" if workload in MBPS_WORKLOADS else "iops"


def ratios(medians: dict) -> dict:
    """``ratios``, ``latency_added_us`` (gateway over rbd, QD1 read), per-path CPU and RSS."""
    out: dict = {"ratios": {}}
    for a, b in RATIO_PAIRS:
        if a in medians and b in medians:
            out["ratios"][f"{a}/{b}"] = {
                wl: round(medians[a][wl][metric(wl)] / medians[b][wl][metric(wl)], 3)
                for wl in medians[a] if wl in medians[b] and medians[b][wl][metric(wl)]}
    added = _latency_added(medians, "gateway", "rbd")
    if added is not None:
        out["latency_added_us"] = {"rr4k1": added}
    others = {f"{a}-{b}": v for a, b in (("tgt", "rbd"), ("gateway-mem", "tgt-shm"))
              if (v := _latency_added(medians, a, b)) is not None}
    if others:
        out["latency_added_us_other"] = others
    total = {path: {wl: round((x.get("server_cores", 0) + x.get("fio_cores", 0) + x.get("osd_cores", 0))
                              / x["iops"] * 1e6, 1)
                    for wl, x in per_wl.items() if x["iops"]}
             for path, per_wl in medians.items()}
    if total:
        out["cpu_us_per_io_all"] = total
    if "gateway" in total and "rbd" in total:
        # On a machine whose cores are all busy, throughput is bounded by CPU per I/O of the
        # whole path (client, gateway and OSD): the ratio this bound allows.
        out["cpu_bound_ratio"] = {"gateway/rbd": {
            wl: round(total["rbd"][wl] / total["gateway"][wl], 3)
            for wl in total["gateway"] if wl in total["rbd"] and total["gateway"][wl]}}
    for name in SERVER_PATHS:
        if name in medians:
            m = medians[name].values()
            cpu = sum(x["server_cpu_s"] for x in m)
            gb = sum(x["bytes"] for x in m) / 1e9
            out.setdefault("server", {})[name] = {
                "cpu_s_per_gb": round(cpu / gb, 3) if gb else None,
                "cpu_s_per_gb_by_workload": {wl: round(x["server_cores"] / (x["mbps"] / 1000), 3)
                                             for wl, x in medians[name].items() if x["mbps"]},
                "cpu_us_per_io": {wl: round(x["server_cores"] / x["iops"] * 1e6, 1)
                                  for wl, x in medians[name].items() if x["iops"]},
                "cores_busy": {wl: round(x["server_cores"], 2) for wl, x in medians[name].items()},
                "rss_bytes": max(x["server_rss"] for x in m),
                "rss_peak_bytes": max(x.get("server_rss_peak", 0) for x in m)}
    return out


def _latency_added(medians: dict, a: str, b: str) -> float | None:
    if a in medians and b in medians and "rr4k1" in medians[a] and "rr4k1" in medians[b]:
        return round(medians[a]["rr4k1"]["lat_mean_us"] - medians[b]["rr4k1"]["lat_mean_us"], 1)
    return None


def targets(result: dict) -> list[dict]:
    """Each target of the issue: measured value, goal, met, and the shortfall."""
    rows = []
    rat = result.get("ratios", {})
    for pair, wls, goal in TARGETS:
        for wl in wls:
            value = rat.get(pair, {}).get(wl)
            if value is not None:
                rows.append({"what": f"{pair} {wl}", "value": value, "goal": goal, "met": value >= goal,
                             "short_by": round(max(0.0, goal - value), 3)})
    added = result.get("latency_added_us", {}).get("rr4k1")
    if added is not None:
        rows.append({"what": "QD1 latency added (us)", "value": added, "goal": LATENCY_TARGET_US,
                     "met": added <= LATENCY_TARGET_US,
                     "short_by": round(max(0.0, added - LATENCY_TARGET_US), 1)})
    return rows


def render_table(result: dict) -> str:
    med = result["medians"]
    lines = [f"{'workload':9} {'path':12} {'IOPS':>9} {'MB/s':>8} {'mean us':>8} {'p99 us':>8} "
             f"{'srv cores':>9} {'fio cores':>9} {'OSD cores':>9} {'load':>5}"]
    workloads = result["config"]["workloads"]
    for wl in workloads:
        for path in result["config"]["paths"]:
            m = med.get(path, {}).get(wl)
            if m:
                lines.append(f"{wl:9} {path:12} {m['iops']:9.0f} {m['mbps']:8.1f} "
                             f"{m['lat_mean_us']:8.0f} {m['lat_p99_us']:8.0f} "
                             f"{m.get('server_cores', 0):9.2f} {m.get('fio_cores', 0):9.2f} "
                             f"{m.get('osd_cores', 0):9.2f} {m.get('load1', 0):5.1f}")
    lines.append("")
    for pair, values in result.get("ratios", {}).items():
        lines.append(f"{pair:20} " + "  ".join(f"{wl} {values[wl]:.2f}" for wl in workloads
                                                if wl in values))
    for pair, values in result.get("cpu_bound_ratio", {}).items():
        lines.append(f"{pair + ' CPU bound':20} " + "  ".join(f"{wl} {values[wl]:.2f}" for wl in workloads
                                                            if wl in values))
    if "latency_added_us" in result:
        other = result.get("latency_added_us_other", {})
        lines.append(f"QD1 4k read latency added over rbd: {result['latency_added_us']['rr4k1']:.0f} us"
                     + "".join(f"; {k}: {v:.0f} us" for k, v in other.items()))
    for name, s in result.get("server", {}).items():
        lines.append(f"{name}: {s['cpu_s_per_gb']} CPU s per GB moved, RSS {s['rss_bytes'] >> 20} MiB "
                     f"(peak {s.get('rss_peak_bytes', 0) >> 20} MiB)")
    missed = [t for t in targets(result) if not t["met"]]
    if missed:
        lines.append("targets not met: " + ", ".join(f"{t['what']} {t['value']} (goal {t['goal']})"
                                                     for t in missed))
    load = result.get("load_average")
    if load:
        lines.append(f"load average at start {load['start'][0]:.1f}, at end {load['end'][0]:.1f} "
                     f"({result['config'].get('cpus', '?')} CPUs)")
    return "\n".join(lines)


def write_chart(result: dict, png: Path) -> None:
    """Two panels: the RBD paths relative to librbd direct, and the protocol alone (our
    portal on RAM against tgtd on /dev/shm).  One scale for both would hide the first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = result["medians"]
    workloads = result["config"]["workloads"]
    panels = [("over RBD: relative to librbd direct (rbd = 1)", "rbd", ["gateway", "tgt"]),
              ("protocol alone: relative to tgtd on /dev/shm (tgt-shm = 1)", "tgt-shm", ["gateway-mem"])]
    panels = [p for p in panels if p[1] in med and any(x in med for x in p[2])]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
    for ax, (title, base, paths) in zip(axes[0], panels, strict=True):
        paths = [p for p in paths if p in med]
        width = 0.8 / len(paths)
        for i, path in enumerate(paths):
            vals = [med[path][wl][metric(wl)] / med[base][wl][metric(wl)]
                    if wl in med[path] and wl in med[base] and med[base][wl][metric(wl)] else 0
                    for wl in workloads]
            ax.bar([x + i * width for x in range(len(workloads))], vals, width, label=path)
        ax.set_xticks([x + width * (len(paths) - 1) / 2 for x in range(len(workloads))], workloads)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("IOPS (4k, 64k) or MB/s (1M), ratio")
        ax.legend()
    fig.suptitle("Same run, same cluster, rbd_cache = false on every path; medians of "
                 f"{result['config'].get('reps', '?')} interleaved reps", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def render_markdown(result: dict) -> str:
    """The tables of docs/performance.md from a ``--json`` file (figures are never hand-copied)."""
    med = result["medians"]
    workloads = result["config"]["workloads"]
    paths = [p for p in result["config"]["paths"] if p in med]
    out = ["| workload | path | IOPS | MB/s | mean us | p99 us | server cores | client (fio) cores "
           "| OSD cores |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for wl in workloads:
        for path in paths:
            m = med[path].get(wl)
            if m:
                out.append(f"| {wl} | {path} | {m['iops']:.0f} | {m['mbps']:.1f} | {m['lat_mean_us']:.0f} | "
                           f"{m['lat_p99_us']:.0f} | {m.get('server_cores', 0):.2f} | "
                           f"{m.get('fio_cores', 0):.2f} | {m.get('osd_cores', 0):.2f} |")
    out += ["", "| ratio | " + " | ".join(workloads) + " |", "|---|" + "---:|" * len(workloads)]
    rows = dict(result.get("ratios", {}))
    rows.update({f"{k} (CPU bound)": v for k, v in result.get("cpu_bound_ratio", {}).items()})
    for pair, values in rows.items():
        out.append(f"| {pair} | " + " | ".join(f"{values[wl]:.2f}" if wl in values else "-"
                                               for wl in workloads) + " |")
    out += ["", "| target | measured | goal | met | short by |", "|---|---:|---:|---|---:|"]
    for t in targets(result):
        out.append(f"| {t['what']} | {t['value']} | {t['goal']} | {'yes' if t['met'] else 'no'} | "
                   f"{t['short_by'] or ''} |")
    return "\n".join(out)


if __name__ == "__main__":  # python -m gateway.testing.bench.report results.json [--chart PNG]
    import json
    import sys

    data = json.loads(Path(sys.argv[1]).read_text())
    data.update(ratios(data["medians"]))  # recomputed: the JSON may predate a new figure
    if sys.argv[2:3] == ["--chart"]:
        write_chart(data, Path(sys.argv[3]))
    else:
        print(render_markdown(data))
