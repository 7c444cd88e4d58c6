"""The host's tracker link: one write per message on a TCP_NODELAY socket,
against the real stock tracker."""
import json
import socket
import struct

import pytest

from host_client.errors import TrackerError
from host_client.tracker import TrackerLink, parse_tracker, registered_keys


class CountingSocket(socket.socket):
    """The link's real socket, counting the writes it makes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.writes = []

    def sendall(self, data, *args):
        self.writes.append(bytes(data))
        return super().sendall(data, *args)

    def send(self, data, *args):
        self.writes.append(bytes(data))
        return super().send(data, *args)


def counting(link: TrackerLink) -> CountingSocket:
    plain = link.sock
    sock = CountingSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
    sock.settimeout(link.timeout)
    link.sock = sock
    return sock


def test_every_message_is_one_write_on_a_nodelay_socket(tracker):
    with TrackerLink(parse_tracker("127.0.0.1:%d" % tracker.port)) as link:
        assert link.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        sock = counting(link)
        for _ in range(3):
            summary = link.summary()
        assert summary == {"queue_info": {}, "server_info": []}
        assert len(sock.writes) == 3
        for frame in sock.writes:
            size = struct.unpack("<i", frame[:4])[0]
            assert size == len(frame) - 4
            assert json.loads(frame[4:]) == [6]  # TrackerCode.SUMMARY


def test_registered_keys_reads_server_entries_only():
    summary = {"server_info": [{"key": "server:rk3399", "addr": ["1.2.3.4", 9090]},
                               {"key": "client:abc", "addr": ["1.2.3.5", 1]},
                               {"key": "server:pi4", "addr": ["1.2.3.6", 9090]}]}
    assert registered_keys(summary) == {"rk3399", "pi4"}


def test_a_request_for_a_free_board_is_answered_with_its_address(tracker, tmp_path):
    from tests.support import procs

    server = procs.start_edge_server(tmp_path, tracker.port, key="link-test")
    try:
        with TrackerLink(parse_tracker("127.0.0.1:%d" % tracker.port)) as link:
            link.check_key("link-test")
            sock = counting(link)
            host, port, matchkey = link.request("link-test", wait=10)
            assert len(sock.writes) == 1
        assert (host, port) == ("127.0.0.1", server.port)
        assert matchkey.startswith("link-test:")
    finally:
        server.stop()


def test_tracker_that_vanishes_mid_conversation(tracker):
    from host_client.errors import TrackerUnreachable

    link = TrackerLink(parse_tracker("127.0.0.1:%d" % tracker.port))
    try:
        tracker.stop()
        with pytest.raises(TrackerUnreachable):
            link.summary()
    finally:
        link.close()


def test_the_environment_gives_the_tracker_when_none_is_passed(monkeypatch):
    monkeypatch.setenv("TVM_TRACKER_HOST", "::1")
    monkeypatch.setenv("TVM_TRACKER_PORT", "9191")
    assert str(parse_tracker(None)) == "[::1]:9191"
    monkeypatch.setenv("TVM_TRACKER_PORT", "http")
    with pytest.raises(TrackerError, match=r"TVM_TRACKER_HOST/TVM_TRACKER_PORT .*'http' is not"):
        parse_tracker("")
