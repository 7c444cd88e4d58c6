"""The daemon's side of the systemd protocol, seen from systemd's seat.

A real `edge-server`, started with the command line deploy/edge-server.service
builds from deploy/edge-server.env, sends sd_notify datagrams to a Unix socket
this test owns, exactly where systemd would listen (NOTIFY_SOCKET). The socket
has SO_PASSCRED, so every datagram carries the sender's pid, as systemd sees
it to enforce NotifyAccess=main. Real stock tracker, real sessions, real kernels.
"""
import gc
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.support import daemon_kit as kit
from tests.support import procs

DEPLOY = procs.REPO / "deploy"
KEY = "notify-board"
SANDBOX_TAIL = re.compile(r"; sandbox: [^;]+$")


# ---- systemd's end of NOTIFY_SOCKET ---------------------------------------------------
class NotifySocket:
    """Records (arrival time, sender pid, "NAME=value") for every line of every datagram."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.1)
        self.messages = []
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        ucred = struct.calcsize("3i")
        while not self._stop:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(ucred))
            except socket.timeout:
                continue
            except OSError:
                return
            now = time.monotonic()
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[:ucred])[0]
            with self._lock:
                for line in data.decode().splitlines():
                    self.messages.append((now, pid, line))

    def all(self):
        with self._lock:
            return list(self.messages)

    def lines(self):
        """The lines, each STATUS without its constant '; sandbox: ...' tail
        (checked on its own in test_status_follows_registration_...)."""
        return [SANDBOX_TAIL.sub("", m) for _, _, m in self.all()]

    def statuses(self):
        return [m[len("STATUS="):] for m in self.lines() if m.startswith("STATUS=")]

    def pings(self, since=0.0, until=float("inf")):
        return [t for t, _, m in self.all() if m == "WATCHDOG=1" and since <= t < until]

    def senders(self):
        return {pid for _, pid, _ in self.all()}

    def wait(self, what, predicate, proc, timeout=60):
        return kit.wait_for(predicate, timeout, what, proc=proc)

    def wait_line(self, line, proc, timeout=60):
        return self.wait(line, lambda: line in self.lines(), proc, timeout)

    def wait_status(self, pattern, proc, timeout=60):
        regex = re.compile(pattern)
        return self.wait("STATUS matching %r (have %r)" % (pattern, self.statuses()[-3:]),
                         lambda: [s for s in self.statuses() if regex.search(s)], proc, timeout)

    def close(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def notify():
    # a short path: sun_path holds 108 bytes, pytest's tmp paths can be longer
    directory = tempfile.mkdtemp(prefix="notify-")
    sock = NotifySocket(os.path.join(directory, "notify"))
    yield sock
    sock.close()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    return kit.build_kernel(tmp_path_factory.mktemp("kernel"))


# ---- the daemon as the unit starts it ---------------------------------------------------
def unit_argv(tracker, key, extra_args):
    """ExecStart of deploy/edge-server.service, expanded the way systemd does it:
    ${VAR} is one argument, $VAR splits on whitespace."""
    unit = (DEPLOY / "edge-server.service").read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1)
    env = {"TRACKER": tracker, "KEY": key, "EXTRA_ARGS": extra_args}
    argv = []
    for word in shlex.split(exec_start)[1:]:
        whole = re.fullmatch(r"\$([A-Z_]+)", word)
        if whole:
            argv += env[whole.group(1)].split()
        else:
            argv.append(re.sub(r"\$\{([A-Z_]+)\}", lambda m: env[m.group(1)], word))
    return argv


def shipped_extra_args():
    settings = (DEPLOY / "edge-server.env").read_text()
    return re.search(r'^EXTRA_ARGS="?([^"\n]*)"?$', settings, re.M).group(1)


class Daemon:
    """edge-server with systemd's environment: NOTIFY_SOCKET, WATCHDOG_USEC,
    RUNTIME_DIRECTORY (its work root under the unit)."""

    def __init__(self, tmp_path, notify, tracker_port, grace=2.0, watchdog_usec=None,
                 extra_env=None):
        self.port = procs.free_port()
        self.runtime_dir = Path(tmp_path) / "run-edge-server"
        self.runtime_dir.mkdir(mode=0o700)
        # the shipped EXTRA_ARGS first, then what a test machine needs; later flags win
        extra = "%s --host %s --port %d --port-end %d --grace %g" % (
            shipped_extra_args(), procs.HOST, self.port, self.port + 1, grace)
        env = {"NOTIFY_SOCKET": notify.path, "RUNTIME_DIRECTORY": str(self.runtime_dir)}
        if watchdog_usec:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        env.update(extra_env or {})
        self.tracker = "%s:%d" % (procs.HOST, tracker_port)
        self.proc = procs.Proc(procs.edge_server_argv(*unit_argv(self.tracker, KEY, extra)),
                               Path(tmp_path) / "edge-server.log", env=env)
        self.pid = self.proc.pid

    def session_pid(self, count=1):
        """The pid of the count-th session, from the daemon's "started (pid N" log line
        (the daemon may also keep idle pre-forked children, so not just any child)."""
        def started():
            pids = re.findall(r"session \S+: started \(pid (\d+)", self.proc.log())
            return int(pids[count - 1]) if len(pids) >= count else None
        return kit.wait_for(started, 30, "session %d started" % count, proc=self.proc)


def open_session(tracker_port, proc):
    from tvm import rpc
    procs.wait_free(tracker_port, KEY, proc=proc)
    return rpc.connect_tracker(procs.HOST, tracker_port).request(KEY, session_timeout=120)


def closed():
    """Collect the session objects a test just deleted: TVM closes a session
    when the last reference to it goes (tests `del` every one first)."""
    gc.collect()


# ---- tests --------------------------------------------------------------------------
def test_unit_command_line_is_what_the_test_runs():
    argv = unit_argv("h:9190", "rk3399", "--port 9090 --port-end 9199")
    assert argv == ["--tracker=h:9190", "--key=rk3399", "--port", "9090", "--port-end", "9199"]


def test_ready_comes_before_the_tracker_answers(tmp_path, notify):
    """systemd's start timeout must not depend on the tracker: READY=1 once the
    port is bound, then STATUS counts the tracker retries."""
    dead_port = procs.free_port()
    daemon = Daemon(tmp_path, notify, dead_port)
    try:
        notify.wait_line("READY=1", daemon.proc)
        with socket.create_connection((procs.HOST, daemon.port), timeout=5):
            pass
        waiting = r"^idle on port %d; waiting for tracker %s \(attempt (\d+), last error: .*ECONNREFUSED" % (
            daemon.port, re.escape(daemon.tracker))
        notify.wait_status(waiting.replace(r"(\d+)", "[3-9]"), daemon.proc)
        attempts = [int(re.search(waiting, s).group(1)) for s in notify.statuses()
                    if re.search(waiting, s)]
        assert attempts == sorted(attempts) and attempts[0] == 1, attempts
        lines = notify.lines()
        assert lines.index("READY=1") < lines.index(next(
            "STATUS=" + s for s in notify.statuses() if re.search(waiting, s)))
        assert "sessions: 0 ok, 0 failed" in notify.statuses()[-1]
        daemon.proc.signal(signal.SIGTERM)
        assert daemon.proc.wait(30) == 0
        assert notify.lines()[-2:] == ["STOPPING=1", "STATUS=stopping; sessions: 0 ok, 0 failed"]
        assert notify.senders() == {daemon.pid}
    finally:
        daemon.proc.stop()


def test_status_follows_registration_sessions_and_failures(tmp_path, notify, shared_tracker,
                                                           kernel):
    daemon = Daemon(tmp_path, notify, shared_tracker.port)
    try:
        registered = "registered as key %s at tracker %s" % (KEY, daemon.tracker)
        notify.wait_status(r"^idle on port %d; %s; sessions: 0 ok, 0 failed$" % (
            daemon.port, re.escape(registered)), daemon.proc)

        kit.tracker_session(shared_tracker.port, KEY, kernel, proc=daemon.proc)
        notify.wait_status(r"sessions: 1 ok, 0 failed$", daemon.proc)
        serving = [s for s in notify.statuses() if s.startswith("serving ")]
        assert serving and re.match(r"^serving 127\.0\.0\.1:\d+ in mode all; ", serving[0]), serving

        # a session killed from outside (what the OOM killer does) counts as failed
        remote = open_session(shared_tracker.port, daemon.proc)
        child = daemon.session_pid(count=2)
        os.kill(child, signal.SIGKILL)
        notify.wait_status(r"^idle on port %d; %s; sessions: 1 ok, 1 failed$" % (
            daemon.port, re.escape(registered)), daemon.proc)
        del remote
        closed()
        assert notify.senders() == {daemon.pid}     # never a session child (NotifyAccess=main)
        raw = [m for _, _, m in notify.all() if m.startswith("STATUS=idle")]
        assert raw and all(re.search(r"; sandbox: (landlock v\d|seccomp only|none: )", m)
                           for m in raw), raw
    finally:
        assert daemon.proc.stop() == 0


def test_watchdog_cadence_and_silence_when_wedged(tmp_path, notify, shared_tracker):
    """WATCHDOG_USEC=400000: a ping about every 0.2 s, from the main pid only;
    none while the process is stopped, pings again after SIGCONT."""
    daemon = Daemon(tmp_path, notify, shared_tracker.port, watchdog_usec=400000)
    try:
        notify.wait_line("READY=1", daemon.proc)
        start = time.monotonic()
        time.sleep(3.0)
        count = len(notify.pings(start, start + 3.0))
        assert 5 <= count <= 40, "%d pings in 3 s with a 0.2 s interval" % count

        daemon.proc.signal(signal.SIGSTOP)
        time.sleep(0.3)                            # datagrams already sent drain
        wedged = time.monotonic()
        time.sleep(1.5)
        assert notify.pings(wedged) == []
        daemon.proc.signal(signal.SIGCONT)
        notify.wait("a ping after SIGCONT", lambda: notify.pings(wedged), daemon.proc, 30)
        assert notify.senders() == {daemon.pid}
    finally:
        daemon.proc.signal(signal.SIGCONT)
        assert daemon.proc.stop() == 0


def test_watchdog_keeps_pinging_while_a_kernel_saturates_every_core(tmp_path, notify,
                                                                     shared_tracker, kernel):
    """A long, CPU-bound session (mode all: every core busy) must not starve the loop."""
    daemon = Daemon(tmp_path, notify, shared_tracker.port, watchdog_usec=400000)
    import numpy as np
    import tvm
    remote = open_session(shared_tracker.port, daemon.proc)
    mod = a = b = None
    try:
        remote.get_function("edge.set_thread_mode")("all")
        remote.upload(kernel)
        mod = remote.load_module(os.path.basename(kernel))
        dev = remote.cpu()
        a = tvm.runtime.tensor(np.ones(kit.N, dtype="float32"), dev)
        b = tvm.runtime.tensor(np.zeros(kit.N, dtype="float32"), dev)
        busy = threading.Thread(target=lambda: mod.time_evaluator(
            "main", dev, number=1000000, repeat=1, min_repeat_ms=3000)(a, b), daemon=True)
        child = daemon.session_pid()
        start = time.monotonic()
        busy.start()
        busy.join(60)
        end = time.monotonic()
        assert not busy.is_alive()
        count = len(notify.pings(start, end))
        assert count >= 5, "%d pings in %.1f s of a saturating kernel" % (count, end - start)
        assert not kit.gone(child)                   # the same session did the work
    finally:
        del remote, mod, a, b
        closed()
        assert daemon.proc.stop() == 0


def test_no_watchdog_when_it_is_meant_for_another_pid(tmp_path, notify, shared_tracker):
    """WATCHDOG_PID names the process systemd watches; anyone else stays quiet."""
    daemon = Daemon(tmp_path, notify, shared_tracker.port, watchdog_usec=400000,
                    extra_env={"WATCHDOG_PID": "1"})
    try:
        notify.wait_line("READY=1", daemon.proc)
        notify.wait_status("registered as key", daemon.proc)
        time.sleep(1.0)
        assert notify.pings() == []
    finally:
        assert daemon.proc.stop() == 0


def test_sighup_is_reloading_then_ready(tmp_path, notify, shared_tracker):
    """systemd expects READY=1 after RELOADING=1, or `systemctl reload` hangs."""
    daemon = Daemon(tmp_path, notify, shared_tracker.port)
    try:
        notify.wait_status("registered as key", daemon.proc)
        daemon.proc.signal(signal.SIGHUP)
        notify.wait_line("RELOADING=1", daemon.proc)
        notify.wait("READY=1 after RELOADING=1",
                    lambda: "READY=1" in notify.lines()[notify.lines().index("RELOADING=1"):],
                    daemon.proc)
        lines = notify.lines()
        readies = [i for i, line in enumerate(lines) if line == "READY=1"]
        assert len(readies) == 2 and readies[0] < lines.index("RELOADING=1") < readies[1], lines
        assert daemon.proc.alive()
    finally:
        assert daemon.proc.stop() == 0


def test_sigterm_idle_stops_at_once_and_cleans_the_runtime_directory(tmp_path, notify,
                                                                     shared_tracker):
    daemon = Daemon(tmp_path, notify, shared_tracker.port, grace=30)
    notify.wait_status("registered as key", daemon.proc)
    assert list(daemon.runtime_dir.iterdir()), "the daemon works under RUNTIME_DIRECTORY"
    daemon.proc.signal(signal.SIGTERM)
    assert daemon.proc.wait(20) == 0                 # an idle daemon does not wait for --grace
    assert "STOPPING=1" in notify.lines()
    assert list(daemon.runtime_dir.iterdir()) == []
    daemon.proc.stop()


def test_sigterm_lets_a_session_finish_within_the_grace(tmp_path, notify, shared_tracker,
                                                        kernel):
    daemon = Daemon(tmp_path, notify, shared_tracker.port, grace=60)
    remote = open_session(shared_tracker.port, daemon.proc)
    try:
        child = daemon.session_pid()
        peer = notify.wait_status(r"^serving 127\.0\.0\.1:\d+ in mode all", daemon.proc)[0]
        peer = peer.split()[1]
        daemon.proc.signal(signal.SIGTERM)
        notify.wait_line("STOPPING=1", daemon.proc)
        notify.wait_status(r"^stopping, waiting for the session of %s; sessions: 0 ok, 0 failed$"
                           % re.escape(peer), daemon.proc)
        # the session still works during the grace period
        remote.upload(kernel)
        remote.load_module(os.path.basename(kernel))
        assert daemon.proc.alive() and not kit.gone(child)
    finally:
        del remote
        closed()
    assert daemon.proc.wait(30) == 0                 # well before the 60 s grace
    assert kit.gone(child)
    assert notify.statuses()[-1] == "stopping; sessions: 1 ok, 0 failed"
    assert list(daemon.runtime_dir.iterdir()) == []
    assert notify.senders() == {daemon.pid}
    daemon.proc.stop()


def test_sigterm_ends_a_session_that_outlives_the_grace(tmp_path, notify, shared_tracker):
    daemon = Daemon(tmp_path, notify, shared_tracker.port, grace=1.5)
    remote = open_session(shared_tracker.port, daemon.proc)
    try:
        child = daemon.session_pid()
        daemon.proc.signal(signal.SIGTERM)
        notify.wait_line("STOPPING=1", daemon.proc)
        assert daemon.proc.wait(30) == 0
        assert kit.gone(child)
        assert notify.statuses()[-1] == "stopping; sessions: 0 ok, 1 failed"
        assert list(daemon.runtime_dir.iterdir()) == []
        assert "grace of 1.5s over" in daemon.proc.log()
    finally:
        try:
            del remote
            closed()
        except Exception:  # noqa: B902 - the session is gone; closing it may raise
            pass
        daemon.proc.stop()
