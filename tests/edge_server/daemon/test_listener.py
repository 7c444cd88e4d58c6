"""The listener in-process, on real sockets on 127.0.0.1 with a fake clock:
admission, handshakes that never block, their deadline, parking while busy."""
import select
import signal
import socket
import struct

import pytest
from tvm.rpc.base import RPC_CODE_MISMATCH, RPC_CODE_SUCCESS, RPC_MAGIC

from edge_server.daemon.config import parse_args
from edge_server.daemon.listener import Listener, ServerError, bind
from edge_server.daemon.signals import SignalFlags
from edge_server.daemon.status import StatusBoard, status_line


class Clock:
    now = 50.0

    def __call__(self):
        return self.now


def closed_by_server(client: socket.socket) -> bool:
    """EOF, or a reset when the server closed with our bytes unread."""
    try:
        return client.recv(10) == b""
    except ConnectionResetError:
        return True


def hello(key: str) -> bytes:
    body = key.encode()
    return struct.pack("<ii", RPC_MAGIC, len(body)) + body


class Rig:
    def __init__(self, tmp_path, *flags):
        self.clock = Clock()
        self.busy = False
        self.ready = []
        config = parse_args(["--host", "127.0.0.1", "--port", "9300", "--port-end", "9400",
                             "--key", "rk3399", "--handshake-timeout", "2",
                             "--work-root", str(tmp_path), *flags])
        self.listener = Listener(config, self.clock, busy=lambda: self.busy,
                                 on_ready=self.ready.append)
        self.port = self.listener.open()
        self.clients = []

    def connect(self, data: bytes = b"") -> socket.socket:
        client = socket.create_connection(("127.0.0.1", self.port))
        client.settimeout(5)
        self.clients.append(client)
        if data:
            client.sendall(data)
        self.accept_all()
        return client

    def accept_all(self):
        """What the loop does when the listen socket polls readable."""
        select.select([self.listener.sock], [], [], 5)
        self.listener.accept()

    def close(self):
        self.listener.close()
        for c in self.clients:
            c.close()


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.close()


def test_a_complete_handshake_is_ready_at_once_and_its_key_answered(rig):
    client = rig.connect(hello("client:rk3399 -timeout=30 -foo"))
    [peer] = rig.ready
    assert rig.listener.pending == [] and peer.hello.key.startswith("client:rk3399")
    request = rig.listener.answer(peer, "rk3399", from_tracker=False)
    assert request.timeout == 30 and request.ignored_options == ["-foo"]
    code, length = struct.unpack("<ii", client.recv(8))
    assert code == RPC_CODE_SUCCESS and client.recv(length) == b"server:rk3399"


def test_a_wrong_key_gets_the_mismatch_code_and_is_closed(rig, caplog):
    client = rig.connect(hello("client:other"))
    [peer] = rig.ready
    assert rig.listener.answer(peer, "rk3399", from_tracker=True) is None
    assert struct.unpack("<i", client.recv(4))[0] == RPC_CODE_MISMATCH
    assert closed_by_server(client) and rig.listener.refused == 1
    assert "key 'client:other' does not match this server's (key rk3399, matchkey from " \
           "the tracker)" in caplog.text


def test_a_silent_peer_is_closed_at_its_deadline_not_before(rig, caplog):
    client = rig.connect(hello("client:rk3399")[:5])
    assert len(rig.listener.pending) == 1 and rig.ready == []
    assert rig.listener.deadlines(rig.clock.now) == [rig.clock.now + 2]
    rig.clock.now += 1.9
    rig.listener.check_deadlines(rig.clock.now)
    assert len(rig.listener.pending) == 1
    rig.clock.now += 0.1
    rig.listener.check_deadlines(rig.clock.now)
    assert rig.listener.pending == [] and closed_by_server(client)
    assert "no complete handshake within 2s (got 5 bytes)" in caplog.text


def test_garbage_is_closed_with_the_reason(rig, caplog):
    client = rig.connect(b"GET / HTTP/1.1\r\n\r\n")
    assert rig.listener.pending == [] and rig.ready == [] and closed_by_server(client)
    assert "not a TVM RPC handshake" in caplog.text


def test_while_busy_complete_handshakes_park_and_are_served_in_order_when_free(rig, caplog):
    rig.busy = True
    first = rig.connect(hello("client:rk3399"))
    assert not rig.listener.accepting(rig.clock.now)   # the loop leaves the rest in the backlog
    second = rig.connect(hello("client:rk3399"))
    third = rig.connect(hello("client:rk3399"))
    assert rig.ready == [] and len(rig.listener.parked) == 3
    third.close()
    rig.listener.parked_gone(rig.listener.parked[2])
    assert "went away while waiting" in caplog.text
    rig.listener.serve_parked()
    assert rig.ready == []                         # still busy
    rig.busy = False
    rig.listener.serve_parked()
    assert [p.peer for p in rig.ready] == ["127.0.0.1:%d" % c.getsockname()[1]
                                           for c in (first, second)]


def test_allow_refuses_other_networks_before_reading_a_byte(tmp_path, caplog):
    rig = Rig(tmp_path, "--allow", "10.0.0.0/8")
    try:
        client = rig.connect(hello("client:rk3399"))
        assert rig.listener.pending == [] and rig.ready == [] and closed_by_server(client)
        assert rig.listener.refused == 1 and "not in --allow 10.0.0.0/8" in caplog.text
    finally:
        rig.close()


def test_a_port_range_in_use_says_which_flags_would_work(rig):
    with pytest.raises(ServerError, match="all in use; pass a free range with --port/--port-end"):
        bind("127.0.0.1", rig.port, rig.port + 1)


def test_signal_handlers_only_count_and_wake_the_loop():
    flags = SignalFlags()
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                                                   signal.SIGCHLD)}
    old_wakeup = signal.set_wakeup_fd(-1)
    try:
        flags.install()
        signal.raise_signal(signal.SIGHUP)
        signal.raise_signal(signal.SIGHUP)
        assert select.select([flags.fileno()], [], [], 5)[0] == [flags.fileno()]
        assert flags.take() == {signal.SIGHUP: 2}
        assert flags.take() == {}
    finally:
        flags.close()
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in old.items():
            signal.signal(sig, handler)


class FakeRegistration:
    name = "10.0.0.2:9190"
    registered = connected = False
    attempts = 3
    last_error = "connection refused (ECONNREFUSED)"


def test_status_line_says_what_the_daemon_does_and_why_the_tracker_is_missing():
    line = status_line(stopping=False, serving=None, mode=None, port=9090, key="rk3399",
                       registration=FakeRegistration(), ok=4, failed=1)
    assert line == ("idle on port 9090; waiting for tracker 10.0.0.2:9190 (attempt 3, last "
                    "error: connection refused (ECONNREFUSED)); sessions: 4 ok, 1 failed")
    line = status_line(stopping=True, serving="10.0.0.9:1", mode="big:2", port=9090,
                       key="", registration=None, ok=0, failed=0)
    assert line == ("stopping, waiting for the session of 10.0.0.9:1; direct connections "
                    "with key ''; sessions: 0 ok, 0 failed")
    sent = []
    board = StatusBoard(sent.append)
    for text in ["a", "a", "b", "a"]:
        board.show(text)
    assert sent == ["a", "b", "a"]
