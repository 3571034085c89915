"""``rbd-target-gw``: the gateway daemon.

It turns the cluster's desired state (the config store) into live iSCSI targets on this
node and reports back.  Modules:

* ``service``   life cycle: connect, blocklist hygiene, follow, apply, heartbeat, SIGHUP, drain
* ``reconcile`` desired config -> portal registry, disks, ALUA, listeners
* ``disks``     opening RBD (or memory) disks; per-ACL LUN tables with I/O counters
* ``alua``      the ALUA model of a LUN (owner's group optimized)
* ``locks``     taking/releasing the exclusive lock as ownership moves; lock thrashing
* ``status``    ``GatewayStatus.details`` (schema in ``gateway.config.status_details``)
* ``metrics``   the Prometheus exporter
* ``ceph``      the daemon's RADOS connection, ``osd blocklist`` commands

Command line (see docs/gateway.md)::

    rbd-target-gw [--cfg PATH] [--gateway-name NAME] [--prometheus-host H] [--prometheus-port P]
                  [--set KEY=VALUE ...] [--ready-file PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from typing import Any

from gateway import logs
from gateway import settings as settings_mod

DAEMON = "rbd-target-gw"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=DAEMON, description="the gateway daemon: serves the cluster's "
                                     "iSCSI targets on this node")
    settings_mod.add_cfg_argument(parser)
    parser.add_argument("--gateway-name", metavar="NAME",
                        help="this gateway's name in the config (default: gateway_name, else the FQDN)")
    parser.add_argument("--prometheus-host", metavar="HOST", help="metrics bind address (prometheus_host)")
    parser.add_argument("--prometheus-port", metavar="PORT", type=int,
                        help="metrics port (prometheus_port; 0 = any free port)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any setting of the cfg file (repeatable)")
    parser.add_argument("--ready-file", metavar="PATH",
                        help="write a JSON summary (pid, listening portals, metrics address, applied "
                             "version) here after every applied config")
    return parser.parse_args(argv)


def overrides_of(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise settings_mod.SettingsError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    if args.gateway_name:
        out["gateway_name"] = args.gateway_name
    if args.prometheus_host:
        out["prometheus_host"] = args.prometheus_host
    if args.prometheus_port is not None:
        if args.prometheus_port == 0:
            out["prometheus_port"] = 0  # any free port: bypasses the 1..65535 check below
        else:
            out["prometheus_port"] = args.prometheus_port
    return out


def load_settings(cfg: str | None, overrides: dict[str, Any]) -> settings_mod.Settings:
    port0 = overrides.get("prometheus_port") == 0
    rest = {k: v for k, v in overrides.items() if not (k == "prometheus_port" and port0)}
    settings = settings_mod.load(cfg, overrides=rest)
    if port0:
        settings.values["prometheus_port"] = 0
    return settings


def gateway_name(settings: settings_mod.Settings) -> str:
    return settings.gateway_name or socket.getfqdn()


def setup_logging(settings: settings_mod.Settings) -> None:
    """stderr (containers, tests) or syslog, plus ``<log_dir>/rbd-target-gw/rbd-target-gw.log``."""
    logs.setup_logging(settings, DAEMON)


def main(argv: list[str] | None = None) -> int:
    from gateway.daemon.service import EXIT_SETTINGS, GatewayService

    args = parse_args(argv)
    try:
        overrides = overrides_of(args)
        settings = load_settings(args.cfg, overrides)
    except settings_mod.SettingsError as e:
        print(f"{DAEMON}: {e}", file=sys.stderr)
        return EXIT_SETTINGS
    setup_logging(settings)
    service = GatewayService(settings, gateway_name(settings), cfg_path=args.cfg, overrides=overrides,
                             ready_file=args.ready_file)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(service.run())
    return uvloop.run(service.run())


if __name__ == "__main__":
    sys.exit(main())
