"""The two channels between the daemon and a session child, and their formats.

1. The hand-off (daemon -> spare): a spare is a child forked before its
   client arrives. It waits on a SOCK_SEQPACKET socketpair for either
   `prepare` (no client is measuring now: build TVM's pool and pin the
   default mode) or the hand-off: one message with the client's socket as
   SCM_RIGHTS and a JSON object {"work_dir": ..., "peer": ...}, with
   "clocks" added under --lock-clocks (what the daemon holds for the
   session: edge_server.session.clocks). An empty message (the daemon closed
   its end) means it was retired.

2. The mode reports (child -> daemon), below.

The session child's effective thread mode, told to the daemon over a pipe.

The daemon decides the default mode, but the client changes it inside the
child (edge.set_thread_mode), so without a word from the child the daemon's
STATUS and its session-end log line would name a mode the session no longer
runs. The child writes one short ASCII line per change, `mode <mode>\\n`, to
the write end of a pipe; the daemon's loop polls the read end like any other
fd. Its last line, `end <exit code>\\n`, written just before it exits, tells
the daemon that the session is over without waiting for the process to be
torn down.

The child is untrusted (a client's library runs in it), so the reader treats
the pipe as hostile input: it never blocks, reads a bounded amount per turn,
drops lines that are too long or not of the form above, and forgets a partial
line when the child dies in the middle of it. One write of a line shorter
than PIPE_BUF is atomic, so an honest child never produces a torn line.
"""
import json
import os
import re
import socket
from typing import List, NamedTuple, Optional

from edge_common.oserror import describe
from edge_server.session.clocks import HeldClocks, parse_held

MAX_LINE = 300            # "mode " + a mode of at most 256 characters + newline, with room
MAX_READ_PER_TURN = 16    # reads of 4 KiB: a flooding child cannot hold the daemon's loop
_MODE = re.compile(r"[A-Za-z0-9:,._-]{1,256}")

PREPARE = b"prepare"      # daemon -> spare: set up now, no client is in a session
MAX_HANDOFF = 65536       # bytes of one hand-off message
HANDOFF_TIMEOUT = 1.0     # s the daemon waits to hand a socket over before forking instead


class Handoff(NamedTuple):
    work_dir: str
    peer: str
    clocks: Optional[HeldClocks] = None    # None: no --lock-clocks


def handoff_message(work_dir: str, peer: str, clocks: Optional[HeldClocks] = None) -> bytes:
    """The hand-off's JSON part: where the session works, who its client is, and
    under --lock-clocks the clocks the daemon holds for it."""
    info = {"work_dir": work_dir, "peer": peer}
    if clocks is not None:
        info["clocks"] = clocks.to_json()
    return json.dumps(info).encode("utf-8")


def parse_handoff(msg: bytes) -> Handoff:
    """handoff_message() -> Handoff; ValueError naming what is wrong."""
    try:
        info = json.loads(msg.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise ValueError("hand-off message is not UTF-8 JSON: %s" % err) from None
    if not isinstance(info, dict):
        raise ValueError("hand-off message is %s, expected a JSON object"
                         % type(info).__name__)
    work_dir, peer = info.get("work_dir"), info.get("peer")
    if not isinstance(work_dir, str) or not work_dir or not isinstance(peer, str):
        raise ValueError("hand-off message needs a non-empty string work_dir and a string "
                         "peer, got %.100r" % (info,))
    try:
        clocks = parse_held(info.get("clocks"))
    except ValueError as err:
        raise ValueError("hand-off message: %s" % err) from None
    return Handoff(work_dir, peer, clocks)


def hand_off(channel: socket.socket, conn: socket.socket, work_dir: str, peer: str,
             clocks: Optional[HeldClocks] = None) -> None:
    """Daemon side: pass the client's socket to the spare (OSError if it cannot take it)."""
    channel.settimeout(HANDOFF_TIMEOUT)
    socket.send_fds(channel, [handoff_message(work_dir, peer, clocks)], [conn.fileno()])


def tell_prepare(channel: socket.socket) -> None:
    """Daemon side: no client is measuring now, so the spare may set up (never blocks)."""
    channel.send(PREPARE, socket.MSG_DONTWAIT)


class ModeReporter:
    """Child side: writes `mode <mode>` when the effective mode changes.

    The pipe is non-blocking: if the daemon is slow to read and the pipe is
    full, the report is skipped (and retried at the next change) rather than
    stalling the client's call."""

    def __init__(self, fd: Optional[int]):
        self.fd = fd
        self.last: Optional[str] = None

    def __call__(self, mode: str) -> None:
        if self.fd is None or mode == self.last:
            return
        line = ("mode %s\n" % mode).encode("ascii", "replace")
        try:
            os.write(self.fd, line)
        except BlockingIOError:
            return
        except OSError:
            self.fd = None   # the daemon closed its end: nobody to tell
            return
        self.last = mode

    def ended(self, code: int) -> None:
        """The last word: serving is over and the process exits with `code` now."""
        if self.fd is None:
            return
        try:
            os.write(self.fd, b"end %d\n" % code)
        except OSError:
            pass


class ModeReportReader:
    """Daemon side: turns what the child wrote into modes, and counts the rest.

    `read()` returns the well-formed modes that arrived, oldest first;
    `end_code` is set once the child said `end <code>`; `rejected` holds short
    descriptions of what was dropped (for one log line), and `eof` is set
    once the child's end is closed."""

    def __init__(self, fd: int):
        self.fd = fd
        self.eof = False
        self.end_code: Optional[int] = None
        self.rejected: List[str] = []
        self._buf = b""
        self._skipping = False    # inside an over-long line: drop up to its newline

    def read(self) -> List[str]:
        modes: List[str] = []
        for _ in range(MAX_READ_PER_TURN):
            try:
                data = os.read(self.fd, 4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as err:
                self.rejected.append("read failed: %s" % describe(err))
                data = b""
            if not data:
                if self._buf or self._skipping:
                    self.rejected.append("an unfinished line of %d bytes when the pipe closed"
                                         % len(self._buf))
                self._buf, self._skipping, self.eof = b"", False, True
                break
            modes.extend(self._feed(data))
        return modes

    def _feed(self, data: bytes) -> List[str]:
        modes = []
        lines = (self._buf + data).split(b"\n")
        self._buf = lines.pop()
        for line in lines:
            if self._skipping:
                self._skipping = False
                continue
            mode = parse_line(line)
            end = parse_end(line) if mode is None else None
            if end is not None:
                self.end_code = end
            elif mode is None and len(line) > MAX_LINE:
                self.rejected.append("a line longer than %d bytes" % MAX_LINE)
            elif mode is None:
                self.rejected.append("malformed line %r" % line[:60])
            else:
                modes.append(mode)
        if len(self._buf) > MAX_LINE:
            if not self._skipping:
                self.rejected.append("a line longer than %d bytes" % MAX_LINE)
            self._buf, self._skipping = b"", True
        return modes

    def take_rejected(self) -> List[str]:
        out, self.rejected = self.rejected, []
        return out

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1


def parse_line(line: bytes) -> Optional[str]:
    """b"mode cpus:0-1" -> "cpus:0-1"; None for anything else."""
    if len(line) > MAX_LINE or not line.startswith(b"mode "):
        return None
    try:
        mode = line[len(b"mode "):].decode("ascii")
    except UnicodeDecodeError:
        return None
    return mode if _MODE.fullmatch(mode) else None


def parse_end(line: bytes) -> Optional[int]:
    """b"end 0" -> 0 (an exit code, 0..255); None for anything else."""
    m = re.fullmatch(rb"end (\d{1,3})", line)
    return int(m.group(1)) if m and int(m.group(1)) <= 255 else None
