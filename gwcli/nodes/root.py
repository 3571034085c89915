"""The root of the tree: ``/cluster``, ``/disks``, ``/iscsi-targets``; ``export``, ``info``, ``top``."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

from gwcli import top
from gwcli.args import CommandError, one_of
from gwcli.nodes.base import UICommon
from gwcli.nodes.cluster import CephGroup
from gwcli.nodes.disks import Disks
from gwcli.nodes.targets import ISCSITargets
from gwcli.transport import ApiError
from gwcli.view import View, load

if TYPE_CHECKING:
    from gateway.settings import Settings
    from gwcli.api import GatewayApi
    from gwcli.shell import GatewayShell


class GatewayRoot(UICommon):
    """``/``: everything the local API knows."""

    help_intro = """
                 gwcli manages the iSCSI gateways of a Ceph cluster through the local
                 rbd-target-api: disks (RBD images), targets, their gateways, host groups
                 and hosts (initiators).

                 /cluster shows the Ceph cluster, /disks the RBD images registered as
                 disks, /iscsi-targets the targets.  Use 'ls' to see the tree, 'cd' to move,
                 'help <command>' for a command's arguments, 'top' for live I/O per LUN.
                 """

    def __init__(self, shell: GatewayShell, api: GatewayApi, settings: Settings, threads: int = 8) -> None:
        super().__init__("/", shell=shell)
        self.api_client = api
        self.settings = settings
        self.threads = threads
        self._view: View | None = None
        self.lock = threading.RLock()

    # The root is its own ui_root; these shortcuts avoid walking up.
    @property
    def ui_root(self) -> GatewayRoot:
        return self

    @property
    def api(self) -> GatewayApi:
        return self.api_client

    @property
    def view(self) -> View:
        if self._view is None:
            raise CommandError("the configuration has not been loaded")
        return self._view

    def refresh(self) -> None:
        """Re-read everything from the API and rebuild the tree below ``/``."""
        view = load(self.api, self.settings.cluster_name, self.threads)
        with self.lock:
            self._view = view
            for child in list(self.children):
                self.remove_child(child)
            CephGroup(self)
            Disks(self)
            ISCSITargets(self)

    def set_gateways(self, gateways: dict) -> None:
        """Replace the gateway liveness (the background check calls this)."""
        with self.lock:
            if self._view is not None:
                self._view.gateways = gateways
                self._view.status_known = True

    def summary(self):
        return "...", None

    # ---- commands ------------------------------------------------------------------------
    def ui_command_export(self, mode: str = "copy") -> None:
        """
        Print the configuration (the API's /api/config document) as formatted JSON,
        for a backup or a support request.

        mode: copy (the only mode)
        """
        one_of(mode, ("copy",), "export [mode=copy]")
        try:
            config = self.api.config()
        except ApiError as e:
            raise CommandError(f"Unable to read the configuration: {e.message}") from None
        self.gw_shell.out(json.dumps(config, sort_keys=True, indent=4, separators=(",", ": ")))

    def ui_command_info(self) -> None:
        """
        Show how gwcli reaches the API.
        """
        s = self.settings
        mode = "https" if self.api.base_url.startswith("https") else "http"
        lines = [("HTTP mode", mode), ("Rest API port", s.api_port), ("Local endpoint", self.api.base_url),
                 ("Local Ceph Cluster", s.cluster_name),
                 ("2ndary API IP's", ",".join(s.trusted_ip_list) or "None")]
        self.gw_shell.out("\n".join(f"{k:<18} : {v}" for k, v in lines))

    def ui_command_refresh(self) -> None:
        """
        Re-read the whole configuration and every gateway's state from the API.
        """
        self.refresh()
        self.gw_shell.ok("ok")

    def ui_command_top(self, interval: str = "2", count: str = "0", sort: str = "iops",
                       target: str | None = None, urls: str | None = None) -> None:
        """
        Live per-LUN view from the gateways' Prometheus metrics: IOPS, MB/s read and
        written, mean latency, clients, owner and lock moves.  Press q (or Ctrl-C) to leave.

        interval ... seconds between refreshes (default 2)
        count ...... number of refreshes, 0 = until q (default)
        sort ....... iops, mbps, latency, clients, moves or lun (default iops)
        target ..... only the LUNs of this target
        urls ....... metrics URLs (comma separated) instead of each gateway's
                     http://<portal address>:<prometheus_port>/metrics
        """
        top.run(self, interval, count, sort, target, urls)
