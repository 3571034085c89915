"""Every rule a configuration value or state must follow, each with a message saying what to fix.

Field rules (``normalize_iqn``, ``check_chap``, ``parse_size``...) raise ``ValidationError`` for
one bad value.  ``violations(cfg)`` checks a whole state (references, uniqueness, limits) and
returns readable problems; the stores refuse a change that adds one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from gateway.config.errors import ValidationError
from gateway.config.model import REDACTED_SECRET, ChapAuth, ClusterConfig, Target
from gateway.settings import DISK_CONTROLS, TARGET_CONTROLS, Setting, SettingsError, parse_controls

MAX_DISKS = 256
MAX_LUN_ID = 255
MAX_TPG_TAG = 65535
ISCSI_NAME_MAX = 223  # RFC 7143 section 4.2.7.1
BACKSTORES = ("user:rbd",)

_NAME_CHARS = re.compile(r"[a-z0-9.:-]")
_DATE = re.compile(r"^iqn\.(\d{4})-(\d{2})\.")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_HEX = re.compile(r"^[0-9a-f]+$")
_CHAP_USER = re.compile(r"[0-9a-zA-Z@_\-.:]")
_CHAP_PASSWORD = re.compile(r"[0-9a-zA-Z@_\-/]")
_RBD_NAME = re.compile(r"^[a-zA-Z0-9\-_.]+$")
_SIZE = re.compile(r"^(\d+)([MGT])$", re.IGNORECASE)
_GROUP = re.compile(r"^[A-Za-z0-9_@\-]{1,32}$")
_WWN = re.compile(r"^[0-9A-Za-z_.:\-]{1,254}$")
_HOST_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
SIZE_UNITS = {"M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


# ---- iSCSI names ----------------------------------------------------------------------
def _check_name_chars(name: str, what: str) -> None:
    if not name:
        raise ValidationError(f"{what} is required", "name")
    if len(name.encode()) > ISCSI_NAME_MAX:
        raise ValidationError(f"{what} {name!r} is {len(name.encode())} bytes long; iSCSI names "
                              f"are at most {ISCSI_NAME_MAX}", "name")
    for ch in name:
        if not _NAME_CHARS.match(ch):
            raise ValidationError(f"{what} {name!r} contains {ch!r}; iSCSI names may only contain "
                                  "a-z, 0-9, '-', '.' and ':'", "name")


def _check_iqn(name: str, what: str) -> None:
    m = _DATE.match(name)
    if not m:
        raise ValidationError(f"{what} {name!r} must continue after 'iqn.' with a date yyyy-mm and a "
                              "dot, e.g. iqn.2003-01.com.example:disk1", "name")
    if not 1 <= int(m.group(2)) <= 12:
        raise ValidationError(f"{what} {name!r}: month {m.group(2)} is not 01..12", "name")
    authority = name[m.end():].split(":", 1)[0]
    labels = authority.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValidationError(f"{what} {name!r}: the naming authority {authority!r} must be a "
                              "reversed domain name such as com.example", "name")


def normalize_iqn(name: str, what: str = "target name") -> str:
    """A target's iSCSI name, lower-cased; only ``iqn.`` names (as in ceph-iscsi)."""
    name = name.strip().lower()
    _check_name_chars(name, what)
    if not name.startswith("iqn."):
        raise ValidationError(f"{what} {name!r} must start with 'iqn.'", "name")
    _check_iqn(name, what)
    return name


def normalize_initiator_name(name: str, what: str = "client name") -> str:
    """An initiator's iSCSI name: ``iqn.``, ``eui.`` (16 hex digits) or ``naa.`` (16/32 hex).

    Lower-cased: compare initiator names from logins after the same normalisation.
    """
    name = name.strip().lower()
    _check_name_chars(name, what)
    if name.startswith("iqn."):
        _check_iqn(name, what)
    elif name.startswith("eui."):
        if len(name) != 20 or not _HEX.match(name[4:]):
            raise ValidationError(f"{what} {name!r}: an eui. name is 'eui.' and exactly 16 hex "
                                  "digits", "name")
    elif name.startswith("naa."):
        if len(name) not in (20, 36) or not _HEX.match(name[4:]):
            raise ValidationError(f"{what} {name!r}: a naa. name is 'naa.' and 16 or 32 hex "
                                  "digits", "name")
    else:
        raise ValidationError(f"{what} {name!r} must start with 'iqn.', 'eui.' or 'naa.'", "name")
    return name


# ---- CHAP ------------------------------------------------------------------------------
def _check_chap_text(value: str, field: str, low: int, high: int, chars: re.Pattern, allowed: str) -> None:
    label = field.replace("_", " ")
    if not low <= len(value) <= high:
        raise ValidationError(f"CHAP {label} must be {low} to {high} characters long "
                              f"(got {len(value)})", field)
    for ch in value:
        if not chars.match(ch):
            raise ValidationError(f"CHAP {label} contains {ch!r}; allowed are {allowed}", field)


def check_chap_username(value: str, field: str = "username") -> None:
    _check_chap_text(value, field, 8, 64, _CHAP_USER, "letters, digits and @ _ - . :")


def check_chap_password(value: str, field: str = "password") -> None:
    if value == REDACTED_SECRET:
        raise ValidationError(f"CHAP {field.replace('_', ' ')} was redacted in an export; set it again",
                              field)
    _check_chap_text(value, field, 12, 16, _CHAP_PASSWORD, "letters, digits and @ _ - /")


def check_chap(auth: ChapAuth) -> None:
    """One-way and mutual CHAP credentials; all empty means "CHAP disabled"."""
    if auth.username and not auth.password:
        raise ValidationError("a CHAP password is required with a CHAP username", "password")
    if auth.password and not auth.username:
        raise ValidationError("a CHAP username is required with a CHAP password", "username")
    if auth.mutual_username and not auth.mutual_password:
        raise ValidationError("a mutual CHAP password is required with a mutual CHAP username",
                              "mutual_password")
    if auth.mutual_password and not auth.mutual_username:
        raise ValidationError("a mutual CHAP username is required with a mutual CHAP password",
                              "mutual_username")
    if auth.mutual and not auth.enabled:
        raise ValidationError("mutual CHAP needs one-way CHAP too: set username and password",
                              "username")
    if auth.username:
        check_chap_username(auth.username)
    if auth.password and not auth.password_sealed:
        check_chap_password(auth.password)
    if auth.mutual_username:
        check_chap_username(auth.mutual_username, "mutual_username")
    if auth.mutual_password and not auth.mutual_password_sealed:
        check_chap_password(auth.mutual_password, "mutual_password")
    if auth.mutual and not auth.password_sealed and auth.mutual_password == auth.password:
        raise ValidationError("the mutual CHAP password must differ from the CHAP password "
                              "(RFC 7143 section 12.1.3)", "mutual_password")


# ---- disks -----------------------------------------------------------------------------
def _check_rbd_name(value: str, what: str) -> str:
    if not value:
        raise ValidationError(f"{what} is required", what.replace(" ", "_"))
    if not _RBD_NAME.match(value):
        bad = next(ch for ch in value if not _RBD_NAME.match(ch))
        raise ValidationError(f"{what} {value!r} contains {bad!r}; allowed are letters, digits, "
                              "'-', '_' and '.'", what.replace(" ", "_"))
    return value


def check_pool_name(pool: str) -> str:
    return _check_rbd_name(pool, "pool name")


def check_image_name(image: str) -> str:
    return _check_rbd_name(image, "image name")


def split_disk_name(name: str) -> tuple[str, str]:
    """``pool/image`` -> (pool, image), both checked."""
    pool, sep, image = name.partition("/")
    if not sep:
        raise ValidationError(f"disk {name!r} must be written pool/image", "disk")
    return check_pool_name(pool), check_image_name(image)


def parse_size(text: str) -> int:
    """``10G`` -> bytes; a whole number with an M, G or T suffix (any case), greater than 0."""
    m = _SIZE.match(str(text).strip())
    if not m:
        raise ValidationError(f"size must be a whole number followed by M, G or T (e.g. 10G), "
                              f"got {text!r}", "size")
    value = int(m.group(1)) * SIZE_UNITS[m.group(2).upper()]
    if value <= 0:
        raise ValidationError("size must be greater than 0", "size")
    return value


def check_snapshot_name(name: str) -> str:
    if not name:
        raise ValidationError("snapshot name is required", "name")
    for ch in "/@":
        if ch in name:
            raise ValidationError(f"snapshot name {name!r} must not contain {ch!r}", "name")
    return name


def check_wwn(wwn: str) -> str:
    if not _WWN.match(wwn):
        raise ValidationError(f"wwn {wwn!r} must be 1 to 254 characters of letters, digits, "
                              "'-', '_', '.' and ':'", "wwn")
    return wwn


def check_backstore(backstore: str) -> str:
    if backstore not in BACKSTORES:
        raise ValidationError(f"backstore {backstore!r} is not supported; use "
                              f"{', '.join(BACKSTORES)}", "backstore")
    return backstore


# ---- targets, LUNs, groups, gateways ------------------------------------------------------
def check_lun_id(value: Any) -> int:
    """A LUN id 0..255 (an int, or a decimal string from a form)."""
    if isinstance(value, bool):
        raise ValidationError(f"LUN id must be a whole number 0..{MAX_LUN_ID}, got {value!r}", "lun_id")
    try:
        lun_id = int(str(value).strip(), 10)
    except ValueError:
        raise ValidationError(f"LUN id must be a whole number 0..{MAX_LUN_ID}, got {value!r}",
                              "lun_id") from None
    if not 0 <= lun_id <= MAX_LUN_ID:
        raise ValidationError(f"LUN id {lun_id} is out of range 0..{MAX_LUN_ID}", "lun_id")
    return lun_id


def check_group_name(name: str) -> str:
    if not _GROUP.match(name):
        raise ValidationError(f"host group name {name!r} must be 1 to 32 characters of letters, "
                              "digits, '_', '@' and '-'", "group_name")
    return name


def check_gateway_name(name: str) -> str:
    """A gateway's host name or FQDN (how it identifies itself in the config)."""
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValidationError(f"gateway name {name!r} must be a host name or FQDN: dot-separated "
                              "labels of 1-63 letters, digits and '-' (not at either end)", "gateway")
    return name


def check_ip_address(text: str) -> str:
    """A portal address, normalised (IPv6 compressed)."""
    try:
        addr = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        raise ValidationError(f"{text!r} is not an IPv4 or IPv6 address", "ip_address") from None
    if addr.is_unspecified or addr.is_multicast:
        raise ValidationError(f"{text!r} cannot be a portal address (unspecified or multicast)",
                              "ip_address")
    return str(addr)


def check_port(value: Any, field: str = "port") -> int:
    """A TCP port 1..65535 (an int, or a decimal string from a form)."""
    try:
        if isinstance(value, bool):
            raise ValueError
        port = int(str(value).strip(), 10)
    except ValueError:
        raise ValidationError(f"port must be a whole number 1..65535, got {value!r}", field) from None
    if not 1 <= port <= 65535:
        raise ValidationError(f"port {port} is out of range 1..65535", field)
    return port


def check_advertise_address(text: str) -> str:
    """What discovery announces for a portal: ``host``, ``host:port`` or ``[v6]:port``,
    where host is an IP address or a DNS name (RFC 7143 TargetAddress)."""
    from gateway.config.model import split_host_port

    text = str(text).strip()
    problem = ValidationError(f"advertised address {text!r} must be an IP address or host name, "
                              "optionally with :port ([v6 address]:port for IPv6)", "advertise")
    try:
        host, port = split_host_port(text, 3260)
    except ValueError:
        raise problem from None
    check_port(port, "advertise")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        labels = host.split(".")
        if not host or len(host) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
            raise problem from None
        return text
    if addr.is_unspecified or addr.is_multicast:
        raise ValidationError(f"advertised address {text!r} is unspecified or multicast", "advertise")
    if addr.version == 6 and ":" in text and not text.startswith("["):
        return str(addr)
    return text


def check_advertise(ip_addresses: list[str], advertise: list[str]) -> list[str]:
    """Advertised addresses: none, or one per portal address (in the same order)."""
    if advertise and len(advertise) != len(ip_addresses):
        raise ValidationError(f"give one advertised address per portal address ({len(ip_addresses)}), "
                              f"or none; got {len(advertise)}", "advertise")
    return [check_advertise_address(a) for a in advertise]


# ---- controls ----------------------------------------------------------------------------
def merge_controls(table: Mapping[str, Setting], current: Mapping[str, Any], changes: Mapping[str, Any],
                   defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Apply control changes: typed, ``None``/``""`` resets, values equal to the default dropped.

    Only non-default values are stored, as in ceph-iscsi; ``defaults`` are the node's
    ``[target]`` settings (the built-in defaults when not given).
    """
    try:
        parsed = parse_controls(dict(table), dict(changes))
    except SettingsError as e:
        raise ValidationError(str(e), "controls") from None
    defaults = defaults or {}
    out = dict(current)
    for key, value in parsed.items():
        default = defaults.get(key, table[key].default)
        if value is None or value == default:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def check_target_controls(controls: Mapping[str, Any]) -> None:
    merge_controls(TARGET_CONTROLS, {}, controls)


def check_disk_controls(controls: Mapping[str, Any]) -> None:
    merge_controls(DISK_CONTROLS, {}, controls)


# ---- whole state -------------------------------------------------------------------------
def _problems(fn, *args) -> list[str]:
    try:
        fn(*args)
    except ValidationError as e:
        return [e.message]
    return []


def _target_violations(cfg: ClusterConfig, t: Target) -> list[str]:
    out = []
    where = f"target {t.iqn}"
    out += [f"{where}: {m}" for m in _problems(normalize_iqn, t.iqn)]
    out += [f"{where} auth: {m}" for m in _problems(check_chap, t.auth)]
    out += [f"{where} controls: {m}" for m in _problems(check_target_controls, t.controls)]
    if t.auth.enabled and t.acl_enabled:
        out.append(f"{where}: target CHAP needs acl_enabled=false (it applies to any initiator)")
    if t.clients and not t.acl_enabled:
        out.append(f"{where}: clients exist but acl_enabled=false")
    tags: dict[int, str] = {}
    ips: dict[str, str] = {}
    for p in t.portals.values():
        if p.gateway not in cfg.gateways:
            out.append(f"{where}: portal gateway {p.gateway} is not a registered gateway")
        if not 1 <= p.tpg_tag <= MAX_TPG_TAG:
            out.append(f"{where}: gateway {p.gateway} has TPG tag {p.tpg_tag}, not 1..{MAX_TPG_TAG}")
        if p.tpg_tag in tags:
            out.append(f"{where}: gateways {tags[p.tpg_tag]} and {p.gateway} share TPG tag {p.tpg_tag}")
        tags[p.tpg_tag] = p.gateway
        out += [f"{where} gateway {p.gateway}: {m}" for m in _problems(check_port, p.port)]
        out += [f"{where} gateway {p.gateway}: {m}"
                for m in _problems(check_advertise, p.ip_addresses, p.advertise)]
        for ip in p.ip_addresses:
            if ip in ips:
                out.append(f"{where}: portal address {ip} is used by {ips[ip]} and {p.gateway}")
            ips[ip] = p.gateway
    ids: dict[int, str] = {}
    for lun in t.luns.values():
        if lun.disk not in cfg.disks:
            out.append(f"{where}: LUN {lun.lun_id} maps disk {lun.disk}, which is not defined")
        if not 0 <= lun.lun_id <= MAX_LUN_ID:
            out.append(f"{where}: disk {lun.disk} has LUN id {lun.lun_id}, not 0..{MAX_LUN_ID}")
        if lun.lun_id in ids:
            out.append(f"{where}: disks {ids[lun.lun_id]} and {lun.disk} share LUN id {lun.lun_id}")
        ids[lun.lun_id] = lun.disk
        if t.portals and lun.owner not in t.portals:
            out.append(f"{where}: disk {lun.disk} is owned by {lun.owner or 'nobody'}, "
                       "which is not a gateway of the target")
    for c in t.clients.values():
        out += _client_violations(t, c.iqn)
    for g in t.groups.values():
        gw = f"{where} host group {g.name}"
        out += [f"{gw}: {m}" for m in _problems(check_group_name, g.name)]
        if len(set(g.members)) != len(g.members):
            out.append(f"{gw}: members are listed more than once")
        for m in g.members:
            member = t.clients.get(m)
            if member is None:
                out.append(f"{gw}: member {m} is not a client of the target")
            elif member.group_name != g.name:
                out.append(f"{gw}: member {m} records group {member.group_name or 'none'}")
            elif member.luns != g.disks:
                out.append(f"{gw}: member {m} does not see exactly the group's disks")
        out += _lun_map_violations(t, gw, g.disks)
    return out


def _lun_map_violations(t: Target, where: str, luns: Mapping[str, int]) -> list[str]:
    out = []
    seen: dict[int, str] = {}
    for disk, lun_id in luns.items():
        if disk not in t.luns:
            out.append(f"{where}: disk {disk} is not mapped to the target")
        if not 0 <= lun_id <= MAX_LUN_ID:
            out.append(f"{where}: disk {disk} has LUN id {lun_id}, not 0..{MAX_LUN_ID}")
        if lun_id in seen:
            out.append(f"{where}: disks {seen[lun_id]} and {disk} share LUN id {lun_id}")
        seen[lun_id] = disk
    return out


def _client_violations(t: Target, iqn: str) -> list[str]:
    c = t.clients[iqn]
    where = f"target {t.iqn} client {iqn}"
    out = [f"{where}: {m}" for m in _problems(normalize_initiator_name, iqn)]
    out += [f"{where} auth: {m}" for m in _problems(check_chap, c.auth)]
    if c.group_name:
        group = t.groups.get(c.group_name)
        if group is None or iqn not in group.members:
            out.append(f"{where}: records host group {c.group_name}, which does not list it")
    out += _lun_map_violations(t, where, c.luns)
    return out


def violations(cfg: ClusterConfig) -> list[str]:
    """Every broken rule of a whole state, as readable lines (empty = consistent)."""
    out = [f"stored key {key!r} could not be read (unknown kind, bad JSON or missing parent)"
           for key in sorted(cfg.stray)]
    out += [f"discovery auth: {m}" for m in _problems(check_chap, cfg.discovery_auth)]
    if len(cfg.disks) > MAX_DISKS:
        out.append(f"{len(cfg.disks)} disks are defined; the limit is {MAX_DISKS}")
    wwns: dict[str, str] = {}
    objects: dict[str, str] = {}
    for name, disk in cfg.disks.items():
        where = f"disk {name}"
        out += [f"{where}: {m}" for m in _problems(split_disk_name, name)]
        out += [f"{where} controls: {m}" for m in _problems(check_disk_controls, disk.controls)]
        out += [f"{where}: {m}" for m in _problems(check_backstore, disk.backstore)]
        if not disk.wwn:
            out.append(f"{where}: has no wwn")
        elif disk.wwn in wwns:
            out.append(f"{where}: wwn {disk.wwn} is also used by disk {wwns[disk.wwn]}")
        wwns[disk.wwn] = name
        if disk.backstore_object_name in objects:
            out.append(f"{where}: backstore object name {disk.backstore_object_name} is also used "
                       f"by disk {objects[disk.backstore_object_name]}")
        objects[disk.backstore_object_name] = name
        targets = [t.iqn for t in cfg.targets.values() if name in t.luns]
        if len(targets) > 1:
            out.append(f"{where}: mapped to more than one target ({', '.join(targets)})")
    for t in cfg.targets.values():
        out += _target_violations(cfg, t)
    return out
