"""``<target>/gateways``: the gateways serving a target (its portals), their liveness, drain."""

from __future__ import annotations

from typing import Any

from gwcli import args
from gwcli.args import CommandError
from gwcli.nodes.base import UIGroup, UINode
from gwcli.transport import ApiError
from gwcli.view import GatewayView, _dict, parse_gateway_status


def reachability(view) -> tuple[str, bool]:
    """The line gwcli prints about gateway liveness, and whether all are up."""
    if not view.gateways:
        return "", True
    if not view.status_known:
        return "Gateway state unknown: the API does not report gateway status", False
    down = view.down_gateways()
    if not down:
        return "All gateways accessible", True
    names = ", ".join(f"{name} ({view.gateways[name].state})" for name in down)
    return (f"{len(down)} gateway(s) inaccessible: {names} - changes are still accepted and "
            "apply when they return"), False


def check_gateways(root) -> tuple[str, bool]:
    """Re-read gateway liveness from the API into the root's view."""
    view = root.view
    names = sorted(view.gateways)
    try:
        body = root.api.gateway_status()
    except ApiError:
        root.set_gateways({name: GatewayView(name) for name in names})
        root.view.status_known = False
    else:
        root.set_gateways(parse_gateway_status(body, names))
    return reachability(root.view)


def drain(group: GatewayGroup, name: str) -> None:
    target = group.parent
    portals = _dict(target.config.get("portals"))
    if name not in portals:
        raise CommandError(f"Gateway {name} does not serve target {target.target_iqn}")
    if len(portals) < 2:
        raise CommandError(f"{name} is the only gateway of {target.target_iqn}: there is no other "
                           "gateway to move its LUNs to")
    owned = [d for d in _dict(target.config.get("disks")) if group.view.disks.get(d)
             and group.view.disks[d].owner == name]
    if not owned:
        group.gw_shell.ok(f"ok ({name} owns no LUN of {target.target_iqn})")
        return
    group.gw_shell.info(f"Moving {len(owned)} LUN(s) of {target.target_iqn} away from {name}")
    group.change(lambda: group.api.drain_gateway(target.target_iqn, name, group.progress))


class GatewayGroup(UIGroup):
    help_intro = """
                 The gateways serving this target: one portal (path) each.  Every gateway
                 runs rbd-target-gw and rbd-target-api; add the local one first.  A
                 gateway that is down does not block changes: it applies them when it
                 returns.
                 """

    def __init__(self, parent) -> None:
        super().__init__("gateways", parent)
        self.bookmark("gateways")
        for name, portal in _dict(parent.config.get("portals")).items():
            Gateway(self, name, _dict(portal))

    def summary(self):
        states = [gw.state for gw in self.children]
        up = states.count("UP")
        return f"Up: {up}/{len(states)}, Portals: {len(states)}", up == len(states)

    def ui_command_create(self, gateway_name, ip_addresses, nosync="false", skipchecks="false") -> None:
        """
        Add a gateway to this target: its name (host name or FQDN, as it names itself)
        and the IP address(es) of its portal, comma separated.

        nosync ..... accepted for compatibility (every gateway reads the whole config)
        skipchecks . skip the API's checks of the new gateway (developer option ONLY)
        e.g. create ceph-gw-1 10.172.19.21
        """
        name = args.gateway_name(gateway_name)
        ips = args.ip_list(ip_addresses)
        no_sync = args.parse_bool(nosync, "nosync")
        skip = args.parse_bool(skipchecks, "skipchecks")
        target = self.parent
        if name in _dict(target.config.get("portals")):
            raise CommandError(f"Gateway {name} already serves target {target.target_iqn}")
        if skip:
            self.gw_shell.warn("OS version/package checks have been bypassed")
        disks = len(_dict(target.config.get("disks")))
        clients = len(_dict(target.config.get("clients")))
        self.gw_shell.info("Adding gateway, " + ("sync skipped" if no_sync else
                                                 f"sync'ing {disks} disk(s) and {clients} client(s)"))
        self.change(lambda: self.api.add_gateway(target.target_iqn, name, ips, no_sync, skip))

    def ui_command_delete(self, gateway_name, confirm="false") -> None:
        """
        Remove a gateway from this target; the other gateways keep their TPG tags and
        sessions.  The last gateway needs confirm=true (the target keeps no portal).

        e.g. delete ceph-gw-2
        """
        name = args.gateway_name(gateway_name)
        sure = args.parse_bool(confirm, "confirm")
        target = self.parent
        portals = _dict(target.config.get("portals"))
        if name not in portals:
            raise CommandError(f"Gateway {name} does not serve target {target.target_iqn}")
        if len(portals) == 1 and not sure:
            raise CommandError("Deleting the last gateway will remove all objects on this target. "
                               "Use confirm=true")
        self.gw_shell.info(f"Deleting gateway, {name}")
        self.change(lambda: self.api.delete_gateway(target.target_iqn, name, sure))

    def ui_command_drain(self, gateway_name) -> None:
        """
        Move every LUN this gateway owns in this target to the other gateways (before
        maintenance).  Its path stays up, non-optimized.

        e.g. drain ceph-gw-1
        """
        drain(self, args.gateway_name(gateway_name))

    def ui_command_refresh(self) -> None:
        """
        Check again which gateways are up.
        """
        if not self.children:
            raise CommandError("No gateways to refresh")
        line, healthy = check_gateways(self.ui_root)
        (self.gw_shell.info if healthy else self.gw_shell.warn)(line)

    def ui_command_info(self) -> None:
        """
        Show each gateway of this target.
        """
        for child in self.children:
            child.ui_command_info()


class Gateway(UINode):
    display_attributes = ("name", "gateway_ip_list", "portal_ip_addresses", "inactive_portal_ips", "tpgs",
                          "tpg_tag", "service_state")

    def __init__(self, parent: GatewayGroup, name: str, portal: dict[str, Any]) -> None:
        super().__init__(name, parent)
        self.portal = portal

    @property
    def state(self) -> str:
        gw = self.view.gateways.get(self.name)
        return gw.state if gw else "UNKNOWN"

    @property
    def gateway_ip_list(self) -> list[str]:
        return list(self.portal.get("gateway_ip_list") or [])

    @property
    def portal_ip_addresses(self) -> list[str]:
        return list(self.portal.get("portal_ip_addresses") or [])

    @property
    def inactive_portal_ips(self) -> list[str]:
        return list(self.portal.get("inactive_portal_ips") or [])

    @property
    def tpgs(self) -> Any:
        return self.portal.get("tpgs", "")

    @property
    def tpg_tag(self) -> Any:
        return self.portal.get("tpg_tag", "")

    @property
    def service_state(self) -> dict[str, Any]:
        gw = self.view.gateways.get(self.name) or GatewayView(self.name)
        out: dict[str, Any] = {"state": gw.state, "iscsi": gw.iscsi}
        if gw.applied_version is not None:
            out["applied_version"] = gw.applied_version
        if gw.heartbeat_age is not None:
            # a gateway that stopped cleanly reports heartbeat 0 (the epoch)
            out["heartbeat"] = "stopped" if gw.heartbeat_age > 1e8 else f"{gw.heartbeat_age:.0f}s ago"
        if gw.health:
            out["health"] = gw.health
        if gw.message:
            out["message"] = gw.message
        return out

    def summary(self):
        state = self.state
        return f"{','.join(self.portal_ip_addresses)} ({state})", state == "UP"

    def ui_command_refresh(self) -> None:
        """
        Check again whether this gateway is up.
        """
        check_gateways(self.ui_root)
        self.gw_shell.info(f"{self.name}: {self.state}")

    def ui_command_drain(self) -> None:
        """
        Move every LUN this gateway owns in this target to the other gateways.
        """
        drain(self.parent, self.name)
