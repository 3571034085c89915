"""PDU codec, framing, digests, text keys and negotiation."""

from __future__ import annotations

import pytest

from gateway.iscsi.constants import RejectReason
from gateway.iscsi.errors import RemoteProtocolError
from gateway.iscsi.framing import PduReader, digest, frame
from gateway.iscsi.keys import encode_text, parse_text
from gateway.iscsi.negotiation import TargetNegotiation, TargetOffers
from gateway.iscsi.pdu import (
    PDU_CLASSES,
    UNSUPPORTED_LUN,
    DataIn,
    DataOut,
    LoginRequest,
    NopOut,
    ScsiCommand,
    ScsiResponse,
    decode_lun,
    decode_pdu,
    encode_lun,
)


def wire(pdu, hd=False, dd=False) -> bytes:
    return b"".join(bytes(b) for b in frame(pdu, hd, dd))


def test_crc32c_digest_matches_rfc_3720_example():
    # RFC 3720 B.4: 32 bytes of zeroes -> CRC bytes aa 36 91 8a as sent on the wire.
    assert digest(bytes(32)) == bytes.fromhex("aa36918a")


@pytest.mark.parametrize("cls", sorted(PDU_CLASSES.values(), key=lambda c: c.opcode),
                         ids=lambda c: c.__name__)
def test_every_pdu_class_roundtrips_its_header(cls):
    pdu = cls()
    for name, value in (("itt", 0x1234), ("lun", 7), ("statsn", 99), ("cmdsn", 5), ("offset", 4096)):
        if hasattr(pdu, name):
            setattr(pdu, name, value)
    hdr = pdu.header()
    assert len(hdr) == 48
    back = decode_pdu(hdr, b"", b"")
    assert type(back) is cls
    assert back.header() == hdr


def test_scsi_command_with_extended_cdb_and_bidi_length_uses_ahs():
    cmd = ScsiCommand(read=True, write=True, itt=9, edtl=512, cmdsn=3, cdb=bytes(range(32)),
                      bidi_read_length=4096)
    raw = wire(cmd)
    reader = PduReader()
    reader.receive_data(raw)
    back = reader.next_pdu()
    assert back.cdb == bytes(range(32)) and back.bidi_read_length == 4096


def test_lun_encoding_peripheral_and_flat_space():
    assert decode_lun(encode_lun(5)) == 5
    assert encode_lun(300) >> 48 == 0x4000 | 300
    assert decode_lun(encode_lun(300)) == 300
    assert decode_lun(0xC0 << 56) == UNSUPPORTED_LUN       # extended addressing


def test_reader_splits_a_byte_stream_fed_one_byte_at_a_time():
    pdus = [NopOut(data=b"x" * n, itt=n) for n in (0, 1, 5, 9000)]
    stream = b"".join(wire(p) for p in pdus)
    reader = PduReader(max_data_segment=65536)
    got = []
    for i in range(len(stream)):
        reader.receive_data(stream[i:i + 1])
        while (p := reader.next_pdu()) is not None:
            got.append(p)
    assert [(p.itt, bytes(p.data)) for p in got] == [(p.itt, p.data) for p in pdus]


def test_large_segment_is_received_directly_into_its_own_buffer():
    data = bytes(range(256)) * 1024                      # 256 KiB
    raw = wire(DataOut(data=data, itt=1, final=True))
    reader = PduReader(max_data_segment=1 << 20)
    pos = 0
    while pos < len(raw):
        buf = reader.get_buffer()
        n = min(len(buf), 10000, len(raw) - pos)
        buf[:n] = raw[pos:pos + n]
        reader.buffer_updated(n)
        pos += n
        pdu = reader.next_pdu()
        if pdu is not None:
            break
    assert bytes(pdu.data) == data
    assert isinstance(pdu.data, memoryview)              # no copy into bytes


def test_header_digest_error_is_fatal():
    raw = bytearray(wire(NopOut(itt=1), hd=True))
    raw[-1] ^= 0xFF
    reader = PduReader()
    reader.header_digest = True
    reader.receive_data(bytes(raw))
    with pytest.raises(RemoteProtocolError) as e:
        reader.next_pdu()
    assert e.value.fatal


def test_data_digest_error_is_rejected_and_stream_stays_in_sync():
    bad = bytearray(wire(NopOut(itt=1, data=b"hello"), hd=True, dd=True))
    bad[-1] ^= 0xFF
    good = wire(NopOut(itt=2, data=b"world"), hd=True, dd=True)
    reader = PduReader()
    reader.header_digest = reader.data_digest = True
    reader.receive_data(bytes(bad) + good)
    with pytest.raises(RemoteProtocolError) as e:
        reader.next_pdu()
    assert e.value.reject_reason == RejectReason.DATA_DIGEST_ERROR and not e.value.fatal
    assert bytes(reader.next_pdu().data) == b"world"


def test_oversize_data_segment_is_skipped_with_protocol_error():
    reader = PduReader(max_data_segment=512)
    reader.receive_data(wire(NopOut(itt=1, data=b"z" * 2000)) + wire(NopOut(itt=2)))
    with pytest.raises(RemoteProtocolError) as e:
        reader.next_pdu()
    assert e.value.reject_reason == RejectReason.PROTOCOL_ERROR
    assert reader.next_pdu().itt == 2


def test_data_in_phase_collapse_flags_roundtrip():
    pdu = DataIn(data=b"abc", flags=0x81 | 0x02, status=0, itt=3, residual=5)
    back = decode_pdu(pdu.header(), b"", b"abc")
    assert back.flags == 0x83 and back.residual == 5


def test_scsi_response_sense_is_length_prefixed():
    rsp = ScsiResponse(data=b"\x00\x03abc", status=2)
    assert rsp.sense == b"abc"


def test_text_parse_rejects_overlong_key_and_missing_separator():
    with pytest.raises(RemoteProtocolError):
        parse_text(b"K" * 64 + b"=1\0")
    with pytest.raises(RemoteProtocolError):
        parse_text(b"novalue\0")
    assert parse_text(encode_text([("A", "1"), ("B", "x=y")]) + b"\0\0") == [("A", "1"), ("B", "x=y")]


def test_negotiation_applies_each_reducer():
    nego = TargetNegotiation(TargetOffers(max_burst_length=131072, initial_r2t=True, immediate_data=False))
    answer = dict(nego.respond([("MaxBurstLength", "262144"), ("InitialR2T", "No"), ("ImmediateData", "Yes"),
                                ("DefaultTime2Wait", "5"), ("HeaderDigest", "None,CRC32C"),
                                ("MaxRecvDataSegmentLength", "4096")]))
    assert answer == {"MaxBurstLength": "131072", "InitialR2T": "Yes", "ImmediateData": "No",
                      "DefaultTime2Wait": "5", "HeaderDigest": "None"}
    params = nego.result()
    assert params.max_burst_length == 131072 and not params.immediate_data and params.initial_r2t
    assert params.max_xmit_data_segment_length == 4096


def test_negotiation_answers_unknown_irrelevant_and_invalid_keys():
    nego = TargetNegotiation(TargetOffers())
    answer = dict(nego.respond([("X-com.example.thing", "1"), ("MaxConnections", "0"),
                                ("OFMarkInt", "2048"), ("DataDigest", "MD5"), ("InitialR2T", "Maybe")]))
    assert answer == {"X-com.example.thing": "NotUnderstood", "MaxConnections": "Reject",
                      "OFMarkInt": "Irrelevant", "DataDigest": "Reject", "InitialR2T": "Reject"}


def test_key_offered_twice_is_an_initiator_error():
    nego = TargetNegotiation(TargetOffers())
    nego.respond([("MaxBurstLength", "4096")])
    with pytest.raises(RemoteProtocolError) as e:
        nego.respond([("MaxBurstLength", "4096")])
    assert e.value.login_status == (0x02, 0x00)


def test_target_proposes_keys_whose_default_it_cannot_accept():
    offers = TargetOffers(immediate_data=False, first_burst_length=4096, max_burst_length=8192)
    nego = TargetNegotiation(offers)
    props = dict(nego.proposals())
    assert props == {"ImmediateData": "No", "MaxBurstLength": "8192", "FirstBurstLength": "4096"}
    nego.respond([("ImmediateData", "No"), ("MaxBurstLength", "8192"), ("FirstBurstLength", "4096")])
    assert not nego.waiting_for_answers
    assert nego.result().first_burst_length == 4096


def test_discovery_session_marks_session_keys_irrelevant():
    nego = TargetNegotiation(TargetOffers(), discovery=True)
    answer = dict(nego.respond([("MaxBurstLength", "4096"), ("HeaderDigest", "CRC32C,None")]))
    assert answer == {"MaxBurstLength": "Irrelevant", "HeaderDigest": "CRC32C"}


def test_login_request_flags_roundtrip():
    req = LoginRequest(transit=True, cont=False, csg=1, nsg=3, isid=b"\x80abcde", tsih=0, itt=1, cid=2)
    back = decode_pdu(req.header(), b"", b"")
    assert (back.transit, back.csg, back.nsg, back.isid, back.cid) == (True, 1, 3, b"\x80abcde", 2)
