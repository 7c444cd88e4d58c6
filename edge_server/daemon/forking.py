"""Fork hygiene and reaping: the rules every child of the daemon lives by.

A session child runs a client's code, so it must be easy to kill whole and
must hold nothing of the daemon's: its own process group (a timeout kills it
and whatever it started), PR_SET_PDEATHSIG (it cannot outlive a SIGKILLed
daemon), default signal dispositions, and none of the daemon's fds (the
listen socket, peers waiting for their turn, the tracker link, the work
root's lock). The daemon is a child subreaper, so grandchildren orphaned by
a session (a compiler it started) are reaped here too.
"""
import ctypes
import logging
import os
import signal
import socket
from typing import Callable, Iterable, List, Optional, Tuple, Union

from edge_server.session.ipc import ModeReporter

log = logging.getLogger("edge_server.daemon.forking")

CHILD_FAILED = 70         # exit code of a child that failed before serving (EX_SOFTWARE)
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36

Closable = Union[int, socket.socket]


def describe_status(status: int) -> str:
    """waitpid status -> "exit 0" / "killed by SIGSEGV" (what the log and STATUS say)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "signal %d" % sig
        return "killed by %s%s" % (name, " (core dumped)" if os.WCOREDUMP(status) else "")
    if os.WIFEXITED(status):
        return "exit %d" % os.WEXITSTATUS(status)
    return "status 0x%x" % status


def _prctl(option: int, arg: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(option, arg, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def set_child_subreaper() -> None:
    """Adopt orphaned grandchildren (a compiler a session started), so we reap them."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def killpg(pgid: int) -> None:
    """SIGKILL a child's whole process group; already gone is fine."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def close_quietly(sock: Optional[socket.socket]) -> None:
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


def _close_inherited(items: Iterable[Closable]) -> None:
    """In the child: close the daemon's fds. A socket is detached first, so that its
    (copied) Python object can never close the number again once it is reused."""
    for item in items:
        try:
            fd = item.detach() if isinstance(item, socket.socket) else item
            if fd is not None and fd >= 0:
                os.close(fd)
        except OSError:
            pass


def fork_child(body: Callable[[], int], inherited: Callable[[], Iterable[Closable]],
               report_fd: Optional[int] = None, new_session: bool = False) -> int:
    """Fork a child that runs body() detached from the daemon; returns its pid.

    `inherited()` runs in the child and returns the daemon's fds it must not
    hold (and resets whatever else the daemon set up for itself); `report_fd`
    is the child's mode pipe, on which it says its last word (`end <code>`).
    `new_session`: the child leads a session of its own, not only a process
    group (a slot server: the scheduler's autogroup then shares the CPU per
    slot, not once for all slots)."""
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        _child_main(body, parent, inherited, report_fd, new_session)
    if not new_session:      # setsid() fails in a child that already leads a group
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass   # the child did it first, or already exited
    return pid


def _child_main(body: Callable[[], int], parent: int,
                inherited: Callable[[], Iterable[Closable]],
                report_fd: Optional[int], new_session: bool = False) -> None:
    """In a forked child: own process group, die with the daemon, drop the daemon's
    fds and signal handlers, run body(), _exit. Never returns."""
    code = CHILD_FAILED
    try:
        if new_session:
            os.setsid()
        else:
            os.setpgid(0, 0)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:    # the daemon died before PDEATHSIG was armed
            os._exit(CHILD_FAILED)
        _close_inherited(inherited())
        code = body()
    except BaseException:  # noqa: B902 - whatever happens, the child must _exit
        log.exception("session child %d failed before or while serving", os.getpid())
        code = CHILD_FAILED
    finally:
        for handler in logging.getLogger().handlers:
            try:
                handler.flush()
            except Exception:
                pass
        code = code if isinstance(code, int) else 0
        ModeReporter(report_fd).ended(code)
        os._exit(code)


def reap(leaders: Iterable[int], adopted: bool = True) -> List[Tuple[int, int]]:
    """Every child that has exited, as (pid, waitpid status), without blocking.

    A group leader of ours (`leaders`) that exited has its process group
    SIGKILLed before it is reaped: while it is a zombie it still holds the
    pgid, so whatever it started dies with it and the id cannot be reused
    under us. Then, if `adopted`, everything else: orphans adopted as
    subreaper (a process with other children it waits for itself says False)."""
    out = []
    for pid in list(leaders):
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            continue
        if info is None:
            continue
        killpg(pid)
        out.append(os.waitpid(pid, 0))
    while adopted:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        out.append((pid, status))
    return out


def wait_for(pid: int) -> Optional[int]:
    """Block until a (SIGKILLed) child is gone: its status, None if not ours any more."""
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return None
