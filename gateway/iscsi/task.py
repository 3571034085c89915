"""A SCSI task as the transport sees it: identity, data collection, Data-In progress."""

from __future__ import annotations

from enum import Enum


class TaskState(Enum):
    RECEIVING = "receiving"     # waiting for CmdSN order and/or Data-Out
    RUNNING = "running"         # handed to the SCSI layer
    DONE = "done"


class R2TState:
    """One outstanding R2T: the window of data it solicited and the progress in it."""

    __slots__ = ("ttt", "r2tsn", "offset", "length", "next_offset", "datasn")

    def __init__(self, ttt: int, r2tsn: int, offset: int, length: int) -> None:
        self.ttt = ttt
        self.r2tsn = r2tsn
        self.offset = offset
        self.length = length
        self.next_offset = offset
        self.datasn = 0


class Task:
    """One SCSI command of a connection (slots: one per command on the hot path)."""

    __slots__ = ("itt", "lun", "cdb", "attr", "read", "write", "edtl", "read_edtl", "cmdsn",
                 "immediate", "state", "ordered", "aborted", "buf", "chunks", "received",
                 "unsolicited_end", "unsol_next", "unsol_datasn", "r2ts", "next_r2t_offset", "r2tsn",
                 "reserved", "last_data", "data_out", "user")

    def __init__(self, itt: int, lun: int, cdb: bytes, attr: int, read: bool, write: bool,
                 edtl: int, read_edtl: int, cmdsn: int, immediate: bool) -> None:
        self.itt = itt
        self.lun = lun
        self.cdb = cdb
        self.attr = attr
        self.read = read
        self.write = write
        self.edtl = edtl
        self.read_edtl = read_edtl
        self.cmdsn = cmdsn
        self.immediate = immediate
        self.state = TaskState.RECEIVING
        self.ordered = False
        self.aborted = False
        # Data-Out collection: either one contiguous buffer, or (before it is allocated)
        # the unsolicited chunks as (offset, view).
        self.buf: bytearray | None = None
        self.chunks: list[tuple[int, memoryview | bytes]] = []
        self.received = 0
        self.unsolicited_end = 0      # unsolicited data covers [0, unsolicited_end)
        self.unsol_next = 0           # next expected offset of unsolicited Data-Out
        self.unsol_datasn = 0
        self.r2ts: dict[int, R2TState] = {}
        self.next_r2t_offset = 0      # data from here on is not yet solicited
        self.r2tsn = 0
        self.reserved = 0             # bytes of the connection's write budget held
        self.last_data = 0.0
        self.data_out: memoryview | bytes | None = None
        self.user = None              # the portal's handle (e.g. an asyncio task)

    @property
    def data_complete(self) -> bool:
        return not self.write or self.received >= self.edtl

    @property
    def wants_r2t(self) -> bool:
        return self.write and self.next_r2t_offset < self.edtl

    def __repr__(self) -> str:
        return (f"Task(itt=0x{self.itt:x}, lun={self.lun}, op=0x{self.cdb[0]:02x}, cmdsn={self.cmdsn}, "
                f"edtl={self.edtl}, state={self.state.value})")
