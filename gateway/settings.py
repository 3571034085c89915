"""Settings from ``iscsi-gateway.cfg``: every key of ceph-iscsi, typed and validated.

The file is INI with three sections, as in ceph-iscsi:

* ``[config]``        system settings (cluster, API, metrics, logging, ...)
* ``[target]``        target controls (iSCSI session parameters) and disk controls
* ``[device_status]`` thresholds of the device health watcher

Unlike ceph-iscsi, an invalid value is an error that names the key and the allowed
range (ceph-iscsi silently kept the default), and an unknown key is reported as a
warning instead of being ignored without a word.

The path comes from ``--cfg PATH``, else ``$ISCSI_GATEWAY_CFG``, else
``/etc/ceph/iscsi-gateway.cfg``; a missing file means "all defaults".
"""

from __future__ import annotations

import configparser
import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CFG_PATH = "/etc/ceph/iscsi-gateway.cfg"
CFG_ENV = "ISCSI_GATEWAY_CFG"

log = logging.getLogger(__name__)

TRUE_WORDS = frozenset({"true", "yes", "1", "on"})
FALSE_WORDS = frozenset({"false", "no", "0", "off"})


def bool_word(value: Any) -> bool | None:
    """A boolean, or one of the words for one (true/yes/1/on, false/no/0/off, any case);
    None for anything else (the caller says what was expected, in its own terms)."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None


LOG_LEVEL_NAMES = {"CRITICAL": 50, "ERROR": 40, "WARNING": 30, "INFO": 20, "DEBUG": 10}


class SettingsError(ValueError):
    """A settings file or value is invalid; the message names the key and what is allowed."""


@dataclass(frozen=True)
class Setting:
    """One key: its section, type and allowed values."""

    name: str
    section: str
    kind: str  # "str" | "int" | "bool" | "enum" | "list" | "loglevel"
    default: Any
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()
    help: str = ""
    # Part of the checkconf hash that gateways of one cluster must agree on.
    hashed: bool = True
    # Our additions to ceph-iscsi's set (documented as such).
    extension: bool = False

    def parse(self, raw: Any) -> Any:
        """Turn a raw (string or typed) value into the setting's type, or raise SettingsError."""
        where = f"[{self.section}] {self.name}"
        if self.kind == "str":
            return str(raw).strip()
        if self.kind == "bool":
            flag = bool_word(raw)
            if flag is not None:
                return flag
            raise SettingsError(f"{where}: expected a boolean (true/false, yes/no, 1/0), got {raw!r}")
        if self.kind == "int":
            return self._parse_int(raw, where)
        if self.kind == "enum":
            word = str(raw).strip().lower()
            if word not in self.choices:
                raise SettingsError(f"{where}: expected one of {', '.join(self.choices)}, got {raw!r}")
            return word
        if self.kind == "list":
            if isinstance(raw, (list, tuple)):
                return [str(x).strip() for x in raw if str(x).strip()]
            return [item.strip() for item in str(raw).split(",") if item.strip()]
        if self.kind == "loglevel":
            word = str(raw).strip().upper()
            if word in LOG_LEVEL_NAMES:
                return LOG_LEVEL_NAMES[word]
            return self._parse_int(raw, where, names=", or a level name (DEBUG, INFO, ...)")
        raise AssertionError(f"unknown setting kind {self.kind}")

    def _parse_int(self, raw: Any, where: str, names: str = "") -> int:
        try:
            if isinstance(raw, bool):
                raise ValueError
            value = int(str(raw).strip(), 10)
        except ValueError:
            raise SettingsError(f"{where}: expected an integer{self.range_text()}{names}, "
                                f"got {raw!r}") from None
        if (self.minimum is not None and value < self.minimum) or \
                (self.maximum is not None and value > self.maximum):
            raise SettingsError(f"{where}: {value} is out of range, allowed{self.range_text()}")
        return value

    def range_text(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f" {self.minimum}..{self.maximum}"
        if self.minimum is not None:
            return f" >= {self.minimum}"
        return ""

    def format(self, value: Any) -> str:
        """The value as ceph-iscsi prints it (bools as yes/no for controls, lists csv)."""
        if self.kind == "bool":
            return "true" if value else "false"
        if self.kind == "list":
            return ",".join(value)
        return str(value)


def _s(name, section, kind, default, lo=None, hi=None, choices=(), help="", hashed=True,
       extension=False) -> Setting:
    return Setting(name, section, kind, default, lo, hi, tuple(choices), help, hashed, extension)


# [config] -- ceph-iscsi SYS_SETTINGS, then our extensions.
SYS_SETTINGS: tuple[Setting, ...] = (
    _s("cluster_name", "config", "str", "ceph", help="conf file is <ceph_config_dir>/<cluster_name>.conf"),
    _s("pool", "config", "str", "rbd", help="pool holding the gateway config object"),
    _s("cluster_client_name", "config", "str", "client.admin", help="CephX user of the gateway",
       hashed=False),
    _s("gateway_conf", "config", "str", "gateway.conf", help="name of the config object"),
    _s("ceph_config_dir", "config", "str", "/etc/ceph", help="directory of conf, keyrings, certificates"),
    _s("time_out", "config", "int", 30, 1, 600, help="generic wait (s) for image operations"),
    _s("loop_delay", "config", "int", 2, 1, 60, help="poll interval (s) for time_out waits"),
    _s("api_host", "config", "str", "::", help="bind address of rbd-target-api"),
    _s("api_port", "config", "int", 5000, 1, 65535, help="REST API port"),
    _s("api_secure", "config", "bool", True, help="serve the API over HTTPS"),
    _s("api_ssl_verify", "config", "bool", False, help="verify peer certificates"),
    _s("api_user", "config", "str", "admin", help="HTTP basic auth user"),
    _s("api_password", "config", "str", "admin", help="HTTP basic auth password"),
    _s("trusted_ip_list", "config", "list", [], help="extra source addresses allowed to use the API"),
    _s("ceph_user", "config", "str", "admin", help="unused, kept for compatibility"),
    _s("debug", "config", "bool", False, help="Flask debug mode"),
    _s("minimum_gateways", "config", "int", 2, 1, 9999,
       help="gateways a target needs before disks and clients can be mapped"),
    _s("priv_key", "config", "str", "iscsi-gateway.key", help="RSA private key for CHAP secrets"),
    _s("pub_key", "config", "str", "iscsi-gateway-pub.key", help="RSA public key for CHAP secrets"),
    _s("prometheus_exporter", "config", "bool", True, help="serve Prometheus metrics"),
    _s("prometheus_host", "config", "str", "::", hashed=False,
       help="metrics bind address (per node: not part of the checkconf hash)"),
    _s("prometheus_port", "config", "int", 9287, 1, 65535, help="metrics port"),
    _s("logger_level", "config", "loglevel", 10, 10, 50, help="file log level (10..50 or a name)",
       hashed=False),
    _s("log_to_stderr", "config", "bool", False, help="log to stderr instead of syslog"),
    _s("log_to_stderr_prefix", "config", "str", "", help="prefix of stderr log lines"),
    _s("log_to_file", "config", "bool", True, help="also log to /var/log/<daemon>/<daemon>.log"),
    _s("alua_failover_type", "config", "enum", "implicit", choices=("implicit", "explicit"),
       help="ALUA mode"),
    # --- extensions ---
    _s("gateway_name", "config", "str", "", hashed=False, extension=True,
       help="this gateway's name in the config (default: the FQDN)"),
    _s("iscsi_port", "config", "int", 3260, 1, 65535, extension=True,
       help="TCP port of portals added for this gateway (each portal's port is kept in the cluster config)"),
    _s("portal_advertise", "config", "str", "", hashed=False, extension=True,
       help="address[:port] discovery announces for portals added for this gateway, instead of the bound "
            "one (NAT, containers); kept per portal in the cluster config"),
    _s("apply_timeout", "config", "int", 10, 0, 600, extension=True,
       help="seconds the API waits for live gateways to apply a change"),
    _s("gateway_heartbeat_interval", "config", "int", 2, 1, 60, extension=True,
       help="seconds between a gateway's status reports"),
    _s("gateway_dead_after", "config", "int", 10, 2, 600, extension=True,
       help="a gateway without a heartbeat this long is reported down"),
    _s("config_poll_interval", "config", "int", 30, 1, 3600, extension=True,
       help="slow re-read of the config object, besides watch/notify"),
    _s("allow_default_api_password", "config", "bool", False, hashed=False, extension=True,
       help="allow the admin/admin API credentials (demo only)"),
    _s("data_backend", "config", "enum", "rbd", choices=("rbd", "memory"), extension=True,
       hashed=False, help="storage backend of LUNs (memory is for tests and benchmarks)"),
    _s("memory_disk_size_mb", "config", "int", 64, 1, 65536, extension=True, hashed=False,
       help="size (MiB) of each LUN when data_backend is memory"),
    _s("log_dir", "config", "str", "/var/log", hashed=False, extension=True,
       help="directory under which each daemon writes <daemon>/<daemon>.log"),
    _s("lock_handoff_timeout", "config", "int", 2, 1, 60, extension=True,
       help="seconds a gateway holding a disk's exclusive lock has to answer another gateway's "
            "request for it before its lock is broken and it is fenced"),
)

# [target] -- TGT_SETTINGS (iSCSI target controls, overridable per target).
TGT_SETTINGS: tuple[Setting, ...] = (
    _s("dataout_timeout", "target", "int", 20, 2, 60,
       help="seconds to wait for solicited Data-Out before failing the command"),
    _s("nopin_response_timeout", "target", "int", 5, 3, 60,
       help="seconds to wait for the answer to a NOP-In ping before dropping the connection"),
    _s("nopin_timeout", "target", "int", 5, 3, 60,
       help="idle seconds before the target pings a connection with NOP-In"),
    _s("cmdsn_depth", "target", "int", 128, 1, 512,
       help="commands an initiator may have outstanding per session (CmdSN window)"),
    _s("immediate_data", "target", "bool", True, help="ImmediateData offered in login"),
    _s("initial_r2t", "target", "bool", True, help="InitialR2T offered in login"),
    _s("max_outstanding_r2t", "target", "int", 1, 1, 65535, help="MaxOutstandingR2T offered in login"),
    _s("first_burst_length", "target", "int", 262144, 512, 16777215,
       help="FirstBurstLength offered in login (bytes)"),
    _s("max_burst_length", "target", "int", 524288, 512, 16777215,
       help="MaxBurstLength offered in login (bytes)"),
    _s("max_recv_data_segment_length", "target", "int", 262144, 512, 16777215,
       help="largest data segment the target accepts (bytes)"),
    _s("max_xmit_data_segment_length", "target", "int", 262144, 512, 16777215,
       help="largest data segment the target sends (bytes)"),
)
CLIENT_SETTING_NAMES = ("dataout_timeout", "nopin_response_timeout", "nopin_timeout", "cmdsn_depth")

# [target] -- TCMU_SETTINGS (disk controls, overridable per disk).
TCMU_SETTINGS: tuple[Setting, ...] = (
    _s("max_data_area_mb", "target", "int", 8, 1, 2048,
       help="data buffer per LUN (MiB): bounds the bytes in flight per LUN"),
    _s("hw_max_sectors", "target", "int", 1024, 1, 8192,
       help="largest transfer in 512-byte sectors (VPD B0 max/optimal transfer length)"),
    _s("qfull_timeout", "target", "int", 5, 0, 600,
       help="seconds a command may wait for buffer space before TASK SET FULL"),
    _s("osd_op_timeout", "target", "int", 30, 0, 600,
       help="seconds before a librbd operation times out (rados_osd_op_timeout)"),
)

# [device_status]
DEV_STATUS_SETTINGS: tuple[Setting, ...] = (
    _s("lock_lost_cnt_threshhold", "device_status", "int", 12, 1, 1000000,
       help="lock losses between two polls that mark a disk 'excessive failovers'"),
    _s("status_check_interval", "device_status", "int", 10, 1, 600,
       help="seconds between device status polls"),
    _s("stable_state_reset_count", "device_status", "int", 3, 1, 600,
       help="clean polls before a disk returns to Online"),
)

ALL_SETTINGS: tuple[Setting, ...] = SYS_SETTINGS + TGT_SETTINGS + TCMU_SETTINGS + DEV_STATUS_SETTINGS
BY_SECTION: dict[str, dict[str, Setting]] = {}
for _setting in ALL_SETTINGS:
    BY_SECTION.setdefault(_setting.section, {})[_setting.name] = _setting
BY_NAME: dict[str, Setting] = {s.name: s for s in ALL_SETTINGS}
TARGET_CONTROLS: dict[str, Setting] = {s.name: s for s in TGT_SETTINGS}
DISK_CONTROLS: dict[str, Setting] = {s.name: s for s in TCMU_SETTINGS}


def parse_controls(table: dict[str, Setting], controls: dict[str, Any]) -> dict[str, Any]:
    """Validate a ``controls`` dict (target or disk) against its table.

    Returns the typed values; raises SettingsError naming the first bad key.
    An empty string or None means "reset to default" and is returned as None.
    """
    out: dict[str, Any] = {}
    for key, raw in controls.items():
        setting = table.get(key)
        if setting is None:
            raise SettingsError(f"unknown control {key!r}; valid controls: {', '.join(sorted(table))}")
        out[key] = None if raw in (None, "") else setting.parse(raw)
    return out


@dataclass
class Settings:
    """The typed settings of one process."""

    values: dict[str, Any] = field(default_factory=lambda: {s.name: s.default for s in ALL_SETTINGS})
    path: str | None = None
    warnings: list[str] = field(default_factory=list)
    # Keys whose value was ``config://<key>``: fetched from the mon config-key store.
    deferred: dict[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values")
        if values is not None and name in values:
            return values[name]
        raise AttributeError(name)

    # Convenience paths --------------------------------------------------------------
    @property
    def ceph_conf(self) -> str:
        return os.path.join(self.ceph_config_dir, f"{self.cluster_name}.conf")

    @property
    def client_id(self) -> str:
        """The rados id (``admin`` for ``client.admin``)."""
        name = self.cluster_client_name
        return name.split(".", 1)[1] if name.startswith("client.") else name

    @property
    def target_defaults(self) -> dict[str, Any]:
        return {s.name: self.values[s.name] for s in TGT_SETTINGS}

    @property
    def disk_defaults(self) -> dict[str, Any]:
        return {s.name: self.values[s.name] for s in TCMU_SETTINGS}

    def checkconf_hash(self) -> str:
        """sha256 over the settings gateways must agree on (ceph-iscsi's ``checkconf``)."""
        h = hashlib.sha256()
        for s in sorted(ALL_SETTINGS, key=lambda s: (s.section, s.name)):
            if s.hashed and not s.extension:
                h.update(f"{s.section}.{s.name}={s.format(self.values[s.name])}\n".encode())
        return h.hexdigest()

    def resolve_deferred(self, fetch: Callable[[str], str]) -> None:
        """Fetch ``config://`` values (``fetch`` reads the mon config-key store)."""
        for name, key in list(self.deferred.items()):
            self.values[name] = BY_NAME[name].parse(fetch(key))
            del self.deferred[name]


def cfg_path(explicit: str | None = None) -> str:
    """Which cfg file to read: ``--cfg``, then ``$ISCSI_GATEWAY_CFG``, then the default."""
    return explicit or os.environ.get(CFG_ENV) or DEFAULT_CFG_PATH


def load(path: str | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read and validate a cfg file; missing file = defaults. Raises SettingsError."""
    path = cfg_path(path)
    settings = Settings(path=path)
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    if Path(path).exists():
        try:
            parser.read(path)
        except configparser.Error as e:
            raise SettingsError(f"{path}: not a valid cfg file: {e}") from None
    settings.warnings.extend(_apply(settings, _sections(parser)))
    if overrides:
        for name, raw in overrides.items():
            if name not in BY_NAME:
                raise SettingsError(f"unknown setting {name!r}")
            settings.values[name] = BY_NAME[name].parse(raw)
    for w in settings.warnings:
        log.warning("%s: %s", path, w)
    return settings


def loads(text: str) -> Settings:
    """Parse cfg text (for tests and the API's checkconf)."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text)
    except configparser.Error as e:
        raise SettingsError(f"not a valid cfg file: {e}") from None
    settings = Settings()
    settings.warnings.extend(_apply(settings, _sections(parser)))
    return settings


def _sections(parser: configparser.ConfigParser) -> Iterable[tuple[str, str, str]]:
    for section in parser.sections():
        for key, value in parser.items(section, raw=True):
            yield section, key, value


def _apply(settings: Settings, items: Iterable[tuple[str, str, str]]) -> list[str]:
    warnings = []
    for section, key, raw in items:
        known = BY_SECTION.get(section)
        if known is None:
            warnings.append(f"unknown section [{section}] ignored")
            continue
        setting = known.get(key)
        if setting is None:
            warnings.append(f"unknown key {key!r} in [{section}] ignored")
            continue
        if raw.strip().startswith("config://"):
            settings.deferred[key] = raw.strip()[len("config://"):]
            continue
        settings.values[key] = setting.parse(raw)
    return warnings


def add_cfg_argument(parser) -> None:
    """The ``--cfg PATH`` option shared by all three programs."""
    parser.add_argument("--cfg", metavar="PATH", default=None,
                        help=f"settings file (default: ${CFG_ENV} or {DEFAULT_CFG_PATH})")
