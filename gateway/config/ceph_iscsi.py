"""ceph-iscsi's ``gateway.conf`` JSON: upgrade old schemas, import into the model, export.

The export has the schema-11 shape that ``GET /api/config``, ``gwcli export`` and the Ceph
Dashboard know.  Differences, all intentional:

* ``targets.*.portals.*.tpg_tag`` is added (our stable TPG tag; an import that finds it
  uses it, otherwise tags follow the order of ``ip_list`` as ceph-iscsi numbered TPGs);
* ``targets.*.portals.*.port`` and ``.advertise`` appear when a gateway listens on another
  port than 3260 or announces other addresses in discovery (NAT, containers);
* ``gateways.*.active_luns`` is computed from the LUN owners, not stored;
* ``ip_list`` is ordered by TPG tag (the same as ceph-iscsi's unless a gateway had several
  addresses interleaved with other gateways' ones);
* ``epoch`` is our config ``version``.

Schema upgrades follow ceph-iscsi's ``_upgrade_config`` (reference A.5) except 9 -> 10,
which renamed each node's short host name to its FQDN on that node: names are kept.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from gateway.config import codec
from gateway.config.crypto import NO_CIPHER, SecretCipher
from gateway.config.errors import ValidationError
from gateway.config.model import (
    DEFAULT_ISCSI_PORT,
    REDACTED_SECRET,
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
from gateway.config.validation import violations

SCHEMA_VERSION = 11
REDACTED = REDACTED_SECRET
SECRET_MODES = ("redacted", "plain", "stored")
EMPTY_AUTH = {"username": "", "password": "", "password_encryption_enabled": False,
              "mutual_username": "", "mutual_password": "", "mutual_password_encryption_enabled": False}


def dumps(doc: dict[str, Any]) -> str:
    """Formatted as ceph-iscsi writes the object."""
    return json.dumps(doc, sort_keys=True, indent=4, separators=(",", ": "))


# ---- schema upgrades -----------------------------------------------------------------------
def _v3_to_v4(doc: dict[str, Any]) -> None:
    old_gateways = doc.get("gateways", {})
    iqn = old_gateways.get("iqn")
    gateways, portals = {}, {}
    for host, entry in old_gateways.items():
        if not isinstance(entry, dict):
            continue  # "iqn", "ip_list", timestamps
        portal = dict(entry)
        portal.pop("iqn", None)
        gateways[host] = {"active_luns": portal.pop("active_luns", 0)}
        for stamp in ("created", "updated"):
            if stamp in portal:
                gateways[host][stamp] = portal.pop(stamp)
        portals[host] = portal
    clients = doc.pop("clients", {})
    groups = doc.pop("groups", {})
    controls = doc.pop("controls", {})
    for client in clients.values():
        client.pop("created", None)
        client.pop("updated", None)
        client.setdefault("auth", {}).setdefault("chap", "")
        client["auth"]["chap_mutual"] = ""
    for group in groups.values():
        group.pop("created", None)
        group.pop("updated", None)
    doc["targets"] = {}
    if iqn:
        doc["targets"][iqn] = {"disks": list(doc.get("disks", {})), "clients": clients, "portals": portals,
                               "groups": groups, "controls": controls,
                               "ip_list": old_gateways.get("ip_list", [])}
    doc["gateways"] = gateways
    doc["discovery_auth"] = {"chap": "", "chap_mutual": ""}


def _v6_to_v7(doc: dict[str, Any]) -> None:
    renamed = {}
    for old_id, disk in doc.get("disks", {}).items():
        if "pool" in disk and "image" in disk:
            new_id = f"{disk['pool']}/{disk['image']}"
        else:
            new_id = old_id.replace(".", "/", 1)
        disk["backstore_object_name"] = old_id
        renamed[old_id] = new_id
    doc["disks"] = {renamed[k]: v for k, v in doc.get("disks", {}).items()}
    for target in doc.get("targets", {}).values():
        target["disks"] = [renamed.get(d, d) for d in target.get("disks", [])]
        for client in target.get("clients", {}).values():
            client["luns"] = {renamed.get(d, d): v for d, v in client.get("luns", {}).items()}
        for group in target.get("groups", {}).values():
            group["disks"] = {renamed.get(d, d): v for d, v in group.get("disks", {}).items()}


def _split_chap(auth: dict[str, Any], encrypted_if_long: bool) -> None:
    def pair(text: str) -> tuple[str, str]:
        user, sep, password = text.partition("/")
        return (user, password) if sep else ("", "")  # ceph-iscsi: no "/" means no CHAP

    user, password = pair(auth.pop("chap", ""))
    muser, mpassword = pair(auth.pop("chap_mutual", ""))
    auth.update({"username": user, "password": password,
                 "password_encryption_enabled": encrypted_if_long and len(password) > 16,
                 "mutual_username": muser, "mutual_password": mpassword,
                 "mutual_password_encryption_enabled": encrypted_if_long and len(mpassword) > 16})


def _v7_to_v8(doc: dict[str, Any]) -> None:
    _split_chap(doc.setdefault("discovery_auth", {}), False)
    for target in doc.get("targets", {}).values():
        for client in target.get("clients", {}).values():
            # ceph-iscsi guessed: a secret longer than 16 characters must be ciphertext.
            _split_chap(client.setdefault("auth", {}), True)


def _v10_to_v11(doc: dict[str, Any]) -> None:
    for target in doc.get("targets", {}).values():
        target["auth"] = dict(EMPTY_AUTH)
        target["disks"] = {disk: {"lun_id": i} for i, disk in enumerate(sorted(target.get("disks", [])))}


def upgrade(doc: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``doc`` upgraded to schema 11, and notes about what could not be done."""
    doc = copy.deepcopy(doc)
    notes: list[str] = []
    version = int(doc.get("version", 1))
    if version > SCHEMA_VERSION:
        raise ValidationError(f"gateway.conf schema {version} is newer than {SCHEMA_VERSION}, the "
                              "latest this gateway understands")
    if version <= 2:
        doc.setdefault("groups", {})
        version = 3
    if version == 3:
        _v3_to_v4(doc)
        version = 4
    if version == 4:
        for disk in doc.get("disks", {}).values():
            disk["backstore"] = "user:rbd"
        version = 5
    if version == 5:
        for target in doc.get("targets", {}).values():
            target["acl_enabled"] = True
        version = 6
    if version == 6:
        _v6_to_v7(doc)
        version = 7
    if version == 7:
        _v7_to_v8(doc)
        version = 8
    if version == 8:
        for target in doc.get("targets", {}).values():
            for portal in target.get("portals", {}).values():
                portal["portal_ip_addresses"] = [portal.pop("portal_ip_address")]
        version = 9
    if version == 9:
        short = sorted(name for name in doc.get("gateways", {}) if "." not in name)
        if short:
            notes.append(f"gateways {', '.join(short)} have short host names (schema 9); ceph-iscsi 10 "
                         "renamed each to its FQDN on that node. Names are kept: set gateway_name in "
                         "iscsi-gateway.cfg to match")
        version = 10
    if version == 10:
        _v10_to_v11(doc)
        version = 11
    if doc.pop("gateways_upgraded", None) is not None:
        notes.append("a rolling ceph-iscsi 9 -> 10 upgrade was in progress; gateway names kept")
    doc["version"] = version
    return doc, notes


# ---- import --------------------------------------------------------------------------------
def _rest(d: dict[str, Any], *known: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in known}


def _import_portals(target: Target, raw: dict[str, Any]) -> None:
    ip_list = list(raw.get("ip_list", []))
    pending = []
    for name, p in raw.get("portals", {}).items():
        ips = list(p.get("portal_ip_addresses", []))
        tag = p.get("tpg_tag")
        if tag is None and ips and ips[0] in ip_list:
            tag = ip_list.index(ips[0]) + 1
        extra = _rest(p, "gateway_ip_list", "portal_ip_addresses", "inactive_portal_ips", "tpgs", "tpg_tag",
                      "port", "advertise")
        portal = Portal(name, int(tag) if tag is not None else 0, ips, extra,
                        port=int(p.get("port", DEFAULT_ISCSI_PORT)),
                        advertise=[str(a) for a in p.get("advertise", [])])
        target.portals[name] = portal
        if tag is None:
            pending.append(portal)
    for portal in pending:
        used = {p.tpg_tag for p in target.portals.values()}
        portal.tpg_tag = next(t for t in range(1, len(used) + 2) if t not in used)


def _lun_ids(raw: dict[str, Any]) -> dict[str, int]:
    return {str(disk): int(v["lun_id"]) for disk, v in raw.items()}


def import_document(doc: dict[str, Any], cipher: SecretCipher = NO_CIPHER) -> tuple[ClusterConfig, list[str]]:
    """A ceph-iscsi config (any schema ``upgrade`` handles) as our model, plus problems found.

    The problems (``validation.violations`` and upgrade notes) do not stop the import: the
    state is kept as it was so that nothing is lost, and can be fixed afterwards.
    """
    doc, notes = upgrade(doc)
    try:
        return _import(doc, cipher, notes)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValidationError(f"not a ceph-iscsi gateway.conf document: {type(e).__name__} {e}") from None


def _import(doc: dict[str, Any], cipher: SecretCipher, notes: list[str]) -> tuple[ClusterConfig, list[str]]:
    cfg = ClusterConfig(version=int(doc.get("epoch", 0)), created=str(doc.get("created", "")),
                        updated=str(doc.get("updated", "")),
                        discovery_auth=codec.decode_auth(doc.get("discovery_auth"), cipher),
                        extra=_rest(doc, "created", "updated", "epoch", "version", "discovery_auth",
                                    "disks", "gateways", "targets"))
    for name, g in doc.get("gateways", {}).items():
        cfg.gateways[name] = Gateway(name, g.get("created", ""), g.get("updated", ""),
                                     _rest(g, "active_luns", "created", "updated"))
    owners = {}
    for name, d in doc.get("disks", {}).items():
        pool, _, image = name.partition("/")
        disk = Disk(pool=str(d.get("pool", pool)), image=str(d.get("image", image)),
                    wwn=str(d.get("wwn", "")),
                    backstore=str(d.get("backstore", "user:rbd")),
                    backstore_object_name=str(d.get("backstore_object_name", name.replace("/", "."))),
                    pool_id=d.get("pool_id"), allocating_host=str(d.get("allocating_host", "")),
                    controls=dict(d.get("controls", {})), created=d.get("created", ""),
                    updated=d.get("updated", ""),
                    extra=_rest(d, "pool", "image", "wwn", "backstore", "backstore_object_name", "pool_id",
                                "allocating_host", "controls", "created", "updated", "owner"))
        cfg.disks[disk.name] = disk
        owners[disk.name] = str(d.get("owner", ""))
    mapped = set()
    for iqn, t in doc.get("targets", {}).items():
        target = Target(iqn, bool(t.get("acl_enabled", True)), codec.decode_auth(t.get("auth"), cipher),
                        dict(t.get("controls", {})), created=t.get("created", ""),
                        updated=t.get("updated", ""),
                        extra=_rest(t, "acl_enabled", "auth", "controls", "created", "updated", "disks",
                                    "ip_list", "portals", "clients", "groups"))
        _import_portals(target, t)
        for gw in target.portals:
            cfg.gateways.setdefault(gw, Gateway(gw))
        for disk, lun_id in _lun_ids(t.get("disks", {})).items():
            target.luns[disk] = TargetLun(disk, lun_id, owners.get(disk, ""))
            mapped.add(disk)
        for name, c in t.get("clients", {}).items():
            target.clients[name] = Client(name, codec.decode_auth(c.get("auth"), cipher),
                                          str(c.get("group_name", "")), _lun_ids(c.get("luns", {})),
                                          _rest(c, "auth", "group_name", "luns"))
        for name, g in t.get("groups", {}).items():
            target.groups[name] = HostGroup(name, list(g.get("members", [])), _lun_ids(g.get("disks", {})),
                                            _rest(g, "members", "disks"))
        cfg.targets[iqn] = target
    notes += [f"disk {d} records owner {o} but is not mapped to a target; owner dropped"
              for d, o in sorted(owners.items()) if o and d not in mapped]
    return cfg, notes + violations(cfg)


# ---- export --------------------------------------------------------------------------------
def export_auth(auth: ChapAuth, secrets: str, cipher: SecretCipher = NO_CIPHER) -> dict[str, Any]:
    """``stored``: as at rest (encrypted when a key pair exists); ``plain``: decrypted;
    ``redacted``: secrets replaced by a marker.  A secret this node cannot decrypt is
    always shown as its ciphertext with the encryption flag set."""
    if secrets not in SECRET_MODES:
        raise ValidationError(f"secrets must be one of {', '.join(SECRET_MODES)}", "secrets")
    if secrets == "stored":
        return codec.encode_auth(auth, cipher)
    out = codec.encode_auth(auth, None)
    if secrets == "redacted":
        for field in ("password", "mutual_password"):
            if out[field]:
                out[field], out[f"{field}_encryption_enabled"] = REDACTED, False
    return out


def _stamps(entity: Any) -> dict[str, str]:
    return {k: v for k, v in (("created", entity.created), ("updated", entity.updated)) if v}


def _export_portal(p: Portal, ip_list: list[str]) -> dict[str, Any]:
    out = {**p.extra, "gateway_ip_list": ip_list, "portal_ip_addresses": list(p.ip_addresses),
           "inactive_portal_ips": [ip for ip in ip_list if ip not in p.ip_addresses],
           "tpgs": len(ip_list), "tpg_tag": p.tpg_tag}
    if p.port != DEFAULT_ISCSI_PORT:
        out["port"] = p.port
    if p.advertise:
        out["advertise"] = list(p.advertise)
    return out


def _export_target(t: Target, secrets: str, cipher: SecretCipher) -> dict[str, Any]:
    ordered = t.portals_by_tag()
    ip_list = [ip for p in ordered for ip in p.ip_addresses]
    portals = {p.gateway: _export_portal(p, ip_list) for p in ordered}
    return {**t.extra, "acl_enabled": t.acl_enabled, "auth": export_auth(t.auth, secrets, cipher),
            "controls": dict(t.controls), "ip_list": ip_list, "portals": portals,
            "disks": {d: {"lun_id": lun.lun_id} for d, lun in sorted(t.luns.items())},
            "clients": {c.iqn: {**c.extra, "auth": export_auth(c.auth, secrets, cipher),
                                "group_name": c.group_name,
                                "luns": {d: {"lun_id": i} for d, i in sorted(c.luns.items())}}
                        for c in t.clients.values()},
            "groups": {g.name: {**g.extra, "members": list(g.members),
                                "disks": {d: {"lun_id": i} for d, i in sorted(g.disks.items())}}
                       for g in t.groups.values()},
            **_stamps(t)}


def export_document(cfg: ClusterConfig, secrets: str = "redacted",
                    cipher: SecretCipher = NO_CIPHER) -> dict[str, Any]:
    """The model in ceph-iscsi's schema-11 shape (``GET /api/config``, ``gwcli export``)."""
    disks = {}
    for name, d in cfg.disks.items():
        target = cfg.target_of_disk(name)
        entry = {**d.extra, "pool": d.pool, "image": d.image, "backstore": d.backstore,
                 "backstore_object_name": d.backstore_object_name, "wwn": d.wwn,
                 "allocating_host": d.allocating_host, "controls": dict(d.controls), **_stamps(d)}
        if d.pool_id is not None:
            entry["pool_id"] = d.pool_id
        if target is not None and target.luns[name].owner:
            entry["owner"] = target.luns[name].owner
        disks[name] = entry
    return {**cfg.extra, "created": cfg.created, "updated": cfg.updated, "epoch": cfg.version,
            "version": SCHEMA_VERSION, "discovery_auth": export_auth(cfg.discovery_auth, secrets, cipher),
            "disks": disks,
            "gateways": {g.name: {**g.extra, "active_luns": cfg.active_luns(g.name), **_stamps(g)}
                         for g in cfg.gateways.values()},
            "targets": {t.iqn: _export_target(t, secrets, cipher) for t in cfg.targets.values()}}
