"""Who may call the API: HTTP Basic credentials, and for most endpoints a trusted source.

ceph-iscsi's rules, kept: the source address must be the local host, a gateway (its
resolved name, a portal address of any target), or listed in ``trusted_ip_list``; a
request from elsewhere gets 403 naming the rejected address, checked before credentials.
Addresses compare as addresses, not strings: IPv6 in any spelling, ``%scope`` suffixes
dropped, IPv4-mapped IPv6 (``::ffff:a.b.c.d``, what a dual-stack listener reports for an
IPv4 client) taken as the IPv4 address.  ``trusted_ip_list`` may also hold networks
(``10.0.0.0/24``).  Additions: addresses the gateways report in their status count as
gateway addresses, and the API refuses to start with the well-known admin/admin
credentials unless ``allow_default_api_password`` is set (a demo).

Rejections never consult the cluster more than once a second, and never resolve names on
the request path (names are resolved in the background and cached).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("api.auth")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_CREDENTIALS = ("admin", "admin")
NAME_TTL = 300.0


def credentials_problem(settings: Any) -> str | None:
    """Why the configured credentials must not be used, or None."""
    if not settings.api_user or not settings.api_password:
        return "api_user and api_password must be set in iscsi-gateway.cfg"
    if (settings.api_user, settings.api_password) == DEFAULT_CREDENTIALS and \
            not settings.allow_default_api_password:
        return ("refusing to start with the default API credentials admin/admin: set api_user and "
                "api_password in iscsi-gateway.cfg (or allow_default_api_password = true for a demo)")
    return None


def credentials_match(settings: Any, username: str | None, password: str | None) -> bool:
    """Constant-time comparison of both fields (no early exit that would leak which failed)."""
    user_ok = hmac.compare_digest((username or "").encode(), settings.api_user.encode())
    pass_ok = hmac.compare_digest((password or "").encode(), settings.api_password.encode())
    return user_ok and pass_ok


def normalize_address(text: str | None) -> IPAddress | None:
    """A peer address as an ``ip_address``: scope dropped, IPv4-mapped IPv6 unwrapped."""
    if not text:
        return None
    text = text.strip().strip("[]").split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def parse_trusted(entries: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``trusted_ip_list`` entries as networks (a single address is a /32 or /128)."""
    nets = []
    for entry in entries:
        text = entry.strip().strip("[]").split("%", 1)[0]
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"trusted_ip_list entry {entry!r} is not an IP address or network") from None
        if isinstance(net, ipaddress.IPv6Network) and net.prefixlen == 128 and \
                net.network_address.ipv4_mapped is not None:
            net = ipaddress.ip_network(net.network_address.ipv4_mapped)
        nets.append(net)
    return nets


def _resolve(name: str) -> set[IPAddress]:
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return set()
    out = set()
    for info in infos:
        addr = normalize_address(str(info[4][0]))
        if addr is not None:
            out.add(addr)
    return out


class SourcePolicy:
    """The set of source addresses allowed on restricted endpoints.

    ``loader()`` returns ``(addresses, names)`` from the current config and gateway status:
    portal and reported addresses, and gateway names to resolve.
    """

    def __init__(self, trusted: Iterable[str], loader: Callable[[], tuple[set[str], set[str]]],
                 resolve: Callable[[str], set[IPAddress]] = _resolve, max_age: float = 30.0) -> None:
        self.trusted = parse_trusted(trusted)
        self._loader = loader
        self._resolve = resolve
        self.max_age = max_age
        self._lock = threading.Lock()
        self._known: frozenset[IPAddress] = frozenset()
        self._loaded_at = 0.0
        self._last_attempt = 0.0
        self._stale = True
        self._names: dict[str, tuple[float, set[IPAddress]]] = {}
        self._resolving: set[str] = set()
        self.localhost = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
        self._resolve_later(["localhost"])

    def mark_stale(self, _version: int | None = None) -> None:
        """Config changed (a watch callback): re-read before rejecting anyone."""
        self._stale = True

    def allows(self, address: IPAddress | None) -> bool:
        if address is None:
            return False
        if self._static_allows(address) or address in self._known:
            return True
        if self._refresh_if_due():
            return address in self._known
        return False

    def _static_allows(self, address: IPAddress) -> bool:
        if address in self.localhost:
            return True
        local = self._names.get("localhost")
        if local and address in local[1]:
            return True
        return any(address in net for net in self.trusted if net.version == address.version)

    def _refresh_if_due(self) -> bool:
        now = time.monotonic()
        with self._lock:
            due = self._stale or now - self._loaded_at > self.max_age
            if not due or now - self._last_attempt < 1.0:
                return False
            self._last_attempt = now
        self.refresh()
        return True

    def refresh(self) -> None:
        """Re-read addresses from the config and status (raises StoreError when unreachable)."""
        self._stale = False
        addresses, names = self._loader()
        known = {a for a in (normalize_address(x) for x in addresses) if a is not None}
        now = time.monotonic()
        missing = []
        for name in names:
            cached = self._names.get(name)
            if cached is None or now - cached[0] > NAME_TTL:
                missing.append(name)
            if cached is not None:
                known |= cached[1]
        self._resolve_later(missing)
        with self._lock:
            self._known = frozenset(known)
            self._loaded_at = now

    def _resolve_later(self, names: list[str]) -> None:
        todo = [n for n in names if n not in self._resolving]
        if not todo:
            return
        self._resolving.update(todo)

        def work() -> None:
            for name in todo:
                try:
                    self._names[name] = (time.monotonic(), self._resolve(name))
                finally:
                    self._resolving.discard(name)
            self._stale = True  # fold the new addresses in at the next check

        threading.Thread(target=work, name="api-resolve", daemon=True).start()
