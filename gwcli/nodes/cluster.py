"""``/cluster``: the Ceph cluster's health, pools and topology, as the API reports them."""

from __future__ import annotations

from gwcli.format import human_size
from gwcli.nodes.base import UIGroup, UINode
from gwcli.transport import ApiError
from gwcli.view import ClusterView, PoolView, parse_cluster

HEALTH_COLOUR = {"HEALTH_OK": True, "HEALTH_WARN": None, "HEALTH_ERR": False}


class CephGroup(UIGroup):
    help_intro = """
                 An overview of the Ceph cluster: its health, and per pool how much of
                 the space is committed to disks (thin provisioning may overcommit).
                 Use 'refresh' to read it again.
                 """

    def __init__(self, parent) -> None:
        super().__init__("cluster", parent)
        CephCluster(self)

    def summary(self):
        return f"Clusters: {len(self.children)}", None

    def ui_command_refresh(self) -> None:
        """
        Read the cluster's health and pool statistics again.
        """
        refresh_cluster(self)
        self.gw_shell.ok("ok")


def refresh_cluster(node) -> None:
    try:
        body = node.api.cluster()
    except ApiError as e:
        node.gw_shell.warn(f"cluster facts unavailable: {e.message}")
        return
    root = node.ui_root
    root.view.cluster = parse_cluster(body, root.settings.cluster_name)
    group = root.get_child("cluster")
    for child in list(group.children):
        group.remove_child(child)
    CephCluster(group)


class CephCluster(UIGroup):
    def __init__(self, parent) -> None:
        super().__init__(parent.view.cluster.name, parent)
        CephPools(self)
        CephTopology(self)

    @property
    def cluster(self) -> ClusterView:
        return self.view.cluster

    def summary(self):
        health = self.cluster.health
        return health, HEALTH_COLOUR.get(health)

    def ui_command_refresh(self) -> None:
        """
        Read the cluster's health and pool statistics again.
        """
        refresh_cluster(self)
        self.gw_shell.ok("ok")

    def ui_command_info(self) -> None:
        """
        Show the cluster's version, health, daemons and capacity.
        """
        c = self.cluster
        lines = [f"Cluster name: {c.name}", f"Ceph version: {c.version or 'unknown'}",
                 f"Health      : {c.health}"]
        if c.health != "HEALTH_OK" and c.checks:
            lines.append(f" - {','.join(c.checks)}")
        quorum = len(c.quorum)
        out_of = (c.mons - quorum) if c.mons is not None else "?"
        lines += ["", f"MONs : {_n(c.mons):>4} (quorum {quorum}, out of quorum: {out_of})",
                  f"OSDs : {_n(c.osds):>4} ({_n(c.osds_up)} up, {_n(c.osds_in)} in)",
                  f"Pools: {len(c.pools):>4}", f"Raw capacity: {human_size(c.raw_bytes)}",
                  "", f"Config : {c.conf or self.ui_root.settings.ceph_conf}",
                  f"Client Name: {c.client_name or self.ui_root.settings.cluster_client_name}"]
        self.gw_shell.out("\n".join(lines))


def _n(value) -> str:
    return "?" if value is None else str(value)


class CephPools(UIGroup):
    help_intro = """
                 Each pool with its protection (replicas or k+m), how much space the disks
                 defined in it could use (Commit) against what the pool can still store,
                 and the space used.
                 """

    def __init__(self, parent) -> None:
        super().__init__("pools", parent)
        for pool in parent.cluster.pools.values():
            RadosPool(self, pool)

    def summary(self):
        return f"Pools: {len(self.children)}", True if self.view.cluster.available else None


class RadosPool(UINode):
    display_attributes = ("name", "commit", "overcommit_PCT", "max_bytes", "used_bytes", "type", "desc")

    def __init__(self, parent, pool: PoolView) -> None:
        super().__init__(pool.name, parent)
        self.pool = pool

    @property
    def commit(self) -> int:
        """Logical size of every disk defined in this pool."""
        return sum(d.size or 0 for d in self.view.disks.values() if d.pool == self.name)

    @property
    def overcommit_PCT(self) -> int:  # noqa: N802 - ceph-iscsi's attribute name, shown by info
        if not self.pool.max_bytes:
            return 0
        return int(self.commit * 100 / self.pool.max_bytes)

    @property
    def max_bytes(self):
        return self.pool.max_bytes

    @property
    def used_bytes(self):
        return self.pool.used_bytes

    @property
    def type(self) -> str:
        return self.pool.type

    @property
    def desc(self) -> str:
        return self.pool.desc

    def summary(self):
        return (f"({self.desc}), Commit: {human_size(self.commit)}/{human_size(self.max_bytes)} "
                f"({self.overcommit_PCT}%), Used: {human_size(self.used_bytes)}"), True


class CephTopology(UINode):
    display_attributes = ("num_osds", "num_mons")

    def __init__(self, parent) -> None:
        super().__init__("topology", parent)

    @property
    def num_osds(self) -> str:
        return _n(self.view.cluster.osds)

    @property
    def num_mons(self) -> str:
        return _n(self.view.cluster.mons)

    def summary(self):
        return f"OSDs: {self.num_osds},MONs: {self.num_mons}", True if self.view.cluster.available else None
