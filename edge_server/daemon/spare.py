"""The daemon's side of the spare: the next session's process, forked while idle.

Turnover between sessions is on the critical path of every MetaSchedule
trial, so the client should wait neither for fork (a few ms: the daemon's
page tables) nor for TVM's pool and the default pinning (a few ms more).
Two steps, because a client in a session must have the cores to itself
while it measures: the fork may happen any time (right after a session
started, while its client is still connecting); the spare prepares only
when told, which is when no client is in a session. Its child side is
edge_server.session.spare; the channel format is edge_server.session.ipc.

A spare that dies unused is replaced after a backoff (0.5 s doubling to
30 s), so a board that cannot set up a session does not fork in a loop.
"""
import dataclasses
import logging
import os
import socket
from typing import Callable, Optional

from edge_server.daemon.children import Child, State
from edge_server.daemon.forking import describe_status
from edge_server.session import ipc

log = logging.getLogger("edge_server.daemon.spare")

FIRST_DELAY = 0.5         # s before replacing a spare that died unused; doubles
MAX_DELAY = 30.0
FORK_FAILED_DELAY = 5.0   # s before trying again after fork() itself failed


class SpareBackoff:
    """When the next spare may be forked."""

    def __init__(self):
        self.failures = 0
        self.retry_at = 0.0

    def died(self, now: float) -> float:
        """A spare died before serving: the delay before the next one."""
        self.failures += 1
        delay = min(MAX_DELAY, FIRST_DELAY * 2 ** self.failures)
        self.retry_at = now + delay
        return delay

    def fork_failed(self, now: float) -> None:
        self.retry_at = now + FORK_FAILED_DELAY

    def served(self) -> None:
        """A spare took a client: the board can set up sessions."""
        self.failures = 0


def fork_spare(fork: Callable[..., int], template, now: float) -> Optional[Child]:
    """Fork a spare for `template` (a SessionContext without client); None if fork failed.
    `fork(body, keep=..., report_fd=...)` is the supervisor's fork."""
    parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    ctx = dataclasses.replace(template, mode_report_fd=write_end)

    def body() -> int:
        from edge_server.session.spare import spare_main
        return spare_main(child_end, ctx)
    try:
        # parent_end too: a spare holding the daemon's end would never see it close
        pid = fork(body, keep=child_end, report_fd=write_end, close=(read_end, parent_end))
    except OSError as err:
        log.warning("forking a spare session process failed: %s; sessions fork on demand",
                    err.strerror)
        parent_end.close()
        os.close(read_end)
        return None
    finally:
        child_end.close()
        os.close(write_end)
    return Child(pid, State.SPARE, now, reports=ipc.ModeReportReader(read_end),
                 channel=parent_end)


def tell_prepare(spare: Child) -> None:
    """No client is measuring: the spare may set up now."""
    try:
        ipc.tell_prepare(spare.channel)
    except OSError as err:   # it died: the reaper deals with it
        log.debug("telling spare %d to prepare failed: %s", spare.pid, err)
    spare.move(State.PREPARING)


def hand_off(spare: Child, conn: socket.socket, work_dir: str, peer: str,
             clocks=None) -> bool:
    """Pass the client's socket (and the clocks held for it) to the spare; False
    (logged) if it could not take it."""
    try:
        ipc.hand_off(spare.channel, conn, work_dir, peer, clocks)
    except OSError as err:
        log.warning("handing %s to the spare session process %d failed: %s; forking one",
                    peer, spare.pid, err.strerror or err)
        return False
    spare.channel.close()
    spare.channel = None
    return True


def log_death(spare: Child, status: int, delay: float) -> None:
    log.warning("spare session process %d died before serving (%s); next one in %.1fs",
                spare.pid, describe_status(status), delay)
