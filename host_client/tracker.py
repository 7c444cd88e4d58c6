"""The host's link to a stock TVM tracker.

`tvm.rpc.base.sendjson` writes the length and the body of a message in two
`send()` calls with Nagle on, and the tracker answers the same way; each
message then waits for a delayed ACK (~40 ms on Linux). MetaSchedule opens a
session per measurement, so that wait multiplied by every trial. Here every
message is one write on a TCP_NODELAY socket, and we ask the kernel for an
immediate ACK before every read so the tracker's two-part replies are not
held back by its own Nagle. The protocol itself (magic, codes, JSON frames)
is TVM's, reused from `tvm.rpc.base`.
"""
import errno
import json
import os
import socket
import struct
from dataclasses import dataclass
from typing import Optional, Tuple

from tvm.rpc.base import RPC_TRACKER_MAGIC, TrackerCode

from host_client.errors import BoardBusy, KeyUnknown, TrackerError, TrackerUnreachable

DEFAULT_PORT = 9190
MAX_REPLY_BYTES = 64 << 20
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)


@dataclass(frozen=True)
class TrackerAddress:
    host: str
    port: int

    def __str__(self) -> str:
        if ":" in self.host:
            return "[%s]:%d" % (self.host, self.port)
        return "%s:%d" % (self.host, self.port)


def parse_tracker(tracker: Optional[str] = None) -> TrackerAddress:
    """"host:port" (or None: TVM_TRACKER_HOST/TVM_TRACKER_PORT, as MetaSchedule reads them)."""
    if tracker is None or tracker == "":
        host = os.environ.get("TVM_TRACKER_HOST")
        if not host:
            raise TrackerError("no tracker given: pass tracker=\"HOST:PORT\" (--tracker HOST:PORT) "
                               "or set TVM_TRACKER_HOST and TVM_TRACKER_PORT")
        port_text = os.environ.get("TVM_TRACKER_PORT", str(DEFAULT_PORT))
        source = "TVM_TRACKER_PORT=%r" % port_text
    else:
        text = str(tracker).strip()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else str(DEFAULT_PORT)
        elif text.count(":") == 1:
            host, port_text = text.split(":")
        else:
            host, port_text = text, str(DEFAULT_PORT)
        source = "tracker %r" % text
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not host or not 0 < port < 65536:
        raise TrackerError("bad %s: expected HOST:PORT with a port in 1-65535, e.g. 127.0.0.1:9190"
                           % source)
    return TrackerAddress(host, port)


def default_key(key: Optional[str] = None) -> str:
    """The device key, or TVM_TRACKER_KEY like MetaSchedule."""
    key = key or os.environ.get("TVM_TRACKER_KEY")
    if not key:
        raise TrackerError("no device key given: pass key=... (--key KEY) or set TVM_TRACKER_KEY")
    return key


def encode(message) -> bytes:
    """One tracker frame: little-endian int32 length, then the JSON body."""
    body = json.dumps(message).encode("utf-8")
    return struct.pack("<i", len(body)) + body


class TrackerLink:
    """One TCP connection to the tracker; use as a context manager."""

    def __init__(self, address: TrackerAddress, timeout: float = 10.0):
        self.address = address
        self.timeout = timeout
        self.sock = self._open()

    def __enter__(self) -> "TrackerLink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _open(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.address.host, self.address.port),
                                            timeout=self.timeout)
        except socket.timeout:
            raise TrackerUnreachable("cannot reach the tracker at %s: no answer within %gs"
                                     % (self.address, self.timeout)) from None
        except socket.gaierror as err:  # its errno is a resolver code, not an OS errno
            raise TrackerUnreachable(
                "cannot reach the tracker at %s: cannot resolve the host name %r (%s); "
                "check the HOST of --tracker / TVM_TRACKER_HOST"
                % (self.address, self.address.host, err.strerror or err)) from None
        except OSError as err:
            raise TrackerUnreachable(
                "cannot reach the tracker at %s: %s; start one with `python -m "
                "tvm.exec.rpc_tracker --host 0.0.0.0 --port %d --port-end %d` or fix "
                "--tracker / TVM_TRACKER_HOST+TVM_TRACKER_PORT"
                % (self.address, _os_error(err), self.address.port,
                   self.address.port + 1)) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.sendall(struct.pack("<i", RPC_TRACKER_MAGIC))
            magic = struct.unpack("<i", self._recv_exact(sock, 4))[0]
        except (OSError, EOFError) as err:
            sock.close()
            raise TrackerUnreachable("%s accepted a connection but did not answer as a TVM "
                                     "tracker: %s" % (self.address, _os_error(err))) from None
        if magic != RPC_TRACKER_MAGIC:
            sock.close()
            raise TrackerUnreachable("%s is not a TVM RPC tracker (wrong magic 0x%x)"
                                     % (self.address, magic & 0xFFFFFFFF))
        return sock

    @staticmethod
    def _recv_exact(sock: socket.socket, nbytes: int) -> bytes:
        buf = bytearray()
        while len(buf) < nbytes:
            if _QUICKACK is not None:
                # Not sticky in Linux: re-arm before every read.
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            chunk = sock.recv(nbytes - len(buf))
            if not chunk:
                raise EOFError("connection closed by the tracker")
            buf += chunk
        return bytes(buf)

    def call(self, message, timeout: Optional[float] = -1.0):
        """Send one message and read one reply; timeout=None waits forever."""
        self.sock.settimeout(self.timeout if timeout == -1.0 else timeout)
        try:
            self.sock.sendall(encode(message))
            size = struct.unpack("<i", self._recv_exact(self.sock, 4))[0]
            if not 0 <= size <= MAX_REPLY_BYTES:
                raise TrackerError("tracker %s sent a reply of %d bytes" % (self.address, size))
            return json.loads(self._recv_exact(self.sock, size).decode("utf-8"))
        except socket.timeout:
            raise
        except (OSError, EOFError, ValueError) as err:
            raise TrackerUnreachable("lost the tracker at %s while talking to it: %s"
                                     % (self.address, _os_error(err))) from None

    def summary(self) -> dict:
        """The tracker's {"queue_info": {...}, "server_info": [...]}."""
        try:
            reply = self.call([TrackerCode.SUMMARY])
        except socket.timeout:
            raise TrackerUnreachable("tracker %s did not answer a summary within %gs"
                                     % (self.address, self.timeout)) from None
        if not (isinstance(reply, list) and len(reply) == 2 and reply[0] == TrackerCode.SUCCESS):
            raise TrackerError("tracker %s answered the summary with %r" % (self.address, reply))
        return reply[1]

    def check_key(self, key: str) -> None:
        """Raise KeyUnknown when no server of `key` is registered (the tracker
        itself would queue the request forever)."""
        summary = self.summary()
        keys = registered_keys(summary)
        if key not in keys:
            known = ", ".join(sorted(keys)) or "none"
            raise KeyUnknown("no board with key %r on the tracker %s (registered keys: %s)"
                             % (key, self.address, known))

    def request(self, key: str, priority: int = 1,
                wait: Optional[float] = None) -> Tuple[str, int, str]:
        """Ask for a free server of `key`: (host, port, matchkey).

        wait: seconds to wait for a board to become free (None = forever)."""
        try:
            reply = self.call([TrackerCode.REQUEST, key, "", priority], timeout=wait)
        except socket.timeout:
            raise BoardBusy("every board with key %r on the tracker %s stayed busy for %gs; "
                            "wait for the running sessions to end or raise the wait"
                            % (key, self.address, wait)) from None
        if not (isinstance(reply, list) and len(reply) == 2 and reply[0] == TrackerCode.SUCCESS):
            raise TrackerError("tracker %s answered the request for %r with %r"
                               % (self.address, key, reply))
        host, port, matchkey = reply[1]
        return str(host), int(port), str(matchkey)


def registered_keys(summary: dict) -> set:
    """Device keys of every server listed in a tracker summary."""
    keys = set()
    for info in summary.get("server_info", []):
        prefix, _, key = str(info.get("key", "")).partition(":")
        if prefix == "server" and key:
            keys.add(key)
    return keys


def _os_error(err: BaseException) -> str:
    if isinstance(err, OSError) and err.errno is not None:
        return "%s (%s)" % (os.strerror(err.errno), errno.errorcode.get(err.errno, err.errno))
    return str(err) or type(err).__name__
