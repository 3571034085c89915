"""State tables of the full feature phase, as data (login's are in login.py).

ALLOWED_OPCODES says which initiator opcodes each (session kind, connection state) accepts;
the connection rejects everything else with the reason the table's neighbour code picks.
"""

from __future__ import annotations

from enum import Enum

from gateway.iscsi.constants import Op


class ConnState(Enum):
    FULL_FEATURE = "full-feature"
    LOGOUT_REQUESTED = "logout-requested"
    CLOSED = "closed"


# Which initiator opcodes each (session kind, state) accepts; anything else is rejected.
_NORMAL_OPS = frozenset({Op.NOP_OUT, Op.SCSI_CMD, Op.TMF_REQ, Op.TEXT_REQ, Op.DATA_OUT, Op.LOGOUT_REQ,
                         Op.SNACK})
_DISCOVERY_OPS = frozenset({Op.NOP_OUT, Op.TEXT_REQ, Op.LOGOUT_REQ})
ALLOWED_OPCODES: dict[tuple[bool, ConnState], frozenset[int]] = {
    (False, ConnState.FULL_FEATURE): _NORMAL_OPS,
    (True, ConnState.FULL_FEATURE): _DISCOVERY_OPS,
    # After a Logout request: finish data of running commands, answer pings, nothing new.
    (False, ConnState.LOGOUT_REQUESTED): frozenset({Op.DATA_OUT, Op.NOP_OUT}),
    (True, ConnState.LOGOUT_REQUESTED): frozenset({Op.NOP_OUT}),
    (False, ConnState.CLOSED): frozenset(),
    (True, ConnState.CLOSED): frozenset(),
}
