"""The daemon: wiring, and one loop that never blocks.

The loop owns everything that must keep working while a session runs for
minutes: the watchdog ping, the tracker registration, handshakes of new
peers (listener.py), the session's deadline, noticing that its client went
away, reaping children however they ended (supervisor.py), and signals
(signals.py). It waits in poll() with a timeout taken from the nearest
deadline, so none of these waits on another.

Why not the stock server's structure: it reads the handshake with blocking
recv in its only thread (a silent peer stalls it forever), waits for the
session child with join() (a vanished client keeps the core busy until the
running call returns), and raises out of its loop when a child exits
non-zero (a segfaulting kernel ends the service).

Fork safety: the listener imports TVM's runtime library but never runs
parallel TVM code, so it has no thread pool and forking it is safe; the
rules every child lives by are in forking.py.
"""
import gc
import logging
import math
import os
import select
import signal
import time
from typing import Callable, Optional

from edge_common.version import identity
from edge_server.daemon import forking
from edge_server.daemon.config import Config, ConfigError, check_default_mode
from edge_server.daemon.listener import Listener, Peer
from edge_server.daemon.measure_config import (at_stop, board_conditions, clock_keeper,
                                               resolved, restore_left_behind,
                                               sandbox_for_verdicts)
from edge_server.daemon.notify import Notifier
from edge_server.daemon.proxy import ProxyIntake
from edge_server.daemon.signals import SignalFlags
from edge_server.daemon.status import StatusBoard, status_line
from edge_server.daemon.supervisor import POLLRDHUP, ProcessOps, SlotEvents, Supervisor
from edge_server.daemon.tracker import TrackerRegistration
from edge_server.daemon.workroot import WorkRoot
from edge_server.session.sandbox import make_plan

log = logging.getLogger("edge_server.daemon.server")

MAX_POLL_WAIT = 1.0       # s; the loop looks at the clock at least this often
STOP_CLEANUP_SECONDS = 5.0  # asked of systemd on top of --grace when stopping mid-session

_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


class Server(SlotEvents):
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
        self.sandbox = sandbox_for_verdicts(
            make_plan(config.sandbox, config.session_limits, os.getpid(), config.allow_perf,
                      config.load_library), config)
        self._work = WorkRoot(config.work_root)
        self._signals = SignalFlags()
        self._status = StatusBoard(self._notifier.status)
        self._link: Optional[TrackerRegistration] = None
        self._proxy: Optional[ProxyIntake] = None     # --through-proxy: instead of listening
        self.listener = Listener(config, clock, busy=self._busy, on_ready=self._answer)
        self.clocks = clock_keeper(config)            # --lock-clocks, else None
        self.slot = Supervisor(config, self._work, self._context, ProcessOps(self._inherited),
                               self, clock, clocks=self.clocks)
        self._stopping = False
        self._next_ping: Optional[float] = None

    @property
    def port(self) -> Optional[int]:
        return self.listener.port

    @property
    def ok(self) -> int:
        return self.slot.ok

    @property
    def failed(self) -> int:
        return self.slot.failed

    @property
    def refused(self) -> int:
        return self.listener.refused

    # ---- lifecycle ---------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code (0 after a clean stop)."""
        self._signals.install()
        self._status.show("starting")
        self._start()
        try:
            while not (self._stopping and not self.slot.busy()):
                self._turn()
        finally:
            self._shutdown()
        return 0

    def _start(self) -> None:
        for path in self._work.open():
            log.info("removed stale work dir %s (its daemon died without cleaning up)", path)
        if self.clocks is not None:   # a restarted slot server: what its predecessor held
            restore_left_behind(self.config)
        if self.config.through_proxy:
            self._open_proxy()
        else:
            self.listener.open()
            log.info("listening on %s:%d (key %s, default mode %s, work root %s)",
                     self.config.host, self.port, self.config.key or "''", self.default_mode,
                     self._work.own_dir)
        forking.set_child_subreaper()
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
        if self.config.tracker and not self.config.through_proxy:
            self._link = TrackerRegistration(
                self.config.tracker, self.config.key, self.port, self._report_addr(),
                self._edge_info(), clock=self._clock, on_change=self._update_status)
            self._link.set_idle(True)
            self._link.tick(self._clock())
        self._update_status()

    def _open_proxy(self) -> None:
        """--through-proxy: sessions come from the proxy at --host:--port (proxy.py)."""
        self._proxy = ProxyIntake((self.config.host, self.config.port), self.config.key,
                                  self._clock, busy=self._busy, on_session=self._start_session)
        log.info("serving through the proxy at %s (key %s, default mode %s, work root %s)",
                 self._proxy.name, self.config.key, self.default_mode, self._work.own_dir)
        if self.config.tracker:
            log.warning("--tracker is ignored with --through-proxy, as by the stock server: "
                        "the proxy registers with the tracker (python -m tvm.exec.rpc_proxy "
                        "--tracker HOST:PORT)")

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
        info["sandbox"] = self.sandbox.info()
        info.update(identity())      # version and host name, for `edge-client list`
        return info

    def _context(self, work_dir: str, peer: str):
        """A session's settings: what the supervisor hands to every child it forks."""
        from edge_server.session.child import SessionContext
        return SessionContext(topology=self.topology, default_mode=self.default_mode,
                              work_dir=work_dir, peer=peer,
                              load_library=self.config.load_library,
                              max_upload_bytes=self.config.max_upload_bytes,
                              max_disk_bytes=self.config.max_disk_bytes,
                              fixture_root=self.config.root is not None,
                              sandbox=self.sandbox,
                              measure=resolved(self.config))

    def _inherited(self, keep) -> list:
        """In a new child: reset the daemon's signal handling; every daemon fd to close."""
        out = self._signals.forget_in_child()
        out += self.listener.inherited(keep)
        if self._proxy is not None:
            out += [sock for sock in self._proxy.inherited() if sock is not keep]
        if self._link is not None and self._link.fileno() is not None:
            out.append(self._link.fileno())
        out += self.slot.inherited(keep)
        self._work.close_in_child()
        return out

    def _close_intake(self) -> None:
        """Take no more clients: listener and peers closed, off the tracker, no spare."""
        if self._link is not None:
            self._link.close()
        self.listener.close()
        if self._proxy is not None:
            self._proxy.close()
        self.slot.retire_spare()

    def _shutdown(self) -> None:
        """The one teardown, whatever ended the loop."""
        self._close_intake()
        self.slot.shutdown()
        self._reap()
        at_stop(self.config, self.clocks)     # clocks still held, or left by a dead daemon
        self._work.close()
        self._signals.close()
        log.info("stopped: %d sessions ok, %d failed", self.ok, self.failed)

    # ---- signals -----------------------------------------------------------------
    def _take_signals(self) -> None:
        signals = self._signals.take()
        if signals.get(signal.SIGTERM) or signals.get(signal.SIGINT):
            self._begin_stop("SIGTERM" if signals.get(signal.SIGTERM) else "SIGINT")
        if signals.get(signal.SIGUSR1):
            self._begin_drain()
        if signals.get(signal.SIGHUP) and not self._stopping:
            self._reload()

    def _begin_stop(self, name: str) -> None:
        now = self._clock()
        if self._stopping:
            log.warning("%s again: ending the running session now", name)
            self.slot.stop_deadline = now
            return
        self._stopping = True
        self._notifier.stopping()
        s = self.slot.session
        if s is not None:
            # systemd's TimeoutStopSec may be shorter than our grace: ask for the grace,
            # plus time to kill the session and clean up after it.
            self._notifier.extend_timeout(self.config.grace + STOP_CLEANUP_SECONDS)
        self._close_intake()
        self.slot.begin_stop(now + self.config.grace)
        if s is not None:
            log.info("%s: stopping; the session of %s may finish within %gs", name, s.peer,
                     self.config.grace)
        else:
            log.info("%s: stopping", name)
        self._update_status()

    def _begin_drain(self) -> None:
        """SIGUSR1 (drain, for upgrades): leave the tracker and stop accepting like a
        stop, but let the running session finish however long it takes (its own
        --session-timeout-cap still applies), then exit 0. A SIGTERM after it ends
        the session at once."""
        if self._stopping:
            log.info("SIGUSR1: already stopping")
            return
        self._begin_stop("SIGUSR1 (drain)")
        self.slot.stop_deadline = math.inf

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
            self.slot.retire_spare()       # it was set up for the old topology
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

        watch(self._signals.fileno(), select.POLLIN, lambda mask: None)
        now = self._clock()
        listener = self.listener
        if listener.accepting(now):
            watch(listener.sock.fileno(), select.POLLIN, lambda mask: listener.accept())
        for peer in listener.pending:
            watch(peer.conn.fileno(), select.POLLIN,
                  lambda mask, p=peer: listener.read_handshake(p))
        for peer in listener.parked:
            watch(peer.conn.fileno(), POLLRDHUP, lambda mask, p=peer: listener.parked_gone(p))
        for fd, mask, handler in self.slot.watches():
            watch(fd, mask, handler)
        for link in (self._link, self._proxy):   # outbound: tracker, proxy (--through-proxy)
            if link is not None and link.fileno() is not None:
                mask = select.POLLIN | (select.POLLOUT if link.wants_write() else 0)
                watch(link.fileno(), mask, lambda mask, link=link: link.on_events(
                    bool(mask & select.POLLIN), bool(mask & select.POLLOUT),
                    bool(mask & (select.POLLERR | select.POLLHUP))))
        try:
            events = poller.poll(int(self._wait_time(now) * 1000) + 1)
        except InterruptedError:
            events = []
        for fd, mask in events:
            handlers[fd](mask)
        self._take_signals()
        self._reap()
        now = self._clock()
        listener.check_deadlines(now)
        self.slot.check_deadlines(now)
        if self._link is not None:
            self._link.tick(now)
        if self._proxy is not None:
            self._proxy.tick(now)
        listener.serve_parked()
        self.slot.ensure_spare(now)
        if self._next_ping is not None and now >= self._next_ping:
            self._notifier.ping_watchdog()
            self._next_ping = now + self._notifier.watchdog_interval()

    def _wait_time(self, now: float) -> float:
        """Seconds until the nearest deadline of anything the loop owns."""
        times = [now + MAX_POLL_WAIT]
        if self._next_ping is not None:
            times.append(self._next_ping)
        if self._link is not None and self._link.next_deadline() is not None:
            times.append(self._link.next_deadline())
        if self._proxy is not None and self._proxy.next_deadline() is not None:
            times.append(self._proxy.next_deadline())
        times += self.listener.deadlines(now) + self.slot.deadlines(now)
        return max(0.0, min(times) - now)

    def _reap(self) -> None:
        for pid, status in forking.reap(self.slot.children):
            if not self.slot.child_exited(pid, status):
                log.info("reaped orphan process %d (%s)", pid, forking.describe_status(status))

    # ---- a client's turn ------------------------------------------------------------
    def _busy(self) -> bool:
        return self.slot.busy()

    def _answer(self, peer: Peer) -> None:
        """A complete handshake while the slot is free: reply, and start its session."""
        expected = self._link.matchkey if self._link is not None else self.config.key
        request = self.listener.answer(peer, expected, self._link is not None)
        if request is None:
            return
        why = self.slot.start(peer.conn, peer.peer, request)
        if why is not None:
            self.listener.drop(peer, why)

    def _start_session(self, conn, peer: str, request) -> None:
        """A client through the proxy: its session starts like an accepted one's."""
        why = self.slot.start(conn, peer, request)
        if why is not None:
            forking.close_quietly(conn)
            log.warning("closed %s: %s", peer, why, extra={"PEER": peer})

    # ---- what the slot tells us (SlotEvents) -----------------------------------------
    def client_left(self, slot: Supervisor) -> None:
        if self._link is not None and not self._stopping:
            self._link.set_idle(True)

    def slot_freed(self, slot: Supervisor) -> None:
        """The parked peers are answered by the loop (_turn), not from in here: the
        next session never starts from inside the reaper or a report handler."""
        if self._link is not None and not self._stopping:
            self._link.set_idle(True)   # first: the next client waits for this PUT
        self._update_status()

    def session_started(self, slot: Supervisor) -> None:
        if self._link is not None:
            self._link.session_started()

    def changed(self, slot: Supervisor) -> None:
        self._update_status()

    # ---- status --------------------------------------------------------------------
    def status_line(self) -> str:
        s = self.slot.session
        return status_line(stopping=self._stopping, serving=s.peer if s else None,
                           mode=s.mode if s else None, key=self.config.key,
                           port=self.port if self._proxy is None else "- (through proxy %s)"
                           % self._proxy.name,
                           registration=self._link, ok=self.ok, failed=self.failed,
                           sandbox=self.sandbox.describe())

    def _update_status(self) -> None:
        self._status.show(self.status_line())
