"""The TVM RPC handshake, read a few bytes at a time so no peer can stall the daemon.

Wire format (tvm/rpc/server.py, src/runtime/rpc/rpc_socket_impl.cc):

    client -> server   RPC_MAGIC (int32 LE), key length (int32 LE), key bytes
                       key = "client:<matchkey>" optionally followed by " -timeout=N"
    server -> client   RPC_CODE_SUCCESS, key length, "server:<key>"
                   or  RPC_CODE_MISMATCH (then close)

The stock server reads this with blocking `recv` in its only thread, so a peer
that connects and sends nothing, or announces a 2 GiB key, blocks or kills it.
Here the daemon's poll loop feeds whatever arrived into a `HandshakeReader`,
which asks for exactly the bytes of the current field (never more, so nothing
that belongs to the session is consumed) and rejects a wrong magic or an absurd
key length the moment it sees them.
"""
import math
import struct
from dataclasses import dataclass
from typing import List, Optional

from tvm.rpc.base import RPC_CODE_MISMATCH, RPC_CODE_SUCCESS, RPC_MAGIC

# Real keys are "client:" + a tracker matchkey ("rk3399:0.8444218515250481")
# + " -timeout=N": well under 200 bytes. Anything near this bound is hostile.
MAX_KEY_BYTES = 4096

_INT = struct.Struct("<i")


class HandshakeError(Exception):
    """The peer is not a TVM RPC client speaking the protocol; close it."""


@dataclass(frozen=True)
class ClientHello:
    """A complete, well-formed client handshake (not yet matched to our key)."""
    key: str


class HandshakeReader:
    """Incremental parser of one client's handshake.

    Call `want()` for how many bytes to `recv` next, then `feed()` them; after
    the key is complete `hello` is set. Errors raise HandshakeError at once.
    """

    def __init__(self):
        self._buf = bytearray()
        self._keylen: Optional[int] = None
        self.hello: Optional[ClientHello] = None

    @property
    def received(self) -> int:
        return len(self._buf) + (8 if self._keylen is not None else 0)

    def want(self) -> int:
        if self.hello is not None:
            return 0
        if self._keylen is None:
            return 8 - len(self._buf)
        return self._keylen - len(self._buf)

    def feed(self, data: bytes) -> Optional[ClientHello]:
        if len(data) > self.want():
            raise HandshakeError("sent %d bytes where %d were expected" % (len(data), self.want()))
        self._buf += data
        if self._keylen is None:
            self._check_header()
        if self._keylen is not None and len(self._buf) == self._keylen:
            self._finish()
        return self.hello

    def _check_header(self) -> None:
        if len(self._buf) >= 4:
            magic = _INT.unpack_from(self._buf, 0)[0]
            if magic != RPC_MAGIC:
                raise HandshakeError("wrong magic 0x%x (a TVM RPC client sends 0x%x)"
                                     % (magic & 0xFFFFFFFF, RPC_MAGIC))
        if len(self._buf) == 8:
            keylen = _INT.unpack_from(self._buf, 4)[0]
            if keylen <= 0 or keylen > MAX_KEY_BYTES:
                raise HandshakeError("key length %d outside 1..%d" % (keylen, MAX_KEY_BYTES))
            self._keylen = keylen
            self._buf = bytearray()

    def _finish(self) -> None:
        try:
            key = bytes(self._buf).decode("utf-8")
        except UnicodeDecodeError as err:
            raise HandshakeError("key is not UTF-8: %s" % err) from None
        self._buf = bytearray()
        self.hello = ClientHello(key)


@dataclass(frozen=True)
class SessionRequest:
    """A client whose key matched: what it asked of the session."""
    timeout: Optional[float]      # seconds, from " -timeout=N"; None = no limit
    ignored_options: List[str]    # options we did not understand, for the log


def match(hello: ClientHello, matchkey: str) -> Optional[SessionRequest]:
    """The session request if the client's key is ours, else None.

    Like the stock server, only the first word must equal "client:<matchkey>";
    the rest are options, of which only -timeout=N means anything.
    """
    words = hello.key.split()
    if not words or words[0] != "client:" + matchkey:
        return None
    timeout = None
    ignored = []
    for word in words[1:]:
        value = _timeout_option(word)
        if value is None:
            ignored.append(word[:64])
        elif value > 0:
            timeout = value
    return SessionRequest(timeout, ignored)


def _timeout_option(word: str) -> Optional[float]:
    """Seconds from "-timeout=N" (0 = none, as the stock client means it); None if unusable."""
    if not word.startswith("-timeout="):
        return None
    try:
        value = float(word[len("-timeout="):])
    except ValueError:
        return None
    if math.isnan(value) or value < 0:
        return None
    return value if math.isfinite(value) else 0.0


def success_reply(server_key: str) -> bytes:
    """RPC_CODE_SUCCESS and our key, as one write (no Nagle split)."""
    body = server_key.encode("utf-8")
    return _INT.pack(RPC_CODE_SUCCESS) + _INT.pack(len(body)) + body


def mismatch_reply() -> bytes:
    return _INT.pack(RPC_CODE_MISMATCH)
