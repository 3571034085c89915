"""Events the full-feature-phase state machine hands to its caller."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.iscsi.task import Task


@dataclass(slots=True)
class CommandReady:
    """A SCSI command with all its data, in CmdSN order: run it, then ``complete()``."""

    task: Task


@dataclass(slots=True)
class TaskManagement:
    """A TMF that needs the SCSI layer; answer with ``task_management_response()``.

    ``running`` lists this connection's tasks, already handed to the SCSI layer, that the
    function affects; tasks still in the transport were aborted already.
    """

    itt: int
    function: int
    lun: int
    ref_itt: int
    running: list[Task] = field(default_factory=list)


@dataclass(slots=True)
class LogoutRequested:
    """Answer with ``logout_response()`` once running commands are done."""

    itt: int
    reason: int
    cid: int


Event = CommandReady | TaskManagement | LogoutRequested
