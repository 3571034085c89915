"""What a system-test guest tells the host, and what the host hands to it.

Pure functions and data (no processes): the event-line grammar of ``guest_lib.sh``,
the ``multipath -ll`` parser the tests assert on, the ``multipath.conf`` the guest uses
and the newc cpio writer for the per-run overlay.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

RESULT_PASS = "PASS"
RESULT_FAIL = "FAIL"


@dataclass(frozen=True)
class Progress:
    """One ``VMTEST[uptime] text`` line: guest uptime in seconds and what happened."""

    uptime: float
    text: str


@dataclass
class GuestEvents:
    """Everything parsed from the event channel so far."""

    progress: list[Progress] = field(default_factory=list)
    data: dict[str, str] = field(default_factory=dict)
    blocks: dict[str, str] = field(default_factory=dict)
    block_status: dict[str, int] = field(default_factory=dict)
    waiting: list[str] = field(default_factory=list)
    discovery: list[str] = field(default_factory=list)
    result: str | None = None      # RESULT_PASS, RESULT_FAIL or None (not finished)
    reason: str = ""

    def uptime_of(self, text_prefix: str) -> float | None:
        """Guest uptime of the first progress line starting with ``text_prefix``."""
        for p in self.progress:
            if p.text.startswith(text_prefix):
                return p.uptime
        return None


_PROGRESS = re.compile(r"^VMTEST\[\s*([0-9.]+)\] (.*)$")
_BLOCK = re.compile(r"^VMBLOCK (\S+) (BEGIN|END(?: rc=(\d+))?|\| ?(.*))$")


def parse_events(text: str) -> GuestEvents:
    """Parse the event channel (``events.log``); tolerant of CRs and a cut last line."""
    ev = GuestEvents()
    open_blocks: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if m := _PROGRESS.match(line):
            ev.progress.append(Progress(float(m.group(1)), m.group(2)))
        elif line.startswith("VMDATA ") and "=" in line:
            key, _, value = line[7:].partition("=")
            ev.data[key] = value
        elif m := _BLOCK.match(line):
            name, what = m.group(1), m.group(2)
            if what == "BEGIN":
                open_blocks[name] = []
            elif what.startswith("END"):
                ev.blocks[name] = "\n".join(open_blocks.pop(name, []))
                if m.group(3) is not None:
                    ev.block_status[name] = int(m.group(3))
            elif name in open_blocks:
                open_blocks[name].append(m.group(4) or "")
        elif line.startswith("VMWAIT "):
            ev.waiting.append(line[7:].strip())
        elif line.startswith("VMDISCOVERY "):
            ev.discovery.append(line[12:])
        elif line.startswith("RESULT: "):
            verdict = line[8:]
            if verdict.startswith(RESULT_PASS):
                ev.result, ev.reason = RESULT_PASS, ""
            else:
                ev.result = RESULT_FAIL
                ev.reason = verdict.partition(":")[2].strip() or verdict
    return ev


# ---- multipath -ll ----------------------------------------------------------------------
@dataclass(frozen=True)
class MultipathPath:
    hctl: str
    disk: str
    dm_state: str       # active | failed
    checker_state: str  # ready | faulty | ghost | ...
    dev_state: str      # running | offline | ...


@dataclass(frozen=True)
class PathGroup:
    policy: str
    prio: int
    status: str         # active | enabled | disabled
    paths: tuple[MultipathPath, ...]


@dataclass(frozen=True)
class MultipathMap:
    name: str
    wwid: str
    vendor: str
    product: str
    features: str
    hwhandler: str
    groups: tuple[PathGroup, ...]

    @property
    def paths(self) -> list[MultipathPath]:
        return [p for g in self.groups for p in g.paths]


_MAP_HEAD = re.compile(r"^(\S+) \((\S+)\) (dm-\d+) (.*?)\s*,(.*?)\s*$")
_MAP_HEAD_NO_WWID = re.compile(r"^(\S+) (dm-\d+) (.*?)\s*,(.*?)\s*$")
_MAP_ATTRS = re.compile(r"features='([^']*)' hwhandler='([^']*)'")
_GROUP = re.compile(r"policy='([^']*)' prio=(-?\d+) status=(\S+)")
_PATH = re.compile(r"(\d+:\d+:\d+:\d+) (\S+) \S+ +(\S+) +(\S+) +(\S+)")


def parse_multipath_ll(text: str) -> list[MultipathMap]:
    """Maps, path groups and paths of ``multipath -ll`` output (multipath-tools 0.9)."""
    maps: list[MultipathMap] = []
    cur: dict | None = None
    groups: list[PathGroup] = []
    group: dict | None = None

    def close_group() -> None:
        nonlocal group
        if group is not None:
            groups.append(PathGroup(group["policy"], group["prio"], group["status"], tuple(group["paths"])))
            group = None

    def close_map() -> None:
        nonlocal cur, groups
        close_group()
        if cur is not None:
            maps.append(MultipathMap(groups=tuple(groups), **cur))
        cur, groups = None, []

    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace() and line[0] not in "|`":
            if line.startswith("size="):
                if cur is not None and (m := _MAP_ATTRS.search(line)):
                    cur["features"], cur["hwhandler"] = m.group(1), m.group(2)
                continue
            # A map header, or noise such as "12.34 | sda: prio = const (...)" from stderr.
            if m := _MAP_HEAD.match(line):
                close_map()
                cur = {"name": m.group(1), "wwid": m.group(2), "vendor": m.group(4).strip(),
                       "product": m.group(5).strip(), "features": "", "hwhandler": ""}
            elif m := _MAP_HEAD_NO_WWID.match(line):
                close_map()
                cur = {"name": m.group(1), "wwid": m.group(1), "vendor": m.group(3).strip(),
                       "product": m.group(4).strip(), "features": "", "hwhandler": ""}
            continue
        if cur is None:
            continue
        if m := _GROUP.search(line):
            close_group()
            group = {"policy": m.group(1), "prio": int(m.group(2)), "status": m.group(3), "paths": []}
        elif group is not None and (m := _PATH.search(line)):
            group["paths"].append(MultipathPath(*m.groups()))
    close_map()
    return maps


# ---- multipath.conf ---------------------------------------------------------------------
@dataclass(frozen=True)
class MultipathDevice:
    """The ``devices`` entry for the gateway's disks (ALUA, implicit failover).

    Defaults follow what ceph-iscsi documented for its gateways, except that
    ``fast_io_fail_tmo`` is short so that a test sees a failover within seconds.
    """

    vendor: str = "LIO-ORG"
    product: str = "TCMU device"
    hardware_handler: str = "1 alua"
    path_grouping_policy: str = "failover"
    path_selector: str = "queue-length 0"
    path_checker: str = "tur"
    prio: str = "alua"
    prio_args: str = "exclusive_pref_bit"
    failback: str = "60"
    no_path_retry: str = "queue"
    fast_io_fail_tmo: int = 5
    polling_interval: int = 2      # path checker period: reinstated paths show up sooner

    def config(self) -> str:
        """The whole ``/etc/multipath.conf`` of the guest."""
        def q(s: str) -> str:
            return '"' + s.replace('"', "") + '"'
        return (
            "defaults {\n"
            "\tuser_friendly_names yes\n"
            "\tfind_multipaths no\n"
            f"\tpolling_interval {self.polling_interval}\n"
            "}\n"
            "devices {\n"
            "\tdevice {\n"
            f"\t\tvendor {q(self.vendor)}\n"
            f"\t\tproduct {q(self.product)}\n"
            f"\t\thardware_handler {q(self.hardware_handler)}\n"
            f"\t\tpath_grouping_policy {q(self.path_grouping_policy)}\n"
            f"\t\tpath_selector {q(self.path_selector)}\n"
            f"\t\tpath_checker {self.path_checker}\n"
            f"\t\tprio {self.prio}\n"
            f"\t\tprio_args {q(self.prio_args)}\n"
            f"\t\tfailback {self.failback}\n"
            f"\t\tno_path_retry {self.no_path_retry}\n"
            f"\t\tfast_io_fail_tmo {self.fast_io_fail_tmo}\n"
            "\t}\n"
            "}\n"
        )


# ---- cpio (newc) ------------------------------------------------------------------------
def newc_archive(files: dict[str, tuple[int, bytes]]) -> bytes:
    """An uncompressed newc cpio of ``{path: (mode, content)}`` (mode with its S_IF* bits).

    Parent directories are added (0755).  The kernel unpacks a cpio appended to the
    initramfs only if it starts on a 4-byte boundary; the caller pads before it.
    """
    entries: dict[str, tuple[int, bytes]] = {}
    for path, (mode, data) in sorted(files.items()):
        rel = path.strip("/")
        parts = rel.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), (0o040755, b""))
        entries[rel] = (mode, data)
    out = bytearray()
    ino = 1000
    for name, (mode, data) in list(entries.items()) + [("TRAILER!!!", (0, b""))]:
        ino += 1
        nlink = 2 if mode & 0o040000 else 1
        fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0)
        out += b"070701" + "".join(f"{v:08x}" for v in fields).encode()
        out += name.encode() + b"\0"
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)
