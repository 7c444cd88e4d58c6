"""SIGUSR1 drains the daemon for an upgrade: it leaves the tracker and takes no new
session at once, lets the running session finish past --grace, then exits 0."""
import os
import signal
import socket
import time

from tests.support import daemon_kit as kit
from tests.support import procs


def start(tmp_path, tracker_port, key):
    return procs.start_edge_server(tmp_path, tracker_port, key=key,
                                   args=["--work-root", tmp_path / "work", "--grace", "1"])


def registered(tracker_port, key) -> bool:
    summary = procs.tracker_summary(tracker_port)
    return any(s["key"] == "server:" + key for s in summary["server_info"])


def test_drain_when_idle_exits_0_and_leaves_the_tracker(tmp_path, shared_tracker):
    server = start(tmp_path, shared_tracker.port, "drain-idle")
    assert registered(shared_tracker.port, "drain-idle")
    server.signal(signal.SIGUSR1)
    assert server.wait(30) == 0, server.log()
    assert not registered(shared_tracker.port, "drain-idle")
    assert kit.log_lines(server, "SIGUSR1 (drain): stopping")
    assert os.listdir(tmp_path / "work") == []


def test_drain_lets_the_running_session_outlive_the_grace(tmp_path, shared_tracker):
    """--grace 1, a session call of 5 s: a stop would kill it after 1 s, a drain waits."""
    key = "drain-busy"
    five = kit.build_misbehaving_lib(tmp_path, "sleep", 5)
    server = start(tmp_path, shared_tracker.port, key)
    client = procs.Proc(kit.client_argv("hold", shared_tracker.port, key, five),
                        tmp_path / "client.log", env=kit.client_env())
    kit.wait_for(lambda: kit.started_markers(tmp_path / "work"), 60, "session call started",
                 proc=client)
    child = kit.session_pid(server)
    server.signal(signal.SIGUSR1)
    # no new sessions: off the tracker and the port closed at once
    kit.wait_for(lambda: not registered(shared_tracker.port, key), 10, "board left the tracker",
                 proc=server)
    refused = socket.socket()
    try:
        assert refused.connect_ex((procs.HOST, server.port)) != 0
    finally:
        refused.close()
    time.sleep(2.5)                              # past --grace 1
    assert server.alive() and not kit.gone(child), server.log()
    assert client.wait(60) in (0, 1)             # the call returned (TVM may refuse the .so)
    assert "loading" in client.log() and "Shutdown" not in client.log()
    assert server.wait(60) == 0, server.log()
    assert not kit.log_lines(server, "grace of 1s over")
    assert kit.log_lines(server, "ended, exit 0")
    assert os.listdir(tmp_path / "work") == []
    client.stop()
