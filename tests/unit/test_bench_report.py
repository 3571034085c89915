"""The benchmark's arithmetic: ratios, targets, latency added, fio's JSON and filenames.

Pure functions of figures; the benchmark itself (scripts/bench) is not part of ``make test``.
"""

from __future__ import annotations

from gateway.testing.bench.fio import FIO_INITIATOR, _aggregate, iscsi_filename
from gateway.testing.bench.report import ratios, render_markdown, render_table, targets


def _cell(iops: float, mbps: float, lat: float, cores: float = 0.5) -> dict:
    return {"iops": iops, "mbps": mbps, "lat_mean_us": lat, "lat_p99_us": lat * 3,
            "server_cpu_s": cores * 10, "server_cores": cores, "bytes": int(mbps * 1e6 * 10),
            "server_rss": 80 << 20, "server_rss_peak": 90 << 20, "fio_cores": 0.4,
            "osd_cores": 0.6, "load1": 2.0}


def _medians() -> dict:
    return {
        "rbd": {"rr4k32": _cell(40000, 160, 800), "rr4k1": _cell(10000, 40, 100),
                "sw1m8": _cell(2000, 2000, 4000)},
        "gateway": {"rr4k32": _cell(36000, 144, 880), "rr4k1": _cell(8000, 32, 125),
                    "sw1m8": _cell(1900, 1900, 4200)},
        "tgt": {"rr4k32": _cell(20000, 80, 1600), "rr4k1": _cell(7000, 28, 142),
                "sw1m8": _cell(700, 700, 11000)},
    }


def test_ratios_use_iops_for_small_blocks_and_mb_per_s_for_1m():
    r = ratios(_medians())["ratios"]
    assert r["gateway/rbd"] == {"rr4k32": 0.9, "rr4k1": 0.8, "sw1m8": 0.95}
    assert r["gateway/tgt"]["rr4k32"] == 1.8
    assert r["gateway/tgt"]["sw1m8"] == round(1900 / 700, 3)
    assert "gateway-mem/tgt-shm" not in r  # neither path ran


def test_latency_added_is_the_qd1_read_mean_over_librbd():
    out = ratios(_medians())
    assert out["latency_added_us"] == {"rr4k1": 25.0}
    assert out["latency_added_us_other"] == {"tgt-rbd": 42.0}


def test_server_cpu_per_gb_and_per_io():
    s = ratios(_medians())["server"]["gateway"]
    assert s["cpu_us_per_io"]["rr4k32"] == round(0.5 / 36000 * 1e6, 1)
    assert s["cpu_s_per_gb_by_workload"]["sw1m8"] == round(0.5 / 1.9, 3)
    assert s["rss_bytes"] == 80 << 20 and s["rss_peak_bytes"] == 90 << 20


def test_targets_report_what_is_met_and_by_how_much_what_is_not():
    result = ratios(_medians())
    rows = {t["what"]: t for t in targets(result)}
    assert rows["gateway/rbd rr4k32"]["met"] and rows["gateway/rbd rr4k32"]["short_by"] == 0
    assert not rows["gateway/rbd rr4k1"]["met"] and rows["gateway/rbd rr4k1"]["short_by"] == 0.1
    assert rows["gateway/rbd sw1m8"]["met"]  # 0.95 against a 0.95 goal
    assert rows["QD1 latency added (us)"]["met"]  # 25 us <= 50 us


def test_table_names_every_missed_target():
    med = _medians()
    result = {"config": {"workloads": ["rr4k32", "rr4k1", "sw1m8"], "paths": ["rbd", "gateway", "tgt"]},
              "medians": med, **ratios(med)}
    text = render_table(result)
    assert "gateway/rbd rr4k1 0.8 (goal 0.9)" in text
    assert "gateway/rbd rr4k32 0.9 (goal" not in text
    assert "QD1 4k read latency added over rbd: 25 us" in text


def test_fio_mixed_job_aggregates_reads_and_writes():
    def part(n, iops, bw, mean_ns, p99_ns):
        return {"total_ios": n, "iops": iops, "bw_bytes": bw, "io_bytes": bw * 10,
                "lat_ns": {"mean": mean_ns}, "clat_ns": {"percentile": {"99.000000": p99_ns}}}

    job = {"read": part(700, 70.0, 7_000_000, 1_000_000, 3_000_000),
           "write": part(300, 30.0, 3_000_000, 2_000_000, 5_000_000)}
    r = _aggregate(job)
    assert r.iops == 100.0 and r.mbps == 10.0 and r.bytes == 100_000_000
    assert r.lat_mean_us == 1300.0  # weighted by I/O count
    assert r.lat_p99_us == 5000.0  # the worse direction


def test_fio_filename_escapes_every_colon():
    name = iscsi_filename("127.0.0.1", 3260, "iqn.2003-01.org.x:t1", 3)
    assert name == "iscsi\\://127.0.0.1\\:3260/iqn.2003-01.org.x\\:t1/3"
    assert FIO_INITIATOR.startswith("iqn.")


def test_cpu_bound_ratio_compares_cpu_per_io_of_the_whole_path():
    med = _medians()
    med["rbd"]["rr4k32"].update(server_cores=0.0, fio_cores=1.0, osd_cores=0.6)   # 40 us per I/O
    med["gateway"]["rr4k32"].update(server_cores=1.0, fio_cores=0.2, osd_cores=0.6)  # 50 us per I/O
    out = ratios(med)
    assert out["cpu_us_per_io_all"]["rbd"]["rr4k32"] == 40.0
    assert out["cpu_us_per_io_all"]["gateway"]["rr4k32"] == 50.0
    assert out["cpu_bound_ratio"]["gateway/rbd"]["rr4k32"] == 0.8


def test_markdown_report_has_every_cell_ratio_and_target():
    med = _medians()
    result = {"config": {"workloads": ["rr4k32", "rr4k1", "sw1m8"], "paths": ["rbd", "gateway", "tgt"]},
              "medians": med, **ratios(med)}
    text = render_markdown(result)
    assert "| rr4k32 | gateway | 36000 | 144.0 | 880 | 2640 |" in text
    assert "| gateway/rbd | 0.90 | 0.80 | 0.95 |" in text
    assert "| gateway/rbd rr4k1 | 0.8 | 0.9 | no | 0.1 |" in text
