"""``top``: a live, refreshing per-LUN view fed by the gateways' metrics (gwtop's successor).

Each gateway's exporter is scraped every ``interval`` seconds; rates are the difference
between two scrapes.  The owner comes from the config, the rest from the metrics.  On a
terminal the screen is redrawn and ``q`` leaves; otherwise (batch, pipes) each refresh is
printed below the previous one.
"""

from __future__ import annotations

import ipaddress
import os
import select
import sys
import termios
import time
import tty
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import requests

from gwcli import args, metrics
from gwcli.args import CommandError
from gwcli.format import human_latency, human_rate
from gwcli.view import View, _dict

SORT_KEYS = ("iops", "mbps", "latency", "clients", "moves", "lun")
HEADER = ("DISK", "TARGET LUN", "IOPS", "READ MB/s", "WRITE MB/s", "LAT ms", "CLIENTS", "OWNER", "LOCK MOVES")


def metrics_sources(view: View, prometheus_port: int, target: str | None = None,
                    urls: str | None = None) -> list[tuple[str, str]]:
    """(name, URL) of each exporter to scrape: given URLs, else each gateway of the view."""
    if urls:
        return [(url, url) for url in (u.strip() for u in urls.split(",")) if url]
    sources = []
    for iqn, t in view.targets.items():
        if target and iqn != target:
            continue
        for name, portal in _dict(_dict(t).get("portals")).items():
            if any(name == s[0] for s in sources):
                continue
            gw = view.gateways.get(name)
            if gw is not None and gw.metrics_url:
                sources.append((name, gw.metrics_url))
                continue
            ips = list(_dict(portal).get("portal_ip_addresses") or [])
            host = ips[0] if ips else name
            try:
                if ipaddress.ip_address(host).version == 6:
                    host = f"[{host}]"
            except ValueError:
                pass
            sources.append((name, f"http://{host}:{prometheus_port}/metrics"))
    return sources


def scrape(sources: list[tuple[str, str]], object_names: Mapping[str, str],
           timeout: float) -> dict[str, metrics.Scrape]:
    def one(source: tuple[str, str]) -> metrics.Scrape:
        name, url = source
        started = time.monotonic()
        try:
            response = requests.get(url, timeout=timeout)
            response.raise_for_status()
        except requests.RequestException as e:
            return metrics.Scrape(name, started, error=type(e).__name__)
        return metrics.Scrape(name, started, metrics.parse(response.text, object_names))

    if not sources:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(sources))) as pool:
        return {s.gateway: s for s in pool.map(one, sources)}


def lun_rows(view: View, rates: Mapping[str, metrics.LunRate], target: str | None) -> list[dict]:
    """One row per mapped LUN of the config (and per unknown LUN the metrics mention)."""
    rows = []
    known = set()
    for iqn, t in view.targets.items():
        if target and iqn != target:
            continue
        for disk, entry in _dict(_dict(t).get("disks")).items():
            known.add(disk)
            rate = rates.get(disk, metrics.LunRate(disk))
            owner = view.disks[disk].owner if disk in view.disks else ""
            rows.append({"disk": disk, "lun": f"{iqn.rsplit(':', 1)[-1]}/{_dict(entry).get('lun_id', '?')}",
                         "rate": rate, "owner": owner})
    if not target:
        for disk, rate in rates.items():
            if disk not in known:
                rows.append({"disk": disk, "lun": "?", "rate": rate, "owner": ""})
    return rows


def _sort_key(sort: str):
    def key(row: dict):
        rate: metrics.LunRate = row["rate"]
        value = {"iops": rate.iops, "mbps": (rate.read_bps or 0) + (rate.write_bps or 0)
                 if rate.read_bps is not None or rate.write_bps is not None else None,
                 "latency": rate.latency, "clients": len(rate.clients), "moves": rate.lock_moves}.get(sort)
        return (-(value or 0.0), row["disk"])
    return (lambda row: row["disk"]) if sort == "lun" else key


def render(view: View, scrapes: Mapping[str, metrics.Scrape], rates: Mapping[str, metrics.LunRate],
           interval: float, sort: str = "iops", target: str | None = None, now: float | None = None) -> str:
    """One screen of ``top`` (pure: the tests feed it recorded scrapes)."""
    stamp = time.strftime("%H:%M:%S", time.localtime(now if now is not None else time.time()))
    sources = ", ".join(f"{name} {'unreachable (' + s.error + ')' if s.error else 'ok'}"
                        for name, s in sorted(scrapes.items())) or "none"
    rows = sorted(lun_rows(view, rates, target), key=_sort_key(sort))
    table = [HEADER]
    for row in rows:
        rate: metrics.LunRate = row["rate"]
        moves = "-"
        if rate.lock_moves is not None:
            moves = f"{rate.lock_moves:.0f}"
            if rate.lock_moves_delta:
                moves += f" (+{rate.lock_moves_delta:.0f})"
        table.append((row["disk"], row["lun"], "-" if rate.iops is None else f"{rate.iops:.0f}",
                      human_rate(rate.read_bps), human_rate(rate.write_bps), human_latency(rate.latency),
                      str(len(rate.clients)), row["owner"] or "-", moves))
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    lines = [f"gwcli top - {stamp} - every {interval:g}s - sort {sort} - metrics: {sources}"]
    total_iops = sum(r["rate"].iops or 0 for r in rows)
    total_read = sum(r["rate"].read_bps or 0 for r in rows)
    total_write = sum(r["rate"].write_bps or 0 for r in rows)
    lines.append(f"LUNs: {len(rows)}  IOPS: {total_iops:.0f}  read: {human_rate(total_read)} MB/s  "
                 f"write: {human_rate(total_write)} MB/s")
    lines.append("")
    for r in table:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(r[2:7], widths[2:7], strict=True)]
        cells += [r[7].ljust(widths[7]), r[8].rjust(widths[8])]
        lines.append("  ".join(cells).rstrip())
    if len(table) == 1:
        lines.append("(no LUN mapped" + (f" in {target})" if target else ")"))
    return "\n".join(lines)


class _Keys:
    """Single key presses on a terminal (cbreak mode), restored on exit."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno() if sys.stdin.isatty() else None
        self.saved = None

    def __enter__(self) -> _Keys:
        if self.fd is not None:
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc) -> None:
        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when the user pressed q."""
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self.fd is None:
                time.sleep(remaining)
                return False
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready and os.read(self.fd, 1) in (b"q", b"Q"):
                return True


def run(node, interval: str, count: str, sort: str, target: str | None, urls: str | None) -> None:
    try:
        every = float(interval)
    except ValueError:
        every = 0.0
    if not 0.1 <= every <= 3600:
        raise CommandError(f"interval must be a number of seconds 0.1..3600, got {interval!r}")
    text = str(count).strip()
    if not text.isdigit():
        raise CommandError(f"count must be a whole number (0 = until q), got {count!r}")
    frames = int(text)
    sort = args.one_of(sort, SORT_KEYS, "top [interval=2] [count=0] [sort=" + "|".join(SORT_KEYS) + "]")
    view = node.view
    if target is not None:
        target = args.target_iqn(target)
        if target not in view.targets:
            raise CommandError(f"Target {target} does not exist")
    settings = node.ui_root.settings
    sources = metrics_sources(view, settings.prometheus_port, target, urls)
    if not sources:
        raise CommandError("no gateway to read metrics from (no target has gateways); give urls=")
    disks = _dict(view.config.get("disks"))
    object_names = {str(_dict(d).get("backstore_object_name")): name
                    for name, d in disks.items() if _dict(d).get("backstore_object_name")}
    shell = node.gw_shell
    screen = sys.stdout.isatty() and shell.con._stdout is sys.stdout
    timeout = max(0.5, min(every, 5.0))
    shown = 0
    with _Keys() as keys:
        before = scrape(sources, object_names, timeout)
        try:
            while frames == 0 or shown < frames:
                if keys.wait(every):
                    break
                after = scrape(sources, object_names, timeout)
                frame = render(view, after, metrics.rates(before, after), every, sort, target)
                if screen:
                    frame = "\033[H\033[2J" + frame + "\n\n(q to quit)"
                elif shown:
                    frame = "\n" + frame
                shell.out(frame)
                before = after
                shown += 1
        except KeyboardInterrupt:
            pass
