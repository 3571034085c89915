"""The scale benchmark's pure parts: percentiles, the metrics it reads, the table it prints."""

from __future__ import annotations

from gateway.testing.bench.scale import render_scale
from gateway.testing.bench.scale_parts import parse_metrics, percentiles


def test_percentiles_use_the_nearest_rank():
    got = percentiles([float(x) for x in range(100, 0, -1)])  # 1..100, unsorted
    assert (got["p50"], got["p90"], got["p99"]) == (50.0, 90.0, 99.0)
    assert (got["min"], got["max"], got["count"]) == (1.0, 100.0, 100)


def test_percentiles_of_few_samples_are_samples():
    got = percentiles([3.0, 1.0, 2.0])
    assert (got["p50"], got["p99"], got["max"]) == (2.0, 3.0, 3.0)
    assert percentiles([7.5]) == {"p50": 7.5, "p90": 7.5, "p99": 7.5, "min": 7.5, "max": 7.5, "count": 1}


def test_percentiles_of_nothing_say_so():
    assert percentiles([]) == {"count": 0}


METRICS = """\
# HELP ceph_iscsi_client_login Client logged in through this gateway (1) or not (0)
ceph_iscsi_client_login{gw_name="gw",client_iqn="iqn.x:a"} 1.0
ceph_iscsi_client_login{gw_name="gw",client_iqn="iqn.x:b"} 1.0
ceph_iscsi_client_login{gw_name="gw",client_iqn="iqn.x:c"} 0.0
ceph_iscsi_lun_iops{gw_name="gw",client_iqn="iqn.x:a",lun_name="rbd/d1"} 12.0
ceph_iscsi_lun_iops{gw_name="gw",client_iqn="iqn.x:b",lun_name="rbd/d1"} 3.0
ceph_iscsi_lun_iops{gw_name="gw",client_iqn="iqn.x:b",lun_name="rbd/d2"} 5.0
ceph_iscsi_lun_iops{gw_name="gw",client_iqn="iqn.x:c",lun_name="rbd/d3"} 0.0
ceph_iscsi_lun_iops_total{gw_name="gw",client_iqn="iqn.x:c",lun_name="rbd/d4"} 9.0
"""


def test_metrics_give_logged_in_clients_and_luns_with_io():
    assert parse_metrics(METRICS) == {"clients_logged_in": 2, "client_lun_pairs_with_io": 3,
                                      "luns_with_io": 2}


def _phase(rw: str) -> dict:
    return {"rw": rw, "phase": f"{rw} qd32", "sessions": 16, "sessions_established": 16, "luns_touched": 64,
            "iops": 12345.6, "mbps": 50.6, "lat_mean_us": 4000.0, "lat_p99_us": 9000.0, "gateway_cores": 1.23,
            "errors": 0,
            "sessions_logged_out": 16, "sessions_dropped": 0,
            "gateway_view": {"clients_logged_in": 16, "luns_with_io": 64}}


def test_render_shows_every_figure_of_both_parts():
    st = {"p50": 5.0, "p90": 6.0, "p99": 7.0, "max": 8.0, "min": 1.0, "count": 100}
    result = {
        "config": {"cpus": 2},
        "load_average": {"start": (1.0, 1.0, 1.0), "end": (2.0, 1.5, 1.0)},
        "scale": {"luns": 64, "sessions": 16, "image_size": 64 << 20, "region": 16 << 20, "commit_ms": 40.0,
                  "apply_ms": 2500.0, "alive_after": True, "clients_logged_in_after": 0,
                  "rss": {"empty": 50 << 20, "luns_idle": 114 << 20, "load_max": 130 << 20, "hwm": 131 << 20,
                          "per_lun": 1 << 20, "per_session": 1 << 20},
                  "phases": [_phase("read"), _phase("write")]},
        "propagation": {"gateways": 3, "changes": 100, "change": "ACL client", "commit_ms": st, "all_ms": st,
                        "api_ms": st, "per_gateway_ms": {"gw1": st, "gw2": st}},
    }
    text = render_scale(result)
    assert "64 LUNs x 16 sessions" in text
    assert "applied 2500 ms after the commit" in text
    assert "idle 114.0" in text and "peak (VmHWM) 131.0" in text
    assert text.count("12346") == 2  # IOPS of the read and the write phase
    assert "16 logged out cleanly, 0 dropped" in text
    assert "read qd32" in text and "write qd32" in text
    assert "Propagation: 3 gateways, 100 changes" in text
    assert "gw1" in text and "gw2" in text and "status object (API)" in text
    assert "load average at start" in text


def test_render_without_results_is_empty():
    assert render_scale({"config": {}}) == ""
