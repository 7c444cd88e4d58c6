"""The daemon: one listen loop that never blocks, one forked child per session.

The loop owns everything that must keep working while a session runs for
minutes: the watchdog ping, the tracker link, handshakes of new peers,
the session's deadline, noticing that its client went away, reaping the
child however it ended, and signals. It waits in poll() with a timeout taken
from the nearest deadline, so none of these waits on another.

Why not the stock server's structure: it reads the handshake with blocking
recv in its only thread (a silent peer stalls it forever), waits for the
session child with join() (a vanished client keeps the core busy until the
running call returns), and raises out of its loop when a child exits
non-zero (a segfaulting kernel ends the service).

The child tells the loop its effective thread mode over a pipe (one line
per change, edge_server.session.ipc), so STATUS and the session-end line name
the modes the client really used, not only the default; its last line says
it is exiting, so the next session need not wait for the kernel to tear the
old process down.

Turnover between sessions is on the critical path of every MetaSchedule
trial, so the next session is prepared the moment the previous one is over
(its client closed, or its child said its last word), never while a client
is in a session: back in the tracker's free queue, and a spare process
forked that builds TVM's pool and pins the default mode before the next
client arrives.

Fork safety: the listener imports TVM's runtime library but never runs
parallel TVM code, so it has no thread pool and forking it is safe. Each
child gets its own process group (so a timeout kills it and everything it
started) and PR_SET_PDEATHSIG (so it cannot outlive a SIGKILLed daemon).
"""
import ctypes
import dataclasses
import errno
import gc
import json
import logging
import os
import select
import signal
import socket
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

from edge_server.daemon.config import Config, ConfigError, check_default_mode
from edge_server.daemon.measure_config import after_session, board_conditions
from edge_server.daemon.handshake import (ClientHello, HandshakeError, HandshakeReader,
                                   SessionRequest, match, mismatch_reply, success_reply)
from edge_server.session.ipc import ModeReporter, ModeReportReader
from edge_server.daemon.notify import Notifier
from edge_server.daemon.tracker import TrackerLink
from edge_server.daemon.workroot import WorkRoot, remove_tree

log = logging.getLogger("edge_server.daemon.server")

POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)
_HUP = select.POLLHUP | select.POLLERR | POLLRDHUP

LISTEN_BACKLOG = 16
MAX_PENDING = 64          # handshakes in progress; beyond this the oldest is closed
MAX_PARKED = 16           # complete handshakes waiting for the running session to end
MAX_ACCEPT_PER_TURN = 32
ACCEPT_PAUSE = 1.0        # s without accept() after EMFILE, so the loop does not spin
VANISH_GRACE = 1.0        # s a child may take to notice its client's close by itself
MAX_POLL_WAIT = 1.0       # s; the loop looks at the clock at least this often
CHILD_FAILED = 70         # exit code of a child that failed before serving (EX_SOFTWARE)
MAX_MODES_LOGGED = 8      # distinct thread modes a session-end line names
STOP_CLEANUP_SECONDS = 5.0  # asked of systemd on top of --grace when stopping mid-session
SPARE_PREPARE = b"prepare"  # daemon -> spare: set up now, no client is in a session

_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


class ServerError(RuntimeError):
    """The daemon cannot start; one line naming the action, the address and the OS error."""


@dataclass
class _Peer:
    """An accepted connection before its session: handshake, then maybe parked."""
    conn: socket.socket
    peer: str
    deadline: float
    reader: HandshakeReader
    hello: Optional[ClientHello] = None
    closed: bool = False


@dataclass
class _Session:
    pid: int
    conn: socket.socket
    peer: str
    work_dir: str
    mode: str
    started: float
    timeout: Optional[float]
    deadline: Optional[float]
    client_gone_at: Optional[float] = None
    kill_reason: Optional[str] = None
    reports: Optional[ModeReportReader] = None   # the child's effective-mode pipe
    modes_used: List[str] = dataclasses.field(default_factory=list)
    modes_unlisted: int = 0       # distinct modes beyond MAX_MODES_LOGGED
    bad_reports: int = 0          # garbled lines on the mode pipe
    end_code: Optional[int] = None   # the exit code the child announced as its last word


@dataclass
class _Spare:
    """A forked child that has set up a session and waits for its client's socket."""
    pid: int
    channel: socket.socket
    born: float
    reports: ModeReportReader
    told: bool = False            # told to prepare (only while no client is in a session)


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


def _set_pdeathsig() -> None:
    """Have the kernel SIGKILL this (child) process when the daemon dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _set_child_subreaper() -> None:
    """Adopt orphaned grandchildren (a compiler a session started), so we reap them."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _close(sock: Optional[socket.socket]) -> None:
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


def _peer_text(addr) -> str:
    host, port = addr[0], addr[1]
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def _run_session(conn, ctx) -> int:
    from edge_server.session.child import run_session
    return run_session(conn, ctx)


class Server:
    """Lifecycle of one daemon: bind, register, serve sessions one at a time, stop."""

    def __init__(self, config: Config, topology: dict, default_mode: str,
                 notifier: Optional[Notifier] = None,
                 probe: Optional[Callable[[Optional[str]], dict]] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.topology = topology
        self.default_mode = default_mode
        self._notifier = notifier or Notifier.from_env()
        self._probe = probe
        self._clock = clock
        self._pid = os.getpid()
        self._work = WorkRoot(config.work_root)
        self._listen: Optional[socket.socket] = None
        self.port: Optional[int] = None
        self._link: Optional[TrackerLink] = None
        self._pending: List[_Peer] = []
        self._parked: List[_Peer] = []
        self._session: Optional[_Session] = None
        self._finishing: Dict[int, _Session] = {}   # over, SIGKILLed, not reaped yet
        self._spare: Optional[_Spare] = None
        self._spare_failures = 0
        self._spare_retry_at = 0.0
        self._retired: set = set()
        self._wake_r = self._wake_w = -1
        self._signals: Dict[int, int] = {}
        self._stopping = False
        self._stop_deadline: Optional[float] = None
        self._accept_paused_until = 0.0
        self._next_ping: Optional[float] = None
        self._status_text: Optional[str] = None
        self.ok = 0
        self.failed = 0
        self.refused = 0

    # ---- lifecycle ---------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code (0 after a clean stop)."""
        self._install_signals()
        self._status("starting")
        for path in self._work.open():
            log.info("removed stale work dir %s (its daemon died without cleaning up)", path)
        self._bind()
        _set_child_subreaper()
        from edge_server.session.child import preload
        preload()
        # Everything imported so far lives as long as the daemon: keep the collector
        # off those pages, so forked children do not copy them on first touch.
        gc.freeze()
        self._notifier.ready()
        interval = self._notifier.watchdog_interval()
        if interval:
            self._notifier.ping_watchdog()
            self._next_ping = self._clock() + interval
        if self.config.tracker:
            self._link = TrackerLink(self.config.tracker, self.config.key, self.port,
                                     self._report_addr(), self._edge_info(),
                                     clock=self._clock, on_change=self._update_status)
            self._link.set_idle(True)
            self._link.tick(self._clock())
        self._update_status()
        try:
            while not (self._stopping and self._session is None):
                self._turn()
        finally:
            self._shutdown()
        return 0

    def _bind(self) -> None:
        host = self.config.host
        try:
            family = socket.getaddrinfo(host, self.config.port, 0, socket.SOCK_STREAM,
                                        socket.IPPROTO_TCP, socket.AI_PASSIVE)[0][0]
        except OSError as err:
            raise ServerError("cannot listen on --host %s: %s" % (host, err)) from None
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for port in range(self.config.port, self.config.port_end):
            try:
                sock.bind((host, port))
            except OSError as err:
                if err.errno == errno.EADDRINUSE:
                    continue
                sock.close()
                raise ServerError("cannot bind %s:%d: %s" % (host, port, err.strerror)) from None
            self.port = port
            break
        else:
            sock.close()
            raise ServerError("cannot bind to any port in [%d, %d) on %s: all in use; "
                              "pass a free range with --port/--port-end"
                              % (self.config.port, self.config.port_end, host))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
        self._listen = sock
        log.info("listening on %s:%d (key %s, default mode %s, work root %s)", host, self.port,
                 self.config.key or "''", self.default_mode, self._work.own_dir)

    def _report_addr(self) -> Optional[str]:
        """The address the tracker gives clients; None lets the tracker use what it sees."""
        if self.config.custom_addr:
            return self.config.custom_addr
        return None if self.config.host in _WILDCARDS else self.config.host

    def _edge_info(self) -> dict:
        """The capabilities the tracker shows under "edge": the topology plus our default."""
        info = dict(self.topology)
        info["default_mode"] = self.default_mode
        info["conditions"] = board_conditions(self.config.measure.root, self.topology)
        return info

    def _shutdown(self) -> None:
        if self._link is not None:
            self._link.close()
        _close(self._listen)
        for peer in self._pending + self._parked:
            _close(peer.conn)
        self._pending, self._parked = [], []
        self._retire(self._spare)
        for pid, s in list(self._finishing.items()):
            try:
                _, status = os.waitpid(pid, 0)   # SIGKILLed: returns at once
            except ChildProcessError:
                continue
            self._ended(s, status)
        for pid in list(self._retired):
            try:
                os.waitpid(pid, 0)          # SIGKILLed: returns at once
            except ChildProcessError:
                pass
        self._retired.clear()
        self._reap_strays()
        self._work.close()
        signal.set_wakeup_fd(-1)
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        log.info("stopped: %d sessions ok, %d failed", self.ok, self.failed)

    # ---- signals -----------------------------------------------------------------
    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        """Only count it; the loop acts on it (signal handlers only set flags)."""
        self._signals[signum] = self._signals.get(signum, 0) + 1

    def _take_signals(self) -> None:
        try:
            while os.read(self._wake_r, 512):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        signals, self._signals = self._signals, {}
        if signals.get(signal.SIGTERM) or signals.get(signal.SIGINT):
            name = "SIGTERM" if signals.get(signal.SIGTERM) else "SIGINT"
            self._begin_stop(name)
        if signals.get(signal.SIGHUP) and not self._stopping:
            self._reload()

    def _begin_stop(self, name: str) -> None:
        now = self._clock()
        if self._stopping:
            log.warning("%s again: ending the running session now", name)
            self._stop_deadline = now
            return
        self._stopping = True
        self._stop_deadline = now + self.config.grace
        self._notifier.stopping()
        if self._session is not None:
            # systemd's TimeoutStopSec may be shorter than our grace: ask for the grace,
            # plus time to kill the session and clean up after it.
            self._notifier.extend_timeout(self.config.grace + STOP_CLEANUP_SECONDS)
        _close(self._listen)
        self._listen = None
        for peer in self._pending + self._parked:
            _close(peer.conn)
        self._pending, self._parked = [], []
        if self._link is not None:
            self._link.close()
        self._retire(self._spare)
        if self._session is not None:
            log.info("%s: stopping; the session of %s may finish within %gs", name,
                     self._session.peer, self.config.grace)
        else:
            log.info("%s: stopping", name)
        self._update_status()

    def _reload(self) -> None:
        """SIGHUP: re-probe the topology, tell the tracker, retry it at once if it was down."""
        self._notifier.reloading()
        try:
            topology = self._probe(self.config.root) if self._probe else self.topology
            mode = check_default_mode(self.config, topology)
        except ConfigError as err:
            log.error("SIGHUP: the re-probed board cannot meet the default mode (%s); "
                      "keeping the previous topology", err)
        except Exception as err:  # a probe bug must not end the daemon
            log.error("SIGHUP: re-probing the topology failed: %s; keeping the previous one", err)
        else:
            self.topology, self.default_mode = topology, mode
            self._retire(self._spare)       # it was set up for the old topology
            log.info("SIGHUP: re-probed the topology: %d cpus, classes %s; default mode %s",
                     len(topology.get("cpus", [])),
                     ",".join(c.get("name", "?") for c in topology.get("classes", [])), mode)
            if self._link is not None:
                self._link.update_edge(self._edge_info())
        if self._link is not None:
            self._link.retry_now()
        self._notifier.ready()
        self._update_status()

    # ---- one turn of the loop ------------------------------------------------------
    def _turn(self) -> None:
        handlers = {}
        poller = select.poll()

        def watch(fd, mask, handler):
            poller.register(fd, mask)
            handlers[fd] = handler

        watch(self._wake_r, select.POLLIN, lambda mask: None)
        now = self._clock()
        if self._listen is not None and self._session is None and now >= self._accept_paused_until:
            watch(self._listen.fileno(), select.POLLIN, lambda mask: self._accept())
        for peer in self._pending:
            watch(peer.conn.fileno(), select.POLLIN, lambda mask, p=peer: self._read_handshake(p))
        for peer in self._parked:
            watch(peer.conn.fileno(), POLLRDHUP, lambda mask, p=peer: self._parked_gone(p))
        s = self._session
        if s is not None and s.client_gone_at is None and s.kill_reason is None:
            watch(s.conn.fileno(), POLLRDHUP, lambda mask, s=s: self._client_gone(s))
        if s is not None and s.reports is not None:
            watch(s.reports.fd, select.POLLIN, lambda mask, s=s: self._read_reports(s))
        link = self._link
        if link is not None and link.fileno() is not None:
            mask = select.POLLIN | (select.POLLOUT if link.wants_write() else 0)
            watch(link.fileno(), mask, lambda mask, link=link: link.on_events(
                bool(mask & select.POLLIN), bool(mask & select.POLLOUT),
                bool(mask & (select.POLLERR | select.POLLHUP))))
        wait = self._wait_time(now)
        try:
            events = poller.poll(int(wait * 1000) + 1)
        except InterruptedError:
            events = []
        for fd, mask in events:
            handlers[fd](mask)
        self._take_signals()
        self._reap()
        now = self._clock()
        self._check_deadlines(now)
        if self._link is not None:
            self._link.tick(now)
        self._ensure_spare(now)
        if self._next_ping is not None and now >= self._next_ping:
            self._notifier.ping_watchdog()
            self._next_ping = now + self._notifier.watchdog_interval()

    def _wait_time(self, now: float) -> float:
        times = [now + MAX_POLL_WAIT]
        if self._next_ping is not None:
            times.append(self._next_ping)
        if self._link is not None and self._link.next_deadline() is not None:
            times.append(self._link.next_deadline())
        times.extend(p.deadline for p in self._pending)
        s = self._session
        if s is not None and s.kill_reason is None:
            if s.deadline is not None:
                times.append(s.deadline)
            if s.client_gone_at is not None:
                times.append(s.client_gone_at + VANISH_GRACE)
            if self._stop_deadline is not None:
                times.append(self._stop_deadline)
        if self._spare is None and self._spare_retry_at > now:
            times.append(self._spare_retry_at)
        if self._listen is not None and self._accept_paused_until > now:
            times.append(self._accept_paused_until)
        return max(0.0, min(times) - now)

    # ---- new connections -----------------------------------------------------------
    def _accept(self) -> None:
        for _ in range(MAX_ACCEPT_PER_TURN):
            try:
                conn, addr = self._listen.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                log.error("accept on port %d failed: %s; pausing accept for %.0fs",
                          self.port, err.strerror, ACCEPT_PAUSE)
                self._accept_paused_until = self._clock() + ACCEPT_PAUSE
                return
            self._admit(conn, _peer_text(addr), addr[0])
            if self._session is not None:
                return          # the rest wait in the backlog, as with the stock server

    def _admit(self, conn: socket.socket, peer: str, ip: str) -> None:
        if not self.config.allows(ip):
            self.refused += 1
            log.warning("refused connection from %s: not in --allow %s", peer,
                        " ".join(str(n) for n in self.config.allow), extra={"PEER": peer})
            _close(conn)
            return
        conn.setblocking(False)
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        new = _Peer(conn, peer, self._clock() + self.config.handshake_timeout, HandshakeReader())
        self._pending.append(new)
        if len(self._pending) > MAX_PENDING:
            self._drop(self._pending[0], "too many handshakes in progress (%d); closing the "
                       "oldest" % MAX_PENDING)
        log.debug("accepted %s", peer, extra={"PEER": peer})
        self._read_handshake(new)   # usually already here: no extra poll turn

    def _drop(self, peer: _Peer, why: str) -> None:
        peer.closed = True
        _close(peer.conn)
        if peer in self._pending:
            self._pending.remove(peer)
        if peer in self._parked:
            self._parked.remove(peer)
        self.refused += 1
        log.warning("closed %s: %s", peer.peer, why, extra={"PEER": peer.peer})

    def _read_handshake(self, peer: _Peer) -> None:
        """Read what has arrived (at most the handshake's own bytes); act when complete."""
        hello = None
        while hello is None and not peer.closed:
            try:
                data = peer.conn.recv(peer.reader.want())
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                self._drop(peer, "handshake read failed: %s" % err.strerror)
                return
            if not data:
                self._drop(peer, "closed the connection after %d bytes of handshake"
                           % peer.reader.received)
                return
            try:
                hello = peer.reader.feed(data)
            except HandshakeError as err:
                self._drop(peer, "not a TVM RPC handshake: %s" % err)
                return
        if hello is None:
            return
        self._pending.remove(peer)
        peer.hello = hello
        if self._session is not None:
            if len(self._parked) >= MAX_PARKED:
                self._drop(peer, "busy, and %d clients already wait" % MAX_PARKED)
            else:
                self._parked.append(peer)   # answered when the running session ends
            return
        self._answer(peer)

    def _parked_gone(self, peer: _Peer) -> None:
        if not peer.closed:
            self._drop(peer, "went away while waiting for the running session to end")

    def _expected_key(self) -> Optional[str]:
        if self._link is not None:
            return self._link.matchkey
        return self.config.key

    def _answer(self, peer: _Peer) -> None:
        """Match the client's key, reply, and start the session if it is ours."""
        expected = self._expected_key()
        request = match(peer.hello, expected) if expected is not None else None
        if request is None:
            try:
                peer.conn.send(mismatch_reply())
            except OSError:
                pass
            self._drop(peer, "key %.80r does not match this server's (key %s%s)"
                       % (peer.hello.key, self.config.key,
                          ", matchkey from the tracker" if self._link else ""))
            return
        try:
            reply = success_reply("server:" + self.config.key)
            if peer.conn.send(reply) != len(reply):
                raise OSError(errno.EAGAIN, "short write of the handshake reply")
        except OSError as err:
            self._drop(peer, "handshake reply failed: %s" % err.strerror)
            return
        if request.ignored_options:
            log.info("session %s: ignoring unknown key options %s", peer.peer,
                     " ".join(request.ignored_options), extra={"PEER": peer.peer})
        self._start_session(peer, request)

    # ---- sessions ------------------------------------------------------------------
    def _session_timeout(self, request: SessionRequest) -> Optional[float]:
        cap = self.config.session_timeout_cap
        if request.timeout and cap:
            return min(request.timeout, cap)
        return request.timeout or cap

    def _context(self, work_dir: str, peer: str):
        from edge_server.session.child import SessionContext
        return SessionContext(topology=self.topology, default_mode=self.default_mode,
                              work_dir=work_dir, peer=peer,
                              load_library=self.config.load_library,
                              max_upload_bytes=self.config.max_upload_bytes,
                              max_disk_bytes=self.config.max_disk_bytes,
                              fixture_root=self.config.root is not None,
                              measure=self.config.measure)

    def _start_session(self, peer: _Peer, request: SessionRequest) -> None:
        try:
            work_dir = self._work.new_session_dir()
        except OSError as err:
            self._drop(peer, "cannot create a work dir in %s: %s" % (self._work.own_dir,
                                                                    err.strerror))
            self.failed += 1
            return
        ctx = self._context(work_dir, peer.peer)
        peer.conn.setblocking(True)
        spare = self._hand_to_spare(peer.conn, ctx)
        how = "prepared in advance"
        if spare is not None:
            pid, reports = spare.pid, spare.reports
        else:
            how = "forked"
            try:
                pid, reports = self._fork_session(peer.conn, ctx)
            except OSError as err:
                remove_tree(work_dir)
                self.failed += 1
                self._drop(peer, "fork failed: %s" % err.strerror)
                return
        now = self._clock()
        timeout = self._session_timeout(request)
        self._session = _Session(pid, peer.conn, peer.peer, work_dir, self.default_mode, now,
                                 timeout, now + timeout if timeout else None, reports=reports)
        if self._link is not None:
            self._link.session_started()
        log.info("session %s: started (pid %d %s, default mode %s, %s)", peer.peer, pid, how,
                 self.default_mode, "timeout %gs" % timeout if timeout else "no timeout",
                 extra={"PEER": peer.peer, "SESSION_PID": pid, "THREAD_MODE": self.default_mode})
        self._update_status()

    def _fork_session(self, conn: socket.socket, ctx):
        """Fork a child that sets up and serves the session now: (pid, its mode reports)."""
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        ctx = dataclasses.replace(ctx, mode_report_fd=write_end)
        try:
            pid = self._fork(lambda: _run_session(conn, ctx), keep=conn, close=(read_end,),
                             report_fd=write_end)
        except OSError:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        return pid, ModeReportReader(read_end)

    # ---- the spare: the next session's process, forked and set up while idle ----------------
    def _ensure_spare(self, now: float) -> None:
        """Have the next session's process ready before its client comes, so the client
        waits neither for fork (a few ms: the daemon's page tables) nor for TVM's pool
        and the default pinning (a few ms more). Two steps, because a client in a
        session must have the cores to itself while it measures: the fork may happen
        any time, and happens right after a session started (while its client is still
        connecting); the spare prepares only when told, which is when no client is in
        a session (idle, or the running one is over)."""
        if self._stopping:
            return
        if self._spare is None:
            if now < self._spare_retry_at:
                return
            self._fork_spare(now)
        spare, s = self._spare, self._session
        if spare is not None and not spare.told and (s is None or s.client_gone_at is not None):
            try:
                spare.channel.send(SPARE_PREPARE, socket.MSG_DONTWAIT)
            except OSError as err:   # it died: the reaper deals with it
                log.debug("telling spare %d to prepare failed: %s", spare.pid, err)
            spare.told = True

    def _fork_spare(self, now: float) -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        template = dataclasses.replace(self._context("", "(not connected yet)"),
                                       mode_report_fd=write_end)
        try:
            pid = self._fork(lambda: self._spare_main(child_end, template), keep=child_end,
                             close=(read_end,), report_fd=write_end)
        except OSError as err:
            log.warning("forking a spare session process failed: %s; sessions fork on demand",
                        err.strerror)
            self._spare_retry_at = now + 5.0
            _close(parent_end)
            os.close(read_end)
            return
        finally:
            _close(child_end)
            os.close(write_end)
        self._spare = _Spare(pid, parent_end, now, ModeReportReader(read_end))

    def _spare_main(self, channel: socket.socket, template) -> int:
        """In the spare: wait; set up what needs no client when told to; serve the
        client whose socket arrives (setting up then, if not told before)."""
        from edge_server.session import child as session_mod
        prepared = None
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(channel, 65536, 1)
            except OSError:
                return 0
            if fds:
                break
            if not msg:
                return 0                      # retired by the daemon
            if msg == SPARE_PREPARE and prepared is None:
                prepared = session_mod.prepare_session(template)
        info = json.loads(msg.decode("utf-8"))
        conn = socket.socket(fileno=fds[0])
        channel.close()
        ctx = dataclasses.replace(template, work_dir=info["work_dir"], peer=info["peer"])
        if prepared is not None:
            return prepared.serve(conn, ctx)
        return session_mod.run_session(conn, ctx)

    def _hand_to_spare(self, conn: socket.socket, ctx) -> Optional[_Spare]:
        """Pass the client's socket to the spare; the spare, or None to fork instead."""
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        msg = json.dumps({"work_dir": ctx.work_dir, "peer": ctx.peer}).encode("utf-8")
        try:
            spare.channel.settimeout(1.0)
            socket.send_fds(spare.channel, [msg], [conn.fileno()])
        except OSError as err:
            log.warning("handing %s to the spare session process %d failed: %s; forking one",
                        ctx.peer, spare.pid, err.strerror or err)
            self._retire(spare)
            return None
        _close(spare.channel)
        self._spare_failures = 0
        return spare

    def _retire(self, spare: Optional["_Spare"]) -> None:
        """End a spare that must not serve (new topology, stopping, broken channel)."""
        if spare is None:
            return
        if spare is self._spare:
            self._spare = None
        _close(spare.channel)
        spare.reports.close()
        _killpg(spare.pid)
        self._retired.add(spare.pid)

    def _spare_died(self, status: int) -> None:
        spare, self._spare = self._spare, None
        _close(spare.channel)
        spare.reports.close()
        _killpg(spare.pid)
        self._spare_failures += 1
        delay = min(30.0, 0.5 * 2 ** self._spare_failures)
        self._spare_retry_at = self._clock() + delay
        log.warning("spare session process %d died before serving (%s); next one in %.1fs",
                    spare.pid, describe_status(status), delay)

    # ---- forked children ------------------------------------------------------------------
    def _fork(self, body: Callable[[], int], keep: socket.socket, close=(),
              report_fd: Optional[int] = None) -> int:
        """Fork a child that runs body() detached from the daemon's state; its pid.
        `close`: more of the daemon's fds the child must not hold; `report_fd`: its
        mode pipe, for its last word (see modereport)."""
        pid = os.fork()
        if pid == 0:
            self._child(body, keep, close, report_fd)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass   # the child did it first, or already exited
        return pid

    def _child(self, body: Callable[[], int], keep: socket.socket, close=(),
               report_fd: Optional[int] = None) -> None:
        """In a forked child: own process group, die with the daemon, drop the daemon's
        sockets and signal handlers, run body(), _exit. Never returns."""
        code = CHILD_FAILED
        try:
            os.setpgid(0, 0)
            _set_pdeathsig()
            if os.getppid() != self._pid:
                os._exit(CHILD_FAILED)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            _close(self._listen)
            if self._link is not None and self._link.fileno() is not None:
                os.close(self._link.fileno())  # not sock.close(): leave the parent's link alone
            for peer in self._pending + self._parked:
                if peer.conn is not keep:
                    _close(peer.conn)
            if self._spare is not None and self._spare.channel is not keep:
                _close(self._spare.channel)
            if self._session is not None and self._session.conn is not keep:
                _close(self._session.conn)    # a spare forked while a session ends
            for fd in self._report_fds() + list(close):
                os.close(fd)
            self._work.close_in_child()
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

    def _report_fds(self) -> List[int]:
        readers = [x.reports for x in (self._spare, self._session) if x is not None]
        return [r.fd for r in readers if r is not None and r.fd >= 0]

    def _read_reports(self, s: _Session) -> None:
        """Take the modes the session child reported; a garbled report is logged
        once per batch and ignored, the pipe's end just stops the watching."""
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
            self._served_to_end(s)
        if reader.eof and s.reports is not None:
            reader.close()
            s.reports = None
        if not modes:
            return
        for mode in modes:
            if mode in s.modes_used:
                continue
            if len(s.modes_used) < MAX_MODES_LOGGED:
                s.modes_used.append(mode)
            else:
                s.modes_unlisted += 1
        if modes[-1] != s.mode:
            s.mode = modes[-1]
            self._update_status()

    def _served_to_end(self, s: _Session) -> None:
        """The child's last word: ServerLoop returned and it exits now. The session is
        over, so the slot is freed at once instead of after the kernel has torn the
        process down (several ms with TVM loaded): SIGKILL its group first, so that
        nothing of it, nor anything it started, runs next to the next session. It is
        logged and counted when reaped, with the exit code it announced."""
        if s is not self._session or s.kill_reason is not None:
            return
        _killpg(s.pid)
        self._client_gone(s)
        if s.reports is not None:
            s.reports.close()
            s.reports = None
        self._finishing[s.pid] = s
        self._release(s)

    def _release(self, s: _Session) -> None:
        """Free the session slot: back to idle, the next client may come in."""
        _close(s.conn)
        if self._session is s:
            self._session = None
            if self._link is not None and not self._stopping:
                self._link.set_idle(True)   # first: the next client waits for this PUT
        self._update_status()
        self._serve_parked()

    def _client_gone(self, s: _Session) -> None:
        """The client closed: the session is over, whatever its child still does. Get
        the next one going while the child finishes: back in the tracker's free queue
        now, and the spare told to prepare. The next client is still only accepted
        once this child has said its last word or been reaped (and its process group
        SIGKILLed), so two sessions never run at once."""
        if s.client_gone_at is not None:
            return
        now = s.client_gone_at = self._clock()
        log.debug("session %s: client closed its connection", s.peer, extra={"PEER": s.peer})
        if self._link is not None and not self._stopping:
            self._link.set_idle(True)
        self._ensure_spare(now)

    def _check_deadlines(self, now: float) -> None:
        for peer in list(self._pending):
            if now >= peer.deadline:
                self._drop(peer, "no complete handshake within %gs (got %d bytes)"
                           % (self.config.handshake_timeout, peer.reader.received))
        s = self._session
        if s is None or s.kill_reason is not None:
            return
        if s.deadline is not None and now >= s.deadline:
            self._kill(s, "session timeout (%gs) expired" % s.timeout)
        elif s.client_gone_at is not None and now >= s.client_gone_at + VANISH_GRACE:
            self._kill(s, "client went away")
        elif self._stopping and now >= self._stop_deadline:
            self._kill(s, "daemon stopping, grace of %gs over" % self.config.grace)

    def _kill(self, s: _Session, reason: str) -> None:
        """SIGKILL the session's whole process group; the reaper does the rest."""
        s.kill_reason = reason
        log.info("session %s: %s; killing process group %d", s.peer, reason, s.pid,
                 extra={"PEER": s.peer, "SESSION_PID": s.pid})
        _killpg(s.pid)

    def _reap(self) -> None:
        s = self._session
        if s is not None:
            try:
                info = os.waitid(os.P_PID, s.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                info = None
            if info is not None:
                _killpg(s.pid)  # whatever it started dies with it (the zombie holds the pgid)
                _, status = os.waitpid(s.pid, 0)
                self._ended(s, status)
        self._reap_strays()

    def _reap_strays(self) -> None:
        """Orphans we adopted as subreaper (and a session child in a race)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self._session is not None and pid == self._session.pid:
                self._ended(self._session, status)
            elif pid in self._finishing:
                self._ended(self._finishing[pid], status)
            elif self._spare is not None and pid == self._spare.pid:
                self._spare_died(status)
            elif pid in self._retired:
                self._retired.discard(pid)
            else:
                log.info("reaped orphan process %d (%s)", pid, describe_status(status))

    def _ended(self, s: _Session, status: int) -> None:
        after_session(self.config.measure, s.pid)   # clocks it left locked, however it ended
        if s.reports is not None:         # what the child said before it went
            self._read_reports(s)
        if s.reports is not None:         # a grandchild still holds the pipe, or a flood
            s.reports.close()
            s.reports = None
        ending = self._ending(s, status)
        elapsed = self._clock() - s.started
        good = ending == "exit 0" and s.kill_reason is None
        if s.kill_reason and s.kill_reason.startswith("session timeout"):
            self._tell_timeout(s)
        self._finishing.pop(s.pid, None)
        if self._session is s:
            _close(s.conn)
            self._session = None
            if self._link is not None and not self._stopping:
                self._link.set_idle(True)   # first: the next client waits for this PUT
        leftover = remove_tree(s.work_dir)
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
            "session %s: ended, %s after %.1fs in %s %s%s%s%s", s.peer, ending, elapsed,
            "modes" if len(modes) > 1 else "mode", ", ".join(modes), more, why,
            "; work dir left behind: %s" % leftover if leftover else "", extra=extra)
        self._update_status()
        self._serve_parked()

    @staticmethod
    def _ending(s: _Session, status: int) -> str:
        """How the child ended. One that announced its exit code and was SIGKILLed by
        us on the way out (_served_to_end) ended with that code."""
        if (s.end_code is not None and s.kill_reason is None and os.WIFSIGNALED(status)
                and os.WTERMSIG(status) == signal.SIGKILL):
            return "exit %d" % s.end_code
        return describe_status(status)

    def _tell_timeout(self, s: _Session) -> None:
        """What the stock server tells a client whose session timed out, as an RPC error."""
        try:
            from tvm.rpc import _ffi_api
            s.conn.setblocking(False)
            _ffi_api.ReturnException(
                s.conn.fileno(),
                "RPCSessionTimeoutError: Your %gs session has expired, try to increase the "
                '"session_timeout" value.' % s.timeout)
        except Exception as err:  # the client may be gone; nothing to tell then
            log.debug("session %s: could not send the timeout error: %s", s.peer, err)

    def _serve_parked(self) -> None:
        while self._parked and self._session is None and not self._stopping:
            self._answer(self._parked.pop(0))

    # ---- status --------------------------------------------------------------------
    def status_line(self) -> str:
        parts = []
        s = self._session
        if self._stopping:
            parts.append("stopping" + (", waiting for the session of %s" % s.peer if s else ""))
        elif s is not None:
            parts.append("serving %s in mode %s" % (s.peer, s.mode))
        else:
            parts.append("idle on port %s" % self.port)
        link = self._link
        if link is not None and not self._stopping:
            if link.registered or (link.connected and s is not None):
                parts.append("registered as key %s at tracker %s" % (self.config.key, link.name))
            elif link.connected:
                parts.append("registering as key %s at tracker %s" % (self.config.key, link.name))
            elif link.attempts:
                parts.append("waiting for tracker %s (attempt %d, last error: %s)"
                             % (link.name, link.attempts, link.last_error))
            else:
                parts.append("connecting to tracker %s" % link.name)
        elif link is None:
            parts.append("direct connections with key %s" % (self.config.key or "''"))
        parts.append("sessions: %d ok, %d failed" % (self.ok, self.failed))
        return "; ".join(parts)

    def _status(self, text: str) -> None:
        if text != self._status_text:
            self._status_text = text
            self._notifier.status(text)

    def _update_status(self) -> None:
        self._status(self.status_line())

