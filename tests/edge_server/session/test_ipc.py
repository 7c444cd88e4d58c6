"""The two channels between the daemon and a session child, on real pipes and
sockets. Mode reports: what an honest child writes arrives, whatever a hostile
one writes is dropped without blocking or growing the reader. Hand-off: the
client's socket and its JSON arrive in the spare, a bad message says what is
wrong."""
import json
import os
import socket

import pytest
from hypothesis import given, strategies as st

from edge_server.session.clocks import HeldClocks

from edge_server.session.ipc import (MAX_HANDOFF, MAX_LINE, MAX_READ_PER_TURN, PREPARE,
                                     ModeReporter, ModeReportReader, hand_off,
                                     handoff_message, parse_end, parse_handoff, parse_line,
                                     tell_prepare)


@pytest.fixture
def pipe():
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    reader = ModeReportReader(r)
    yield reader, w
    reader.close()
    try:
        os.close(w)
    except OSError:
        pass


def test_reporter_lines_arrive_in_order_and_repeats_are_not_sent(pipe):
    reader, w = pipe
    report = ModeReporter(w)
    for mode in ["all", "all", "cpus:1", "big:2", "big:2", "cpus:0-3,6"]:
        report(mode)
    assert reader.read() == ["all", "cpus:1", "big:2", "cpus:0-3,6"]
    assert reader.read() == [] and not reader.eof and reader.take_rejected() == []


def test_reporter_without_a_pipe_does_nothing():
    report = ModeReporter(None)
    report("all")
    assert report.last is None


def test_lines_split_across_reads_are_joined(pipe):
    reader, w = pipe
    os.write(w, b"mode cp")
    assert reader.read() == []
    os.write(w, b"us:1\nmode a")
    assert reader.read() == ["cpus:1"]
    os.write(w, b"ll\n")
    assert reader.read() == ["all"]


@pytest.mark.parametrize("line", [
    b"", b"mode", b"mode ", b"MODE all", b"modeall", b"mode all extra", b"mode \xff\xfe",
    b"mode b\xc4\xb1g", b"mode a\x00b", b"mode all\r", b"status all", b"mode " + b"x" * 257,
])
def test_malformed_lines_are_refused(line):
    assert parse_line(line) is None


@pytest.mark.parametrize("line, mode", [(b"mode all", "all"), (b"mode big:2", "big:2"),
                                        (b"mode cpus:0-3,6", "cpus:0-3,6"),
                                        (b"mode unpinned", "unpinned")])
def test_well_formed_lines(line, mode):
    assert parse_line(line) == mode


def test_garbage_between_good_lines_is_dropped_and_described(pipe):
    reader, w = pipe
    os.write(w, b"mode all\n\xde\xad\xbe\xef\nmode ../../etc\nmode cpus:1\n")
    assert reader.read() == ["all", "cpus:1"]
    rejected = reader.take_rejected()
    assert len(rejected) == 2 and all("malformed line" in r for r in rejected)
    assert reader.take_rejected() == []


def test_an_endless_line_is_skipped_up_to_its_newline_without_growing(pipe):
    reader, w = pipe
    os.write(w, b"mode " + b"a" * (MAX_LINE * 3))
    assert reader.read() == []
    assert len(reader._buf) <= MAX_LINE
    os.write(w, b"b" * 5000)
    assert reader.read() == [] and len(reader._buf) <= MAX_LINE
    os.write(w, b"still the same line\nmode big\n")
    assert reader.read() == ["big"]
    assert reader.take_rejected() == ["a line longer than %d bytes" % MAX_LINE]


def test_a_child_dying_mid_line_leaves_no_mode(pipe):
    reader, w = pipe
    os.write(w, b"mode cpus:1\nmode cpu")
    os.close(w)
    assert reader.read() == ["cpus:1"]
    assert reader.eof
    assert reader.take_rejected() == ["an unfinished line of 8 bytes when the pipe closed"]


def test_a_flood_is_read_a_bounded_amount_per_turn(pipe):
    import fcntl
    reader, w = pipe
    fcntl.fcntl(w, 1031, 1 << 20)        # F_SETPIPE_SZ: more than one turn's worth
    line = b"mode all\n"
    sent = 0
    try:
        while True:
            sent += os.write(w, line * 512)
    except BlockingIOError:
        pass                              # the pipe is full
    report = ModeReporter(w)
    report("cpus:1")                      # non-blocking: returns at once, remembers nothing
    assert report.last is None
    first = reader.read()
    assert 0 < len(first) * len(line) <= MAX_READ_PER_TURN * 4096 < sent
    assert reader.read()                  # the rest waits for the next turns


def test_reporter_stops_when_the_daemon_closed_its_end():
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    os.close(r)
    report = ModeReporter(w)
    report("all")                         # EPIPE (SIGPIPE is ignored in Python)
    assert report.fd is None
    os.close(w)


def test_an_overlong_line_arriving_whole_is_described_as_too_long(pipe):
    reader, w = pipe
    os.write(w, b"mode " + b"a" * MAX_LINE + b"\nmode all\n")
    assert reader.read() == ["all"]
    assert reader.take_rejected() == ["a line longer than %d bytes" % MAX_LINE]


def test_the_last_word_carries_the_exit_code(pipe):
    reader, w = pipe
    report = ModeReporter(w)
    report("all")
    report.ended(0)
    assert reader.read() == ["all"] and reader.end_code == 0
    report.ended(70)
    reader.read()
    assert reader.end_code == 70


@pytest.mark.parametrize("line, code", [(b"end 0", 0), (b"end 255", 255), (b"end 256", None),
                                        (b"end -1", None), (b"end", None), (b"end 1 2", None),
                                        (b"end \xd9\xa1", None), (b"END 0", None)])
def test_end_lines(line, code):
    assert parse_end(line) == code


@given(st.text(min_size=1, max_size=200), st.text(max_size=80))
def test_handoff_message_round_trips_any_work_dir_and_peer(work_dir, peer):
    msg = handoff_message(work_dir, peer)
    assert parse_handoff(msg) == (work_dir, peer, None)     # no --lock-clocks


_POLICY = st.text(min_size=1, max_size=12)


@given(st.dictionaries(_POLICY, st.integers(1, 2 ** 40), max_size=4),
       st.dictionaries(_POLICY, st.text(max_size=80), max_size=4))
def test_handoff_round_trips_the_held_clocks(khz, failed):
    held = HeldClocks(khz, failed)
    assert parse_handoff(handoff_message("/w", "a:1", held)) == ("/w", "a:1", held)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=3)
                     | st.dictionaries(st.sampled_from(["khz", "failed", "policy0", "x"]), kids,
                                       max_size=3), max_leaves=8)


@given(_JSON)
def test_held_clocks_junk_is_a_value_error_never_a_crash(value):
    msg = json.dumps({"work_dir": "/w", "peer": "a:1", "clocks": value}).encode()
    try:
        clocks = parse_handoff(msg).clocks
    except ValueError as err:
        assert str(err).startswith("hand-off message: hand-off clocks")
    else:
        assert clocks is None or all(type(v) is int and v > 0 for v in clocks.khz.values())


def test_old_handoff_keys_are_unchanged_with_clocks():
    info = json.loads(handoff_message("/w", "a:1", HeldClocks({"policy0": 1416000}, {})))
    assert info == {"work_dir": "/w", "peer": "a:1",
                    "clocks": {"khz": {"policy0": 1416000}, "failed": {}}}


@given(st.binary(max_size=300))
def test_handoff_junk_is_a_value_error_never_a_crash(data):
    try:
        work_dir, peer, clocks = parse_handoff(data)
    except ValueError as err:
        assert "hand-off message" in str(err)
    else:
        assert isinstance(work_dir, str) and work_dir and isinstance(peer, str)
        assert clocks is None or isinstance(clocks, HeldClocks)


@pytest.mark.parametrize("msg, why", [
    (b"\xff\xfe", "not UTF-8 JSON"),
    (b"[1, 2]", "is list, expected a JSON object"),
    (json.dumps({"peer": "a:1"}).encode(), "non-empty string work_dir"),
    (json.dumps({"work_dir": "", "peer": "a:1"}).encode(), "non-empty string work_dir"),
    (json.dumps({"work_dir": "/w", "peer": 5}).encode(), "string peer"),
    (json.dumps({"work_dir": "/w", "peer": "a:1", "clocks": [1]}).encode(),
     "hand-off message: hand-off clocks must be a JSON object"),
    (json.dumps({"work_dir": "/w", "peer": "a:1", "clocks": {"khz": {"policy0": "max"}}}
                ).encode(), "clocks.khz must map policy names to kHz"),
    (json.dumps({"work_dir": "/w", "peer": "a:1", "clocks": {"failed": {"policy0": 3}}}
                ).encode(), "clocks.failed must map policy names to reasons"),
])
def test_handoff_errors_say_what_is_wrong(msg, why):
    with pytest.raises(ValueError, match=why):
        parse_handoff(msg)


def test_prepare_then_the_clients_socket_arrive_in_the_spare():
    daemon_end, spare_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    client, server = socket.socketpair()
    with daemon_end, spare_end, client, server:
        tell_prepare(daemon_end)
        hand_off(daemon_end, server, "/run/edge/s1", "10.0.0.9:4000")
        assert spare_end.recv(MAX_HANDOFF) == PREPARE
        msg, fds, _, _ = socket.recv_fds(spare_end, MAX_HANDOFF, 1)
        assert parse_handoff(msg) == ("/run/edge/s1", "10.0.0.9:4000", None)
        with socket.socket(fileno=fds[0]) as passed:
            passed.sendall(b"hello")           # the very connection the client holds
            assert client.recv(5) == b"hello"
