"""Errors the host client raises, one class per thing the user can fix.

Every class takes the message as its only required argument: MetaSchedule's
PopenPoolExecutor workers rebuild exceptions as ``type(exc)(message)``, so a
class that needs more positional arguments would turn a clear error into a
TypeError on its way back to the tuner.
"""
from typing import Optional


class EdgeClientError(RuntimeError):
    """Base class: anything the host client reports as one clear line."""


class TrackerError(EdgeClientError):
    """The tracker cannot be reached, or answered something we cannot use."""


class TrackerUnreachable(TrackerError):
    """Nothing (or no TVM tracker) answers at the tracker address."""


class KeyUnknown(TrackerError):
    """No server is registered on the tracker under the requested key."""


class BoardBusy(TrackerError):
    """Every board of the key stayed busy longer than the wait allowed."""


class SessionError(EdgeClientError):
    """The board accepted the session but the session could not be set up."""


class NotAnEdgeServer(SessionError):
    """The board runs a server without ``edge.set_thread_mode`` (stock TVM)."""


class ThreadModeRefused(SessionError):
    """The board refused the thread mode; ``board_message`` is its reason."""

    def __init__(self, message: str, board_message: Optional[str] = None, mode: Optional[str] = None):
        super().__init__(message)
        self.board_message = board_message if board_message is not None else message
        self.mode = mode


class CrossCompilerMissing(EdgeClientError):
    """Building for the board needs a cross toolchain that is not installed."""


class ArchMismatch(EdgeClientError):
    """A module built for another machine than the board's (checked before upload)."""
