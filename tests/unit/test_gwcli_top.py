"""``top``: per-LUN rates from the gateways' Prometheus metrics, tolerant of what is missing."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from gwcli_fake_api import Harness, populated

from gwcli import metrics, top
from gwcli.view import GatewayView, View

# ceph-iscsi's exporter (non-standard "#HELP:" comments, LUNs named by backstore object) plus
# our histogram and lock-move counter.
GW1_T0 = """#HELP: ceph_iscsi_lun_iops IOPS per LUN per client
#TYPE: ceph_iscsi_lun_iops counter
ceph_iscsi_lun_iops{gw_name="gw1",client_iqn="iqn.1994-05.com.redhat:a",lun_name="rbd.disk_1"} 1000.0
ceph_iscsi_lun_iops{gw_name="gw1",client_iqn="iqn.1994-05.com.redhat:b",lun_name="rbd.disk_1"} 500.0
ceph_iscsi_lun_read_bytes{gw_name="gw1",client_iqn="iqn.1994-05.com.redhat:a",lun_name="rbd.disk_1"} 1048576.0
ceph_iscsi_lun_write_bytes{gw_name="gw1",client_iqn="iqn.1994-05.com.redhat:a",lun_name="rbd.disk_1"} 0.0
ceph_iscsi_client_login{gw_name="gw1",client_iqn="iqn.1994-05.com.redhat:a"} 1.0
ceph_iscsi_client_login{gw_name="gw1",client_iqn="iqn.1994-05.com.redhat:c"} 0.0
ceph_iscsi_client_lun{gw_name="gw1",client_iqn="iqn.1994-05.com.redhat:a",lun_name="rbd.disk_1"} 0.0
ceph_iscsi_client_lun{gw_name="gw1",client_iqn="iqn.1994-05.com.redhat:c",lun_name="rbd.disk_2"} 1.0
# HELP ceph_iscsi_lun_latency_seconds command latency
# TYPE ceph_iscsi_lun_latency_seconds histogram
ceph_iscsi_lun_latency_seconds_bucket{lun_name="rbd.disk_1",op="read",le="+Inf"} 100.0
ceph_iscsi_lun_latency_seconds_sum{lun_name="rbd.disk_1",op="read"} 0.1
ceph_iscsi_lun_latency_seconds_count{lun_name="rbd.disk_1",op="read"} 100.0
ceph_iscsi_lun_latency_seconds_sum{lun_name="rbd.disk_1",op="write"} 0.3
ceph_iscsi_lun_latency_seconds_count{lun_name="rbd.disk_1",op="write"} 100.0
# TYPE ceph_iscsi_lun_lock_moves counter
ceph_iscsi_lun_lock_moves_total{lun_name="rbd.disk_1"} 2.0
"""
GW1_T1 = (GW1_T0.replace("} 1000.0", "} 3000.0").replace("} 500.0", "} 500.0")
          .replace("lun_name=\"rbd.disk_1\"} 1048576.0", "lun_name=\"rbd.disk_1\"} 22020096.0")
          .replace("op=\"read\"} 0.1", "op=\"read\"} 0.5").replace("op=\"read\"} 100.0", "op=\"read\"} 300.0")
          .replace("_total{lun_name=\"rbd.disk_1\"} 2.0", "_total{lun_name=\"rbd.disk_1\"} 3.0"))


def scrape(gw: str, t: float, text: str) -> metrics.Scrape:
    names = {"rbd.disk_1": "rbd/disk_1", "rbd.disk_2": "rbd/disk_2"}
    return metrics.Scrape(gw, t, metrics.parse(text, names))


def test_parse_sums_clients_and_maps_object_names_to_disks():
    luns = metrics.parse(GW1_T0, {"rbd.disk_1": "rbd/disk_1"})
    d1 = luns["rbd/disk_1"]
    assert (d1.ops, d1.read_bytes, d1.write_bytes, d1.lock_moves) == (1500.0, 1048576.0, 0.0, 2.0)
    assert (d1.latency_sum, d1.latency_count) == (pytest.approx(0.4), 200.0)
    assert d1.clients == {"iqn.1994-05.com.redhat:a", "iqn.1994-05.com.redhat:b"}
    # a mapped client that is not logged in does not count
    assert luns["rbd.disk_2"].clients == set()


def test_parse_tolerates_missing_metrics_and_malformed_lines():
    text = ('ceph_iscsi_lun_iops{lun_name="rbd/x"} 7\nthis is { not a metric\n'
            'ceph_iscsi_lun_read_bytes{pool="rbd",image="y"} 9\n')
    luns = metrics.parse(text)
    assert luns["rbd/x"].ops == 7 and luns["rbd/x"].read_bytes is None and luns["rbd/x"].latency_count is None
    assert luns["rbd/y"].read_bytes == 9
    assert metrics.parse("") == {}


def test_rates_between_two_scrapes():
    before = {"gw1": scrape("gw1", 100.0, GW1_T0)}
    after = {"gw1": scrape("gw1", 102.0, GW1_T1)}
    r = metrics.rates(before, after)["rbd/disk_1"]
    assert r.iops == pytest.approx(1000.0)  # (3500 - 1500) / 2 s
    assert r.read_bps == pytest.approx(10 * 1048576)
    assert r.write_bps == 0.0
    assert r.latency == pytest.approx(0.4 / 200)  # 200 reads in 0.4 s, no writes
    assert (r.lock_moves, r.lock_moves_delta) == (3.0, 1.0)


def test_rates_sum_gateways_and_survive_a_restart_and_an_unreachable_gateway():
    low = 'ceph_iscsi_lun_iops{lun_name="rbd/a"} %d\n'
    before = {"gw1": scrape("gw1", 0.0, low % 100), "gw2": scrape("gw2", 0.0, low % 5000),
              "gw3": metrics.Scrape("gw3", 0.0, error="ConnectionError")}
    after = {"gw1": scrape("gw1", 1.0, low % 300), "gw2": scrape("gw2", 1.0, low % 40),  # gw2 restarted
             "gw3": scrape("gw3", 1.0, low % 999)}
    assert metrics.rates(before, after)["rbd/a"].iops == pytest.approx(200 + 40)


def test_render_shows_every_lun_with_dashes_for_unknowns():
    view = View({"disks": {"rbd/disk_1": {"owner": "gw1", "backstore_object_name": "rbd.disk_1"},
                           "rbd/disk_2": {"owner": "gw2"}},
                 "targets": {"iqn.2003-01.com.example:t1": {"disks": {"rbd/disk_1": {"lun_id": 0},
                                                                     "rbd/disk_2": {"lun_id": 1}}}}})
    from gwcli.view import parse_disk

    view.disks = {n: parse_disk(n, d, {}) for n, d in view.config["disks"].items()}
    rates = metrics.rates({"gw1": scrape("gw1", 0.0, GW1_T0)}, {"gw1": scrape("gw1", 2.0, GW1_T1)})
    scrapes = {"gw1": scrape("gw1", 2.0, GW1_T1), "gw2": metrics.Scrape("gw2", 2.0, error="Timeout")}
    screen = top.render(view, scrapes, rates, 2.0, "iops", now=0)
    lines = screen.splitlines()
    assert "metrics: gw1 ok, gw2 unreachable (Timeout)" in lines[0]
    assert lines[1].startswith("LUNs: 2  IOPS: 1000  read: 10.5 MB/s  write: 0.0 MB/s")
    assert lines[3].split() == ["DISK", "TARGET", "LUN", "IOPS", "READ", "MB/s", "WRITE", "MB/s", "LAT", "ms",
                                "CLIENTS", "OWNER", "LOCK", "MOVES"]
    assert lines[4].split() == ["rbd/disk_1", "t1/0", "1000", "10.5", "0.0", "2.00", "2", "gw1", "3", "(+1)"]
    # its one mapped client is not logged in
    assert lines[5].split() == ["rbd/disk_2", "t1/1", "-", "-", "-", "-", "0", "gw2", "-"]


def test_sources_default_to_each_gateway_portal_and_metrics_port():
    view = View({"targets": {"iqn.2003-01.com.example:t1": {"portals": {
        "gw1": {"portal_ip_addresses": ["10.0.0.1"]}, "gw2": {"portal_ip_addresses": ["fd00::2"]}}}}})
    view.gateways = {"gw1": GatewayView("gw1", metrics_url="http://gw1.mgmt:9999/metrics")}
    assert top.metrics_sources(view, 9287) == [("gw1", "http://gw1.mgmt:9999/metrics"),
                                               ("gw2", "http://[fd00::2]:9287/metrics")]
    assert top.metrics_sources(view, 9287, urls="http://a/m,http://b/m") == [("http://a/m", "http://a/m"),
                                                                             ("http://b/m", "http://b/m")]


class MetricsServer:
    """An exporter whose counters grow by 100 commands and 1 MiB per scrape."""

    def __init__(self) -> None:
        self.scrapes = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                exporter.scrapes += 1
                n = exporter.scrapes
                body = (f'ceph_iscsi_lun_iops{{lun_name="rbd.disk_1",client_iqn="iqn.x:a"}} {100 * n}\n'
                        f'ceph_iscsi_lun_write_bytes{{lun_name="rbd.disk_1"}} {n << 20}\n').encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.8.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.8.1:{self.server.server_address[1]}/metrics"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_top_command_prints_refreshing_frames(tmp_path):
    exporter = MetricsServer()
    h = Harness(populated(), str(tmp_path / "prefs"))
    try:
        ok, out, err = h.run(f"top interval=0.2 count=2 sort=lun urls={exporter.url}")
    finally:
        h.close()
        exporter.close()
    assert ok, err
    frames = [f for f in out.split("gwcli top - ") if f]
    assert len(frames) == 2 and exporter.scrapes == 3
    row = next(line for line in frames[-1].splitlines() if line.startswith("rbd/disk_1 "))
    cells = row.split()
    assert cells[:2] == ["rbd/disk_1", "iscsi-igw/0"]
    assert 100 / 0.2 / 3 < float(cells[2]) < 100 / 0.2 * 1.5  # about 500 IOPS, timing is noisy
    assert cells[-2:] == ["gw1.example.com", "-"]


@pytest.mark.parametrize(("line", "message"), [
    ("top interval=0", "interval must be a number of seconds 0.1..3600, got '0'"),
    ("top count=-1", "count must be a whole number (0 = until q), got '-1'"),
    ("top sort=speed", "expected iops or mbps or latency or clients or moves or lun, got 'speed'"),
    ("top target=iqn.2003-01.com.example:none", "Target iqn.2003-01.com.example:none does not exist"),
])
def test_top_argument_errors(tmp_path, line, message):
    h = Harness(populated(), str(tmp_path / "prefs"))
    try:
        ok, _, err = h.run(line)
    finally:
        h.close()
    assert not ok and message in err
