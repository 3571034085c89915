"""Helpers for tests of running gateways: real initiators (libiscsi's iscsi-ls, qemu-io) and
our own initiator over TCP for exact PDU-level scenarios (RTPG bytes, held sessions)."""

from __future__ import annotations

import asyncio
import re
import struct
import subprocess
from dataclasses import dataclass

from support.tcp_initiator import TcpInitiator

from gateway.iscsi.chap import ChapSecret
from gateway.iscsi.initiator import CommandResult, Initiator, LoginOutcome

INITIATOR_A = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test"
INITIATOR_B = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2"
CHAP_USER = "gatewaytest"
CHAP_PASSWORD = "gatewaysecret1"

GOOD, CHECK_CONDITION, BUSY = 0x00, 0x02, 0x08


# ---- CDBs -----------------------------------------------------------------------------------
def tur() -> bytes:
    return bytes(6)


def read10(lba: int, blocks: int) -> bytes:
    return bytes([0x28, 0]) + lba.to_bytes(4, "big") + b"\0" + blocks.to_bytes(2, "big") + b"\0"


def write10(lba: int, blocks: int) -> bytes:
    return bytes([0x2A, 0]) + lba.to_bytes(4, "big") + b"\0" + blocks.to_bytes(2, "big") + b"\0"


def rtpg(alloc: int = 1024) -> bytes:
    """REPORT TARGET PORT GROUPS, extended header."""
    return bytes([0xA3, 0x0A | 0x20, 0, 0, 0, 0]) + alloc.to_bytes(4, "big") + bytes(2)


def rtpg_states(data: bytes) -> dict[int, int]:
    """{group id: access state} from extended RTPG data."""
    out = {}
    length = struct.unpack(">I", data[:4])[0]
    pos = 8 if data[4] & 0x10 else 4
    end = min(len(data), 4 + length)
    while pos + 8 <= end:
        state, gid, nports = data[pos] & 0x0F, struct.unpack(">H", data[pos + 2:pos + 4])[0], data[pos + 7]
        out[gid] = state
        pos += 8 + 4 * nports
    return out


# ---- real initiators ------------------------------------------------------------------------
def iscsi_ls(portal: str, initiator: str = INITIATOR_A, user: str = CHAP_USER,
             password: str = CHAP_PASSWORD, timeout: float = 30) -> list[tuple[str, str, int]]:
    """SendTargets through libiscsi: [(target, "ip:port", tpgt)]."""
    url = f"iscsi://{user}%{password}@{portal}" if user else f"iscsi://{portal}"
    out = subprocess.run(["iscsi-ls", url, "-i", initiator], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return [(m.group(1), m.group(2), int(m.group(3)))
            for m in re.finditer(r"Target:(\S+) Portal:(\S+),(\d+)", out.stdout)]


def iscsi_luns(portal: str, initiator: str = INITIATOR_A, user: str = CHAP_USER,
               password: str = CHAP_PASSWORD, timeout: float = 30) -> list[int]:
    """LUN ids the initiator sees through one portal (iscsi-ls -s logs in to each target)."""
    url = f"iscsi://{user}%{password}@{portal}"
    out = subprocess.run(["iscsi-ls", "-s", url, "-i", initiator], capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr
    lines, luns, here = out.stdout.splitlines(), [], False
    for line in lines:
        if line.startswith("Target:"):
            here = line.split()[1].startswith(f"Portal:{portal},")
        elif here and line.startswith("Lun:"):
            luns.append(int(line.split()[0].split(":")[1]))
    return sorted(luns)


def qemu_io(portal: str, target: str, *commands: str, lun: int = 0, initiator: str = INITIATOR_A,
            user: str = CHAP_USER, password: str = CHAP_PASSWORD,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """QEMU's libiscsi block driver (retries BUSY, as a host does) running qemu-io commands."""
    opts = (f"driver=iscsi,transport=tcp,portal={portal},target={target},lun={lun},"
            f"initiator-name={initiator},user={user},password-secret=chap")
    args = ["qemu-io", "--object", f"secret,id=chap,data={password}", "--image-opts", opts]
    for c in commands:
        args += ["-c", c]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def qemu_io_ok(portal: str, target: str, *commands: str, **kw) -> str:
    out = qemu_io(portal, target, *commands, **kw)
    text = out.stdout + out.stderr
    ok = out.returncode == 0 and "failed" not in text.lower()  # qemu-io: "Pattern verification failed"
    assert ok, text
    return text


# ---- our initiator over TCP -------------------------------------------------------------------
@dataclass
class Endpoint:
    ip: str
    port: int


class Session(TcpInitiator):
    """gateway.iscsi.initiator driven over an asyncio TCP connection."""

    default_timeout = 10.0

    def __init__(self, ip: str, port: int, target: str, name: str = INITIATOR_A, *,
                 user: str | None = CHAP_USER, password: str = CHAP_PASSWORD,
                 isid: bytes | None = None) -> None:
        kw = {"chap": ChapSecret(user, password)} if user else {}
        if isid is not None:
            kw["isid"] = isid
        super().__init__(ip, port, Initiator(name, target, **kw))

    async def login(self) -> LoginOutcome:
        await self.connect()
        self.ini.start_login()
        await self.pump(lambda evs: any(isinstance(e, LoginOutcome) for e in evs))
        outcome = next((e for e in self.events if isinstance(e, LoginOutcome)), None)
        assert outcome is not None and outcome.status == (0, 0), f"login to {self.ip}:{self.port}: {outcome}"
        for _ in range(3):  # the new nexus's unit attentions
            if (await self.command(tur())).status == GOOD:
                break
        return outcome

    def send(self, cdb: bytes, **kw) -> int:
        """Queue a command without waiting (flushed by the next pump)."""
        return self.ini.scsi(cdb, **kw)

    async def flush(self) -> None:
        out = self.ini.data_to_send()
        if out:
            self.writer.write(out)
            await self.writer.drain()

    async def result(self, itt: int, timeout: float = 10.0) -> CommandResult | None:
        def mine(evs):
            return any(isinstance(e, CommandResult) and e.itt == itt for e in evs)
        await self.pump(mine, timeout)
        return next((e for e in self.events if isinstance(e, CommandResult) and e.itt == itt), None)

    async def command(self, cdb: bytes, timeout: float = 10.0, **kw) -> CommandResult:
        res = await self.result(self.send(cdb, **kw), timeout)
        assert res is not None, f"no answer to {cdb.hex()} from {self.ip}:{self.port} (closed={self.closed})"
        return res

    async def command_past_unit_attention(self, cdb: bytes, **kw) -> CommandResult:
        for _ in range(4):
            res = await self.command(cdb, **kw)
            if res.status != CHECK_CONDITION or (res.sense[2] & 0x0F if len(res.sense) > 2 else 0) != 0x06:
                return res
        return res

    async def alive(self, timeout: float = 5.0) -> bool:
        """True when the session still answers TEST UNIT READY."""
        if self.closed:
            return False
        try:
            res = await self.result(self.send(tur()), timeout)
        except (ConnectionError, OSError):
            return False
        return res is not None

    def close(self) -> None:
        try:
            self.writer.close()
        except Exception:
            pass


def iscsi_loggable(ip: str, port: int, target: str, initiator: str, user: str = CHAP_USER,
                   password: str = CHAP_PASSWORD, timeout: float = 5.0) -> bool:
    """True when a login of ``initiator`` to ``target`` through ip:port succeeds now."""
    async def attempt() -> bool:
        s = Session(ip, port, target, initiator, user=user, password=password)
        try:
            s.reader, s.writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
        except (OSError, TimeoutError):
            return False
        try:
            s.ini.start_login()
            await s.pump(lambda evs: any(isinstance(e, LoginOutcome) for e in evs), timeout)
            outcome = next((e for e in s.events if isinstance(e, LoginOutcome)), None)
            return outcome is not None and outcome.status == (0, 0)
        finally:
            s.close()

    return asyncio.run(attempt())
