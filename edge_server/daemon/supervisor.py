"""One slot: at most one session at a time, and the spare that will serve the next.

The supervisor owns every child of its slot from fork to reap (see
children.py for the states). It never blocks and never looks at the clock
by itself: the server's loop calls it when a socket or pipe is ready, when
a child has exited, and every turn with the time; the supervisor tells the
loop what to watch and its nearest deadline, and tells the server (its
`events`) when the slot's state changed.

Two invariants it keeps in one place each:
- the slot is freed in `_free_slot` only: when the child says its last word
  (`end <code>`, its process group is SIGKILLed first, so nothing of it runs
  next to the next session) or when it is reaped, whichever comes first;
- a session's end is accounted in `_ended` only, when it is reaped: one log
  line, one count, its work dir removed.

Several slots (several sessions on disjoint cores) are several supervisors
fed by one loop: nothing here is global but the reaper, which the server
runs and whose results it hands to the supervisor that `owns()` the pid.
"""
import dataclasses
import logging
import os
import select
import signal
import socket
from typing import Callable, Dict, List, Optional, Tuple

from edge_server.daemon.children import LIVE_SESSION, SESSION, UNUSED, Child, State
from edge_server.daemon.config import Config
from edge_server.daemon.forking import describe_status, fork_child, killpg, wait_for
from edge_server.daemon.handshake import SessionRequest
from edge_server.daemon.spare import SpareBackoff, fork_spare, hand_off, log_death, tell_prepare
from edge_server.daemon.workroot import WorkRoot, remove_tree
from edge_server.session.ipc import ModeReportReader

log = logging.getLogger("edge_server.daemon.supervisor")

POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)
VANISH_GRACE = 1.0        # s a child may take to notice its client's close by itself
MAX_MODES_LOGGED = 8      # distinct thread modes a session-end line names
NOT_CONNECTED = "(not connected yet)"   # a spare's peer until its client arrives


class ProcessOps:
    """The supervisor's hands on real processes; tests pass fakes with the same methods.

    `inherited(keep)` lists the daemon's fds a new child must close (all but
    `keep`, the socket it serves)."""

    def __init__(self, inherited: Callable[[Optional[socket.socket]], list]):
        self._inherited = inherited

    def fork(self, body: Callable[[], int], keep: socket.socket, report_fd: int,
             close: tuple = ()) -> int:
        return fork_child(body, lambda: list(self._inherited(keep)) + list(close), report_fd)

    def killpg(self, pid: int) -> None:
        killpg(pid)

    def wait(self, pid: int) -> Optional[int]:
        return wait_for(pid)


class SlotEvents:
    """What the server does when a slot changes; every method gets the supervisor."""

    def client_left(self, slot: "Supervisor") -> None:
        """Its client closed: the slot can go back in the tracker's free queue."""

    def slot_freed(self, slot: "Supervisor") -> None:
        """No session holds the slot any more: the next client may come in."""

    def session_started(self, slot: "Supervisor") -> None:
        """A client took the slot."""

    def changed(self, slot: "Supervisor") -> None:
        """Something STATUS shows changed (mode, counts)."""


class Supervisor:
    def __init__(self, config: Config, work: WorkRoot, context: Callable[[str, str], object],
                 ops: ProcessOps, events: SlotEvents, clock: Callable[[], float],
                 clocks=None):
        self.config = config
        self._clocks = clocks          # a ClockKeeper (--lock-clocks) or None
        self._work = work
        self._context = context        # (work_dir, peer) -> SessionContext
        self._ops = ops
        self._events = events
        self._clock = clock
        self.session: Optional[Child] = None
        self.spare: Optional[Child] = None
        self.children: Dict[int, Child] = {}   # every child of this slot not reaped yet
        self.backoff = SpareBackoff()
        self.stopping = False
        self.stop_deadline: Optional[float] = None
        self.ok = 0
        self.failed = 0

    # ---- what the loop asks ----------------------------------------------------------
    def busy(self) -> bool:
        """A session holds the slot (the next client waits)."""
        return self.session is not None

    def owns(self, pid: int) -> bool:
        return pid in self.children

    def inherited(self, keep: Optional[socket.socket]) -> list:
        """The fds of this slot a newly forked child must close."""
        out: list = []
        for child in self.children.values():
            out += [s for s in (child.channel, child.conn) if s is not None and s is not keep]
            if child.reports is not None and child.reports.fd >= 0:
                out.append(child.reports.fd)
        return out

    def watches(self) -> List[Tuple[int, int, Callable[[int], None]]]:
        """(fd, poll mask, handler(mask)) for the loop's poll()."""
        out = []
        s = self.session
        if s is not None and s.state is State.SERVING:
            out.append((s.conn.fileno(), POLLRDHUP, lambda mask, s=s: self.client_gone(s)))
        if s is not None and s.reports is not None:
            out.append((s.reports.fd, select.POLLIN, lambda mask, s=s: self.read_reports(s)))
        return out

    def deadlines(self, now: float) -> List[float]:
        times = []
        s = self.session
        if s is not None and s.state in LIVE_SESSION:
            if s.deadline is not None:
                times.append(s.deadline)
            if s.client_gone_at is not None:
                times.append(s.client_gone_at + VANISH_GRACE)
            if self.stop_deadline is not None:
                times.append(self.stop_deadline)
        if self.spare is None and not self.stopping and self.backoff.retry_at > now:
            times.append(self.backoff.retry_at)
        return times

    # ---- a session starts ------------------------------------------------------------------
    def start(self, conn: socket.socket, peer: str, request: SessionRequest) -> Optional[str]:
        """Start the session of a handshaken client; None, or why it could not start
        (the caller closes the peer with that reason)."""
        try:
            work_dir = self._work.new_session_dir()
        except OSError as err:
            self.failed += 1
            return "cannot create a work dir in %s: %s" % (self._work.own_dir, err.strerror)
        ctx, held = self._hold_clocks(self._session_context(work_dir, peer))
        conn.setblocking(True)
        now = self._clock()
        self._adopt_spare_dir(work_dir)
        child, how = self._take_spare(conn, work_dir, peer, held), "prepared in advance"
        if child is None:
            how = "forked"
            try:
                child = self._fork_session(conn, ctx, now)
            except OSError as err:
                self._release_clocks(work_dir)
                remove_tree(work_dir)
                self.failed += 1
                return "fork failed: %s" % err.strerror
        timeout = self._session_timeout(request)
        child.conn, child.peer, child.work_dir, child.mode = conn, peer, work_dir, ctx.default_mode
        child.started, child.timeout = now, timeout
        child.deadline = now + timeout if timeout else None
        self.session = child
        self._events.session_started(self)
        log.info("session %s: started (pid %d %s, default mode %s, %s)", peer, child.pid, how,
                 ctx.default_mode, "timeout %gs" % timeout if timeout else "no timeout",
                 extra={"PEER": peer, "SESSION_PID": child.pid,
                        "THREAD_MODE": ctx.default_mode})
        self._events.changed(self)
        return None

    def _hold_clocks(self, ctx):
        """--lock-clocks: lock every core the session may use before it starts
        (keyed by its work dir); (the context that tells the session, what is held)."""
        if self._clocks is None:
            return ctx, None
        from edge_server.daemon.clock_lock import session_cpus
        held = self._clocks.hold(ctx.work_dir, session_cpus(ctx.topology))
        return dataclasses.replace(ctx, clocks=held), held

    def _release_clocks(self, work_dir: str) -> None:
        if self._clocks is not None:
            self._clocks.release(work_dir)

    def _session_context(self, work_dir: str, peer: str):
        """The settings of the next session process, with what it will resolve first
        (its default mode, "all") resolved here once, before the fork, instead of in
        every session (edge_server.session.child.warm_modes)."""
        ctx = self._context(work_dir, peer)
        if getattr(ctx, "topology", None) is not None:
            from edge_server.session.child import warm_modes
            warm_modes(ctx)
        return ctx

    def _session_timeout(self, request: SessionRequest) -> Optional[float]:
        cap = self.config.session_timeout_cap
        if request.timeout and cap:
            return min(request.timeout, cap)
        return request.timeout or cap

    def _adopt_spare_dir(self, work_dir: str) -> None:
        """Move the spare's own work dir, the one its sandbox lets it write (the
        grant follows the inode), to the session's name; retire it if that fails."""
        spare = self.spare
        if spare is None or not spare.work_dir:
            return
        try:
            os.rename(spare.work_dir, work_dir)   # replaces the fresh, empty dir
        except OSError as err:
            log.warning("moving spare work dir %s to %s failed: %s; forking a session",
                        spare.work_dir, work_dir, err.strerror)
            self._retire(spare)
            return
        spare.work_dir = ""

    def _take_spare(self, conn: socket.socket, work_dir: str, peer: str,
                    clocks=None) -> Optional[Child]:
        """The spare, now serving `conn`; None (spare retired if broken) to fork instead."""
        spare, self.spare = self.spare, None
        if spare is None:
            return None
        if not hand_off(spare, conn, work_dir, peer, clocks):
            self._retire(spare)
            return None
        spare.move(State.SERVING)
        self.backoff.served()
        return spare

    def _fork_session(self, conn: socket.socket, ctx, now: float) -> Child:
        """Fork a child that sets up and serves the session now."""
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        ctx = dataclasses.replace(ctx, mode_report_fd=write_end)

        def body() -> int:
            from edge_server.session.child import run_session
            return run_session(conn, ctx)
        try:
            pid = self._ops.fork(body, keep=conn, report_fd=write_end, close=(read_end,))
        except OSError:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        child = Child(pid, State.SERVING, now, reports=ModeReportReader(read_end))
        self.children[pid] = child
        return child

    # ---- the spare ---------------------------------------------------------------------------
    def ensure_spare(self, now: float) -> None:
        """Have the next session's process forked, and prepared once no client measures."""
        if self.stopping:
            return
        if self.spare is None:
            if now < self.backoff.retry_at:
                return
            try:   # its own dir now: its sandbox is applied before TVM's pool exists
                spare_dir = self._work.new_session_dir(prefix="p")
            except OSError as err:
                log.warning("cannot create a spare work dir in %s: %s", self._work.own_dir,
                            err.strerror)
                self.backoff.fork_failed(now)
                return
            spare = fork_spare(self._ops.fork, self._session_context(spare_dir, NOT_CONNECTED),
                               now)
            if spare is None:
                remove_tree(spare_dir)
                self.backoff.fork_failed(now)
                return
            spare.work_dir = spare_dir
            self.spare = self.children[spare.pid] = spare
        s = self.session
        if self.spare.state is State.SPARE and (s is None or s.state is not State.SERVING):
            tell_prepare(self.spare)

    def retire_spare(self) -> None:
        """The spare must not serve (new topology, stopping)."""
        if self.spare is not None:
            self._retire(self.spare)

    def _retire(self, spare: Child) -> None:
        if spare is self.spare:
            self.spare = None
        self._close_pipes(spare)
        self._ops.killpg(spare.pid)
        spare.move(State.RETIRED)
        self._remove_spare_dir(spare)

    # ---- what the session child and its client do ---------------------------------------------
    def client_gone(self, s: Child) -> None:
        """The client closed: the session is over, whatever its child still does. The
        slot goes back in the tracker's free queue and the spare prepares now; the next
        client is still only let in once this child said its last word or was reaped
        (its process group SIGKILLed), so two sessions never run at once."""
        if s.state is not State.SERVING:
            return
        s.client_gone_at = self._clock()
        s.move(State.CLIENT_GONE)
        log.debug("session %s: client closed its connection", s.peer, extra={"PEER": s.peer})
        if not self.stopping:
            self._events.client_left(self)
        self.ensure_spare(s.client_gone_at)

    def read_reports(self, s: Child) -> None:
        """Take the modes the session child reported; a garbled report is logged
        once per session and ignored, the pipe's end just stops the watching."""
        reader = s.reports
        if reader is None:
            return
        modes = reader.read()
        rejected = reader.take_rejected()
        if rejected:
            # once per session: a child that keeps writing garbage must not flood the log
            (log.debug if s.bad_reports else log.warning)(
                "session %s: ignored %d bad mode report(s) from pid %d: %s", s.peer,
                len(rejected), s.pid, "; ".join(rejected[:3]),
                extra={"PEER": s.peer, "SESSION_PID": s.pid})
            s.bad_reports += len(rejected)
        if reader.end_code is not None and s.end_code is None:
            s.end_code = reader.end_code
            self._last_word(s)
        if reader.eof and s.reports is not None:
            reader.close()
            s.reports = None
        self._note_modes(s, modes)

    def _note_modes(self, s: Child, modes: List[str]) -> None:
        for mode in modes:
            if mode in s.modes_used:
                continue
            if len(s.modes_used) < MAX_MODES_LOGGED:
                s.modes_used.append(mode)
            else:
                s.modes_unlisted += 1
        if modes and modes[-1] != s.mode:
            s.mode = modes[-1]
            self._events.changed(self)

    def _last_word(self, s: Child) -> None:
        """ServerLoop returned and the child exits now: the session is over, so the slot
        is freed at once instead of after the kernel has torn the process down (several
        ms with TVM loaded). Its group is SIGKILLed first, so that nothing of it, nor
        anything it started, runs next to the next session. It is logged and counted
        when reaped, with the exit code it announced."""
        if s.state not in LIVE_SESSION:
            return
        self._ops.killpg(s.pid)
        self.client_gone(s)
        if s.reports is not None:
            s.reports.close()
            s.reports = None
        s.move(State.ENDING)
        self._free_slot(s)

    # ---- deadlines and kills ---------------------------------------------------------------------
    def check_deadlines(self, now: float) -> None:
        s = self.session
        if s is None or s.state not in LIVE_SESSION:
            return
        if s.deadline is not None and now >= s.deadline:
            self._kill(s, "session timeout (%gs) expired" % s.timeout)
        elif s.client_gone_at is not None and now >= s.client_gone_at + VANISH_GRACE:
            self._kill(s, "client went away")
        elif self.stop_deadline is not None and now >= self.stop_deadline:
            self._kill(s, "daemon stopping, grace of %gs over" % self.config.grace)

    def _kill(self, s: Child, reason: str) -> None:
        """SIGKILL the session's whole process group; the reaper does the rest."""
        s.kill_reason = reason
        s.move(State.KILLED)
        log.info("session %s: %s; killing process group %d", s.peer, reason, s.pid,
                 extra={"PEER": s.peer, "SESSION_PID": s.pid})
        self._ops.killpg(s.pid)

    def begin_stop(self, deadline: float) -> None:
        """Stopping: no new spare, the running session may go on until `deadline`."""
        self.stopping = True
        self.stop_deadline = deadline
        self.retire_spare()

    # ---- reaping -------------------------------------------------------------------------------
    def child_exited(self, pid: int, status: int) -> bool:
        """A child of this slot was reaped (its group already SIGKILLed); False if not ours."""
        child = self.children.get(pid)
        if child is None:
            return False
        if child.state in SESSION:
            self._ended(child, status)
        elif child.state in UNUSED:
            self._spare_died(child, status)
        child.move(State.REAPED)
        del self.children[pid]
        return True

    def _spare_died(self, spare: Child, status: int) -> None:
        if spare is self.spare:
            self.spare = None
        self._close_pipes(spare)
        self._remove_spare_dir(spare)
        log_death(spare, status, self.backoff.died(self._clock()))

    @staticmethod
    def _remove_spare_dir(spare: Child) -> None:
        if spare.work_dir:
            remove_tree(spare.work_dir)
            spare.work_dir = ""

    def _ended(self, s: Child, status: int) -> None:
        """The one place a session is accounted: logged, counted, its work dir removed."""
        if s.reports is not None:         # what the child said before it went
            self.read_reports(s)
        if s.reports is not None:         # a grandchild still holds the pipe, or a flood
            s.reports.close()
            s.reports = None
        ending = self._ending(s, status)
        good = ending == "exit 0" and s.kill_reason is None
        if s.kill_reason and s.kill_reason.startswith("session timeout"):
            self._tell_timeout(s)
        leftover = remove_tree(s.work_dir)
        self._release_clocks(s.work_dir)   # however it ended: restored if nobody else holds
        if good:
            self.ok += 1
        else:
            self.failed += 1
        why = " (%s)" % s.kill_reason if s.kill_reason else ""
        if s.bad_reports:
            why += " (ignored %d bad mode reports)" % s.bad_reports
        modes = s.modes_used or [s.mode]
        more = " and %d more" % s.modes_unlisted if s.modes_unlisted else ""
        extra = {"PEER": s.peer, "EXIT_STATUS": ending, "SESSION_PID": s.pid,
                 "THREAD_MODE": ",".join(modes)}
        (log.info if good else log.warning)(
            "session %s: ended, %s after %.1fs in %s %s%s%s%s", s.peer, ending,
            self._clock() - s.started, "modes" if len(modes) > 1 else "mode",
            ", ".join(modes), more, why,
            "; work dir left behind: %s" % leftover if leftover else "", extra=extra)
        if self.session is s:
            self._free_slot(s)
        else:
            self._events.changed(self)

    @staticmethod
    def _ending(s: Child, status: int) -> str:
        """How the child ended. One that announced its exit code and was SIGKILLed by
        us on the way out (_last_word) ended with that code."""
        if (s.end_code is not None and s.kill_reason is None and os.WIFSIGNALED(status)
                and os.WTERMSIG(status) == signal.SIGKILL):
            return "exit %d" % s.end_code
        return describe_status(status)

    def _tell_timeout(self, s: Child) -> None:
        """What the stock server tells a client whose session timed out, as an RPC error."""
        if s.conn is None:
            return
        try:
            from tvm.rpc import _ffi_api
            s.conn.setblocking(False)
            _ffi_api.ReturnException(
                s.conn.fileno(),
                "RPCSessionTimeoutError: Your %gs session has expired, try to increase the "
                '"session_timeout" value.' % s.timeout)
        except Exception as err:  # the client may be gone; nothing to tell then
            log.debug("session %s: could not send the timeout error: %s", s.peer, err)

    def _free_slot(self, s: Child) -> None:
        """The one place the slot is freed: the client's socket closed, the server told."""
        if self.session is not s:
            return
        self.session = None
        if s.conn is not None:
            try:
                s.conn.close()
            except OSError:
                pass
        self._events.slot_freed(self)

    @staticmethod
    def _close_pipes(child: Child) -> None:
        if child.channel is not None:
            child.channel.close()
            child.channel = None
        if child.reports is not None:
            child.reports.close()
            child.reports = None

    # ---- the end -----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """The one teardown: kill whatever still runs, wait for every child, account it."""
        self.begin_stop(self._clock())
        s = self.session
        if s is not None and s.state in LIVE_SESSION:
            self._kill(s, "daemon stopping")
        for pid in list(self.children):
            status = self._ops.wait(pid)   # SIGKILLed: returns at once
            if status is None:
                self.children.pop(pid).state = State.REAPED
            else:
                self.child_exited(pid, status)
