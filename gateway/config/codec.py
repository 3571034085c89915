"""The model <-> omap keys: one key per entity, a JSON value each.

Keys (components percent-encoded so that ``/`` only ever separates them)::

    meta                               {"created", "schema", "extra"}
    discovery_auth                     CHAP fields in ceph-iscsi's shape
    gateway/<name>                     {"created", "updated", ...}
    disk/<pool>/<image>                {"pool", "image", "wwn", "backstore", ...}
    target/<iqn>                       {"acl_enabled", "auth", "controls", "created", "updated"}
    portal/<iqn>/<gateway>             {"tpg_tag", "ip_addresses"}
    lun/<iqn>/<pool>/<image>           {"lun_id", "owner"}
    client/<iqn>/<client iqn>          {"auth", "group_name", "luns": {disk: lun_id}}
    group/<iqn>/<name>                 {"members", "disks": {disk: lun_id}}

``version`` and ``updated`` are written by the store with every commit and are not entities.
Pure functions only: the stores and the tests share them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from gateway.config.crypto import NO_CIPHER, SecretCipher
from gateway.config.errors import SecretError
from gateway.config.model import (
    DEFAULT_ISCSI_PORT,
    ChapAuth,
    Client,
    ClusterConfig,
    Disk,
    Gateway,
    HostGroup,
    Portal,
    Target,
    TargetLun,
)

VERSION_KEY = "version"
UPDATED_KEY = "updated"
META_KEY = "meta"
DISCOVERY_KEY = "discovery_auth"
SCHEMA = 1  # of our omap layout; bump with a migration when it changes

TARGET_CHILD_KINDS = ("portal", "lun", "client", "group")
STAMPED_KINDS = ("target", "disk", "gateway")


# ---- keys ----------------------------------------------------------------------------
def _q(part: str) -> str:
    if "/" not in part and "%" not in part and part.isascii() and part.isprintable():
        return part  # the common case: nothing to escape (quote() is slow)
    return quote(part, safe=":@+=,")


def make_key(kind: str, *parts: str) -> str:
    return "/".join((kind, *(_q(p) for p in parts)))


def split_key(key: str) -> tuple[str, list[str]]:
    kind, *parts = key.split("/")
    return kind, [unquote(p) for p in parts]


def gateway_key(name: str) -> str:
    return make_key("gateway", name)


def disk_key(disk: str) -> str:
    pool, image = disk.split("/", 1)
    return make_key("disk", pool, image)


def target_key(iqn: str) -> str:
    return make_key("target", iqn)


def portal_key(iqn: str, gateway: str) -> str:
    return make_key("portal", iqn, gateway)


def lun_key(iqn: str, disk: str) -> str:
    pool, image = disk.split("/", 1)
    return make_key("lun", iqn, pool, image)


def client_key(iqn: str, client: str) -> str:
    return make_key("client", iqn, client)


def group_key(iqn: str, name: str) -> str:
    return make_key("group", iqn, name)


# ---- values --------------------------------------------------------------------------
def _dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _seal(value: str, sealed: bool, cipher: SecretCipher | None) -> tuple[str, bool]:
    """(stored value, encrypted?) for one secret; ``cipher=None`` gives the canonical form."""
    if sealed:
        return value, True
    if value and cipher is not None and cipher.can_encrypt:
        return cipher.encrypt(value), True
    return value, False


def encode_auth(auth: ChapAuth, cipher: SecretCipher | None) -> dict[str, Any]:
    password, password_enc = _seal(auth.password, auth.password_sealed, cipher)
    mutual, mutual_enc = _seal(auth.mutual_password, auth.mutual_password_sealed, cipher)
    return {"username": auth.username, "password": password, "password_encryption_enabled": password_enc,
            "mutual_username": auth.mutual_username, "mutual_password": mutual,
            "mutual_password_encryption_enabled": mutual_enc}


def _open(value: str, encrypted: bool, cipher: SecretCipher) -> tuple[str, bool]:
    """(value, sealed) for one stored secret."""
    if not (encrypted and value):
        return value, False
    if not cipher.can_decrypt:
        return value, True
    try:
        return cipher.decrypt(value), False
    except SecretError:
        return value, True


def decode_auth(raw: Mapping[str, Any] | None, cipher: SecretCipher = NO_CIPHER) -> ChapAuth:
    raw = raw or {}
    password, p_sealed = _open(str(raw.get("password", "")), bool(raw.get("password_encryption_enabled")),
                               cipher)
    mutual, m_sealed = _open(str(raw.get("mutual_password", "")),
                             bool(raw.get("mutual_password_encryption_enabled")), cipher)
    return ChapAuth(username=str(raw.get("username", "")), password=password,
                    mutual_username=str(raw.get("mutual_username", "")), mutual_password=mutual,
                    password_sealed=p_sealed, mutual_password_sealed=m_sealed)


def _entities(cfg: ClusterConfig, cipher: SecretCipher | None) -> Iterable[tuple[str, Any]]:
    """(key, JSON value) of every entity."""
    yield META_KEY, {"created": cfg.created, "schema": SCHEMA, "extra": cfg.extra}
    yield DISCOVERY_KEY, encode_auth(cfg.discovery_auth, cipher)
    for gw in cfg.gateways.values():
        yield gateway_key(gw.name), {**gw.extra, "created": gw.created, "updated": gw.updated}
    for disk in cfg.disks.values():
        yield disk_key(disk.name), {
            **disk.extra, "pool": disk.pool, "image": disk.image, "wwn": disk.wwn,
            "backstore": disk.backstore, "backstore_object_name": disk.backstore_object_name,
            "pool_id": disk.pool_id, "allocating_host": disk.allocating_host,
            "controls": disk.controls, "created": disk.created, "updated": disk.updated}
    for t in cfg.targets.values():
        yield target_key(t.iqn), {**t.extra, "acl_enabled": t.acl_enabled,
                                  "auth": encode_auth(t.auth, cipher), "controls": t.controls,
                                  "created": t.created, "updated": t.updated}
        for p in t.portals.values():
            yield portal_key(t.iqn, p.gateway), _encode_portal(p)
        for lun in t.luns.values():
            yield lun_key(t.iqn, lun.disk), {"lun_id": lun.lun_id, "owner": lun.owner}
        for c in t.clients.values():
            yield client_key(t.iqn, c.iqn), {**c.extra, "auth": encode_auth(c.auth, cipher),
                                             "group_name": c.group_name, "luns": c.luns}
        for g in t.groups.values():
            yield group_key(t.iqn, g.name), {**g.extra, "members": g.members, "disks": g.disks}


def _encode_portal(p: Portal) -> dict[str, Any]:
    """Port and advertised addresses only when set: older readers keep them in ``extra``."""
    out = {**p.extra, "tpg_tag": p.tpg_tag, "ip_addresses": p.ip_addresses}
    if p.port != DEFAULT_ISCSI_PORT:
        out["port"] = p.port
    if p.advertise:
        out["advertise"] = p.advertise
    return out


def encode(cfg: ClusterConfig, cipher: SecretCipher | None = NO_CIPHER,
           keys: Iterable[str] | None = None) -> dict[str, bytes]:
    """Stored bytes of every entity (or of ``keys`` only); ``cipher=None`` = canonical form.

    The canonical form never encrypts, so two encodings of equal states are equal bytes
    (RSA-OAEP is randomised): diffs are computed on it.
    """
    wanted = None if keys is None else set(keys)
    out = {k: v for k, v in cfg.stray.items() if wanted is None or k in wanted}
    for key, value in _entities(cfg, cipher):
        if wanted is None or key in wanted:
            out[key] = _dumps(value)
    return out


def diff(old: ClusterConfig, new: ClusterConfig) -> tuple[set[str], set[str]]:
    """(keys to write, keys to remove) turning ``old`` into ``new``."""
    before, after = encode(old, None), encode(new, None)
    changed = {k for k, v in after.items() if before.get(k) != v}
    return changed, set(before) - set(after)


@dataclass(frozen=True)
class EntityChange:
    """One entity that differs between two states: what a reconcile loop acts on."""

    action: str  # "added", "changed" or "removed"
    kind: str  # meta, discovery_auth, gateway, disk, target, portal, lun, client, group
    ids: tuple[str, ...]  # disk: ("pool/image",); lun: (iqn, "pool/image"); client: (iqn, client)...


def entity_ids(key: str) -> tuple[str, tuple[str, ...]]:
    """(kind, ids) of a key, with disk names joined back into ``pool/image``."""
    kind, parts = split_key(key)
    if kind == "disk":
        return kind, ("/".join(parts),)
    if kind == "lun":
        return kind, (parts[0], "/".join(parts[1:]))
    return kind, tuple(parts)


def changed_entities(old: ClusterConfig, new: ClusterConfig) -> list[EntityChange]:
    """Entities added, changed or removed from ``old`` to ``new``, in key order."""
    before, after = encode(old, None), encode(new, None)
    out = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key):
            continue
        action = "added" if key not in before else "removed" if key not in after else "changed"
        out.append(EntityChange(action, *entity_ids(key)))
    return out


def stamp(cfg: ClusterConfig, keys: Iterable[str], when: str) -> None:
    """Set ``updated`` (and ``created`` if empty) on the entities behind changed keys."""
    for key in keys:
        kind, parts = split_key(key)
        if kind not in STAMPED_KINDS:
            continue
        if kind == "target":
            entity: Any = cfg.targets.get(parts[0])
        elif kind == "disk":
            entity = cfg.disks.get("/".join(parts))
        else:
            entity = cfg.gateways.get(parts[0])
        if entity is not None:
            entity.updated = when
            entity.created = entity.created or when


# ---- decoding ------------------------------------------------------------------------
def _take(raw: dict[str, Any], *names: str) -> dict[str, Any]:
    """Pop known fields; what stays in ``raw`` becomes the entity's ``extra``."""
    return {n: raw.pop(n) for n in names if n in raw}


def _decode_target_child(cfg: ClusterConfig, kind: str, parts: list[str], raw: dict[str, Any],
                         cipher: SecretCipher) -> None:
    target = cfg.targets[parts[0]]  # KeyError: orphan -> stray
    if kind == "portal":
        f = _take(raw, "tpg_tag", "ip_addresses", "port", "advertise")
        target.portals[parts[1]] = Portal(parts[1], int(f["tpg_tag"]),
                                          [str(ip) for ip in f.get("ip_addresses", [])], raw,
                                          port=int(f.get("port", DEFAULT_ISCSI_PORT)),
                                          advertise=[str(a) for a in f.get("advertise", [])])
    elif kind == "lun":
        disk = f"{parts[1]}/{parts[2]}"
        target.luns[disk] = TargetLun(disk, int(raw["lun_id"]), str(raw.get("owner", "")))
    elif kind == "client":
        f = _take(raw, "auth", "group_name", "luns")
        target.clients[parts[1]] = Client(
            parts[1], decode_auth(f.get("auth"), cipher), str(f.get("group_name", "")),
            {str(d): int(i) for d, i in f.get("luns", {}).items()}, raw)
    elif kind == "group":
        f = _take(raw, "members", "disks")
        target.groups[parts[1]] = HostGroup(parts[1], [str(m) for m in f.get("members", [])],
                                            {str(d): int(i) for d, i in f.get("disks", {}).items()}, raw)
    else:
        raise ValueError(kind)


def _decode_top(cfg: ClusterConfig, key: str, kind: str, parts: list[str], raw: Any,
                cipher: SecretCipher) -> None:
    if key == META_KEY:
        cfg.created = str(raw.get("created", ""))
        cfg.extra = dict(raw.get("extra", {}))
    elif key == DISCOVERY_KEY:
        cfg.discovery_auth = decode_auth(raw, cipher)
    elif kind == "gateway" and len(parts) == 1:
        f = _take(raw, "created", "updated")
        cfg.gateways[parts[0]] = Gateway(parts[0], f.get("created", ""), f.get("updated", ""), raw)
    elif kind == "disk" and len(parts) == 2:
        f = _take(raw, "pool", "image", "wwn", "backstore", "backstore_object_name", "pool_id",
                  "allocating_host", "controls", "created", "updated")
        disk = Disk(pool=parts[0], image=parts[1], wwn=str(f.get("wwn", "")),
                    backstore=str(f.get("backstore", "user:rbd")),
                    backstore_object_name=str(f.get("backstore_object_name", "")),
                    pool_id=f.get("pool_id"), allocating_host=str(f.get("allocating_host", "")),
                    controls=dict(f.get("controls", {})), created=f.get("created", ""),
                    updated=f.get("updated", ""), extra=raw)
        cfg.disks[disk.name] = disk
    elif kind == "target" and len(parts) == 1:
        f = _take(raw, "acl_enabled", "auth", "controls", "created", "updated")
        cfg.targets[parts[0]] = Target(parts[0], bool(f.get("acl_enabled", True)),
                                       decode_auth(f.get("auth"), cipher), dict(f.get("controls", {})),
                                       created=f.get("created", ""), updated=f.get("updated", ""),
                                       extra=raw)
    else:
        raise ValueError(f"unknown key {key!r}")


_CHILD_ARITY = {"portal": 2, "lun": 3, "client": 2, "group": 2}


def decode(values: Mapping[str, bytes], version: int = 0, updated: str = "",
           cipher: SecretCipher = NO_CIPHER) -> ClusterConfig:
    """Rebuild the model from stored keys; keys that cannot be placed go to ``stray``."""
    cfg = ClusterConfig(version=version, updated=updated)
    children = []
    for key, blob in values.items():
        if key in (VERSION_KEY, UPDATED_KEY):
            continue
        kind, parts = split_key(key)
        try:
            raw = json.loads(blob)
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            if kind in TARGET_CHILD_KINDS:
                if len(parts) != _CHILD_ARITY[kind]:
                    raise ValueError(key)
                children.append((key, kind, parts, raw))
            else:
                _decode_top(cfg, key, kind, parts, raw, cipher)
        except (ValueError, TypeError, KeyError, AttributeError):
            cfg.stray[key] = bytes(blob)
    for key, kind, parts, raw in children:
        try:
            _decode_target_child(cfg, kind, parts, raw, cipher)
        except (ValueError, TypeError, KeyError, AttributeError):
            cfg.stray[key] = bytes(values[key])
    return cfg
