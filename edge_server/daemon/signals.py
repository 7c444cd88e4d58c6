"""Signals as flags: the handlers only count, the poll loop acts.

A handler that did real work (closing sockets, killing sessions) could run
in the middle of any line of the loop and find its state half-changed. So a
handler only counts the signal, and Python's wakeup fd writes a byte to a
self-pipe whose read end the loop polls: a signal that arrives while the
loop sleeps in poll() wakes it at once, one that arrives just before it is
found on the next turn.
"""
import os
import signal
from typing import Dict, List

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1)


class SignalFlags:
    """The daemon's signal handlers and self-pipe."""

    def __init__(self):
        self._counts: Dict[int, int] = {}
        self._read = self._write = -1

    def install(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        for sig in HANDLED:
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        """Only count it; the loop acts on it."""
        self._counts[signum] = self._counts.get(signum, 0) + 1

    def fileno(self) -> int:
        """The self-pipe's read end, for poll()."""
        return self._read

    def take(self) -> Dict[int, int]:
        """The signals counted since the last call (and the self-pipe drained)."""
        try:
            while os.read(self._read, 512):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            pass      # not installed
        taken, self._counts = self._counts, {}
        return taken

    def forget_in_child(self) -> List[int]:
        """In a forked child: default dispositions, no wakeup fd; the pipe's fds to close."""
        for sig in HANDLED:
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        return [fd for fd in (self._read, self._write) if fd >= 0]

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        for fd in (self._read, self._write):
            if fd >= 0:
                os.close(fd)
        self._read = self._write = -1
