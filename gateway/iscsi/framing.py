"""Byte stream <-> PDUs: lengths, padding, CRC32C digests, bounded buffering.

:class:`PduReader` works in two ways: ``receive_data(bytes)`` (copies; used by tests and
simple callers) or the buffer protocol ``get_buffer()`` / ``buffer_updated(n)`` (what
asyncio's BufferedProtocol calls).  Small PDUs are parsed out of one staging buffer; a large
data segment (a Data-Out burst, a write's immediate data) gets its own buffer of exactly
its size, and the socket reads straight into it -- the payload is never copied again on its
way to the SCSI layer.  Memory per connection is the staging buffer plus one segment of at
most ``max_data_segment`` bytes.
"""

from __future__ import annotations

from crc32c import crc32c

from gateway.iscsi.constants import BHS_LEN, DIGEST_LEN, RejectReason
from gateway.iscsi.errors import RemoteProtocolError
from gateway.iscsi.pdu import Buffer, Pdu, decode_pdu

STAGING_SIZE = 65536
# Segments at least this large (and not already complete in staging) get their own buffer.
DIRECT_THRESHOLD = 8192
_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")
EMPTY = b""


def pad_of(n: int) -> bytes:
    """The padding after a data segment of ``n`` bytes."""
    return _PAD[n & 3]


def digest(*parts: Buffer) -> bytes:
    """CRC32C of the concatenated parts, as sent on the wire (little endian)."""
    crc = 0
    for p in parts:
        crc = crc32c(p, crc)
    return crc.to_bytes(4, "little")


def frame(pdu: Pdu, header_digest: bool = False, data_digest: bool = False) -> list[Buffer]:
    """Buffers to write for one PDU (header [+digest], data, padding [+digest])."""
    hdr = pdu.header()
    if header_digest:
        hdr += digest(hdr)
    data = pdu.data
    n = len(data)
    if not n:
        return [hdr]
    pad = _PAD[n & 3]
    if data_digest:
        tail = pad + digest(data, pad)
    else:
        tail = pad
    if n <= 1024:
        return [hdr + bytes(data) + tail]
    return [hdr, data, tail] if tail else [hdr, data]


class PduReader:
    """Splits a byte stream into PDUs; never holds more than one PDU's data."""

    def __init__(self, max_data_segment: int = 8192, staging_size: int = STAGING_SIZE) -> None:
        self.max_data_segment = max_data_segment
        self.header_digest = False
        self.data_digest = False
        self._buf = bytearray(staging_size)
        self._view = memoryview(self._buf)
        self._start = 0
        self._end = 0
        # A large data segment being read directly into its own buffer.
        self._seg: bytearray | None = None
        self._seg_filled = 0
        self._seg_hdr: tuple[bytes, bytes, int] | None = None
        self._skip = 0
        self._backlog = bytearray()

    # -- input ---------------------------------------------------------------------------
    def receive_data(self, data: Buffer) -> None:
        """Queue bytes (copying); ``next_pdu`` consumes them."""
        self._backlog += data

    def get_buffer(self) -> memoryview:
        """Where the next bytes from the socket should go (BufferedProtocol)."""
        if self._seg is not None:
            return memoryview(self._seg)[self._seg_filled:]
        if self._end == len(self._buf):
            self._compact()
        return self._view[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        if self._seg is not None:
            self._seg_filled += nbytes
        else:
            self._end += nbytes

    def take_buffered(self) -> bytes:
        """Remove and return the unparsed bytes (to hand them to another reader)."""
        if self._seg is not None:
            raise ValueError("a data segment is half read")
        data = bytes(self._buf[self._start:self._end]) + bytes(self._backlog)
        self._start = self._end = 0
        self._backlog = bytearray()
        return data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as PDUs (for tests and limits)."""
        return (self._end - self._start) + len(self._backlog) + self._seg_filled

    def _compact(self) -> None:
        n = self._end - self._start
        if self._start:
            self._buf[:n] = self._buf[self._start:self._end]
        self._start, self._end = 0, n

    def _drain_backlog(self) -> None:
        while self._backlog:
            mv = self.get_buffer()
            k = min(len(mv), len(self._backlog))
            if not k:
                return
            mv[:k] = self._backlog[:k]
            del self._backlog[:k]
            self.buffer_updated(k)
            if self._seg is not None and self._seg_filled == len(self._seg):
                return

    # -- output --------------------------------------------------------------------------
    def next_pdu(self) -> Pdu | None:
        """The next complete PDU, or None if more bytes are needed.

        Raises RemoteProtocolError for a framing problem: a bad header digest or an
        unparseable header is fatal (the stream cannot be resynchronised); an oversize data
        segment or a bad data digest is skipped and reported with a Reject reason.
        """
        raw = self.next_raw()
        return None if raw is None else decode_pdu(*raw)

    def next_raw(self) -> tuple[bytes, bytes, Buffer] | None:
        """Like :meth:`next_pdu`, but the PDU undecoded: (BHS, AHS, data segment)."""
        if self._backlog:
            self._drain_backlog()
        if self._seg is not None:
            return self._finish_direct()
        if self._skip:
            avail = self._end - self._start
            k = min(avail, self._skip)
            self._start += k
            self._skip -= k
            if self._skip:
                return None
        avail = self._end - self._start
        if avail < BHS_LEN:
            if self._backlog:
                self._compact()
                self._drain_backlog()
                avail = self._end - self._start
            if avail < BHS_LEN:
                return None
        buf = self._buf
        s = self._start
        ahs_len = buf[s + 4] * 4
        dsl = (buf[s + 5] << 16) | (buf[s + 6] << 8) | buf[s + 7]
        hlen = BHS_LEN + ahs_len + (DIGEST_LEN if self.header_digest else 0)
        if avail < hlen:
            return None
        view = self._view
        bhs = bytes(view[s:s + BHS_LEN])
        ahs = bytes(buf[s + BHS_LEN:s + BHS_LEN + ahs_len]) if ahs_len else b""
        if self.header_digest:
            got = bytes(buf[s + hlen - DIGEST_LEN:s + hlen])
            if got != digest(bhs, ahs):
                raise RemoteProtocolError("header digest error", fatal=True)
        dlen = (dsl + 3) & ~3
        if dsl and self.data_digest:
            dlen += DIGEST_LEN
        if dsl > self.max_data_segment:
            self._start = s + hlen
            self._skip = dlen
            raise RemoteProtocolError(
                f"data segment of {dsl} bytes exceeds MaxRecvDataSegmentLength {self.max_data_segment}",
                reject_reason=RejectReason.PROTOCOL_ERROR, header=bhs)
        if avail >= hlen + dlen:
            d0 = s + hlen
            data = bytes(view[d0:d0 + dsl]) if dsl else EMPTY
            self._start = d0 + dlen
            if dsl and self.data_digest:
                self._check_data_digest(bhs, buf[d0:d0 + dlen])
            return bhs, ahs, data
        if dlen >= DIRECT_THRESHOLD or hlen + dlen > len(buf):
            seg = bytearray(dlen)
            have = avail - hlen
            seg[:have] = buf[s + hlen:self._end]
            self._start = self._end = 0
            self._seg, self._seg_filled, self._seg_hdr = seg, have, (bhs, ahs, dsl)
            return self._finish_direct()
        if self._start + hlen + dlen > len(buf):
            self._compact()
        return None

    def _finish_direct(self) -> tuple[bytes, bytes, Buffer] | None:
        seg = self._seg
        if self._backlog and self._seg_filled < len(seg):
            self._drain_backlog()
        if self._seg_filled < len(seg):
            return None
        bhs, ahs, dsl = self._seg_hdr
        self._seg, self._seg_filled, self._seg_hdr = None, 0, None
        if self.data_digest:
            self._check_data_digest(bhs, seg)
        return bhs, ahs, memoryview(seg)[:dsl]

    def _check_data_digest(self, bhs: bytes, padded: Buffer) -> None:
        n = len(padded) - DIGEST_LEN
        body = memoryview(padded)[:n]
        if bytes(padded[n:n + DIGEST_LEN]) != digest(body):
            raise RemoteProtocolError("data digest error", reject_reason=RejectReason.DATA_DIGEST_ERROR,
                                      header=bhs)
