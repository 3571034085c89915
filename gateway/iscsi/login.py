"""Target side of the login phase (RFC 7143 §6.3, §11.12-11.13) as a state machine.

Feed it Login Request PDUs; it answers with Login Response PDUs.  Decisions that depend on
configuration (does the target exist, may this initiator log in, which CHAP secret, may the
session be admitted and with which TSIH) are asked of a :class:`LoginAuthority`, a plain
synchronous object the portal provides -- no IO happens here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from gateway.iscsi.chap import DEFAULT_ALLOWED, ChapAuthenticator, ChapCredentials
from gateway.iscsi.constants import LoginStatus, Stage
from gateway.iscsi.errors import LocalProtocolError, RemoteProtocolError
from gateway.iscsi.keys import MAX_TEXT_BYTES, encode_text, parse_text
from gateway.iscsi.negotiation import SessionParams, TargetNegotiation, TargetOffers
from gateway.iscsi.pdu import LoginRequest, LoginResponse

# Login PDUs carry at most 8192 bytes of text until MaxRecvDataSegmentLength is in force.
LOGIN_SEGMENT = 8192

# (current stage, next stage) pairs a T=1 request may ask for.
TRANSITIONS: frozenset[tuple[int, int]] = frozenset({
    (Stage.SECURITY, Stage.OPERATIONAL),
    (Stage.SECURITY, Stage.FULL_FEATURE),
    (Stage.OPERATIONAL, Stage.FULL_FEATURE),
})


class AuthState(Enum):
    NONE_REQUIRED = "none-required"
    WAIT_METHOD = "wait-method"
    WAIT_ALGORITHM = "wait-algorithm"
    WAIT_RESPONSE = "wait-response"
    DONE = "done"


@dataclass
class LoginAccess:
    """The authority's verdict for (initiator, target, session type)."""

    status: tuple[int, int] = LoginStatus.SUCCESS
    chap: ChapCredentials | None = None     # None: no authentication required
    chap_algorithms: tuple[int, ...] = DEFAULT_ALLOWED
    offers: TargetOffers = field(default_factory=TargetOffers)
    tpgt: int = 1
    target_alias: str = ""
    # CmdSN window of the session; the login responses already advertise it.
    cmdsn_depth: int = 128


@dataclass
class LoginResult:
    """A successful login: everything the session needs."""

    initiator_name: str
    target_name: str
    discovery: bool
    isid: bytes
    tsih: int
    cid: int
    params: SessionParams
    exp_cmdsn: int
    statsn: int            # the next StatSN to use on this connection
    tpgt: int
    authenticated: bool


class LoginAuthority(Protocol):
    def resolve(self, initiator_name: str, target_name: str | None, discovery: bool) -> LoginAccess: ...

    def admit(self, login: LoginResult) -> int | tuple[int, int]:
        """TSIH for the session (new or reinstated), or a failure status."""
        ...


class TargetLogin:
    """One connection's login, from the first Login Request to full feature phase."""

    def __init__(self, authority: LoginAuthority, cmdsn_depth: int = 128) -> None:
        self.authority = authority
        self.cmdsn_depth = cmdsn_depth
        self.stage = Stage.SECURITY
        self.result: LoginResult | None = None
        self.failed: tuple[int, int] | None = None
        self._first: LoginRequest | None = None
        self._access: LoginAccess | None = None
        self._nego: TargetNegotiation | None = None
        self._auth_state = AuthState.NONE_REQUIRED
        self._chap: ChapAuthenticator | None = None
        self._initiator = ""
        self._target = ""
        self._discovery = False
        self._statsn = 0
        self._exp_cmdsn = 0
        self._text_in = bytearray()
        self._text_out = b""
        self._tpgt_sent = False
        self._authenticated = False

    @property
    def initiator_name(self) -> str:
        """The InitiatorName of the first request ("" before it arrives)."""
        return self._initiator

    @property
    def finished(self) -> bool:
        return self.result is not None or self.failed is not None

    # ------------------------------------------------------------------------------
    def receive(self, req: LoginRequest) -> LoginResponse:
        """Process one Login Request and return the response to send.

        After a response with a non-zero status class, ``failed`` is set and the
        connection must be closed once the response is sent.
        """
        if self.finished:
            raise LocalProtocolError("login already finished")
        try:
            return self._receive(req)
        except RemoteProtocolError as e:
            status = e.login_status or LoginStatus.INITIATOR_ERROR
            return self._fail(req, status)

    def _receive(self, req: LoginRequest) -> LoginResponse:
        if self._first is None:
            self._first = req
            self._statsn = req.exp_statsn
            self._exp_cmdsn = req.cmdsn
            if req.version_min > 0:
                return self._fail(req, LoginStatus.UNSUPPORTED_VERSION)
            if req.tsih:
                # A connection for an existing session (MC/S): we negotiate MaxConnections=1.
                return self._fail(req, LoginStatus.SESSION_DOES_NOT_EXIST)
        elif req.isid != self._first.isid or req.tsih != self._first.tsih or req.cid != self._first.cid:
            raise RemoteProtocolError("ISID/TSIH/CID changed during login",
                                      login_status=LoginStatus.INITIATOR_ERROR)
        first_skips_security = self._first is req and req.csg == Stage.OPERATIONAL
        if req.csg != self.stage and not first_skips_security:
            raise RemoteProtocolError(f"login request for stage {req.csg} while in stage {self.stage}",
                                      login_status=LoginStatus.INITIATOR_ERROR)
        if req.csg == Stage.FULL_FEATURE or (req.transit and (req.csg, req.nsg) not in TRANSITIONS):
            raise RemoteProtocolError(f"invalid stage transition {req.csg}->{req.nsg}",
                                      login_status=LoginStatus.INITIATOR_ERROR)
        # Multi-PDU text: collect until C=0, acknowledging each part with an empty response.
        self._text_in += req.data
        if len(self._text_in) > MAX_TEXT_BYTES:
            raise RemoteProtocolError("login text too long", login_status=LoginStatus.OUT_OF_RESOURCES)
        if req.cont:
            if req.transit:
                raise RemoteProtocolError("T and C both set", login_status=LoginStatus.INITIATOR_ERROR)
            return self._response(req, transit=False, data=b"")
        if self._text_out:
            if req.data:
                raise RemoteProtocolError("new keys while our response is pending",
                                          login_status=LoginStatus.INITIATOR_ERROR)
            return self._send_text(req, False)
        pairs = parse_text(self._text_in)
        self._text_in = bytearray()
        if self._access is None:
            failure = self._identify(req, pairs)
            if failure:
                return self._fail(req, failure)
        if req.csg == Stage.OPERATIONAL and self.stage == Stage.SECURITY:
            # The initiator skipped the security stage.
            if self._auth_state is not AuthState.NONE_REQUIRED:
                return self._fail(req, LoginStatus.AUTHENTICATION_FAILURE)
            self.stage = Stage.OPERATIONAL
        answer: list[tuple[str, str]] = []
        if not self._tpgt_sent and not self._discovery:
            answer.append(("TargetPortalGroupTag", str(self._access.tpgt)))
            if self._access.target_alias:
                answer.append(("TargetAlias", self._access.target_alias))
        self._tpgt_sent = True
        if self.stage == Stage.SECURITY:
            failure = self._security(pairs, answer)
            if failure:
                return self._fail(req, failure)
        answer += self._nego.respond(pairs, self.stage == Stage.SECURITY)
        transit = req.transit
        if transit and self.stage == Stage.SECURITY and self._auth_state not in (AuthState.NONE_REQUIRED,
                                                                                  AuthState.DONE):
            if self._auth_state is AuthState.WAIT_METHOD:
                return self._fail(req, LoginStatus.AUTHENTICATION_FAILURE)
            transit = False
        if transit and req.nsg == Stage.FULL_FEATURE or self.stage == Stage.OPERATIONAL:
            answer += self._nego.declarations()
        if transit and req.nsg == Stage.FULL_FEATURE:
            props = self._nego.proposals()
            if props or self._nego.waiting_for_answers:
                answer += props
                transit = False
        self._text_out = encode_text(answer)
        return self._send_text(req, transit)

    def _identify(self, req: LoginRequest, pairs: list[tuple[str, str]]) -> tuple[int, int] | None:
        keys = dict(pairs)
        self._initiator = keys.get("InitiatorName", "")
        if not self._initiator:
            return LoginStatus.MISSING_PARAMETER
        session_type = keys.get("SessionType", "Normal")
        if session_type not in ("Normal", "Discovery"):
            return LoginStatus.SESSION_TYPE_NOT_SUPPORTED
        self._discovery = session_type == "Discovery"
        self._target = keys.get("TargetName", "")
        if not self._discovery and not self._target:
            return LoginStatus.MISSING_PARAMETER
        access = self.authority.resolve(self._initiator, None if self._discovery else self._target,
                                        self._discovery)
        if access.status != LoginStatus.SUCCESS:
            return access.status
        self._access = access
        self.cmdsn_depth = access.cmdsn_depth
        self._nego = TargetNegotiation(access.offers, discovery=self._discovery)
        if "InitiatorAlias" in keys:
            self._nego.results["InitiatorAlias"] = keys["InitiatorAlias"]
        if access.chap is not None:
            self._auth_state = AuthState.WAIT_METHOD
            self._chap = ChapAuthenticator(access.chap, access.chap_algorithms)
        return None

    def _security(self, pairs: list[tuple[str, str]],
                  answer: list[tuple[str, str]]) -> tuple[int, int] | None:
        keys = dict(pairs)
        state = self._auth_state
        if "AuthMethod" in keys:
            offered = keys["AuthMethod"].split(",")
            if state is AuthState.WAIT_METHOD:
                if "CHAP" not in offered:
                    return LoginStatus.AUTHENTICATION_FAILURE
                answer.append(("AuthMethod", "CHAP"))
                self._auth_state = state = AuthState.WAIT_ALGORITHM
            elif state is AuthState.NONE_REQUIRED:
                if "None" not in offered:
                    return LoginStatus.AUTHENTICATION_FAILURE
                answer.append(("AuthMethod", "None"))
            else:
                return LoginStatus.INITIATOR_ERROR
        if "CHAP_A" in keys:
            if state is not AuthState.WAIT_ALGORITHM:
                return LoginStatus.INITIATOR_ERROR
            reply = self._chap.challenge_for(keys["CHAP_A"])
            if reply is None:
                return LoginStatus.AUTHENTICATION_FAILURE
            answer += reply
            self._auth_state = AuthState.WAIT_RESPONSE
        elif "CHAP_R" in keys or "CHAP_N" in keys:
            if state is not AuthState.WAIT_RESPONSE:
                return LoginStatus.INITIATOR_ERROR
            ok, reply = self._chap.verify(keys.get("CHAP_N"), keys.get("CHAP_R"), keys.get("CHAP_I"),
                                          keys.get("CHAP_C"))
            if not ok:
                return LoginStatus.AUTHENTICATION_FAILURE
            answer += reply
            self._auth_state = AuthState.DONE
            self._authenticated = True
        return None

    # ------------------------------------------------------------------------------
    def _send_text(self, req: LoginRequest, transit: bool) -> LoginResponse:
        chunk, self._text_out = self._text_out[:LOGIN_SEGMENT], self._text_out[LOGIN_SEGMENT:]
        if self._text_out:
            return self._response(req, transit=False, data=chunk, cont=True)
        if transit:
            if req.nsg == Stage.FULL_FEATURE:
                return self._complete(req, chunk)
            self.stage = Stage(req.nsg)
        return self._response(req, transit=transit, data=chunk)

    def _complete(self, req: LoginRequest, data: bytes) -> LoginResponse:
        result = LoginResult(
            initiator_name=self._initiator, target_name=self._target, discovery=self._discovery,
            isid=self._first.isid, tsih=0, cid=self._first.cid, params=self._nego.result(),
            exp_cmdsn=self._exp_cmdsn, statsn=0, tpgt=self._access.tpgt,
            authenticated=self._authenticated)
        admitted = self.authority.admit(result)
        if isinstance(admitted, tuple):
            return self._fail(req, admitted)
        result.tsih = admitted
        rsp = self._response(req, transit=True, data=data)
        rsp.tsih = admitted
        result.statsn = self._statsn
        self.stage = Stage.FULL_FEATURE
        self.result = result
        return rsp

    def _response(self, req: LoginRequest, *, transit: bool, data: bytes, cont: bool = False,
                  status: tuple[int, int] = LoginStatus.SUCCESS) -> LoginResponse:
        rsp = LoginResponse(
            data=data, transit=transit, cont=cont, csg=req.csg, nsg=req.nsg if transit else 0,
            version_max=0, version_active=0, isid=req.isid, tsih=0, itt=req.itt,
            statsn=self._statsn, exp_cmdsn=self._exp_cmdsn,
            max_cmdsn=(self._exp_cmdsn + self.cmdsn_depth - 1) & 0xFFFFFFFF,
            status_class=status[0], status_detail=status[1])
        self._statsn = (self._statsn + 1) & 0xFFFFFFFF
        return rsp

    def _fail(self, req: LoginRequest, status: tuple[int, int]) -> LoginResponse:
        self.failed = status
        return self._response(req, transit=False, data=b"", status=status)
