"""Login phase: stages, CHAP, ACL, status codes, session admission -- byte for byte."""

from __future__ import annotations

import pytest
from iscsi_harness import INITIATOR, TARGET, Pair, logged_in, make_registry

from gateway.iscsi.chap import ChapCredentials, ChapSecret, chap_response, encode_binary
from gateway.iscsi.constants import LoginStatus
from gateway.iscsi.framing import frame
from gateway.iscsi.initiator import Initiator
from gateway.iscsi.keys import encode_text, parse_text
from gateway.iscsi.login import TargetLogin
from gateway.iscsi.pdu import LoginRequest

USER = ChapSecret("initiator-user", "initiator-secret1")
TGT = ChapSecret("target-user", "target-secret-22")


def login_pair(target_chap: ChapCredentials | None = None, **kw) -> tuple[Pair, object]:
    reg_kw = {k: kw.pop(k) for k in ("acl", "clients", "controls") if k in kw}
    reg, _ = make_registry(chap=target_chap, **reg_kw)
    pair = Pair(reg, Initiator(kw.pop("name", INITIATOR), kw.pop("target", TARGET), **kw))
    return pair, pair.do_login()


def test_login_without_authentication_reaches_full_feature_phase_with_tpgt():
    pair, outcome = login_pair()
    assert outcome.status == LoginStatus.SUCCESS
    assert outcome.tsih != 0
    assert pair.ini.negotiated["TargetPortalGroupTag"] == "1"
    assert int(pair.ini.negotiated["MaxRecvDataSegmentLength"]) == 262144
    assert pair.conn is not None


@pytest.mark.parametrize("algorithm", ["5", "6", "7", "8"])
def test_chap_login_succeeds_with_each_algorithm(algorithm):
    pair, outcome = login_pair(ChapCredentials(USER), chap=USER, chap_algorithms=algorithm)
    assert outcome.status == LoginStatus.SUCCESS
    assert pair.ini.negotiated["CHAP_A"] == algorithm


def test_chap_picks_first_supported_algorithm_of_initiator_list():
    pair, outcome = login_pair(ChapCredentials(USER), chap=USER, chap_algorithms="99,7,5")
    assert outcome.status == LoginStatus.SUCCESS and pair.ini.negotiated["CHAP_A"] == "7"


def test_chap_with_no_supported_algorithm_fails_authentication():
    _, outcome = login_pair(ChapCredentials(USER), chap=USER, chap_algorithms="56")
    assert outcome.status == LoginStatus.AUTHENTICATION_FAILURE


def test_mutual_chap_target_proves_its_identity():
    pair, outcome = login_pair(ChapCredentials(USER, TGT), chap=USER, mutual=TGT)
    assert outcome.status == LoginStatus.SUCCESS
    assert pair.ini.negotiated["CHAP_N"] == TGT.username


def test_wrong_chap_secret_fails_with_authentication_failure():
    _, outcome = login_pair(ChapCredentials(USER), chap=USER)
    assert outcome.status == LoginStatus.SUCCESS  # control: the right secret works
    reg, _ = make_registry(chap=ChapCredentials(USER))
    pair = Pair(reg, Initiator(INITIATOR, TARGET, chap=ChapSecret(USER.username, "wrong-secret-123")))
    assert pair.do_login().status == LoginStatus.AUTHENTICATION_FAILURE


def test_initiator_without_chap_cannot_skip_required_authentication():
    reg, _ = make_registry(chap=ChapCredentials(USER))
    pair = Pair(reg, Initiator(INITIATOR, TARGET))          # offers AuthMethod=None only
    assert pair.do_login().status == LoginStatus.AUTHENTICATION_FAILURE


def raw_login(pair: Pair, pairs, *, csg=0, nsg=1, transit=True, version_min=0, tsih=0, itt=1):
    req = LoginRequest(data=encode_text(pairs), transit=transit, csg=csg, nsg=nsg, version_min=version_min,
                       isid=b"\x80\0\0\0\0\1", tsih=tsih, itt=itt)
    pair.target_receive(b"".join(bytes(b) for b in frame(req)))
    return pair.ini.next_event()


def fresh_pair(**kw) -> Pair:
    reg, _ = make_registry(**kw)
    return Pair(reg, Initiator(INITIATOR, TARGET))


def test_skipping_security_stage_when_chap_is_required_fails():
    pair = fresh_pair(chap=ChapCredentials(USER))
    out = raw_login(pair, [("InitiatorName", INITIATOR), ("TargetName", TARGET)], csg=1, nsg=3)
    assert out.status == LoginStatus.AUTHENTICATION_FAILURE


def test_unknown_target_is_not_found():
    pair = fresh_pair()
    out = raw_login(pair, [("InitiatorName", INITIATOR), ("TargetName", "iqn.2000-01.org.nowhere:x")])
    assert out.status == LoginStatus.NOT_FOUND


def test_initiator_not_in_acl_gets_authorization_failure():
    pair = fresh_pair()
    out = raw_login(pair, [("InitiatorName", "iqn.2000-01.org.intruder:x"), ("TargetName", TARGET)])
    assert out.status == LoginStatus.AUTHORIZATION_FAILURE


def test_missing_initiator_name_is_missing_parameter():
    pair = fresh_pair()
    out = raw_login(pair, [("TargetName", TARGET)])
    assert out.status == LoginStatus.MISSING_PARAMETER


def test_unsupported_version_is_refused():
    pair = fresh_pair()
    out = raw_login(pair, [("InitiatorName", INITIATOR), ("TargetName", TARGET)], version_min=1)
    assert out.status == LoginStatus.UNSUPPORTED_VERSION


def test_nonzero_tsih_for_unknown_session_is_refused():
    pair = fresh_pair()
    out = raw_login(pair, [("InitiatorName", INITIATOR), ("TargetName", TARGET)], tsih=77)
    assert out.status == LoginStatus.SESSION_DOES_NOT_EXIST


def test_invalid_stage_transition_is_initiator_error():
    pair = fresh_pair()
    out = raw_login(pair, [("InitiatorName", INITIATOR), ("TargetName", TARGET)], csg=0, nsg=2)
    assert out.status == LoginStatus.INITIATOR_ERROR


def test_target_not_served_by_this_gateway_is_not_found():
    reg, _ = make_registry()
    pair = Pair(reg, Initiator(INITIATOR, TARGET), local=("10.0.0.2", 3260))   # TPG 2: disabled here
    assert pair.do_login().status == LoginStatus.NOT_FOUND


def test_login_text_split_over_several_pdus_with_c_bit():
    pair = fresh_pair()
    text = encode_text([("InitiatorName", INITIATOR), ("TargetName", TARGET), ("AuthMethod", "None")])
    first = LoginRequest(data=text[:20], cont=True, csg=0, nsg=0, isid=b"\x80\0\0\0\0\1", itt=1)
    pair.target_receive(b"".join(bytes(b) for b in frame(first)))
    ack = pair.ini.next_event()
    assert ack is None or ack.status == (0, 0)
    rest = LoginRequest(data=text[20:], transit=True, csg=0, nsg=1, isid=b"\x80\0\0\0\0\1", itt=1)
    login = pair.login
    rsp = login.receive(rest)
    assert (rsp.status_class, rsp.transit, rsp.nsg) == (0, True, 1)
    assert dict(parse_text(rsp.data))["AuthMethod"] == "None"


def test_chap_response_computation_matches_definition():
    # H(id || secret || challenge) with MD5, as RFC 1994 defines it.
    import hashlib
    assert chap_response(5, 1, b"s", b"\x01\x02") == hashlib.md5(b"\x01s\x01\x02").digest()


def test_reflected_mutual_challenge_is_refused():
    reg, _ = make_registry(chap=ChapCredentials(USER, TGT))
    login = TargetLogin(reg.authority(("127.0.4.1", 3260), ("x", 1)))
    isid = b"\x80\0\0\0\0\2"

    def send(pairs, transit=False, nsg=0):
        return login.receive(LoginRequest(data=encode_text(pairs), transit=transit, csg=0, nsg=nsg,
                                          isid=isid, itt=1))

    send([("InitiatorName", INITIATOR), ("TargetName", TARGET), ("AuthMethod", "CHAP")])
    keys = dict(parse_text(send([("CHAP_A", "5")]).data))
    challenge = bytes.fromhex(keys["CHAP_C"][2:])
    answer = chap_response(5, int(keys["CHAP_I"]), USER.password.encode(), challenge)
    rsp = send([("CHAP_N", USER.username), ("CHAP_R", encode_binary(answer)), ("CHAP_I", keys["CHAP_I"]),
                ("CHAP_C", keys["CHAP_C"])], transit=True, nsg=1)
    assert (rsp.status_class, rsp.status_detail) == LoginStatus.AUTHENTICATION_FAILURE


def test_discovery_login_needs_no_target_name_and_honours_discovery_chap():
    reg, _ = make_registry()
    pair = Pair(reg, Initiator(INITIATOR))
    assert pair.do_login(discovery=True).status == LoginStatus.SUCCESS
    reg.set_discovery_auth(ChapCredentials(USER))
    refused = Pair(reg, Initiator(INITIATOR)).do_login(discovery=True)
    assert refused.status == LoginStatus.AUTHENTICATION_FAILURE
    ok = Pair(reg, Initiator(INITIATOR, chap=USER)).do_login(discovery=True)
    assert ok.status == LoginStatus.SUCCESS


def test_discovery_login_answers_the_keys_relevant_to_discovery_sessions():
    """RFC 7143: ErrorRecoveryLevel, DefaultTime2Wait/Retain apply to discovery sessions too
    (open-iscsi refuses "ErrorRecoveryLevel=Irrelevant"); MaxBurstLength and friends do not."""
    reg, _ = make_registry()
    ini = Initiator(INITIATOR, keys={"ErrorRecoveryLevel": "1", "DefaultTime2Wait": "0",
                                     "DefaultTime2Retain": "0", "MaxBurstLength": "262144"})
    outcome = Pair(reg, ini).do_login(discovery=True)
    assert outcome.status == LoginStatus.SUCCESS
    assert outcome.keys["ErrorRecoveryLevel"] == "0"
    assert outcome.keys["DefaultTime2Wait"] == "2" and outcome.keys["DefaultTime2Retain"] == "0"
    assert outcome.keys["MaxBurstLength"] == "Irrelevant"


def test_same_isid_reinstates_the_session():
    reg, _ = make_registry()
    first = logged_in(reg)
    tsih1 = first.authority.record.tsih
    second = logged_in(reg)
    assert reg.sessions.keys() == {second.authority.record.tsih}
    assert tsih1 not in reg.sessions


def test_immediate_data_disabled_is_proposed_and_agreed():
    pair, outcome = login_pair(controls={"immediate_data": False})
    assert outcome.status == LoginStatus.SUCCESS
    assert pair.conn.params.immediate_data is False
