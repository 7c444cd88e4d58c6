import struct

import pytest
from tvm.rpc.base import RPC_CODE_MISMATCH, RPC_CODE_SUCCESS, RPC_MAGIC

from edge_server.daemon.handshake import (MAX_KEY_BYTES, ClientHello, HandshakeError,
                                          HandshakeReader, match, mismatch_reply, success_reply)


def client_hello_bytes(key: str) -> bytes:
    """What a TVM client sends first: magic, key length, key (tvm/rpc/client.py)."""
    body = key.encode("utf-8")
    return struct.pack("<ii", RPC_MAGIC, len(body)) + body


def feed_all(data: bytes, step: int = 1000):
    """Feed like the daemon: never more than want() bytes at a time."""
    reader = HandshakeReader()
    pos = 0
    while reader.want() and pos < len(data):
        n = min(reader.want(), step)
        hello = reader.feed(data[pos:pos + n])
        pos += n
    return reader, pos


@pytest.mark.parametrize("step", [1, 3, 8, 1000])
def test_complete_handshake_in_any_chunking(step):
    data = client_hello_bytes("client:rk3399:0.25 -timeout=10")
    reader, used = feed_all(data, step)
    assert reader.hello == ClientHello("client:rk3399:0.25 -timeout=10")
    assert used == len(data)
    assert reader.want() == 0


def test_reader_never_asks_for_bytes_beyond_the_key():
    """Bytes after the key belong to the session: the reader must leave them in the socket."""
    data = client_hello_bytes("client:k")
    reader = HandshakeReader()
    assert reader.want() == 8
    reader.feed(data[:8])
    assert reader.want() == len("client:k")
    with pytest.raises(HandshakeError, match="expected"):
        reader.feed(data[8:] + b"extra")


@pytest.mark.parametrize("data,message", [
    (struct.pack("<i", 0x12345678), "wrong magic"),
    (b"GET / HTTP/1.1\r\n", "wrong magic"),
    (struct.pack("<ii", RPC_MAGIC, (1 << 31) - 1), "key length"),
    (struct.pack("<iI", RPC_MAGIC, 1 << 31), "key length"),   # 2^31 as int32 = negative
    (struct.pack("<ii", RPC_MAGIC, -5), "key length"),
    (struct.pack("<ii", RPC_MAGIC, 0), "key length"),
    (struct.pack("<ii", RPC_MAGIC, MAX_KEY_BYTES + 1), "key length"),
    (struct.pack("<ii", RPC_MAGIC, 2) + b"\xff\xfe", "not UTF-8"),
])
def test_hostile_handshakes_fail_at_once(data, message):
    reader = HandshakeReader()
    with pytest.raises(HandshakeError, match=message):
        pos = 0
        while pos < len(data):
            n = min(reader.want(), len(data) - pos)
            reader.feed(data[pos:pos + n])
            pos += n
    assert reader.hello is None


def test_wrong_magic_is_rejected_before_the_key_length_arrives():
    reader = HandshakeReader()
    with pytest.raises(HandshakeError):
        reader.feed(b"\x00\x00\x00\x00")


def test_truncated_handshake_waits_for_more():
    reader = HandshakeReader()
    reader.feed(struct.pack("<i", RPC_MAGIC) + b"\x05\x00")
    assert reader.hello is None
    assert reader.want() == 2
    assert reader.received == 6


@pytest.mark.parametrize("key,timeout,ignored", [
    ("client:rk3399:0.5", None, []),
    ("client:rk3399:0.5 -timeout=10", 10.0, []),
    ("client:rk3399:0.5 -timeout=2.5", 2.5, []),
    ("client:rk3399:0.5 -timeout=0", None, []),
    ("client:rk3399:0.5 -timeout=abc", None, ["-timeout=abc"]),
    ("client:rk3399:0.5 -timeout=-3", None, ["-timeout=-3"]),
    ("client:rk3399:0.5 -timeout=nan", None, ["-timeout=nan"]),
    ("client:rk3399:0.5 -timeout=inf", None, []),
    ("client:rk3399:0.5 -other=1 -timeout=4", 4.0, ["-other=1"]),
])
def test_match_parses_timeout_like_the_stock_client_sends_it(key, timeout, ignored):
    request = match(ClientHello(key), "rk3399:0.5")
    assert request is not None
    assert request.timeout == timeout
    assert request.ignored_options == ignored


@pytest.mark.parametrize("key", ["client:rk3399:0.6", "server:rk3399:0.5", "client:rk3399",
                                 "", "   ", "client:rk3399:0.5x", "client: rk3399:0.5"])
def test_match_rejects_other_keys(key):
    assert match(ClientHello(key), "rk3399:0.5") is None


def test_replies_are_what_the_tvm_client_expects():
    reply = success_reply("server:rk3399")
    code, keylen = struct.unpack("<ii", reply[:8])
    assert code == RPC_CODE_SUCCESS
    assert reply[8:] == b"server:rk3399" and keylen == len(b"server:rk3399")
    assert struct.unpack("<i", mismatch_reply()) == (RPC_CODE_MISMATCH,)
