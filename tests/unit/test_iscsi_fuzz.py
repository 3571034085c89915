"""Fuzzing (hypothesis): nothing a peer sends may raise anything but RemoteProtocolError.

The PDU parser gets arbitrary bytes and mutated valid PDUs; the login state machine gets
arbitrary login request sequences; a logged-in connection gets arbitrary well-framed PDUs.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iscsi_harness import INITIATOR, TARGET, Pair, logged_in, make_registry

from gateway.iscsi.chap import ChapCredentials, ChapSecret
from gateway.iscsi.constants import Op
from gateway.iscsi.errors import RemoteProtocolError
from gateway.iscsi.events import CommandReady, LogoutRequested, TaskManagement
from gateway.iscsi.framing import PduReader, frame
from gateway.iscsi.initiator import Initiator
from gateway.iscsi.keys import KEYS, encode_text
from gateway.iscsi.login import TargetLogin
from gateway.iscsi.pdu import LoginRequest, NopOut, ScsiCommand, decode_pdu

# ISCSI_FUZZ_EXAMPLES raises the budget for a long local run; the default keeps CI at seconds.
EXAMPLES = int(os.environ.get("ISCSI_FUZZ_EXAMPLES", "1500"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def drain(reader: PduReader) -> None:
    for _ in range(1000):
        try:
            if reader.next_pdu() is None:
                return
        except RemoteProtocolError as e:
            if e.fatal:
                return


@FUZZ
@given(st.binary(max_size=4096), st.booleans(), st.booleans())
def test_pdu_reader_survives_arbitrary_bytes(data, hd, dd):
    reader = PduReader(max_data_segment=8192)
    reader.header_digest, reader.data_digest = hd, dd
    reader.receive_data(data)
    drain(reader)


@FUZZ
@given(st.binary(min_size=48, max_size=48), st.binary(max_size=64), st.binary(max_size=64))
def test_decode_of_any_header_is_total(bhs, ahs, data):
    try:
        decode_pdu(bhs, ahs, data)
    except RemoteProtocolError:
        pass


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=8))
def test_mutated_valid_pdus_never_crash_the_reader(mutations):
    raw = bytearray(b"".join(bytes(b) for b in frame(ScsiCommand(write=True, itt=1, edtl=512, cdb=bytes(16),
                                                                 data=b"d" * 100), True, True)))
    raw += b"".join(bytes(b) for b in frame(NopOut(itt=2, data=b"n" * 10), True, True))
    for pos, value in mutations:
        if pos < len(raw):
            raw[pos] = value
    reader = PduReader()
    reader.header_digest = reader.data_digest = True
    reader.receive_data(bytes(raw))
    drain(reader)


key_names = st.sampled_from(sorted(KEYS) + ["X-foo", "Bogus", "CHAP_A", ""])
values = st.one_of(st.sampled_from(["Yes", "No", "None", "CRC32C", "CHAP", "5", "0", "65536", "0x10",
                                    "5,6,7,8", "0x" + "ab" * 16, "fuzz-user", "CHAP,None",
                                    "Normal", "Discovery", INITIATOR, TARGET, "", "Reject", "0bAAAA"]),
                   st.text(max_size=20))
text_pairs = st.lists(st.tuples(key_names, values), max_size=8)
login_pdus = st.builds(
    lambda pairs, transit, cont, csg, nsg, vmin, tsih, raw: LoginRequest(
        data=raw if raw is not None else encode_text([(k or "K", v) for k, v in pairs]), transit=transit,
        cont=cont, csg=csg, nsg=nsg, version_min=vmin, isid=b"\x80\0\0\0\0\1", tsih=tsih, itt=1),
    text_pairs, st.booleans(), st.booleans(), st.integers(0, 3), st.integers(0, 3),
    st.sampled_from([0, 0, 0, 1]), st.sampled_from([0, 0, 0, 5]),
    st.one_of(st.none(), st.binary(max_size=80)))


@FUZZ
@given(st.lists(login_pdus, min_size=1, max_size=6), st.booleans(), st.booleans())
def test_login_state_machine_answers_every_request_sequence(requests, with_identity, chap_required):
    chap = ChapCredentials(ChapSecret("fuzz-user", "fuzz-secret-1"), ChapSecret("tgt-user", "tgt-secret-12"))
    reg, _ = make_registry(chap=chap if chap_required else None)
    login = TargetLogin(reg.authority(("127.0.4.1", 3260), ("x", 1)))
    if with_identity:
        identity = encode_text([("InitiatorName", INITIATOR), ("TargetName", TARGET)])
        requests[0].data = identity + requests[0].data
    for req in requests:
        if login.finished:
            break
        rsp = login.receive(req)
        assert len(rsp.header()) == 48
        if rsp.status_class:
            assert login.failed == (rsp.status_class, rsp.status_detail)


initiator_pdus = st.builds(
    lambda op, imm, flags, rest, data: bytes([op | (0x40 if imm else 0), flags]) + rest[:2] + bytes([0]) +
    len(data).to_bytes(3, "big") + rest[2:42] + data + b"\0" * (-len(data) % 4),
    st.sampled_from([Op.NOP_OUT, Op.SCSI_CMD, Op.TMF_REQ, Op.TEXT_REQ, Op.DATA_OUT, Op.LOGOUT_REQ, Op.SNACK,
                     Op.LOGIN_REQ, Op.NOP_IN, 0x1F]),
    st.booleans(), st.integers(0, 255), st.binary(min_size=42, max_size=42), st.binary(max_size=300))


@settings(max_examples=EXAMPLES // 2, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(initiator_pdus, max_size=10))
def test_logged_in_connection_survives_arbitrary_pdus(pdus):
    pair = logged_in()
    conn = pair.conn
    try:
        for raw in pdus:
            conn.receive_data(raw)
            while (ev := conn.next_event()) is not None:
                if isinstance(ev, CommandReady):
                    pair.run(ev.task)
                elif isinstance(ev, TaskManagement):
                    conn.task_management_response(ev.itt, 0)
                elif isinstance(ev, LogoutRequested):
                    conn.logout_response(ev.itt)
            conn.data_to_send()
    except RemoteProtocolError as e:
        assert e.fatal


def test_fuzz_harness_can_log_in():
    # The fixtures above must reach full feature phase, or the fuzzing would test nothing.
    reg, _ = make_registry()
    assert Pair(reg, Initiator(INITIATOR, TARGET)).do_login().status == (0, 0)
