"""The TVM tracker's wire format, without importing TVM.

A tracker connection starts with RPC_TRACKER_MAGIC as one little-endian int32
each way; then every message is an int32 byte length followed by a JSON body
(tvm/rpc/base.py sendjson/recvjson, tvm/rpc/tracker.py). The constants are
TVM's own values, copied here so `edge-client --help`/`list` answer without
the ~1 s `import tvm`; a test checks them against `tvm.rpc.base`.

Why not `tvm.rpc.base.sendjson`: it writes the length and the body in two
`send()` calls with Nagle on, so every message waits for the peer's delayed
ACK (~40 ms). `encode` makes one buffer for one write, and `quickack` asks
the kernel to acknowledge the tracker's own two-part replies at once.
"""
import json
import socket
import struct
from typing import List

RPC_MAGIC = 0xFF271
RPC_TRACKER_MAGIC = 0x2F271
RPC_CODE_SUCCESS = RPC_MAGIC + 0
RPC_CODE_DUPLICATE = RPC_MAGIC + 1
RPC_CODE_MISMATCH = RPC_MAGIC + 2


class TrackerCode:
    """Request and reply codes of the tracker protocol (tvm.rpc.base.TrackerCode)."""
    FAIL = -1
    SUCCESS = 0
    PING = 1
    STOP = 2
    PUT = 3
    REQUEST = 4
    UPDATE_INFO = 5
    SUMMARY = 6
    GET_PENDING_MATCHKEYS = 7


INT32 = struct.Struct("<i")
TRACKER_MAGIC_BYTES = INT32.pack(RPC_TRACKER_MAGIC)

# Tracker replies are small (a summary of a few hundred boards is ~1 MB);
# a frame larger than this means the peer is not a tracker.
MAX_FRAME_BYTES = 64 << 20


class WireError(ValueError):
    """The peer sent bytes that are not the tracker protocol."""


def encode(value) -> bytes:
    """One frame: int32 length + compact UTF-8 JSON, as one buffer for one write."""
    body = json.dumps(value, separators=(",", ":")).encode("utf-8")
    return INT32.pack(len(body)) + body


def decode_int(data: bytes) -> int:
    """The int32 at the start of `data` (a magic or a frame length)."""
    return INT32.unpack_from(data, 0)[0]


def check_magic(data: bytes, peer: str) -> None:
    """Raise WireError unless the 4 bytes are the tracker's magic."""
    magic = decode_int(data)
    if magic != RPC_TRACKER_MAGIC:
        raise WireError("%s is not a TVM RPC tracker (it answered magic 0x%x, a tracker "
                        "answers 0x%x)" % (peer, magic & 0xFFFFFFFF, RPC_TRACKER_MAGIC))


class FrameDecoder:
    """Splits a byte stream that arrives in arbitrary pieces into JSON values.

    feed() returns every value completed by the new bytes, keeps the rest, and
    raises WireError on a length outside 1..max_bytes or a body that is not
    UTF-8 JSON: the stream cannot be resynchronised after that, so the caller
    drops the connection.
    """

    def __init__(self, max_bytes: int = MAX_FRAME_BYTES):
        self.max_bytes = max_bytes
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> List[object]:
        self._buf += data
        values = []
        while len(self._buf) >= INT32.size:
            size = decode_int(self._buf)
            if not 0 < size <= self.max_bytes:
                raise WireError("frame length %d is outside 1..%d bytes" % (size, self.max_bytes))
            end = INT32.size + size
            if len(self._buf) < end:
                break
            body = bytes(self._buf[INT32.size:end])
            del self._buf[:end]
            values.append(_parse_body(body))
        return values


def _parse_body(body: bytes):
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise WireError("frame body is not UTF-8 JSON (%s): %r" % (err, body[:80])) from None


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def quickack(sock: socket.socket) -> None:
    """Acknowledge the next segment at once (Linux clears the flag itself, so re-arm
    before every read): the tracker writes length and body separately with Nagle on."""
    if _QUICKACK is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
    except OSError:
        pass


def recv_exact(sock: socket.socket, nbytes: int) -> bytes:
    """Exactly nbytes from a blocking socket; EOFError if the peer closes first."""
    buf = bytearray()
    while len(buf) < nbytes:
        quickack(sock)
        chunk = sock.recv(nbytes - len(buf))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(buf), nbytes))
        buf += chunk
    return bytes(buf)


def greet(sock: socket.socket, peer: str) -> None:
    """The opening magic exchange on a blocking socket; WireError if the peer is not
    a tracker, OSError/EOFError if the connection fails."""
    sock.sendall(TRACKER_MAGIC_BYTES)
    check_magic(recv_exact(sock, INT32.size), peer)


def call(sock: socket.socket, message, max_bytes: int = MAX_FRAME_BYTES):
    """Send one message and read one reply on a blocking, greeted socket."""
    sock.sendall(encode(message))
    return read_reply(sock, max_bytes)


def read_reply(sock: socket.socket, max_bytes: int = MAX_FRAME_BYTES):
    """Read one reply frame on a blocking, greeted socket."""
    size = decode_int(recv_exact(sock, INT32.size))
    if not 0 < size <= max_bytes:
        raise WireError("reply length %d is outside 1..%d bytes" % (size, max_bytes))
    return _parse_body(recv_exact(sock, size))
