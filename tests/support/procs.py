"""Real processes for integration tests: a stock TVM tracker, `edge-server`
daemons and stock `python -m tvm.exec.rpc_server`s, all on 127.0.0.1.

Every process logs to a file under the test's tmp dir; `Proc.log()` reads it
so a failing assertion can show what the daemon said.
"""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "boards"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for(cond, timeout: float = 30.0, what: str = "condition", proc=None,
             interval: float = 0.05):
    """Poll cond() until it returns something true and return that; TimeoutError
    naming `what` (and showing proc's log) when it never does."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError("%s not reached after %.0fs%s"
                               % (what, timeout, "\n" + proc.log()[-4000:] if proc else ""))
        time.sleep(interval)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port: int, timeout: float = 20.0) -> None:
    wait_for(lambda: _listening(port), timeout, "something listening on %s:%d" % (HOST, port))


class Proc:
    """A child process with its output in a log file."""

    def __init__(self, argv, log_path, env=None, cwd=None):
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.popen = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, env=full_env, cwd=cwd,
                                      start_new_session=True)
        self.pid = self.popen.pid

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout=None):
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 10.0):
        """SIGTERM, then SIGKILL the whole process group; returns the exit code."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        code = self.popen.wait(timeout)
        self._log.close()
        return code


def start_tracker(tmp_path, port=None) -> "Proc":
    port = port or free_port()
    proc = Proc([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", HOST,
                 "--port", str(port), "--port-end", str(port + 1)],
                Path(tmp_path) / ("tracker-%d.log" % port))
    proc.port = port
    try:
        wait_port(port)
    except TimeoutError:
        proc.stop()
        raise RuntimeError("tracker did not start:\n" + proc.log())
    return proc


class TrackerWatch:
    """A kept-open connection to the tracker for polling its queues.

    host_client's TrackerLink writes each message once on a TCP_NODELAY socket
    and asks for an immediate ACK before each read, so a poll costs well under
    a millisecond instead of tvm.rpc's ~40-90 ms delayed-ACK stall: a
    start-to-registered time measured with it is not rounded up by the
    measuring itself.
    """

    def __init__(self, port: int, host: str = HOST):
        from edge_common.address import Address
        from host_client.tracker import TrackerLink
        self.port = port
        self.link = TrackerLink(Address(host, port))

    def __enter__(self) -> "TrackerWatch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.link.close()

    def summary(self) -> dict:
        return self.link.summary()

    def free(self, key: str) -> int:
        info = self.summary()["queue_info"].get(key)
        return info["free"] if info else 0

    def wait_free(self, key: str, count: int = 1, timeout: float = 30.0, proc=None,
                  interval: float = 0.05) -> float:
        """Wait until `count` servers for `key` sit in the free queue; returns the
        time.perf_counter() at which they were seen. RuntimeError at once if
        `proc` (the server) exits first."""
        def seen():
            if self.free(key) >= count:
                return time.perf_counter()
            if proc is not None and not proc.alive():
                raise RuntimeError("server exited (%s) before registering:\n%s"
                                   % (proc.popen.returncode, proc.log()[-4000:]))
            return None

        return wait_for(seen, timeout, "%d free server(s) of key %r on tracker :%d"
                        % (count, key, self.port), proc, interval)


def tracker_summary(port: int) -> dict:
    with TrackerWatch(port) as watch:
        return watch.summary()


def free_servers(port: int, key: str) -> int:
    with TrackerWatch(port) as watch:
        return watch.free(key)


def wait_free(port: int, key: str, count: int = 1, timeout: float = 30.0, proc=None) -> None:
    """Wait until `count` servers for `key` sit in the tracker's free queue."""
    with TrackerWatch(port) as watch:
        watch.wait_free(key, count, timeout, proc)


def edge_server_argv(*args):
    return [sys.executable, "-m", "edge_server", *map(str, args)]


def start_edge_server(tmp_path, tracker_port=None, key="edge-test", args=(), env=None,
                      wait=True, name=None) -> "Proc":
    """Start `edge-server` on a free port; wait until the tracker lists it free."""
    port = free_port()
    argv = ["--host", HOST, "--port", port, "--port-end", port + 1, "--key", key]
    if tracker_port:
        argv += ["--tracker", "%s:%d" % (HOST, tracker_port)]
    argv += list(args)
    log = Path(tmp_path) / ("%s-%d.log" % (name or "edge-server", port))
    proc = Proc(edge_server_argv(*argv), log, env=env)
    proc.port = port
    proc.key = key
    if wait:
        if tracker_port:
            wait_free(tracker_port, key, proc=proc)
        else:
            wait_port(port)
    return proc


def start_stock_server(tmp_path, tracker_port, key="stock-test", env=None, wait=True) -> "Proc":
    port = free_port()
    argv = [sys.executable, "-m", "tvm.exec.rpc_server", "--host", HOST, "--port", str(port),
            "--port-end", str(port + 1), "--key", key,
            "--tracker", "%s:%d" % (HOST, tracker_port)]
    proc = Proc(argv, Path(tmp_path) / ("stock-server-%d.log" % port), env=env)
    proc.port = port
    proc.key = key
    if wait:
        wait_free(tracker_port, key, proc=proc)
    return proc


class Stack:
    """A stock tracker plus the servers started on it; leaving the `with` block (or
    stop()) stops them all, newest first, even when one of them fails to stop."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.procs = []
        self.tracker_proc = None

    def __enter__(self) -> "Stack":
        self.tracker_proc = self._add(start_tracker(self.workdir))
        return self

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False

    @property
    def port(self) -> int:
        return self.tracker_proc.port

    @property
    def address(self) -> str:
        """The tracker as HOST:PORT, what clients are given."""
        return "%s:%d" % (HOST, self.port)

    def stock_server(self, key, env=None, wait=True) -> Proc:
        return self._add(start_stock_server(self.workdir, self.port, key=key, env=env,
                                            wait=wait))

    def edge_server(self, key, args=(), env=None, wait=True, name=None) -> Proc:
        return self._add(start_edge_server(self.workdir, self.port, key=key, args=args, env=env,
                                           wait=wait, name=name or "edge-server-" + key))

    def _add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        while self.procs:
            proc = self.procs.pop()
            try:
                proc.stop()
            except Exception as err:  # noqa: BLE001 - keep stopping the others
                print("could not stop pid %d: %s" % (proc.pid, err), file=sys.stderr)
