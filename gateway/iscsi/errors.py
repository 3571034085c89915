"""Two error classes split by blame (as in h11).

* :class:`LocalProtocolError` -- *we* asked the state machine for something it cannot do
  (a bug in the caller, e.g. sending a response for an unknown task).  Never caused by
  the peer; the portal lets it propagate (it is a bug to fix).
* :class:`RemoteProtocolError` -- the *peer* broke RFC 7143.  It carries what the target
  must do about it: a Reject PDU with a reason, a Login Response status, or closing the
  connection (ERL 0 session recovery).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class of both error kinds."""


class LocalProtocolError(ProtocolError):
    """Our own misuse of the state machine."""


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol.

    ``reject_reason``: send a Reject PDU with this reason (and keep the connection);
    ``login_status``: (class, detail) to answer a Login Request with (then close);
    ``fatal``: close the connection (ERL 0 cannot recover from this).
    """

    def __init__(self, message: str, *, reject_reason: int | None = None,
                 login_status: tuple[int, int] | None = None, fatal: bool = False,
                 header: bytes | None = None) -> None:
        super().__init__(message)
        self.reject_reason = reject_reason
        self.login_status = login_status
        self.fatal = fatal or (reject_reason is None and login_status is None)
        # The BHS of the offending PDU (returned in a Reject).
        self.header = header
