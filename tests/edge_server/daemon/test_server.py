"""The daemon as users run it: real tracker, real edge-server processes, real kernels."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.support import daemon_kit as kit
from tests.support import procs
from edge_server.board.topology import probe


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    return kit.build_kernel(tmp_path_factory.mktemp("kernel"))


@pytest.fixture(scope="module")
def sleep_lib(tmp_path_factory):
    return kit.build_misbehaving_lib(tmp_path_factory.mktemp("libs"), "sleep", 120)


def start(tmp_path, tracker_port, key, *args, env=None, wait=True):
    return procs.start_edge_server(tmp_path, tracker_port, key=key, env=env, wait=wait,
                                   args=["--work-root", tmp_path / "work", "--grace", "2", *args])


def hold(tmp_path, tracker_port, key, lib):
    """A client process blocked in a long load_module call; returns it once the call runs."""
    client = procs.Proc(kit.client_argv("hold", tracker_port, key, lib),
                        tmp_path / "client.log", env=kit.client_env())
    kit.wait_for(lambda: kit.started_markers(tmp_path / "work"), 60, "session call started",
                 proc=client)
    return client


def test_registration_lists_capabilities_and_query_tool_shows_it(tmp_path, shared_tracker):
    server = start(tmp_path, shared_tracker.port, "reg-board")
    try:
        summary = procs.tracker_summary(shared_tracker.port)
        [info] = [s for s in summary["server_info"] if s["key"] == "server:reg-board"]
        assert info["addr"] == [procs.HOST, server.port]
        edge = info["edge"]
        expected = probe("/")
        assert edge["schema"] == 1 and edge["default_mode"] == "all"
        assert edge["classes"] == expected["classes"]
        assert [c["id"] for c in edge["cpus"]] == [c["id"] for c in expected["cpus"]]
        assert summary["queue_info"]["reg-board"] == {"free": 1, "pending": 0}
        out = subprocess.run([sys.executable, "-m", "tvm.exec.query_rpc_tracker", "--host",
                              procs.HOST, "--port", str(shared_tracker.port)],
                             capture_output=True, text=True, timeout=120).stdout
        assert "%s:%d" % (procs.HOST, server.port) in out and "server:reg-board" in out
        assert any(line.split()[:3] == ["reg-board", "1", "1"] for line in out.splitlines())
    finally:
        assert server.stop() == 0


def test_stock_client_runs_a_kernel_on_the_default_mode_cores(tmp_path, shared_tracker, kernel):
    server = start(tmp_path, shared_tracker.port, "stock-client")
    try:
        state = kit.tracker_session(shared_tracker.port, "stock-client", kernel, proc=server)
        allowed = sorted(os.sched_getaffinity(0))
        assert state["mode"] == "all"
        assert state["cpus"] == allowed and state["nthreads"] == len(allowed)
        assert state["pid"] != server.pid and state["pid"] > 0
        kit.wait_for(lambda: kit.log_lines(server, "ended, exit 0"), 10, "ending logged",
                     proc=server)
    finally:
        assert server.stop() == 0


def test_sessions_in_a_row_each_back_in_the_free_queue(tmp_path, shared_tracker, kernel):
    server = start(tmp_path, shared_tracker.port, "in-a-row")
    try:
        pids = []
        for _ in range(5):
            pids.append(kit.tracker_session(shared_tracker.port, "in-a-row", kernel,
                                            proc=server)["pid"])
            procs.wait_free(shared_tracker.port, "in-a-row", proc=server)
            assert kit.wait_for(lambda: not kit.session_dirs(tmp_path / "work"), 10,
                                "work dir removed")
        assert len(set(pids)) == 5            # a fresh child per session
        assert server.alive()
        kit.wait_for(lambda: len(kit.log_lines(server, "ended, exit 0")) == 5, 10,
                     "5 normal endings logged", proc=server)
        assert kit.zombies(server.pid) == []
    finally:
        assert server.stop() == 0


def test_session_timeout_from_the_client_is_applied_and_capped(tmp_path, shared_tracker,
                                                                 sleep_lib, kernel):
    server = start(tmp_path, shared_tracker.port, "capped", "--session-timeout-cap", "2")
    try:
        error = kit.misbehaving_session(shared_tracker.port, "capped", sleep_lib,
                                        session_timeout=100, proc=server)
        assert "RPCSessionTimeoutError" in error and "2s session has expired" in error
        assert kit.log_lines(server, "session timeout (2s) expired")
        kit.tracker_session(shared_tracker.port, "capped", kernel, proc=server)
    finally:
        assert server.stop() == 0


def test_direct_connections_by_key_without_a_tracker(tmp_path, kernel):
    from tvm import rpc
    server = start(tmp_path, None, "direct-key")
    try:
        remote = rpc.connect(procs.HOST, server.port, "direct-key")
        assert kit.exercise(remote, kernel)["mode"] == "all"
        del remote
        with pytest.raises(Exception, match="cannot find server that matches key"):
            rpc.connect(procs.HOST, server.port, "other-key")
        kit.wait_for(lambda: kit.log_lines(server, "does not match this server's"), 10,
                     "mismatch logged", proc=server)
        remote = rpc.connect(procs.HOST, server.port, "direct-key")
        assert kit.exercise(remote, kernel)["nthreads"] >= 1
        del remote
    finally:
        assert server.stop() == 0


def test_listener_loads_only_the_runtime_library(tmp_path, shared_tracker):
    server = start(tmp_path, shared_tracker.port, "runtime-only")
    try:
        maps = open("/proc/%d/maps" % server.pid).read()
        libs = {os.path.basename(line.split()[-1]) for line in maps.splitlines()
                if "libtvm" in line}
        assert "libtvm_runtime.so" in libs
        assert "libtvm.so" not in libs
    finally:
        assert server.stop() == 0


def test_stale_session_dirs_of_a_killed_daemon_are_removed_on_start(tmp_path, shared_tracker,
                                                                       sleep_lib, kernel):
    server = start(tmp_path, shared_tracker.port, "stale")
    client = hold(tmp_path, shared_tracker.port, "stale", sleep_lib)
    child = kit.session_pid(server)
    stale = kit.session_dirs(tmp_path / "work")
    assert len(stale) == 1
    server.signal(signal.SIGKILL)
    server.wait(10)
    kit.wait_for(lambda: kit.gone(child), 15, "session child killed with its daemon")
    client.stop()
    assert os.path.isdir(stale[0])            # SIGKILL left it behind
    again = start(tmp_path, shared_tracker.port, "stale")
    try:
        assert not os.path.exists(stale[0])
        assert kit.log_lines(again, "removed stale work dir " + os.path.dirname(stale[0]))
        kit.tracker_session(shared_tracker.port, "stale", kernel, proc=again)
    finally:
        assert again.stop() == 0


def test_sigterm_when_idle_exits_0_and_leaves_the_tracker(tmp_path, shared_tracker):
    server = start(tmp_path, shared_tracker.port, "term-idle")
    server.signal(signal.SIGTERM)
    assert server.wait(30) == 0
    summary = procs.tracker_summary(shared_tracker.port)
    assert not [s for s in summary["server_info"] if s["key"] == "server:term-idle"]
    assert procs.free_servers(shared_tracker.port, "term-idle") == 0
    assert os.listdir(tmp_path / "work") == []     # own dir and lock removed
    assert "stopped: 0 sessions ok, 0 failed" in server.log()


def test_sigterm_lets_a_running_session_finish_within_grace(tmp_path, shared_tracker, kernel):
    short = kit.build_misbehaving_lib(tmp_path, "sleep", 2)
    server = start(tmp_path, shared_tracker.port, "term-grace", "--grace", "60")
    client = hold(tmp_path, shared_tracker.port, "term-grace", short)
    server.signal(signal.SIGTERM)
    assert client.wait(60) in (0, 1)         # the call returned (TVM may refuse the .so)
    assert "loading" in client.log() and ("loaded" in client.log() or "error" in client.log())
    assert "Shutdown" not in client.log() and "RPCSessionTimeout" not in client.log()
    assert server.wait(60) == 0
    assert kit.log_lines(server, "may finish within 60s")
    assert kit.log_lines(server, "ended, exit 0")
    assert os.listdir(tmp_path / "work") == []
    client.stop()


def test_sigterm_ends_a_session_that_outlives_the_grace(tmp_path, shared_tracker, sleep_lib):
    server = start(tmp_path, shared_tracker.port, "term-kill", "--grace", "1")
    client = hold(tmp_path, shared_tracker.port, "term-kill", sleep_lib)
    child = kit.session_pid(server)
    server.signal(signal.SIGTERM)
    assert server.wait(60) == 0
    assert kit.gone(child)
    assert kit.log_lines(server, "grace of 1s over")
    assert os.listdir(tmp_path / "work") == []
    client.stop()


def test_sighup_reprobes_the_topology_and_tells_the_tracker(tmp_path, shared_tracker):
    board = tmp_path / "board"
    shutil.copytree(procs.FIXTURES / "rk3399", board)
    server = start(tmp_path, shared_tracker.port, "hup-board", "--root", board,
                   "--default-mode", "little")

    def edge():
        summary = procs.tracker_summary(shared_tracker.port)
        [info] = [s for s in summary["server_info"] if s["key"] == "server:hup-board"]
        return info["edge"]

    try:
        assert all(c["online"] for c in edge()["cpus"])
        [old_spare] = kit.wait_for(lambda: kit.only_child(server.pid), 30, "spare", proc=server)
        (board / "sys/devices/system/cpu/online").write_text("0-3\n")   # the big cores go away
        server.signal(signal.SIGHUP)
        kit.wait_for(lambda: [c["id"] for c in edge()["cpus"] if not c["online"]] == [4, 5],
                     30, "tracker shows cpus 4,5 offline", proc=server)
        assert kit.log_lines(server, "SIGHUP: re-probed the topology")
        # the spare set up for the old topology is replaced
        kit.wait_for(lambda: kit.gone(old_spare) and kit.only_child(server.pid), 30,
                     "new spare", proc=server)
        procs.wait_free(shared_tracker.port, "hup-board", proc=server)
        (board / "sys/devices/system/cpu/online").write_text("4\n")      # little mode impossible
        server.signal(signal.SIGHUP)
        kit.wait_for(lambda: kit.log_lines(server, "keeping the previous topology"), 30,
                     "refused re-probe", proc=server)
        assert server.alive()
        assert [c["id"] for c in edge()["cpus"] if not c["online"]] == [4, 5]
    finally:
        assert server.stop() == 0


def test_allow_closes_other_networks_before_the_handshake(tmp_path, kernel):
    from tvm import rpc
    refused = start(tmp_path, None, "allow-key", "--allow", "10.0.0.0/8", "--allow", "::1")
    allowed = start(tmp_path, None, "allow-key", "--allow", "127.0.0.0/8")
    try:
        with pytest.raises(Exception):
            rpc.connect(procs.HOST, refused.port, "allow-key")
        assert kit.log_lines(refused, "refused connection from 127.0.0.1:")
        assert "not in --allow 10.0.0.0/8 ::1/128" in refused.log()
        assert not kit.log_lines(refused, "session")
        remote = rpc.connect(procs.HOST, allowed.port, "allow-key")
        assert kit.exercise(remote, kernel)["mode"] == "all"
        del remote
    finally:
        assert refused.stop() == 0
        assert allowed.stop() == 0


# ---- systemd notify -----------------------------------------------------------------------
class NotifyListener:
    """The test's end of NOTIFY_SOCKET: records every datagram with its arrival time."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def texts(self):
        return [m for _, m in self.messages]

    def statuses(self):
        return [m[len("STATUS="):] for m in self.texts() if m.startswith("STATUS=")]

    def pings(self, since=0.0):
        return [t for t, m in self.messages if m == "WATCHDOG=1" and t >= since]

    def close(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def notify(tmp_path):
    listener = NotifyListener(tmp_path / "notify.sock")
    yield listener
    listener.close()


def test_notify_ready_before_tracker_then_status_through_a_session(tmp_path, notify, kernel):
    tracker_port = procs.free_port()
    server = start(tmp_path, tracker_port, "notify-board", env={"NOTIFY_SOCKET": notify.path},
                   wait=False)
    tracker = None
    try:
        kit.wait_for(lambda: "READY=1" in notify.texts(), 60, "READY=1", proc=server)
        with socket.create_connection((procs.HOST, server.port), timeout=5):
            pass                                   # bound before READY was sent
        kit.wait_for(lambda: any("waiting for tracker %s:%d (attempt" % (procs.HOST, tracker_port)
                                 in s and "ECONNREFUSED" in s for s in notify.statuses()),
                     30, "waiting-for-tracker status", proc=server)
        assert notify.texts().index("READY=1") < len(notify.texts())
        tracker = procs.start_tracker(tmp_path, tracker_port)
        server.signal(signal.SIGHUP)               # skip the rest of the backoff
        registered = "registered as key notify-board at tracker %s:%d" % (procs.HOST, tracker_port)
        kit.wait_for(lambda: any(registered in s for s in notify.statuses()), 60,
                     "registered status", proc=server)
        kit.tracker_session(tracker_port, "notify-board", kernel, proc=server)
        kit.wait_for(lambda: any("sessions: 1 ok, 0 failed" in s for s in notify.statuses()),
                     30, "session count status", proc=server)
        assert any(s.startswith("serving %s:" % procs.HOST) and "in mode all" in s
                   for s in notify.statuses())
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0
        assert "STOPPING=1" in notify.texts()
        assert notify.texts().index("READY=1") < notify.texts().index("STOPPING=1")
        assert not [t for t in notify.texts() if t.startswith("EXTEND_TIMEOUT")]   # idle
    finally:
        server.stop()
        if tracker is not None:
            tracker.stop()


def test_watchdog_pings_during_a_long_session_and_stop_when_wedged(tmp_path, notify,
                                                                   shared_tracker, sleep_lib):
    env = {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"}   # ping every 0.2 s
    server = start(tmp_path, shared_tracker.port, "watchdog-board", env=env)
    try:
        client = hold(tmp_path, shared_tracker.port, "watchdog-board", sleep_lib)
        since = time.monotonic()
        kit.wait_for(lambda: len(notify.pings(since)) >= 5, 30,
                     "pings while a session blocks in a long call", proc=server)
        server.signal(signal.SIGSTOP)
        time.sleep(0.5)
        wedged = time.monotonic()
        time.sleep(1.5)
        assert notify.pings(wedged) == []          # a wedged loop sends nothing
        server.signal(signal.SIGCONT)
        kit.wait_for(lambda: notify.pings(wedged), 30, "pings after SIGCONT", proc=server)
        server.signal(signal.SIGTERM)
        assert server.wait(30) == 0
        assert "STOPPING=1" in notify.texts()
        client.stop()
    finally:
        server.stop()


def test_sigterm_mid_session_asks_systemd_for_the_grace(tmp_path, notify, shared_tracker,
                                                       sleep_lib):
    """A --grace longer than the unit's TimeoutStopSec: EXTEND_TIMEOUT_USEC with STOPPING=1."""
    server = start(tmp_path, shared_tracker.port, "term-extend", "--grace", "60",
                   env={"NOTIFY_SOCKET": notify.path})
    client = hold(tmp_path, shared_tracker.port, "term-extend", sleep_lib)
    try:
        server.signal(signal.SIGTERM)
        kit.wait_for(lambda: "EXTEND_TIMEOUT_USEC=65000000" in notify.texts(), 30,
                     "EXTEND_TIMEOUT_USEC of grace + 5 s", proc=server)
        texts = notify.texts()
        assert texts.index("STOPPING=1") < texts.index("EXTEND_TIMEOUT_USEC=65000000")
        assert server.alive()                     # still within the grace
        server.signal(signal.SIGTERM)             # a second one ends the session now
        assert server.wait(30) == 0
        assert [t for t in notify.texts() if t.startswith("EXTEND_TIMEOUT_USEC=")] \
            == ["EXTEND_TIMEOUT_USEC=65000000"]
    finally:
        client.stop()
        server.stop()


# ---- the session's effective thread mode, as the daemon learns it -------------------------
def serving_modes(notify) -> list:
    """The mode each "serving ..." STATUS named, in order."""
    import re
    return [re.match(r"^serving \S+ in mode (\S+);", s).group(1)
            for s in notify.statuses() if s.startswith("serving ")]


def ended_lines(server) -> list:
    return kit.log_lines(server, ": ended, ")


@pytest.mark.parametrize("how", ["prepared in advance", "forked"])
def test_status_and_end_line_name_the_modes_the_session_used(tmp_path, notify, how):
    """STATUS follows the client's set_thread_mode; the end line names every mode used.
    Both ways a session starts: the spare set up in advance, or a fork on demand."""
    from tvm import rpc
    from tvm.error import RPCError
    server = start(tmp_path, None, "modes-key", env={"NOTIFY_SOCKET": notify.path})
    try:
        [spare] = kit.wait_for(lambda: kit.only_child(server.pid), 30, "spare", proc=server)
        if how == "forked":
            os.kill(spare, signal.SIGKILL)        # the next one comes only after a 1 s back-off
            kit.wait_for(lambda: kit.log_lines(server, "spare session process %d died" % spare),
                         10, "spare death noticed", proc=server)
        remote = rpc.connect(procs.HOST, server.port, "modes-key")
        set_mode = remote.get_function("edge.set_thread_mode")
        assert json.loads(set_mode("cpus:1"))["cpus"] == [1]
        kit.wait_for(lambda: serving_modes(notify)[-1:] == ["cpus:1"], 10,
                     "STATUS in mode cpus:1", proc=server)
        assert json.loads(set_mode("cpus:0"))["cpus"] == [0]
        kit.wait_for(lambda: serving_modes(notify)[-1:] == ["cpus:0"], 10,
                     "STATUS in mode cpus:0", proc=server)
        with pytest.raises(RPCError):
            set_mode("big:9")                     # refused: the mode stays
        set_mode("cpus:0")
        assert serving_modes(notify)[0] == "all"  # the default, before any call
        del set_mode, remote
        import gc
        gc.collect()
        [line] = kit.wait_for(lambda: ended_lines(server), 10, "session end", proc=server)
        assert "ended, exit 0 after" in line, line
        assert "in modes all, cpus:1, cpus:0 [" in line, line
        assert "thread_mode=all,cpus:1,cpus:0" in line, line
        assert kit.log_lines(server, "(pid %s %s," % (line.split("session_pid=")[1].rstrip("]"),
                                                      how))
        assert serving_modes(notify) == ["all", "cpus:1", "cpus:0"]
        kit.wait_for(lambda: notify.statuses()[-1].startswith("idle"), 10, "idle STATUS",
                     proc=server)
    finally:
        assert server.stop() == 0


# A library whose constructor writes garbage into every write-only pipe of the session
# process (the daemon's mode pipe among them), a real report and an endless line, and is
# SIGKILLed in the middle of a line.
SPOILER_C = r"""
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
__attribute__((constructor)) static void edge_test_spoil(void) {
  static char endless[3000];
  memset(endless, 'x', sizeof endless);
  for (int fd = 3; fd < 1024; fd++) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) continue;
    if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_WRONLY) continue;
    const char *head = "mode \xff\xfe\nnot a report\nmode cpus:1\nmode ";
    write(fd, head, strlen(head));
    write(fd, endless, sizeof endless);
    const char *tail = "\nmode ../../etc/passwd\nmode cpu";
    write(fd, tail, strlen(tail));
  }
  raise(SIGKILL);
}
"""


def test_garbage_on_the_mode_pipe_and_a_child_dying_mid_line(tmp_path, notify, kernel):
    from tvm import rpc
    src = tmp_path / "spoiler.c"
    src.write_text(SPOILER_C)
    lib = tmp_path / "spoiler.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O0", str(src), "-o", str(lib)], check=True)
    server = start(tmp_path, None, "spoil-key", env={"NOTIFY_SOCKET": notify.path})
    try:
        remote = rpc.connect(procs.HOST, server.port, "spoil-key")
        remote.upload(str(lib))
        with pytest.raises(Exception):
            remote.load_module("spoiler.so")
        del remote
        import gc
        gc.collect()
        [line] = kit.wait_for(lambda: ended_lines(server), 10, "session end", proc=server)
        assert "ended, killed by SIGKILL" in line and "in modes all, cpus:1 (ignored 5 bad " \
            "mode reports) [" in line, line
        [warning] = kit.log_lines(server, "bad mode report(s)")     # once, however many batches
        assert "malformed line b'mode \\xff\\xfe'" in warning, warning
        assert serving_modes(notify) == ["all", "cpus:1"]
        assert server.alive()
        # the next session starts clean, in the default mode
        remote = rpc.connect(procs.HOST, server.port, "spoil-key")
        assert kit.exercise(remote, kernel)["mode"] == "all"
        del remote
        gc.collect()
        kit.wait_for(lambda: len(ended_lines(server)) == 2, 10, "second end", proc=server)
        assert "exit 0" in ended_lines(server)[1] and "in mode all [" in ended_lines(server)[1]
        assert serving_modes(notify)[-1] == "all"
    finally:
        assert server.stop() == 0


def test_next_spare_is_forked_during_a_session_but_prepares_only_after_it(tmp_path, kernel):
    """The next session's process exists while a client is in a session (fork is off the
    turnover's critical path), but builds TVM's pool and pins only once the session is
    over: nothing of it runs on the cores while the client measures."""
    from tvm import rpc
    server = start(tmp_path, None, "two-step")
    try:
        [first] = kit.wait_for(lambda: kit.only_child(server.pid), 30, "spare", proc=server)
        kit.wait_for(lambda: len(os.listdir("/proc/%d/task" % first)) >= 2, 30,
                     "idle spare prepared (its pool thread)", proc=server)
        remote = rpc.connect(procs.HOST, server.port, "two-step")
        assert kit.exercise(remote, kernel)["pid"] == first
        spares = kit.wait_for(lambda: [c for c in kit.children(server.pid) if c != first], 30,
                              "next spare forked during the session", proc=server)
        [nxt] = spares
        time.sleep(0.5)
        assert os.listdir("/proc/%d/task" % nxt) == [str(nxt)]   # forked, not prepared
        assert sorted(os.sched_getaffinity(nxt)) == sorted(os.sched_getaffinity(server.pid))
        del remote
        import gc
        gc.collect()
        kit.wait_for(lambda: len(os.listdir("/proc/%d/task" % nxt)) >= 2, 30,
                     "spare prepared once the session is over", proc=server)
        kit.wait_for(lambda: kit.only_child(server.pid) == [nxt], 30, "old session reaped",
                     proc=server)
        remote = rpc.connect(procs.HOST, server.port, "two-step")
        assert kit.exercise(remote, kernel)["pid"] == nxt
        del remote
        gc.collect()
    finally:
        assert server.stop() == 0
