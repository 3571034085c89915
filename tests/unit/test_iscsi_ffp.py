"""Full feature phase: data movement, residuals, CmdSN window, NOP, Text, TMF, Logout, Reject."""

from __future__ import annotations

import os

import pytest
from iscsi_harness import INITIATOR, TARGET, Pair, logged_in, make_registry, read10, write10

from gateway.iscsi.constants import LogoutResponse, RejectReason, TmfFunction, TmfResponse
from gateway.iscsi.framing import frame
from gateway.iscsi.initiator import CommandResult, Initiator
from gateway.iscsi.pdu import (
    DataOut,
    LoginRequest,
    NopIn,
    NopOut,
    Reject,
    ScsiCommand,
    Snack,
    TaskManagementResponse,
)
from gateway.iscsi.pdu import (
    LogoutResponse as LogoutResponsePdu,
)
from gateway.iscsi.window import CommandWindow

BS = 512


def send_raw(pair: Pair, pdu) -> list:
    pair.target_receive(b"".join(bytes(b) for b in frame(pdu, pair.ini.hd, pair.ini.dd)))
    return pair.pump()


@pytest.mark.parametrize("immediate,initial_r2t",
                         [(True, False), (True, True), (False, True), (False, False)])
@pytest.mark.parametrize("blocks", [1, 300, 1024])
def test_write_then_read_back_moves_exact_bytes(immediate, initial_r2t, blocks):
    pair = logged_in(controls={"immediate_data": immediate, "initial_r2t": initial_r2t,
                               "first_burst_length": 65536, "max_burst_length": 262144},
                     disk_size=4 << 20,
                     initiator_kw={"keys": {"ImmediateData": "Yes" if immediate else "No",
                                            "InitialR2T": "Yes" if initial_r2t else "No"}})
    data = os.urandom(blocks * BS)
    res = pair.command(write10(10, blocks), write=data)
    assert (res.status, res.overflow, res.underflow) == (0, False, False)
    res = pair.command(read10(10, blocks), read_length=len(data))
    assert res.status == 0 and res.data == data


def test_read_is_split_into_data_in_pdus_with_phase_collapse():
    pair = logged_in(initiator_kw={"keys": {"MaxRecvDataSegmentLength": "4096"}})
    itt = pair.ini.scsi(read10(0, 64), read_length=64 * BS)
    pair.pump()
    results = [e for e in pair.events if isinstance(e, CommandResult) and e.itt == itt]
    assert len(results) == 1 and len(results[0].data) == 64 * BS
    # 32 KiB in 4 KiB segments: 8 Data-In PDUs; the status rode on the last one.
    assert pair.ini.commands == {}


@pytest.mark.parametrize("edtl,overflow,underflow,residual,got", [
    (0, True, False, BS, 0), (10000, False, True, 10000 - BS, BS), (200, True, False, BS - 200, 200)])
def test_read_residuals_follow_edtl(edtl, overflow, underflow, residual, got):
    pair = logged_in()
    res = pair.command(read10(0, 1), read_length=edtl, read=True)
    assert (res.status, res.overflow, res.underflow, res.residual, len(res.data)) == \
        (0, overflow, underflow, residual, got)


def test_write_with_edtl_smaller_than_cdb_writes_only_edtl_blocks():
    pair = logged_in()
    pair.command(write10(0, 2), write=b"a" * 2 * BS)
    res = pair.command(write10(0, 2), write=b"b" * BS)
    assert (res.status, res.overflow, res.residual) == (0, True, BS)
    assert pair.command(read10(0, 2), read_length=2 * BS).data == b"b" * BS + b"a" * BS


def test_write_with_unaligned_short_edtl_is_invalid_field_in_information_unit():
    pair = logged_in()
    res = pair.command(write10(0, 1), write=b"c" * 200)
    assert res.status == 2 and res.sense[2] == 0x05 and res.sense[12:14] == b"\x0e\x03"
    assert res.overflow and res.residual == BS - 200


def test_commands_outside_the_cmdsn_window_are_ignored():
    pair = logged_in()
    before = len(pair.events)
    pair.ini.scsi(bytes(6), cmdsn=(pair.ini.cmdsn + 10000) & 0xFFFFFFFF)   # TEST UNIT READY, too high
    pair.ini.scsi(bytes(6), cmdsn=(pair.ini.cmdsn - 1) & 0xFFFFFFFF)       # too low
    pair.pump()
    assert len(pair.events) == before
    assert pair.command(bytes(6)).status == 0                              # the session still works


def test_commands_wait_for_a_cmdsn_gap_and_run_in_order():
    pair = logged_in(auto=False)
    sn = pair.ini.cmdsn
    pair.ini.scsi(bytes(6), cmdsn=sn + 1)
    pair.pump()
    assert pair.ready == []                     # CmdSN sn is missing
    pair.ini.scsi(bytes(6), cmdsn=sn)
    pair.pump()
    assert [ev.task.cmdsn for ev in pair.ready] == [sn, sn + 1]


def test_window_bounds_outstanding_commands_and_never_shrinks():
    w = CommandWindow(10, 4)
    assert w.max_cmdsn == 13
    assert w.accept(10, "a") == ["a"] and w.accept(11, "b") == ["b"]
    assert w.max_cmdsn == 13                    # two slots in use
    assert w.accept(14, "x") is None            # beyond MaxCmdSN
    w.finish(2)
    assert w.max_cmdsn == 15
    w.set_depth(1)
    assert w.max_cmdsn == 15                    # a smaller depth never moves MaxCmdSN back


def test_max_cmdsn_advertised_grows_when_commands_complete():
    pair = logged_in(auto=False)
    start = pair.ini.max_cmdsn
    for _ in range(3):
        pair.ini.scsi(bytes(6))
    pair.pump()
    assert len(pair.ready) == 3
    for ev in pair.ready:
        pair.run(ev.task)
    pair.flush_target()
    pair.pump()
    assert (pair.ini.max_cmdsn - start) % (1 << 32) == 3


def test_wrong_datasn_ends_the_command_with_check_condition_and_keeps_the_connection():
    pair = logged_in(initiator_kw={"keys": {"ImmediateData": "No", "InitialR2T": "Yes"}})
    itt = pair.ini.scsi(write10(0, 2), write=b"q" * 2 * BS)
    pair.ini.data_to_send()
    r2t_events = []
    cmd = ScsiCommand(write=True, itt=itt, edtl=2 * BS, cmdsn=pair.ini.cmdsn - 1, cdb=write10(0, 2))
    pair.target_receive(b"".join(bytes(b) for b in frame(cmd)))
    ttt = pair.conn.tasks[itt].r2ts and next(iter(pair.conn.tasks[itt].r2ts))
    pair.ini.out.clear()
    for sn in (0, 0):                           # DataSN 0 twice
        events = send_raw(pair, DataOut(data=b"q" * BS, itt=itt, ttt=ttt, datasn=sn, offset=sn * BS))
        r2t_events += events
    results = [e for e in pair.events if isinstance(e, CommandResult) and e.itt == itt]
    assert results and results[0].status == 2 and results[0].sense[2] == 0x0B
    assert pair.command(bytes(6)).status == 0


def test_nop_out_is_echoed_and_target_ping_is_answered():
    pair = logged_in()
    itt = pair.ini.nop(b"ping-data")
    echo = [e for e in pair.pump() if isinstance(e, NopIn) and e.itt == itt]
    assert echo and bytes(echo[0].data) == b"ping-data"
    assert pair.conn.ping() and pair.conn.ping_outstanding
    assert not pair.conn.ping()                 # one ping at a time
    pair.flush_target()
    pair.pump()                                 # the initiator answers the ping
    assert not pair.conn.ping_outstanding


def test_send_targets_in_discovery_lists_every_portal_with_its_tag():
    reg, _ = make_registry()
    pair = Pair(reg, Initiator(INITIATOR))
    assert pair.do_login(discovery=True).status == (0, 0)
    pair.ini.text([("SendTargets", "All")])
    text = [e for e in pair.pump() if isinstance(e, tuple) and e[0] == "text"]
    assert text[0][1] == [("TargetName", TARGET), ("TargetAddress", "127.0.4.1:3260,1"),
                          ("TargetAddress", "10.0.0.2:3260,2")]


def test_long_send_targets_answer_is_split_with_continue_bit():
    reg, _ = make_registry()
    from gateway.portal.registry import PortalSpec, Target, Tpg
    for i in range(300):
        reg.set_target(Target(f"iqn.2003-01.org.example:t{i:03d}",
                              tpgs={1: Tpg(1, [PortalSpec("10.1.1.1")])}))
    pair = Pair(reg, Initiator(INITIATOR, keys={"MaxRecvDataSegmentLength": "512"}))
    assert pair.do_login(discovery=True).status == (0, 0)
    pair.ini.text([("SendTargets", "All")])
    text = [e for e in pair.pump() if isinstance(e, tuple) and e[0] == "text"]
    assert sum(1 for k, _ in text[0][1] if k == "TargetName") == 301


@pytest.mark.parametrize("pairs", [[("SendTargetsPlease", "All")], [("SendTargets", "Alle")],
                                   [("sENDtARGETS", "aLL")]])
def test_invalid_send_targets_text_is_rejected(pairs):
    pair = logged_in()
    pair.ini.text(pairs, immediate=True)
    rejects = [e for e in pair.pump() if isinstance(e, Reject)]
    assert rejects and rejects[0].reason == RejectReason.PROTOCOL_ERROR


def test_abort_task_waiting_for_data_completes_and_the_task_never_answers():
    pair = logged_in(auto=False, initiator_kw={"keys": {"ImmediateData": "No", "InitialR2T": "Yes"}})
    pair.ini._send_data = lambda *a, **k: None      # the initiator never sends the data
    itt = pair.ini.scsi(write10(0, 8), write=b"w" * 8 * BS)
    pair.pump()
    tmf = pair.ini.tmf(TmfFunction.ABORT_TASK, ref_itt=itt, ref_cmdsn=pair.ini.cmdsn - 1)
    rsp = [e for e in pair.pump() if isinstance(e, TaskManagementResponse) and e.itt == tmf]
    assert rsp[0].response == TmfResponse.COMPLETE
    assert itt not in pair.conn.tasks and not [e for e in pair.events if isinstance(e, CommandResult)]


def test_abort_of_unknown_task_reports_task_does_not_exist():
    pair = logged_in()
    tmf = pair.ini.tmf(TmfFunction.ABORT_TASK, ref_itt=0x7777, ref_cmdsn=(pair.ini.cmdsn - 5) & 0xFFFFFFFF)
    rsp = [e for e in pair.pump() if isinstance(e, TaskManagementResponse)]
    assert rsp[0].itt == tmf and rsp[0].response == TmfResponse.TASK_DOES_NOT_EXIST


@pytest.mark.parametrize("function,response", [(TmfFunction.CLEAR_ACA, TmfResponse.NOT_SUPPORTED),
                                               (TmfFunction.TASK_REASSIGN,
                                                TmfResponse.REASSIGN_NOT_SUPPORTED)])
def test_unsupported_task_management_functions_are_answered(function, response):
    pair = logged_in()
    pair.ini.tmf(function)
    rsp = [e for e in pair.pump() if isinstance(e, TaskManagementResponse)]
    assert rsp[0].response == response


def test_target_cold_reset_aborts_every_task_and_goes_to_the_portal():
    pair = logged_in(auto=False, initiator_kw={"keys": {"ImmediateData": "No", "InitialR2T": "Yes"}})
    pair.ini._send_data = lambda *a, **k: None
    itt = pair.ini.scsi(write10(0, 8), write=b"w" * 8 * BS)
    pair.pump()
    pair.ini.tmf(TmfFunction.TARGET_COLD_RESET)
    pair.pump()
    assert pair.tmfs[-1].function == TmfFunction.TARGET_COLD_RESET and itt not in pair.conn.tasks


def test_lun_reset_aborts_tasks_still_collecting_data():
    pair = logged_in(auto=False, initiator_kw={"keys": {"ImmediateData": "No", "InitialR2T": "Yes"}})
    pair.ini._send_data = lambda *a, **k: None
    itt = pair.ini.scsi(write10(0, 8), write=b"w" * 8 * BS)
    pair.pump()
    pair.ini.tmf(TmfFunction.LOGICAL_UNIT_RESET, lun=0)
    pair.pump()
    assert pair.tmfs[-1].function == TmfFunction.LOGICAL_UNIT_RESET and itt not in pair.conn.tasks


def test_logout_closes_the_session():
    pair = logged_in()
    itt = pair.ini.logout()
    rsp = [e for e in pair.pump() if isinstance(e, LogoutResponsePdu)]
    assert rsp[0].itt == itt and rsp[0].response == LogoutResponse.SUCCESS
    assert pair.conn.state.value == "closed"


def test_logout_for_recovery_is_not_supported_at_erl0():
    pair = logged_in()
    pair.ini.logout(reason=2)
    rsp = [e for e in pair.pump() if isinstance(e, LogoutResponsePdu)]
    assert rsp[0].response == LogoutResponse.RECOVERY_NOT_SUPPORTED


@pytest.mark.parametrize("pdu", [Snack(itt=1), LoginRequest(itt=1), NopOut(itt=0xFFFFFFFF, immediate=False)],
                         ids=["snack", "login-in-ffp", "nop-without-reply-not-immediate"])
def test_unexpected_pdus_are_rejected_without_closing(pdu):
    pair = logged_in()
    rejects = [e for e in send_raw(pair, pdu) if isinstance(e, Reject)]
    assert rejects and rejects[0].reason == RejectReason.PROTOCOL_ERROR
    assert pair.command(bytes(6)).status == 0


def test_scsi_command_in_discovery_session_is_rejected():
    reg, _ = make_registry()
    pair = Pair(reg, Initiator(INITIATOR))
    pair.do_login(discovery=True)
    pair.ini.scsi(bytes(6))
    assert [e for e in pair.pump() if isinstance(e, Reject)]


def test_duplicate_itt_of_a_running_task_is_rejected():
    pair = logged_in(auto=False)
    itt = pair.ini.scsi(bytes(6))
    pair.pump()
    dup = ScsiCommand(itt=itt, cmdsn=pair.ini.cmdsn, cdb=bytes(6))
    rejects = [e for e in send_raw(pair, dup) if isinstance(e, Reject)]
    assert rejects[0].reason == RejectReason.TASK_IN_PROGRESS


@pytest.mark.parametrize("hd,dd", [("CRC32C", "CRC32C"), ("CRC32C", "None"), ("None", "CRC32C")])
def test_digests_protect_every_pdu_end_to_end(hd, dd):
    pair = logged_in(initiator_kw={"keys": {"HeaderDigest": hd, "DataDigest": dd}})
    assert pair.conn.params.header_digest == (hd == "CRC32C")
    assert pair.conn.params.data_digest == (dd == "CRC32C")
    data = os.urandom(200 * BS)
    assert pair.command(write10(0, 200), write=data).status == 0
    assert pair.command(read10(0, 200), read_length=len(data)).data == data


def test_report_luns_and_unmapped_lun_are_answered_by_the_lun_table():
    pair = logged_in()
    res = pair.command(bytes([0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]), read_length=256)
    assert res.data[:4] == (8).to_bytes(4, "big") and res.data[8:16] == bytes(8)
    res = pair.command(bytes(6), lun=9)
    assert res.status == 2 and res.sense[12:14] == b"\x25\x00"


def test_unknown_opcode_is_illegal_request_invalid_command_operation_code():
    pair = logged_in()
    res = pair.command(bytes([0xC7]) + bytes(9))
    assert res.status == 2 and (res.sense[2], res.sense[12], res.sense[13]) == (0x05, 0x20, 0x00)


def test_concurrent_writes_respect_the_write_budget():
    reg, _ = make_registry(disk_size=8 << 20)
    pair = Pair(reg, Initiator(INITIATOR, TARGET, keys={"ImmediateData": "No", "InitialR2T": "Yes"}),
                auto=True)
    assert pair.do_login().status == (0, 0)
    pair.command(bytes(6))                          # consume the power-on unit attention
    pair.conn._write_budget = 128 * 1024           # two 64 KiB writes at a time
    datas = [os.urandom(128 * BS) for _ in range(6)]
    itts = [pair.ini.scsi(write10(i * 128, 128), write=d) for i, d in enumerate(datas)]
    pair.pump()
    done = {e.itt for e in pair.events if isinstance(e, CommandResult) and e.status == 0}
    assert set(itts) <= done
    for i, d in enumerate(datas):
        assert pair.command(read10(i * 128, 128), read_length=len(d)).data == d


def test_write_larger_than_the_connection_may_buffer_is_refused_without_allocating():
    pair = logged_in(initiator_kw={"keys": {"ImmediateData": "No", "InitialR2T": "Yes"}})
    pair.ini._send_data = lambda *a, **k: None
    res = pair.command(write10(0, 1), write=b"", edtl=1 << 31)
    assert res.status == 2 and (res.sense[2], res.sense[12]) == (0x05, 0x24)
    assert pair.conn._budget_used == 0 and pair.command(bytes(6)).status == 0


def test_window_advertised_at_login_matches_the_session_cmdsn_depth():
    pair = logged_in(controls={"cmdsn_depth": 4}, auto=False)
    assert (pair.ini.max_cmdsn - pair.ini.cmdsn + 1) % (1 << 32) == 4
    for _ in range(4):                               # the whole advertised window is usable
        pair.ini.scsi(bytes(6))
    pair.pump()
    assert len(pair.ready) == 4


def test_abort_of_a_command_not_yet_received_discards_it_on_arrival():
    pair = logged_in(auto=False)
    sn = pair.ini.cmdsn
    tmf = pair.ini.tmf(TmfFunction.ABORT_TASK, ref_itt=0x999, ref_cmdsn=sn)
    rsp = [e for e in pair.pump() if isinstance(e, TaskManagementResponse) and e.itt == tmf]
    assert rsp[0].response == TmfResponse.COMPLETE
    pair.ini.scsi(bytes(6))                     # the aborted command (CmdSN sn) arrives late
    pair.ini.scsi(bytes(6))                     # the next one still runs
    pair.pump()
    assert [ev.task.cmdsn for ev in pair.ready] == [sn + 1]


def test_several_outstanding_r2ts_and_unsolicited_first_burst_assemble_in_order():
    keys = {"MaxOutstandingR2T": "4", "MaxBurstLength": "8192", "FirstBurstLength": "4096",
            "InitialR2T": "No", "ImmediateData": "Yes", "MaxRecvDataSegmentLength": "2048"}
    pair = logged_in(controls={"max_outstanding_r2t": 4, "max_burst_length": 8192, "first_burst_length": 4096,
                               "initial_r2t": False},
                     initiator_kw={"keys": keys}, auto=False)
    p = pair.conn.params
    assert (p.max_outstanding_r2t, p.max_burst_length, p.first_burst_length, p.initial_r2t) == (4, 8192, 4096,
                                                                                                 False)
    data = os.urandom(100 * BS)
    itt = pair.ini.scsi(write10(0, 100), write=data)
    pair.pump()
    [ready] = pair.ready
    assert ready.task.itt == itt and bytes(ready.task.data_out) == data
    assert ready.task.r2tsn == -(-(len(data) - 4096) // 8192)       # R2Ts only for what was not unsolicited


def test_data_in_sequences_end_at_each_max_burst():
    pair = logged_in(controls={"max_burst_length": 8192},
                     initiator_kw={"keys": {"MaxBurstLength": "8192", "MaxRecvDataSegmentLength": "4096"}})
    from gateway.iscsi.pdu import DataIn
    seen = []
    original = pair.ini._handle

    def spy(pdu):
        if isinstance(pdu, DataIn):
            seen.append((pdu.offset, len(pdu.data), bool(pdu.flags & 0x80)))
        original(pdu)

    pair.ini._handle = spy
    assert pair.command(read10(0, 48), read_length=48 * BS).status == 0
    assert [n for _, n, _ in seen] == [4096] * 6
    finals = [off + n for off, n, final in seen if final]
    assert finals == [8192, 16384, 24576]


def test_data_out_with_bad_data_digest_is_rejected_and_its_command_fails_with_crc_error():
    pair = logged_in(initiator_kw={"keys": {"HeaderDigest": "CRC32C", "DataDigest": "CRC32C",
                                            "ImmediateData": "No", "InitialR2T": "Yes"}})
    sent = []
    pair.ini._send_data = lambda itt, off, length, ttt, lun: sent.append((itt, off, length, ttt, lun))
    itt = pair.ini.scsi(write10(0, 1), write=b"d" * BS)
    pair.pump()
    _, off, length, ttt, lun = sent[0]
    raw = bytearray(b"".join(bytes(b) for b in frame(DataOut(data=b"d" * BS, final=True, itt=itt, ttt=ttt),
                                                      True, True)))
    raw[-1] ^= 0xFF                                   # corrupt the data digest
    pair.target_receive(bytes(raw))
    events = pair.pump()
    assert [e.reason for e in events if isinstance(e, Reject)] == [RejectReason.DATA_DIGEST_ERROR]
    [res] = [e for e in events if isinstance(e, CommandResult)]
    assert res.itt == itt and res.status == 2 and res.sense[12:14] == b"\x47\x05"
    assert pair.command(bytes(6)).status == 0
