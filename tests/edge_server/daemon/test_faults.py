"""Everything a session, a client, the network or the tracker can do to the daemon;
each fault is followed by a normal session on the same server.

EDGE_FAULT_SESSIONS sets the length of the mixed accounting run (default 40;
`make faults` runs 200). EDGE_FAULT_REPORT=path writes its figures as JSON.
"""
import json
import os
import random
import signal
import socket
import struct
import threading

import pytest
from tvm.rpc.base import RPC_CODE_MISMATCH, RPC_MAGIC

from tests.support import daemon_kit as kit
from tests.support import procs

HOSTILE = {
    "silent": b"",
    "wrong-magic": struct.pack("<i", 0x0BADF00D),
    "truncated": struct.pack("<i", RPC_MAGIC) + b"\x10\x00",
    "keylen-2^31": struct.pack("<iI", RPC_MAGIC, 1 << 31),
    "keylen-2^31-1": struct.pack("<ii", RPC_MAGIC, (1 << 31) - 1),
    "random-bytes": random.Random(7).randbytes(256) if hasattr(random.Random, "randbytes")
    else bytes(random.Random(7).getrandbits(8) for _ in range(256)),
    "http": b"GET / HTTP/1.1\r\nHost: board\r\n\r\n",
    "wrong-key": struct.pack("<ii", RPC_MAGIC, 12) + b"client:nope!",
}


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("libs")
    built = {kind: kit.build_misbehaving_lib(directory, kind) for kind in
             ("segv", "abort", "sigkill", "exit3")}
    built["sleep"] = kit.build_misbehaving_lib(directory, "sleep", 120)
    built["kernel"] = kit.build_kernel(directory)
    return built


@pytest.fixture(scope="module")
def board(tmp_path_factory, shared_tracker):
    """One daemon that every fault in this module hits in turn."""
    tmp = tmp_path_factory.mktemp("board")
    proc = procs.start_edge_server(tmp, shared_tracker.port, key="fault-board", args=[
        "--work-root", tmp / "work", "--grace", "2", "--handshake-timeout", "2"])
    proc.work_root = tmp / "work"
    yield proc
    assert proc.stop() == 0


def normal_session(board, tracker, libs):
    state = kit.tracker_session(tracker.port, board.key, libs["kernel"], proc=board)
    assert state["mode"] == "all" and state["nthreads"] >= 1
    assert board.alive()
    procs.wait_free(tracker.port, board.key, proc=board)
    kit.wait_for(lambda: not kit.session_dirs(board.work_root), 10, "work dir removed")
    return state


@pytest.mark.parametrize("kind,ending", [
    ("segv", "killed by SIGSEGV"),
    ("abort", "killed by SIGABRT"),
    ("sigkill", "killed by SIGKILL"),
    ("exit3", "exit 3"),
])
def test_crashing_session_then_a_normal_one(board, shared_tracker, libs, kind, ending):
    before = len(kit.log_lines(board, "ended, " + ending))
    error = kit.misbehaving_session(shared_tracker.port, board.key, libs[kind], proc=board)
    assert error
    kit.wait_for(lambda: len(kit.log_lines(board, "ended, " + ending)) > before, 30,
                 "ending logged as %r" % ending, proc=board)
    normal_session(board, shared_tracker, libs)
    assert kit.zombies(board.pid) == []


def test_session_timeout_then_a_normal_one(board, shared_tracker, libs):
    error = kit.misbehaving_session(shared_tracker.port, board.key, libs["sleep"],
                                    session_timeout=1, proc=board)
    assert "RPCSessionTimeoutError" in error
    assert kit.log_lines(board, "session timeout (1s) expired")
    normal_session(board, shared_tracker, libs)


def test_killed_client_frees_the_core_before_the_call_returns(tmp_path, board, shared_tracker,
                                                              libs):
    client = procs.Proc(kit.client_argv("hold", shared_tracker.port, board.key, libs["sleep"]),
                        tmp_path / "client.log", env=kit.client_env())
    kit.wait_for(lambda: kit.started_markers(board.work_root), 60, "call started", proc=client)
    child = kit.session_pid(board)
    client.signal(signal.SIGKILL)
    client.wait(10)
    # the call sleeps 120 s; the child must be gone long before it would return
    kit.wait_for(lambda: kit.gone(child), 20, "session child killed", proc=board)
    assert kit.log_lines(board, "client went away")
    normal_session(board, shared_tracker, libs)
    client.stop()


def test_restarted_tracker_gets_the_server_back(tmp_path, libs):
    tracker = procs.start_tracker(tmp_path)
    port = tracker.port
    server = procs.start_edge_server(tmp_path, port, key="restart-board",
                                     args=["--work-root", tmp_path / "work", "--grace", "2"])
    try:
        kit.tracker_session(port, "restart-board", libs["kernel"], proc=server)
        tracker.stop()
        kit.wait_for(lambda: kit.log_lines(server, "retry 1 in"), 30, "link loss noticed",
                     proc=server)
        tracker = procs.start_tracker(tmp_path, port)
        procs.wait_free(port, "restart-board", proc=server)
        kit.wait_for(lambda: kit.log_lines(server, "registered again as key restart-board after"),
                     10, "re-registration logged", proc=server)
        kit.tracker_session(port, "restart-board", libs["kernel"], proc=server)
        assert server.alive()
    finally:
        assert server.stop() == 0
        tracker.stop()


def _closed_by_server(sock, timeout=15.0) -> bytes:
    """Everything the server sent before closing; fails if it keeps the connection open."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_connection_is_closed_then_a_normal_session(board, shared_tracker, libs, kind):
    with socket.create_connection((procs.HOST, board.port)) as sock:
        if HOSTILE[kind]:
            sock.sendall(HOSTILE[kind])
        reply = _closed_by_server(sock)
    if kind == "wrong-key":
        assert reply == struct.pack("<i", RPC_CODE_MISMATCH)
    else:
        assert reply == b""
    normal_session(board, shared_tracker, libs)


def test_silent_and_truncated_peers_do_not_delay_a_client(tmp_path, shared_tracker, libs):
    server = procs.start_edge_server(tmp_path, shared_tracker.port, key="patient-board", args=[
        "--work-root", tmp_path / "work", "--grace", "2", "--handshake-timeout", "600"])
    hostile = []
    try:
        for kind in ("silent", "truncated") * 5:
            sock = socket.create_connection((procs.HOST, server.port))
            sock.sendall(HOSTILE[kind])
            hostile.append(sock)
        done = []
        worker = threading.Thread(target=lambda: done.append(kit.tracker_session(
            shared_tracker.port, "patient-board", libs["kernel"], proc=server)), daemon=True)
        worker.start()
        worker.join(120)   # a blocking handshake would hold it for the 600 s timeout
        assert done and done[0]["mode"] == "all", server.log()
        for sock in hostile:   # still waiting for their handshakes: nothing was closed
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
    finally:
        for sock in hostile:
            sock.close()
        assert server.stop() == 0


def test_hundreds_of_hostile_connections_leak_nothing(board, shared_tracker, libs):
    normal_session(board, shared_tracker, libs)
    fds, rss = kit.fd_count(board.pid), kit.rss_kb(board.pid)
    kinds = sorted(HOSTILE)
    for i in range(300):
        kind = kinds[i % len(kinds)]
        if kind in ("silent", "truncated"):
            kind = "keylen-2^31"           # the slow kinds are covered above
        with socket.create_connection((procs.HOST, board.port)) as sock:
            sock.sendall(HOSTILE[kind])
            _closed_by_server(sock)
    normal_session(board, shared_tracker, libs)
    assert kit.fd_count(board.pid) == fds
    assert kit.rss_kb(board.pid) - rss < 4096, "listener RSS grew by %d kB" % (
        kit.rss_kb(board.pid) - rss)


def test_mixed_run_accounting(tmp_path, shared_tracker, libs):
    """Many sessions with faults interleaved: still registered, no zombies, no leftover
    work dirs, no fd growth, RSS within a small bound."""
    total = int(os.environ.get("EDGE_FAULT_SESSIONS", "40"))
    server = procs.start_edge_server(tmp_path, shared_tracker.port, key="mixed-board", args=[
        "--work-root", tmp_path / "work", "--grace", "2", "--silent"])
    faults = ["crash:" + libs["segv"], "crash:" + libs["abort"], "crash:" + libs["sigkill"],
              "crash:" + libs["exit3"], "timeout:%s:1" % libs["sleep"]]
    steps = ["ok" if i % 3 else faults[(i // 3) % len(faults)] for i in range(total)]
    try:
        kit.tracker_session(shared_tracker.port, "mixed-board", libs["kernel"], proc=server)
        fds, rss = kit.fd_count(server.pid), kit.rss_kb(server.pid)
        client = procs.Proc(kit.client_argv("plan", shared_tracker.port, "mixed-board",
                                            libs["kernel"], *steps),
                            tmp_path / "plan.log", env=kit.client_env())
        assert client.wait(60 + 10 * total) == 0, client.log()
        results = [json.loads(line) for line in client.log().splitlines()
                   if line.startswith("{")]
        assert len(results) == total
        assert all(r.get("ok") for r in results if r["step"] == "ok")
        assert all(r.get("error") for r in results if r["step"] != "ok")
        procs.wait_free(shared_tracker.port, "mixed-board", proc=server)
        kit.wait_for(lambda: not kit.session_dirs(tmp_path / "work"), 10, "work dirs removed")
        figures = {
            "sessions": total + 1,
            "faults": {kind: sum(1 for s in steps if s.startswith(kind)) for kind in
                       ("crash:" + libs[k] for k in ("segv", "abort", "sigkill", "exit3"))},
            "timeouts": sum(1 for s in steps if s.startswith("timeout")),
            "zombies": len(kit.zombies(server.pid)),
            "leftover_work_dirs": len(kit.session_dirs(tmp_path / "work")),
            "fd_growth": kit.fd_count(server.pid) - fds,
            "rss_growth_kb": kit.rss_kb(server.pid) - rss,
            "daemon_alive": server.alive(),
            "free_in_tracker": procs.free_servers(shared_tracker.port, "mixed-board"),
        }
        figures["faults"] = {os.path.basename(k.split(":", 1)[1]): v
                             for k, v in figures["faults"].items()}
        if os.environ.get("EDGE_FAULT_REPORT"):
            with open(os.environ["EDGE_FAULT_REPORT"], "w") as f:
                json.dump(figures, f, indent=2)
        print("accounting:", json.dumps(figures))
        assert figures["zombies"] == 0
        assert figures["leftover_work_dirs"] == 0
        assert figures["fd_growth"] == 0
        assert figures["rss_growth_kb"] < 8192
        assert figures["daemon_alive"] and figures["free_in_tracker"] == 1
        client.stop()
    finally:
        assert server.stop() == 0


def test_spare_session_process_killed_while_idle_is_replaced(board, shared_tracker, libs):
    """The daemon forks the next session's process while idle; its death is one more ending
    to survive."""
    normal_session(board, shared_tracker, libs)
    [spare] = kit.wait_for(lambda: kit.only_child(board.pid), 30, "spare forked", proc=board)
    os.kill(spare, signal.SIGKILL)
    kit.wait_for(lambda: kit.log_lines(board, "spare session process %d died before serving "
                                              "(killed by SIGKILL)" % spare), 30,
                 "spare death logged", proc=board)
    [again] = kit.wait_for(lambda: kit.only_child(board.pid), 30, "new spare", proc=board)
    assert again != spare
    state = normal_session(board, shared_tracker, libs)
    assert state["pid"] == again                 # the new spare served the session
    assert kit.zombies(board.pid) == []
