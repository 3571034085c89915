"""TEST-ONLY stand-in for ``rbd-target-gw``: follows the config and reports status like a
gateway would, without serving any iSCSI.

It exists so the API's "wait for the gateways" behaviour can be tested before the gateway
daemon does; ``tests/support/gateways.py`` starts it with the same ``--cfg`` a real
``rbd-target-gw`` takes, so the fixture can later launch the real daemon instead.

What it reports (``gateway.config.status_details`` schema): the config version it has
"applied" (every version it sees), a heartbeat every ``gateway_heartbeat_interval``, its
host addresses (``--ip``), its portals as listening, for every disk of the targets it
serves the image size read from RBD (so resizes show up) and whether it owns the LUN, and
sessions read from ``--sessions FILE`` (JSON ``{target: {initiator: {"alias", "ip_addresses"}}}``;
re-read every heartbeat) to stand in for logged-in initiators.  SIGTERM reports a final
status with heartbeat 0 (seen as down at once) and exits; SIGKILL leaves the last status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import threading
import time
from typing import Any

import rados
import rbd

from gateway import settings as settings_mod
from gateway.config.crypto import cipher_from_settings
from gateway.config.follow import ConfigFollower
from gateway.config.model import ClusterConfig
from gateway.config.rados_store import RadosConfigStore
from gateway.config.status import GatewayStatus
from gateway.config.status_details import (
    ClientSessions,
    DiskState,
    GatewayDetails,
    PortalState,
    TargetSessions,
)

log = logging.getLogger("fake_gateway")


class FakeGateway:
    def __init__(self, settings: Any, addresses: list[str], sessions_file: str | None) -> None:
        self.settings = settings
        self.name = settings.gateway_name
        self.addresses = addresses
        self.sessions_file = sessions_file
        self.cluster = rados.Rados(conffile=settings.ceph_conf, name=settings.cluster_client_name)
        self.cluster.connect(timeout=10)
        self.store = RadosConfigStore(self.cluster.open_ioctx(settings.pool), settings.gateway_conf,
                                      cipher=cipher_from_settings(settings))
        self.store.open()
        self.started = time.time()
        self.cfg: ClusterConfig | None = None
        self.last_details: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self.store.close()
        self.cluster.shutdown()

    # ---- what a gateway would observe ----------------------------------------------------
    def _sessions(self) -> dict[str, Any]:
        if not self.sessions_file:
            return {}
        try:
            with open(self.sessions_file) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def _size(self, disk: str) -> int | None:
        pool, image = disk.split("/", 1)
        try:
            with self.cluster.open_ioctx(pool) as io, rbd.Image(io, image, read_only=True) as img:
                return img.size()
        except (rados.Error, rbd.Error):
            return None

    def details(self, cfg: ClusterConfig) -> dict[str, Any]:
        served = {iqn: t for iqn, t in cfg.targets.items() if self.name in t.portals}
        sessions = self._sessions()
        portals = [PortalState(ip, self.settings.iscsi_port, True)
                   for t in served.values() for ip in t.portals[self.name].ip_addresses]
        targets = {}
        for iqn in served:
            clients = {name: ClientSessions(c.get("alias", ""), list(c.get("ip_addresses", [])), 1)
                       for name, c in sessions.get(iqn, {}).items()}
            targets[iqn] = TargetSessions(len(clients), clients)
        disks = {lun.disk: DiskState(size=self._size(lun.disk), lock_owner=lun.owner == self.name)
                 for t in served.values() for lun in t.luns.values()}
        return GatewayDetails(software_version="fake", checkconf=self.settings.checkconf_hash(),
                              ip_addresses=self.addresses, portals=portals, targets=targets,
                              disks=disks).to_dict()

    def report(self, announce: bool, heartbeat: float | None = None) -> None:
        with self._lock:
            if self.cfg is not None:
                self._report(self.cfg, announce, heartbeat)

    def _report(self, cfg: ClusterConfig, announce: bool, heartbeat: float | None) -> None:
        details = self.details(cfg)
        changed = details != self.last_details
        self.last_details = details
        status = GatewayStatus(self.name, cfg.version, details=details, started=self.started)
        if heartbeat is not None:
            status.heartbeat = heartbeat
        self.store.report_status(status, announce=announce or changed)

    # ---- loops ------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        follower = ConfigFollower(self.store, self.settings.config_poll_interval)

        async def follow() -> None:
            async for cfg in follower:
                self.cfg = cfg
                await asyncio.to_thread(self.report, True)

        async def heartbeat() -> None:
            while True:
                await asyncio.sleep(self.settings.gateway_heartbeat_interval)
                await asyncio.to_thread(self.report, False)

        tasks = [asyncio.create_task(follow()), asyncio.create_task(heartbeat())]
        await stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(self.report, True, 0.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fake_gateway", description="TEST-ONLY gateway stand-in")
    settings_mod.add_cfg_argument(parser)
    parser.add_argument("--ip", action="append", default=[], help="a host address to report")
    parser.add_argument("--sessions", help="JSON file of simulated logged-in initiators")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    settings = settings_mod.load(args.cfg)
    gw = FakeGateway(settings, args.ip, args.sessions)

    async def amain() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        print("fake gateway ready", flush=True)
        await gw.run(stop)

    try:
        asyncio.run(amain())
    finally:
        gw.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
