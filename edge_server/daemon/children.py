"""A child of the daemon and the states it goes through, from fork to reap.

One record per process, whatever it is for: a spare forked before its
client, the session it becomes, or a spare retired unused. Its state says
what it is doing and what may happen next, instead of being implied by
nullable fields and by which list holds it:

    SPARE ──prepare──> PREPARING ──hand-off──┐
      └──────────────hand-off────────────────┴──> SERVING
    SPARE / PREPARING ──retire──> RETIRED ──exit──> REAPED
    SPARE / PREPARING ──exit (died unused)──────> REAPED
    SERVING ──client closed──> CLIENT_GONE
    SERVING / CLIENT_GONE ──`end <code>`──> ENDING   (group SIGKILLed, slot freed)
    SERVING / CLIENT_GONE ──timeout, vanish, stop──> KILLED
    any session state ──exit──> REAPED              (slot freed if still held)

A session child is forked straight into SERVING when there is no spare.
"""
import enum
import socket
from dataclasses import dataclass, field
from typing import List, Optional

from edge_server.session.ipc import ModeReportReader


class State(enum.Enum):
    SPARE = "spare"              # forked, waits; must not set up while a client measures
    PREPARING = "preparing"      # told to build TVM's pool and pin the default mode now
    SERVING = "serving"          # its client is connected
    CLIENT_GONE = "client gone"  # the client closed; the child has VANISH_GRACE to finish
    ENDING = "ending"            # said its last word; its group is SIGKILLed, not reaped yet
    KILLED = "killed"            # SIGKILLed by the daemon (kill_reason), not reaped yet
    RETIRED = "retired"          # a spare that must never serve; SIGKILLed, not reaped yet
    REAPED = "reaped"            # gone; the record is dropped


NEXT = {
    State.SPARE: {State.PREPARING, State.SERVING, State.RETIRED, State.REAPED},
    State.PREPARING: {State.SERVING, State.RETIRED, State.REAPED},
    State.SERVING: {State.CLIENT_GONE, State.ENDING, State.KILLED, State.REAPED},
    State.CLIENT_GONE: {State.ENDING, State.KILLED, State.REAPED},
    State.ENDING: {State.REAPED},
    State.KILLED: {State.REAPED},
    State.RETIRED: {State.REAPED},
    State.REAPED: set(),
}
UNUSED = (State.SPARE, State.PREPARING)
LIVE_SESSION = (State.SERVING, State.CLIENT_GONE)       # may still be killed
SESSION = (State.SERVING, State.CLIENT_GONE, State.ENDING, State.KILLED)


class BadTransition(RuntimeError):
    """A bug in the daemon: a child asked to move where its state does not lead."""


@dataclass
class Child:
    pid: int
    state: State
    born: float
    reports: Optional[ModeReportReader] = None   # its mode pipe (edge_server.session.ipc)
    channel: Optional[socket.socket] = None      # a spare's hand-off channel
    # --- once it serves a client
    conn: Optional[socket.socket] = None
    peer: str = ""
    work_dir: str = ""
    mode: str = ""
    started: float = 0.0
    timeout: Optional[float] = None
    deadline: Optional[float] = None
    client_gone_at: Optional[float] = None
    kill_reason: Optional[str] = None
    modes_used: List[str] = field(default_factory=list)
    modes_unlisted: int = 0       # distinct modes beyond MAX_MODES_LOGGED
    bad_reports: int = 0          # garbled lines on the mode pipe
    end_code: Optional[int] = None   # the exit code it announced as its last word

    def move(self, new: State) -> None:
        if new not in NEXT[self.state]:
            raise BadTransition("child %d: %s -> %s is not a transition"
                                % (self.pid, self.state.name, new.name))
        self.state = new
