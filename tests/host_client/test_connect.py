"""host_client.connect against a real tracker, real edge-servers and a stock server."""
import gc
import socket

import pytest
from tvm import rpc

from tests.support import client_kit, remote_kernels
import host_client
from host_client.errors import (BoardBusy, KeyUnknown, NotAnEdgeServer, SessionError,
                                ThreadModeRefused, TrackerError, TrackerUnreachable)
from host_client.kernels import build_matmul
from host_client.tracker import parse_tracker

LOCAL, RK, STOCK = client_kit.LOCAL_KEY, client_kit.RK_KEY, client_kit.STOCK_KEY


def test_session_runs_in_the_mode_asked_and_is_a_full_rpc_session(stack, tmp_path):
    kernel = build_matmul(64, {"kind": "llvm"}, str(tmp_path))
    session = host_client.connect(stack.tracker, LOCAL, thread_mode="big:1")
    try:
        assert isinstance(session, rpc.RPCSession)
        state = session.thread_state
        assert state["mode"] == "big:1"
        assert state["cpus"] == [0] and state["nthreads"] == 1
        assert all(t["cpus"] == [0] for t in state["threads"])
        # The stock RPCSession API works unchanged on it.
        module, dev, args = remote_kernels.run_matmul(session, kernel.path, 64, func="matmul",
                                                      name="mm.so")
        assert module.time_evaluator("matmul", dev, number=2, repeat=2)(*args).mean > 0
        peer_modes = client_kit.session_events(stack.local.log())
        assert any(("mode", "big:1", "0") in events for events in peer_modes.values())
    finally:
        session.release()
        del session, module, args, dev


def test_mode_can_change_inside_a_session_and_state_is_read_back(stack):
    stack.wait_free(LOCAL)
    session = host_client.connect(stack.tracker, LOCAL, thread_mode="all")
    try:
        assert session.thread_state["cpus"] == [0, 1]
        assert session.set_thread_mode("cpus:1")["cpus"] == [1]
        assert session.read_thread_state()["mode"] == "cpus:1"
        topology = session.topology()
        assert [c.name for c in topology.classes] == ["big"]
        assert set(session.timings_ms) == {"tracker_connect", "tracker_request",
                                           "rpc_connect", "set_thread_mode"}
    finally:
        session.release()


def test_no_mode_keeps_the_default_but_reads_the_state(stack):
    stack.wait_free(LOCAL)
    session = host_client.connect(stack.tracker, LOCAL, thread_mode=None)
    try:
        assert session.thread_state["mode"] == "all"
        assert session.thread_state["nthreads"] == 2
    finally:
        session.release()


def test_refused_mode_raises_the_boards_message_and_frees_the_board(stack):
    stack.wait_free(LOCAL)
    with pytest.raises(ThreadModeRefused) as info:
        host_client.connect(stack.tracker, LOCAL, thread_mode="big:3")
    err = info.value
    assert err.mode == "big:3"
    assert "3 big cores" in err.board_message and "big:2" in err.board_message
    assert "127.0.0.1:%d" % stack.local.port in str(err)
    assert "RPCError" not in str(err) and "Traceback" not in str(err)
    del info, err
    gc.collect()
    # The refused session was closed at once: the board is back for the next client.
    stack.wait_free(LOCAL, timeout=10)
    assert any("refused" in line and "big:3" in line for line in stack.local.log().splitlines())


def test_refusal_inside_a_session_keeps_the_session_usable(stack):
    stack.wait_free(LOCAL)
    session = host_client.connect(stack.tracker, LOCAL, thread_mode="big:1")
    try:
        with pytest.raises(ThreadModeRefused, match="garbage"):
            session.set_thread_mode("garbage")
        assert session.read_thread_state()["mode"] == "big:1"
    finally:
        session.release()


def test_uploads_are_checked_against_the_arch_of_the_mode_answer(stack, tmp_path):
    """The arch comes with set_thread_mode's answer: the upload check needs no
    edge.topology round trip (a topology document per session)."""
    from host_client.errors import ArchMismatch
    kernel = build_matmul(16, {"kind": "llvm"}, str(tmp_path))     # x86-64
    stack.wait_free(RK)
    session = host_client.connect(stack.tracker, RK, thread_mode="little:1")
    asked = []
    lookup = session.get_function
    session.get_function = lambda name: asked.append(name) or lookup(name)
    try:
        assert session.thread_state["arch"] == "aarch64"
        with pytest.raises(ArchMismatch, match="built for x86-64, board runs aarch64"):
            session.upload(kernel.path, "mm.so")
        session.upload(bytearray(b"not an ELF file"), "data.bin")
        assert "edge.topology" not in asked and asked, asked
    finally:
        session.release()
        del session


def test_fixture_board_refuses_more_little_cores_than_it_has(stack):
    stack.wait_free(RK)
    with pytest.raises(ThreadModeRefused) as info:
        host_client.connect(stack.tracker, RK, thread_mode="little:9")
    assert "little" in info.value.board_message and "4" in info.value.board_message


def test_stock_server_is_named_and_told_to_run_edge_server(stack):
    stack.wait_free(STOCK)
    with pytest.raises(NotAnEdgeServer) as info:
        host_client.connect(stack.tracker, STOCK, thread_mode="all")
    message = str(info.value)
    assert "127.0.0.1:%d" % stack.stock.port in message
    assert "edge-server" in message and "edge.set_thread_mode" in message
    del info
    gc.collect()
    stack.wait_free(STOCK, timeout=10)


def test_request_session_serves_stock_servers_for_comparisons(stack):
    stack.wait_free(STOCK)
    session = host_client.request_session(stack.tracker, STOCK)
    try:
        assert session.get_function("tvm.rpc.server.workpath")("x").endswith("x")
    finally:
        session.release()


def test_unknown_key_lists_the_keys_there_are(stack):
    with pytest.raises(KeyUnknown) as info:
        host_client.connect(stack.tracker, "no-such-board", thread_mode="all")
    assert "'no-such-board'" in str(info.value)
    for key in (LOCAL, RK, STOCK):
        assert key in str(info.value)


def test_unreachable_tracker():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        with pytest.raises(TrackerUnreachable, match="127.0.0.1:%d.*refused" % port):
            host_client.connect("127.0.0.1:%d" % port, LOCAL, thread_mode="all")


def test_something_that_is_not_a_tracker(stack):
    # The board's RPC port answers, but not with the tracker's magic.
    with pytest.raises(TrackerUnreachable, match="TVM tracker|TVM RPC tracker"):
        host_client.list_boards("127.0.0.1:%d" % stack.local.port, timeout=3)


def test_busy_board_times_out_with_a_clear_error(stack):
    stack.wait_free(LOCAL)
    holder = host_client.connect(stack.tracker, LOCAL, thread_mode="all")
    try:
        with pytest.raises(BoardBusy, match="busy for 1s"):
            host_client.connect(stack.tracker, LOCAL, thread_mode="all", wait=1)
    finally:
        holder.release()
        del holder
    stack.wait_free(LOCAL)
    session = host_client.connect(stack.tracker, LOCAL, thread_mode="all", wait=30)
    session.release()


def test_tracker_and_key_default_to_metaschedules_environment(stack, monkeypatch):
    stack.wait_free(LOCAL)
    host, port = stack.tracker.split(":")
    monkeypatch.setenv("TVM_TRACKER_HOST", host)
    monkeypatch.setenv("TVM_TRACKER_PORT", port)
    monkeypatch.setenv("TVM_TRACKER_KEY", LOCAL)
    session = host_client.connect(thread_mode="big:1")
    try:
        assert session.key == LOCAL and session.thread_state["mode"] == "big:1"
    finally:
        session.release()


@pytest.mark.parametrize("text, message", [
    ("127.0.0.1:0", "outside 1..65535"),
    ("127.0.0.1:http", "HOST:PORT"),
    (":9190", "HOST:PORT"),
])
def test_bad_tracker_addresses_say_what_would_work(text, message):
    with pytest.raises(TrackerError, match=message):
        parse_tracker(text)


def test_tracker_address_forms(monkeypatch):
    assert str(parse_tracker("10.1.2.3:9191")) == "10.1.2.3:9191"
    assert parse_tracker("[::1]:9191").host == "::1"
    assert parse_tracker("boardhost").port == 9190
    monkeypatch.delenv("TVM_TRACKER_HOST", raising=False)
    with pytest.raises(TrackerError, match="TVM_TRACKER_HOST"):
        parse_tracker(None)


@pytest.mark.parametrize("cls", [TrackerUnreachable, KeyUnknown, BoardBusy, SessionError,
                                 NotAnEdgeServer, ThreadModeRefused])
def test_errors_survive_metaschedules_worker_rebuild(cls):
    # PopenPoolExecutor workers send exceptions back as type(exc)(formatted_message).
    rebuilt = type(cls("board said no"))("Traceback ...\nboard said no")
    assert isinstance(rebuilt, host_client.EdgeClientError)
    assert "board said no" in str(rebuilt)
