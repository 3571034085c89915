"""Command arguments: long (``key=value``) and short (positional) forms, checked before a call.

Field rules are the config layer's own (``gateway.config.validation``), so gwcli rejects
exactly what the API would reject, with the same words, without a round trip.  Every
problem raises ``CommandError`` whose text says what to type instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from configshell_fb import ExecutionError

from gateway.config import validation
from gateway.config.errors import ValidationError
from gateway.config.model import ChapAuth
from gateway.settings import DISK_CONTROLS, TARGET_CONTROLS, Setting, SettingsError, bool_word

MAX_COUNT = 10
CHAP_FIELDS = ("username", "password", "mutual_username", "mutual_password")
_CLONE = re.compile(r"^([^/@]+)/([^/@]+)@([^/@]+)$")
_RATE = re.compile(r"^(\d+)([KMGT]?)(?:B|B/S|/S)?$", re.IGNORECASE)
_RATE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# QoS (librbd rbd_qos_<rate>_<kind>): ``iops=`` is short for ``iops_limit=``.
QOS_RATES = ("iops", "read_iops", "write_iops", "bps", "read_bps", "write_bps")
QOS_KEYS = tuple(f"{rate}_{kind}" for rate in QOS_RATES for kind in ("limit", "burst", "burst_seconds"))

class CommandError(ExecutionError):
    """A command cannot run as typed, or the API refused it; the text is shown to the user."""


def _check(fn, *args, **kwargs) -> Any:
    try:
        return fn(*args, **kwargs)
    except ValidationError as e:
        raise CommandError(e.message) from None


def parse_bool(value: Any, name: str, default: bool = False) -> bool:
    if value is None:
        return default
    flag = bool_word(value)
    if flag is not None:
        return flag
    raise CommandError(f"{name} must be true or false, got {value!r}")


def one_of(value: Any, choices: tuple[str, ...], usage: str) -> str:
    if value not in choices:
        got = "nothing" if value is None else repr(value)
        raise CommandError(f"expected {' or '.join(choices)}, got {got}. Usage: {usage}")
    return str(value)


# ---- names ---------------------------------------------------------------------------------
def target_iqn(text: str | None) -> str:
    if not text:
        raise CommandError("a target IQN is required, e.g. iqn.2003-01.com.example.iscsi-gw:igw")
    return _check(validation.normalize_iqn, text)


def client_iqn(text: str | None) -> str:
    if not text:
        raise CommandError("a client IQN is required, e.g. iqn.1994-05.com.redhat:rh7-client")
    return _check(validation.normalize_initiator_name, text)


def disk_name(text: str | None) -> str:
    if not text:
        raise CommandError("a disk name is required, written pool/image (e.g. rbd/disk_1)")
    pool, image = _check(validation.split_disk_name, text)
    return f"{pool}/{image}"


def group_name(text: str | None) -> str:
    if not text:
        raise CommandError("a host group name is required")
    return _check(validation.check_group_name, text)


def snapshot_name(text: str | None) -> str:
    return _check(validation.check_snapshot_name, text or "")


def gateway_name(text: str | None) -> str:
    if not text:
        raise CommandError("a gateway name is required (its host name or FQDN)")
    return _check(validation.check_gateway_name, text)


def ip_list(text: str | None) -> list[str]:
    if not text:
        raise CommandError("portal IP addresses are required, comma separated (e.g. 192.168.1.1)")
    return [_check(validation.check_ip_address, ip) for ip in str(text).split(",") if ip.strip()]


def lun_id(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return _check(validation.check_lun_id, value)


def size(text: Any, what: str = "size") -> str:
    """A size as the API takes it (``90G``); checked, upper-cased."""
    if text is None or text == "":
        raise CommandError(f"{what} is required, a whole number followed by M, G or T (e.g. 10G)")
    _check(validation.parse_size, str(text))
    return str(text).strip().upper()


def count(value: Any) -> int:
    text = str(value).strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_COUNT:
        raise CommandError(f"count must be a whole number 1..{MAX_COUNT}, got {value!r}")
    return int(text)


def clone_source(text: str) -> str:
    """``pool/image@snap``: the snapshot a new disk is cloned from."""
    m = _CLONE.match(text.strip())
    if not m:
        raise CommandError(f"clone must be written pool/image@snapshot, got {text!r}")
    _check(validation.check_pool_name, m.group(1))
    _check(validation.check_image_name, m.group(2))
    _check(validation.check_snapshot_name, m.group(3))
    return text.strip()


# ---- disks ---------------------------------------------------------------------------------
@dataclass
class DiskRequest:
    pool: str
    image: str
    size: str | None = None
    count: int = 1
    clone: str | None = None

    @property
    def names(self) -> list[str]:
        """The disks the request defines (``count`` > 1 numbers them 1..count)."""
        if self.count == 1:
            return [f"{self.pool}/{self.image}"]
        return [f"{self.pool}/{self.image}{n}" for n in range(1, self.count + 1)]


def disk_request(pool: str | None, image: str | None, size_text: Any = None, count_text: Any = None,
                 clone: str | None = None, *, need_size: bool = True, allow_count: bool = True,
                 usage: str) -> DiskRequest:
    """Long form ``pool=<p> image=<i> size=<s> [count=<n>]`` or short ``<p>/<i> <s> [<n>]``.

    In the short form configshell hands the positionals over as ``pool``, ``image`` and
    ``size``: they are shifted back to disk, size and count here.
    """
    if pool and "/" in pool:
        if image is not None:
            if size_text is not None:
                if count_text is not None:
                    raise CommandError(f"count is given twice. Usage: {usage}")
                count_text = size_text
            size_text = image
        pool, _, image = pool.partition("/")
    if not pool or not image:
        raise CommandError(f"pool and image are required. Usage: {usage}")
    _check(validation.check_pool_name, pool)
    _check(validation.check_image_name, image)
    request = DiskRequest(pool, image)
    if clone:
        request.clone = clone_source(clone)
    if size_text not in (None, ""):
        request.size = size(size_text)
    elif need_size and not request.clone:
        raise CommandError("size is required to create a new image (e.g. size=10G); use 'attach' "
                           "for an existing image or clone=pool/image@snapshot for a clone")
    if count_text not in (None, ""):
        if not allow_count:
            raise CommandError(f"count is not accepted here. Usage: {usage}")
        request.count = count(count_text)
        if request.count > 1 and request.clone:
            raise CommandError("count and clone cannot be combined; clone one disk at a time")
    return request


def _control(table: dict[str, Setting], attribute: str | None, value: Any, what: str) -> dict[str, Any]:
    if not attribute or attribute not in table:
        raise CommandError(f"unknown {what} attribute {attribute!r}; supported attributes: "
                           f"{', '.join(sorted(table))}")
    if value is None or value == "":
        return {attribute: ""}
    try:
        parsed = table[attribute].parse(value)
    except SettingsError as e:
        raise CommandError(str(e).replace(f"[{table[attribute].section}] ", "")) from None
    return {attribute: parsed}


def target_control(attribute: str | None, value: Any) -> dict[str, Any]:
    return _control(TARGET_CONTROLS, attribute, value, "target")


def disk_control(attribute: str | None, value: Any) -> dict[str, Any]:
    return _control(DISK_CONTROLS, attribute, value, "disk")


def qos_limits(given: dict[str, Any]) -> dict[str, Any]:
    """``iops=5000 bps=100M write_iops_burst=8000`` -> the API's QoS names and values.

    Rates in bytes/s take a K, M, G or T suffix; an empty value (or 0 for a limit or a
    burst) removes the setting.
    """
    if not given:
        raise CommandError(f"give at least one setting: {', '.join(f'{r}=' for r in QOS_RATES)} (limits), "
                           "or <rate>_limit=, <rate>_burst=, <rate>_burst_seconds=; empty removes it")
    out: dict[str, Any] = {}
    for key, raw in given.items():
        name = f"{key}_limit" if key in QOS_RATES else key
        if name not in QOS_KEYS:
            raise CommandError(f"unknown QoS setting {key!r}; use {', '.join(QOS_RATES)} or "
                               f"<rate>_limit, <rate>_burst, <rate>_burst_seconds")
        text = str(raw).strip()
        if text == "":
            out[name] = ""
            continue
        per_byte = "bps" in name and not name.endswith("burst_seconds")
        m = _RATE.match(text) if per_byte else re.match(r"^(\d+)()$", text)
        if not m:
            unit = ("bytes/s, with an optional K, M, G or T suffix" if per_byte else
                    "seconds" if name.endswith("burst_seconds") else "operations per second")
            raise CommandError(f"{key} must be a whole number of {unit}, got {raw!r}")
        value = int(m.group(1)) * _RATE_UNITS[m.group(2).upper()]
        if name.endswith("burst_seconds") and value < 1:
            raise CommandError(f"{key} must be at least 1 second (empty removes it)")
        out[name] = value if value else ""
    return out


# ---- CHAP ----------------------------------------------------------------------------------
def chap(username: str | None, password: str | None, mutual_username: str | None,
         mutual_password: str | None, usage: str) -> dict[str, str]:
    """CHAP credentials for an ``auth`` command; ``nochap`` (as username) clears them."""
    if not username:
        raise CommandError(f"to set or clear CHAP give {usage}")
    if username == "nochap":
        if password or mutual_username or mutual_password:
            raise CommandError("nochap takes no other arguments")
        return dict.fromkeys(CHAP_FIELDS, "")
    auth = ChapAuth(username, password or "", mutual_username or "", mutual_password or "")
    _check(validation.check_chap, auth)
    return {"username": auth.username, "password": auth.password,
            "mutual_username": auth.mutual_username, "mutual_password": auth.mutual_password}


def auth_fields(auth: Any) -> dict[str, str]:
    """The four CHAP fields of an exported auth dict (secrets as the API chose to show them)."""
    auth = auth if isinstance(auth, dict) else {}
    return {name: str(auth.get(name, "") or "") for name in CHAP_FIELDS}


def chap_mode(auth: Any) -> str:
    """``None``, ``CHAP`` or ``CHAP_MUTUAL`` from an exported auth dict."""
    if not isinstance(auth, dict):
        return "None"
    if auth.get("mutual_username"):
        return "CHAP_MUTUAL"
    return "CHAP" if auth.get("username") else "None"
