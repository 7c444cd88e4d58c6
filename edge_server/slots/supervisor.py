"""The daemon of `edge-server --slots`: one slot server per slot, supervised.

It forks the slot servers one after another (each binds the first free port
of --port..--port-end, so they never race for one), waits until each is
listening, then tells systemd READY. From then on its loop only listens:
to the slot servers' pipes (status, busy, watchdog pings), to signals, and
to SIGCHLD. It forwards SIGTERM (each slot drains its session within
--grace), SIGINT and SIGHUP (each slot re-probes and retires its spare,
running sessions untouched) and restarts a slot server that dies, with
backoff, without touching the other slots.

systemd's watchdog is fed only while every slot server feeds the
supervisor: one hung slot loop is a hung daemon.
"""
import errno
import gc
import json
import logging
import os
import select
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from edge_common.cpulist import format_cpulist
from edge_common.topology import as_topology
from edge_server.daemon.notify import Notifier
from edge_server.daemon.forking import describe_status, fork_child, killpg, reap, wait_for
from edge_server.daemon.server import STOP_CLEANUP_SECONDS
from edge_server.daemon.signals import SignalFlags
from edge_server.slots.plan import SlotPlan

log = logging.getLogger("edge_server.slots.supervisor")

READY_TIMEOUT = 60.0          # s for a slot server to bind and say ready
RESTART_FIRST, RESTART_CAP = 0.5, 10.0
MAX_EVENT_BYTES = 64 * 1024   # read per slot per turn: a confused slot cannot hold the loop


@dataclass
class _Slot:
    index: int
    cpus: tuple
    pid: Optional[int] = None
    fd: int = -1                   # read end of its event pipe
    buf: bytearray = field(default_factory=bytearray)
    port: Optional[int] = None
    ready: bool = False
    busy: bool = False
    status: str = "starting"
    last_ping: float = 0.0
    failures: int = 0
    restart_at: Optional[float] = None
    exits: int = 0

    @property
    def label(self) -> str:
        return "slot %d (cpus %s)" % (self.index, format_cpulist(self.cpus))


class _SlotPrefix(logging.Filter):
    """In a slot server, every log line says which slot it is from."""

    def __init__(self, label: str):
        super().__init__()
        self.label = label

    def filter(self, record) -> bool:
        if not getattr(record, "_slot_prefixed", False):
            record.msg = "[%s] %s" % (self.label, record.msg)
            record._slot_prefixed = True
        return True


class SlotsSupervisor:
    def __init__(self, config, topology: dict, plan: SlotPlan,
                 probe: Optional[Callable[[Optional[str]], dict]] = None,
                 notifier: Optional[Notifier] = None, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.topology = topology
        self.plan = plan
        self._probe = probe
        self._notifier = notifier or Notifier.from_env()
        self._clock = clock
        self._slots = [_Slot(s.index, s.cpus) for s in plan.slots]
        self._signals = SignalFlags()
        self._stopping = False
        self._status_text: Optional[str] = None
        self._interval = self._notifier.watchdog_interval()
        self._next_ping: Optional[float] = None
        self._failed_start = False

    # ---- lifecycle --------------------------------------------------------------------------
    def run(self) -> int:
        self._signals.install()
        from edge_server.session.child import preload
        preload()
        gc.freeze()
        log.info("slots %s (%s): %s", self.plan.spec, self.plan.why, "; ".join(
            "slot %d cpus %s%s" % (s.index, format_cpulist(s.cpus),
                                   " slowdown %.1f%%" % (100 * self.plan.slowdowns[s.index])
                                   if self.plan.slowdowns.get(s.index) is not None else "")
            for s in self.plan.slots))
        self._status("starting %d slots" % len(self._slots))
        try:
            for slot in self._slots:
                self._start(slot)
                if not self._wait_ready(slot):
                    if not self._stopping:     # not a SIGTERM during the start
                        log.error("%s did not start; stopping the other slots", slot.label)
                        self._failed_start = True
                        self._begin_stop("startup failure")
                    break
            else:
                self._notifier.ready()
                if self._interval:
                    self._notifier.ping_watchdog()
                    self._next_ping = self._clock() + self._interval
            self._update_status()
            while not (self._stopping and all(s.pid is None for s in self._slots)):
                self._turn()
        finally:
            self._shutdown()
        return 1 if self._failed_start else 0

    def _shutdown(self) -> None:
        for slot in self._slots:
            if slot.pid is not None:
                killpg(slot.pid)
                wait_for(slot.pid)
                slot.pid = None
            _close_fd(slot.fd)
            slot.fd = -1
        self._signals.close()
        log.info("stopped all %d slots", len(self._slots))

    # ---- slot servers -----------------------------------------------------------------------
    def _start(self, slot: _Slot) -> None:
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)

        def inherited():
            return self._signals.forget_in_child() + [read_end] + \
                [s.fd for s in self._slots if s.fd >= 0]
        pid = fork_child(lambda: self._slot_main(slot, write_end), inherited, new_session=True)
        os.close(write_end)
        slot.pid, slot.fd, slot.buf = pid, read_end, bytearray()
        slot.ready, slot.busy, slot.port, slot.restart_at = False, False, None, None
        slot.status, slot.last_ping = "starting", self._clock()
        log.info("%s: slot server started (pid %d)", slot.label, pid)

    def _slot_main(self, slot: _Slot, fd: int) -> int:
        """In the forked slot server: detach from the supervisor's state, serve."""
        from edge_server.daemon.listener import ServerError
        from edge_server.daemon.workroot import WorkRootError
        from edge_server.slots.slot_server import SlotServer, SupervisorLink
        for handler in logging.getLogger().handlers:
            handler.addFilter(_SlotPrefix(slot.label))
        confine(server_cpus(slot.cpus, [s.cpus for s in self.plan.slots],
                            as_topology(self.topology).usable_cpus()))
        index = slot.index

        def probe(root):
            board = self._probe(root) if self._probe else self.topology
            return self.plan.topology(board, index)

        link = SupervisorLink(fd, index, self._interval)
        server = SlotServer(self.config, self.plan.topology(self.topology, index),
                            self.plan.default_modes[index], link=link, probe=probe)
        try:
            return server.run()
        except (ServerError, WorkRootError) as err:
            log.error("%s", err)
            return 1

    def _wait_ready(self, slot: _Slot) -> bool:
        deadline = self._clock() + READY_TIMEOUT
        while not slot.ready and self._clock() < deadline and slot.pid is not None:
            self._turn()
            if self._stopping:
                return False
        return slot.ready

    def _read_events(self, slot: _Slot) -> None:
        try:
            data = os.read(slot.fd, MAX_EVENT_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            log.warning("%s: reading its events failed: %s", slot.label, err.strerror)
            data = b""
        if not data:
            _close_fd(slot.fd)
            slot.fd = -1
            return
        slot.buf += data
        while b"\n" in slot.buf:
            line, _, rest = bytes(slot.buf).partition(b"\n")
            slot.buf = bytearray(rest)
            self._event(slot, line)
        if len(slot.buf) > MAX_EVENT_BYTES:
            slot.buf = bytearray()

    def _event(self, slot: _Slot, line: bytes) -> None:
        try:
            event = json.loads(line.decode("utf-8"))
            kind = event["ev"]
        except (ValueError, KeyError, TypeError):
            log.warning("%s: ignored a garbled event %r", slot.label, line[:80])
            return
        slot.last_ping = self._clock()
        if kind == "ready":
            slot.ready, slot.port, slot.failures = True, event.get("port"), 0
            log.info("%s: listening on port %s", slot.label, slot.port)
        elif kind == "status":
            slot.status, slot.busy = str(event.get("text", ""))[:400], bool(event.get("busy"))
        elif kind == "extend" and isinstance(event.get("seconds"), (int, float)):
            self._notifier.extend_timeout(max(0.001, float(event["seconds"])))
        self._update_status()

    def _reap(self) -> None:
        for pid, status in reap([s.pid for s in self._slots if s.pid is not None]):
            slot = next((s for s in self._slots if s.pid == pid), None)
            if slot is None:
                log.info("reaped orphan process %d (%s)", pid, describe_status(status))
                continue
            if slot.fd >= 0:
                self._read_events(slot)
            _close_fd(slot.fd)
            slot.fd, slot.pid, slot.busy, slot.ready = -1, None, False, False
            slot.exits += 1
            how = describe_status(status)
            if self._stopping:
                (log.info if how == "exit 0" else log.warning)("%s: stopped (%s)", slot.label, how)
                slot.status = "stopped (%s)" % how
            else:
                slot.failures += 1
                delay = min(RESTART_CAP, RESTART_FIRST * 2 ** (slot.failures - 1))
                slot.restart_at = self._clock() + delay
                slot.status = "restarting in %.1fs after %s" % (delay, how)
                log.warning("%s: slot server %d ended (%s); the other slots keep serving; "
                            "restarting it in %.1fs", slot.label, pid, how, delay)
            self._update_status()

    # ---- the loop ---------------------------------------------------------------------------
    def _turn(self) -> None:
        now = self._clock()
        fds = [self._signals.fileno()] + [s.fd for s in self._slots if s.fd >= 0]
        times = [now + 1.0]
        if self._next_ping is not None:
            times.append(self._next_ping)
        times += [s.restart_at for s in self._slots if s.restart_at is not None]
        wait = max(0.0, min(times) - now)
        try:
            readable, _, _ = select.select(fds, [], [], wait)
        except InterruptedError:
            readable = []
        for slot in self._slots:
            if slot.fd >= 0 and slot.fd in readable:
                self._read_events(slot)
        self._take_signals()
        self._reap()
        now = self._clock()
        for slot in self._slots:
            if slot.restart_at is not None and now >= slot.restart_at and not self._stopping:
                self._start(slot)
        if self._next_ping is not None and now >= self._next_ping:
            if self._healthy(now):
                self._notifier.ping_watchdog()
            else:
                log.warning("not feeding the watchdog: %s", self._unhealthy(now))
            self._next_ping = now + self._interval

    def _healthy(self, now: float) -> bool:
        return not self._unhealthy(now)

    def _unhealthy(self, now: float) -> str:
        """The slot servers that stopped feeding us while alive (hung loops)."""
        limit = 3 * (self._interval or 1.0)
        return ", ".join(s.label for s in self._slots
                         if s.pid is not None and now - s.last_ping > limit)

    # ---- signals ----------------------------------------------------------------------------
    def _take_signals(self) -> None:
        signals = self._signals.take()
        if signals.get(signal.SIGTERM) or signals.get(signal.SIGINT):
            self._begin_stop("SIGTERM" if signals.get(signal.SIGTERM) else "SIGINT")
        if signals.get(signal.SIGHUP) and not self._stopping:
            self._notifier.reloading()
            log.info("SIGHUP: every slot re-probes the board; running sessions go on")
            self._forward(signal.SIGHUP)
            self._notifier.ready()

    def _begin_stop(self, why: str) -> None:
        again = self._stopping
        self._stopping = True
        for slot in self._slots:
            slot.restart_at = None
        if not again:
            self._notifier.stopping()
            if any(s.busy for s in self._slots):
                self._notifier.extend_timeout(self.config.grace + STOP_CLEANUP_SECONDS)
            log.info("%s: stopping every slot; running sessions may finish within %gs", why,
                     self.config.grace)
        else:
            log.warning("%s again: every slot ends its session now", why)
        self._forward(signal.SIGTERM)
        self._update_status()

    def _forward(self, sig: int) -> None:
        for slot in self._slots:
            if slot.pid is not None:
                _kill(slot.pid, sig)

    # ---- status -----------------------------------------------------------------------------
    def status_line(self) -> str:
        busy = sum(1 for s in self._slots if s.busy)
        head = "%s%d slots (%s): %d busy, %d free" % (
            "stopping; " if self._stopping else "", len(self._slots), self.plan.spec, busy,
            sum(1 for s in self._slots if s.ready and not s.busy))
        return " | ".join([head] + ["%s: %s" % (s.label, s.status) for s in self._slots])

    def _status(self, text: str) -> None:
        if text != self._status_text:
            self._status_text = text
            self._notifier.status(text)

    def _update_status(self) -> None:
        self._status(self.status_line())


def server_cpus(mine, every_slot, usable) -> list:
    """Where a slot server may run: its slot's cores and the cores no slot
    measures on (`--slots cpus:0` on a 2-core board leaves cpu1 to the
    daemon's own work), never another slot's."""
    taken = {c for cpus in every_slot for c in cpus}
    return sorted(set(mine) | (set(usable) - taken))


def confine(cpus) -> bool:
    """Keep a slot server (and the sessions it forks) off other slots' cores.

    Its own work per session (accepting, the hand-off, forking the next spare,
    tearing down a crashed session) would otherwise land on any core, in the
    middle of another slot's measurement, where the verdict counts it as an
    intruder. False (with a warning) where the cores cannot be had, e.g. a
    --root fixture board with more cores than this machine."""
    try:
        os.sched_setaffinity(0, set(cpus))
    except OSError as err:
        log.warning("confining this slot server to cpus %s (sched_setaffinity): %s; its own "
                    "work may run on other slots' cores", format_cpulist(cpus),
                    err.strerror or err)
        return False
    return True


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _close_fd(fd: int) -> None:
    if fd >= 0:
        try:
            os.close(fd)
        except OSError as err:
            if err.errno != errno.EBADF:
                raise


def serve_slots(config, topology: dict, probe) -> int:
    """`edge-server --slots`: plan the slots, then supervise them; an exit code."""
    from edge_common.slots import SlotError
    from edge_server.slots.calibrate import CalibrationError
    from edge_server.slots.plan import plan_slots
    try:
        plan = plan_slots(config, topology)
    except (SlotError, CalibrationError) as err:
        print("edge-server: error: --slots %s: %s" % (config.slots, " ".join(str(err).split())),
              file=sys.stderr)
        return 2
    ports = config.port_end - config.port
    if ports < len(plan.slots):
        print("edge-server: error: --slots %s makes %d slots, each needs its own port, but "
              "--port %d --port-end %d gives %d; widen the range"
              % (config.slots, len(plan.slots), config.port, config.port_end, ports),
              file=sys.stderr)
        return 2
    return SlotsSupervisor(config, topology, plan, probe=probe).run()


