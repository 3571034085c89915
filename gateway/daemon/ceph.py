"""The daemon's own RADOS connection: config store, reservation state, blocklist hygiene.

Images are not opened here: each image gets its own RADOS client in the RBD backend, so
that the blocklisting that fences one image's old owner never touches this connection.
Everything here blocks; the daemon calls it from a worker thread.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)

MON_TIMEOUT = 30


class CephError(RuntimeError):
    """The cluster cannot be reached or refused a command."""


def keyring_path(settings: Any) -> str | None:
    """``<ceph_config_dir>/<cluster>.<client>.keyring`` when it exists (ceph's own default
    only looks in /etc/ceph); None lets the conf file decide."""
    name = f"{settings.cluster_name}.{settings.cluster_client_name}.keyring"
    path = os.path.join(settings.ceph_config_dir, name)
    return path if os.path.exists(path) else None


class CephClient:
    """One librados handle for the daemon, with an ioctx per pool (opened on first use)."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.conf = settings.ceph_conf
        self.name = settings.cluster_client_name
        self.keyring = keyring_path(settings)
        self._cluster: Any = None
        self._ioctxs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def connect(self, timeout: int = MON_TIMEOUT) -> None:
        import rados

        conf = {"rados_osd_op_timeout": str(MON_TIMEOUT), "rados_mon_op_timeout": str(MON_TIMEOUT)}
        if self.keyring:
            conf["keyring"] = self.keyring
        if not os.path.exists(self.conf):
            raise CephError(f"{self.conf} does not exist (cluster_name / ceph_config_dir in the cfg)")
        cluster = rados.Rados(conffile=self.conf, name=self.name, conf=conf)
        try:
            cluster.connect(timeout=timeout)
        except rados.Error as e:
            cluster.shutdown()
            raise CephError(f"cannot connect to the cluster with {self.conf} as {self.name}: {e}") from None
        self._cluster = cluster

    @property
    def cluster(self) -> Any:
        return self._cluster

    def ioctx(self, pool: str) -> Any:
        import rados

        with self._lock:
            io = self._ioctxs.get(pool)
            if io is None:
                try:
                    io = self._cluster.open_ioctx(pool)
                except rados.ObjectNotFound:
                    raise CephError(f"pool {pool!r} does not exist") from None
                except rados.Error as e:
                    raise CephError(f"cannot open pool {pool!r}: {e}") from None
                self._ioctxs[pool] = io
            return io

    def address(self) -> str:
        """This client's address as the cluster sees it (``ip:port/nonce``)."""
        return str(self._cluster.get_addrs())

    def mon_command(self, cmd: dict[str, Any]) -> tuple[int, bytes, str]:
        ret, out, err = self._cluster.mon_command(json.dumps(cmd), b"", timeout=MON_TIMEOUT)
        return ret, out, err

    # ---- blocklist ---------------------------------------------------------------------
    def blocklist(self) -> list[str]:
        """Blocklisted client addresses (``osd blocklist ls``; ``blacklist`` on old clusters)."""
        for prefix in ("osd blocklist ls", "osd blacklist ls"):
            ret, out, err = self.mon_command({"prefix": prefix, "format": "json"})
            if ret == 0:
                return parse_blocklist(out)
        raise CephError(f"osd blocklist ls failed: {err}")

    def unblocklist(self, addr: str) -> None:
        for prefix, op in (("osd blocklist", "blocklistop"), ("osd blacklist", "blacklistop")):
            ret, _, err = self.mon_command({"prefix": prefix, op: "rm", "addr": addr})
            if ret == 0:
                return
        raise CephError(f"osd blocklist rm {addr} failed: {err}")

    def remove_stale_blocklist(self, own_ips: set[str]) -> list[str]:
        """Remove blocklist entries of this gateway's addresses, as ceph-iscsi does at start.

        They fenced earlier incarnations of this gateway (whose lock was broken by another
        gateway); those processes are gone, and a stale entry whose nonce gets reused would
        fence the new process.  Returns the removed addresses."""
        removed = []
        for addr in self.blocklist():
            if address_ip(addr) in own_ips:
                try:
                    self.unblocklist(addr)
                except CephError as e:
                    log.warning("%s", e)
                    continue
                removed.append(addr)
        return removed

    def shutdown(self) -> None:
        with self._lock:
            for io in self._ioctxs.values():
                io.close()
            self._ioctxs.clear()
        if self._cluster is not None:
            self._cluster.shutdown()
            self._cluster = None


def parse_blocklist(out: bytes) -> list[str]:
    """Addresses from ``osd blocklist ls -f json``: Pacific prints the address list followed by
    the (empty) range list, ``[...][]``, so only the first JSON value is read."""
    text = out.decode(errors="replace").strip()
    if not text:
        return []
    value, _ = json.JSONDecoder().raw_decode(text)
    return [str(e["addr"]) for e in value if isinstance(e, dict) and "addr" in e]


def address_ip(addr: str) -> str:
    """``127.0.0.1:0/123`` -> ``127.0.0.1``; ``v2:[::1]:6800/7`` -> ``::1``."""
    addr = addr.split(",")[0]
    for kind in ("v1:", "v2:", "any:"):
        addr = addr.removeprefix(kind)
    host = addr.rsplit("/", 1)[0]
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    else:
        host = host.rsplit(":", 1)[0]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host
