"""The tracker link against a real stock tracker, and its wire behaviour."""
import json
import select
import socket
import struct
import threading
import time

import pytest
from tvm.rpc import base
from tvm.rpc.base import RPC_TRACKER_MAGIC, TrackerCode

from tests.support import procs
from edge_server.daemon import tracker as tracker_mod
from edge_server.daemon.tracker import Backoff, FrameDecoder, TrackerRegistration, encode_message

EDGE = {"schema": 1, "arch": "x86_64", "classes": [{"name": "big", "cpus": [0, 1]}]}


def drive(link: TrackerRegistration, until, timeout: float = 15.0) -> None:
    """Run the link the way the server's loop does until `until()` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        link.tick(time.monotonic())
        fd = link.fileno()
        if fd is None:
            time.sleep(0.02)
        else:
            poller = select.poll()
            poller.register(fd, select.POLLIN | (select.POLLOUT if link.wants_write() else 0))
            for _, ev in poller.poll(50):
                link.on_events(bool(ev & select.POLLIN), bool(ev & select.POLLOUT),
                               bool(ev & (select.POLLERR | select.POLLHUP)))
        if until():
            return
    raise TimeoutError("link state %s, attempts %d, last error %s"
                       % (link._state, link.attempts, link.last_error))


def make_link(port, key="link-test", server_port=9999, **kw):
    link = TrackerRegistration((procs.HOST, port), key, server_port, None, EDGE, **kw)
    link.set_idle(True)
    return link


def raw_request(tracker_port: int, key: str):
    """What a client's request does, without connecting to the server afterwards."""
    sock = socket.create_connection((procs.HOST, tracker_port))
    sock.sendall(struct.pack("<i", RPC_TRACKER_MAGIC))
    assert struct.unpack("<i", base.recvall(sock, 4))[0] == RPC_TRACKER_MAGIC
    base.sendjson(sock, [TrackerCode.REQUEST, key, "", 1])
    reply = base.recvjson(sock)
    sock.close()
    assert reply[0] == TrackerCode.SUCCESS
    return reply[1]


def test_message_is_one_buffer_with_byte_length():
    frame = encode_message([TrackerCode.PUT, "k", [9090, "k:0.5"], None])
    size = struct.unpack("<i", frame[:4])[0]
    assert size == len(frame) - 4
    assert json.loads(frame[4:]) == [3, "k", [9090, "k:0.5"], None]
    nonascii = encode_message({"board": "Räspberry"})
    assert struct.unpack("<i", nonascii[:4])[0] == len(nonascii) - 4


def test_frame_decoder_joins_and_splits():
    stream = encode_message(0) + encode_message(["a", 1]) + encode_message({"x": [1]})
    decoder = FrameDecoder()
    values = []
    for i in range(0, len(stream), 3):
        values += decoder.feed(stream[i:i + 3])
    assert values == [0, ["a", 1], {"x": [1]}]
    with pytest.raises(ValueError, match="frame of"):
        FrameDecoder().feed(struct.pack("<i", 1 << 30))
    with pytest.raises(ValueError, match="frame of"):
        FrameDecoder().feed(struct.pack("<i", -1))


def test_backoff_doubles_to_a_cap_and_resets():
    backoff = Backoff(0.5, 10.0)
    assert [backoff.next() for _ in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    backoff.reset()
    assert backoff.next() == 0.5


def test_registers_with_capabilities_and_a_free_slot(shared_tracker):
    tracker = shared_tracker
    link = make_link(tracker.port, key="reg")
    drive(link, lambda: link.registered)
    summary = procs.tracker_summary(tracker.port)
    assert summary["queue_info"]["reg"]["free"] == 1
    [info] = [s for s in summary["server_info"] if s["key"] == "server:reg"]
    assert info["edge"] == EDGE
    assert info["addr"] == [procs.HOST, 9999]   # None -> the tracker fills in what it sees
    link.close()


def test_handed_out_key_is_replaced_after_each_session(shared_tracker):
    tracker = shared_tracker
    link = make_link(tracker.port, key="handed")
    drive(link, lambda: link.registered)
    url, port, matchkey = raw_request(tracker.port, "handed")
    assert (port, matchkey) == (9999, link.matchkey)
    assert procs.free_servers(tracker.port, "handed") == 0
    link.session_started()
    link.set_idle(True)                # the session ended
    drive(link, lambda: link.registered)
    assert link.matchkey != matchkey
    assert procs.free_servers(tracker.port, "handed") == 1
    link.close()


def test_key_handed_to_a_client_that_never_comes_is_put_again(shared_tracker, monkeypatch):
    tracker = shared_tracker
    monkeypatch.setattr(tracker_mod, "PENDING_CHECK_PERIOD", 0.1)
    monkeypatch.setattr(tracker_mod, "UNMATCHED_TIMEOUT", 0.3)
    link = make_link(tracker.port, key="unused")
    drive(link, lambda: link.registered)
    first = link.matchkey
    raw_request(tracker.port, "unused")      # taken, but nobody connects
    drive(link, lambda: link.matchkey != first and link.registered)
    assert procs.free_servers(tracker.port, "unused") == 1
    link.close()


def test_tracker_down_up_and_restarted_retries_forever_and_registers(tmp_path):
    port = procs.free_port()
    link = make_link(port)
    drive(link, lambda: link.attempts >= 3)         # nobody listens yet
    assert "ECONNREFUSED" in link.last_error
    assert not link.registered
    tracker = procs.start_tracker(tmp_path, port)
    try:
        link.retry_now()
        drive(link, lambda: link.registered)
        assert link.attempts == 0 and link.last_error is None
        assert procs.free_servers(port, "link-test") == 1
        tracker.stop()                               # killed under a registered link
        drive(link, lambda: not link.connected)
        assert link.attempts >= 1 and not link.registered
        tracker = procs.start_tracker(tmp_path, port)
        link.retry_now()
        drive(link, lambda: link.registered)
        assert procs.free_servers(port, "link-test") == 1
    finally:
        link.close()
        tracker.stop()


def test_busy_link_does_not_put(shared_tracker):
    tracker = shared_tracker
    link = make_link(tracker.port, key="busy")
    link.set_idle(False)
    drive(link, lambda: link.connected)
    time.sleep(0.3)
    drive(link, lambda: True)
    assert not link.registered
    summary = procs.tracker_summary(tracker.port)
    assert any(s["key"] == "server:busy" for s in summary["server_info"])
    assert procs.free_servers(tracker.port, "busy") == 0
    link.close()


class RecordingTracker:
    """A test-owned tracker socket that answers like the stock one and records every recv()."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind((procs.HOST, 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.chunks = []
        self.frames = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            assert conn.recv(4) == struct.pack("<i", RPC_TRACKER_MAGIC)
            conn.sendall(struct.pack("<i", RPC_TRACKER_MAGIC))
            buf = b""
            while True:
                chunk = conn.recv(1 << 20)
                if not chunk:
                    return
                self.chunks.append(chunk)
                buf += chunk
                while len(buf) >= 4 and len(buf) >= 4 + struct.unpack("<i", buf[:4])[0]:
                    size = struct.unpack("<i", buf[:4])[0]
                    msg = json.loads(buf[4:4 + size])
                    buf = buf[4 + size:]
                    self.frames.append(msg)
                    reply = [] if msg[0] == TrackerCode.GET_PENDING_MATCHKEYS else 0
                    body = json.dumps(reply).encode()
                    # answer like tornado does: length and body in two writes
                    conn.sendall(struct.pack("<i", len(body)))
                    conn.sendall(body)


def test_every_message_of_the_real_daemon_is_one_write(tmp_path):
    """With two writes and Nagle (stock sendjson) a recv() sees the 4-byte length alone."""
    fake = RecordingTracker()
    server = procs.start_edge_server(tmp_path, args=["--tracker", "%s:%d" % (procs.HOST,
                                                                           fake.port)],
                                     wait=False)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and len(fake.frames) < 3:   # UPDATE_INFO, PUT, GET_PENDING
            time.sleep(0.05)
        assert [f[0] for f in fake.frames[:2]] == [TrackerCode.UPDATE_INFO, TrackerCode.PUT], \
            server.log()
        assert fake.frames[0][1]["key"] == "server:edge-test"
        assert fake.frames[0][1]["edge"]["schema"] == 1
        for chunk in fake.chunks:
            pos = 0
            while pos < len(chunk):     # every chunk is whole frames, never a split one
                size = struct.unpack("<i", chunk[pos:pos + 4])[0]
                assert pos + 4 + size <= len(chunk), "a message arrived split: %r" % chunk[:40]
                pos += 4 + size
    finally:
        server.stop()
