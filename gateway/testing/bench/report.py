"""Tables, ratios and the chart of a benchmark run."""

from __future__ import annotations

from pathlib import Path

RATIO_PAIRS = (("gateway", "rbd"), ("gateway", "tgt"), ("gateway-mem", "tgt-shm"))
MBPS_WORKLOADS = ("sw1m8", "sr1m8")


def metric(workload: str) -> str:
    """The figure a workload is judged by: MB/s for 1M transfers, IOPS otherwise."""
    return "mbps" if workload in MBPS_WORKLOADS else "iops"


def ratios(medians: dict) -> dict:
    out: dict = {"ratios": {}}
    for a, b in RATIO_PAIRS:
        if a in medians and b in medians:
            out["ratios"][f"{a}/{b}"] = {
                wl: round(medians[a][wl][metric(wl)] / medians[b][wl][metric(wl)], 3)
                for wl in medians[a] if wl in medians[b] and medians[b][wl][metric(wl)]}
    if "gateway" in medians and "rbd" in medians and "rr4k1" in medians["gateway"]:
        out["latency_added_us"] = {"rr4k1": round(medians["gateway"]["rr4k1"]["lat_mean_us"]
                                                   - medians["rbd"]["rr4k1"]["lat_mean_us"], 1)}
    for name in ("gateway", "tgt"):
        if name in medians:
            cpu = sum(m["server_cpu_s"] for m in medians[name].values())
            gb = sum(m["bytes"] for m in medians[name].values()) / 1e9
            out.setdefault("server", {})[name] = {
                "cpu_s_per_gb": round(cpu / gb, 3) if gb else None,
                "rss_bytes": max(m["server_rss"] for m in medians[name].values())}
    return out


def render_table(result: dict) -> str:
    med = result["medians"]
    lines = [f"{'workload':9} {'path':12} {'IOPS':>9} {'MB/s':>8} {'mean us':>8} {'p99 us':>8} "
             f"{'srv CPU s':>9} {'OSD CPU s':>9}"]
    workloads = result["config"]["workloads"]
    for wl in workloads:
        for path in result["config"]["paths"]:
            m = med.get(path, {}).get(wl)
            if m:
                lines.append(f"{wl:9} {path:12} {m['iops']:9.0f} {m['mbps']:8.1f} "
                             f"{m['lat_mean_us']:8.0f} {m['lat_p99_us']:8.0f} "
                             f"{m['server_cpu_s']:9.2f} {m['osd_cpu_s']:9.2f}")
    lines.append("")
    for pair, values in result.get("ratios", {}).items():
        lines.append(f"{pair:20} " + "  ".join(f"{wl} {values[wl]:.2f}" for wl in workloads
                                                if wl in values))
    if "latency_added_us" in result:
        lines.append(f"QD1 4k read latency added over rbd: {result['latency_added_us']['rr4k1']:.0f} us")
    for name, s in result.get("server", {}).items():
        lines.append(f"{name}: {s['cpu_s_per_gb']} CPU s per GB moved, RSS {s['rss_bytes'] >> 20} MiB")
    return "\n".join(lines)


def write_chart(result: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = result["medians"]
    workloads = result["config"]["workloads"]
    paths = [p for p in result["config"]["paths"] if p in med]
    base = "rbd" if "rbd" in med else paths[0]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(len(paths), 1)
    for i, path in enumerate(paths):
        vals = [med[path][wl][metric(wl)] / med[base][wl][metric(wl)] if wl in med[path] else 0
                for wl in workloads]
        ax.bar([x + i * width for x in range(len(workloads))], vals, width, label=path)
    ax.set_xticks([x + width * (len(paths) - 1) / 2 for x in range(len(workloads))], workloads)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_ylabel(f"throughput relative to {base}")
    ax.set_title("IOPS (4k, 64k) and MB/s (1M) relative to librbd direct; rbd_cache=false")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=110)
