"""Tracker framing: TVM's constants, one-buffer frames, a decoder that takes the
stream in any pieces and refuses junk with WireError (and nothing else)."""
import json
import socket
import subprocess
import sys
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_common import wire

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 31, 2 ** 31) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


def test_constants_are_tvms_own():
    from tvm.rpc import base
    assert wire.RPC_MAGIC == base.RPC_MAGIC
    assert wire.RPC_TRACKER_MAGIC == base.RPC_TRACKER_MAGIC
    assert (wire.RPC_CODE_SUCCESS, wire.RPC_CODE_DUPLICATE, wire.RPC_CODE_MISMATCH) == \
        (base.RPC_CODE_SUCCESS, base.RPC_CODE_DUPLICATE, base.RPC_CODE_MISMATCH)
    ours = {k: v for k, v in vars(wire.TrackerCode).items() if k.isupper()}
    theirs = {k: v for k, v in vars(base.TrackerCode).items() if k.isupper()}
    assert ours == theirs


def test_importing_wire_and_address_does_not_import_tvm():
    code = ("import sys, edge_common.wire, edge_common.address, edge_common.oserror; "
            "print(sorted(m for m in sys.modules if m == 'tvm' or m.startswith('tvm.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_frame_is_the_byte_length_then_compact_json():
    frame = wire.encode([wire.TrackerCode.PUT, "k", [9090, "k:0.5"], None])
    body = b'[3,"k",[9090,"k:0.5"],null]'
    assert frame == bytes([len(body), 0, 0, 0]) + body
    nonascii = wire.encode({"board": "Räspberry"})
    assert nonascii[4:] == b'{"board":"R\\u00e4spberry"}'
    assert wire.decode_int(nonascii) == len(nonascii) - 4


def test_tvms_own_reader_takes_our_frames_and_ours_takes_its():
    from tvm.rpc import base
    left, right = socket.socketpair()
    with left, right:
        message = [wire.TrackerCode.REQUEST, "rk3399", "", 1]
        left.sendall(wire.encode(message))
        assert base.recvjson(right) == message
        base.sendjson(right, {"queue_info": {}, "server_info": []})
        decoder, values = wire.FrameDecoder(), []
        while not values:
            values = decoder.feed(left.recv(4096))
        assert values == [{"queue_info": {}, "server_info": []}]


@settings(max_examples=200, deadline=None)
@given(st.lists(json_values, min_size=1, max_size=5), st.lists(st.integers(1, 9), min_size=1))
def test_decoder_returns_every_value_however_the_stream_is_cut(values, cuts):
    stream = b"".join(wire.encode(v) for v in values)
    decoder, got, pos, i = wire.FrameDecoder(), [], 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got += decoder.feed(stream[pos:pos + step])
        pos, i = pos + step, i + 1
    assert got == [json.loads(json.dumps(v)) for v in values]
    assert decoder.pending == 0


@pytest.mark.parametrize("data, words", [
    (wire.INT32.pack(0), "outside 1..1024"),
    (wire.INT32.pack(-1), "outside 1..1024"),
    (wire.INT32.pack(1025), "outside 1..1024"),
    (wire.INT32.pack(3) + b"\xff\xfe\x00", "not UTF-8 JSON"),
    (wire.INT32.pack(4) + b"nope", "not UTF-8 JSON"),
])
def test_decoder_refuses_lengths_and_bodies_that_are_not_the_protocol(data, words):
    with pytest.raises(wire.WireError, match=words):
        wire.FrameDecoder(max_bytes=1024).feed(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_decoder_on_junk_returns_values_or_raises_wire_error(junk):
    try:
        values = wire.FrameDecoder(max_bytes=1 << 16).feed(junk)
    except wire.WireError:
        return
    assert isinstance(values, list)


def test_check_magic_names_the_peer_and_both_magics():
    wire.check_magic(wire.TRACKER_MAGIC_BYTES, "t:1")
    with pytest.raises(wire.WireError, match=r"t:1 is not a TVM RPC tracker.*0xff271.*0x2f271"):
        wire.check_magic(wire.INT32.pack(wire.RPC_MAGIC), "t:1")


def test_greet_and_call_against_a_real_tracker(tracker):
    with socket.create_connection(("127.0.0.1", tracker.port), timeout=10) as sock:
        wire.greet(sock, "tracker")
        reply = wire.call(sock, [wire.TrackerCode.SUMMARY])
    assert reply[0] == wire.TrackerCode.SUCCESS
    assert set(reply[1]) == {"queue_info", "server_info"}


def test_greet_refuses_a_peer_that_answers_another_magic():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        conn.recv(4)
        conn.sendall(wire.INT32.pack(wire.RPC_MAGIC))
        conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            with pytest.raises(wire.WireError, match="not a TVM RPC tracker"):
                wire.greet(sock, "127.0.0.1:%d" % port)
    finally:
        thread.join()
        listener.close()


def test_recv_exact_says_how_much_arrived_before_the_peer_closed():
    left, right = socket.socketpair()
    right.sendall(b"ab")
    right.close()
    with pytest.raises(EOFError, match="after 2 of 4 bytes"):
        wire.recv_exact(left, 4)
    left.close()
