"""The daemon's link to a stock TVM tracker, driven by the server's poll loop.

What the stock server does, and why this differs:

- `tvm.rpc.base.sendjson` writes the 4-byte length and the JSON body in two
  `send()` calls with Nagle on, so each message waits for the tracker's
  delayed ACK (~40 ms). Here every message is one `send()` of length + body
  on a TCP_NODELAY socket, and TCP_QUICKACK is re-armed after every read so
  the tracker's own two-write replies are acknowledged at once.
- The stock link blocks the server's only thread on the tracker and gives up
  after 60 s of refused connections. This link never blocks (non-blocking
  connect, buffered reads), retries forever with capped exponential backoff
  (0.5 s doubling to 10 s) and logs every failure with the OS error.

Protocol (tvm/rpc/tracker.py): send RPC_TRACKER_MAGIC alone and wait for it
back (the tracker insists on reading exactly 4 bytes first), then length-
prefixed JSON: UPDATE_INFO {"key": "server:<key>", "addr": [addr, port],
"edge": ...}, PUT [key, [port, matchkey], custom_addr], and, while idle,
GET_PENDING_MATCHKEYS to notice a matchkey handed to a client that never came.
"""
import errno
import json
import logging
import os
import socket
import struct
import time
from collections import deque
from typing import Callable, Deque, Optional, Tuple

from tvm.rpc.base import RPC_TRACKER_MAGIC, TrackerCode, random_key

log = logging.getLogger("edge_server.daemon.tracker")

_INT = struct.Struct("<i")
# Replies to our messages are tiny; a frame larger than this is not a tracker.
MAX_FRAME_BYTES = 1 << 20

CONNECT_TIMEOUT = 3.0      # s for the TCP connect and the magic exchange
REPLY_TIMEOUT = 10.0       # s before an unanswered message means the link is dead
PENDING_CHECK_PERIOD = 2.0  # s between GET_PENDING_MATCHKEYS while idle
UNMATCHED_TIMEOUT = 5.0    # s a handed-out matchkey may stay unused before we re-PUT


def encode_message(value) -> bytes:
    """One tracker frame: int32 byte length + compact JSON, as one bytes object."""
    body = json.dumps(value, separators=(",", ":")).encode("utf-8")
    return _INT.pack(len(body)) + body


class FrameDecoder:
    """Splits the tracker's byte stream into JSON values."""

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data: bytes) -> list:
        self._buf += data
        values = []
        while len(self._buf) >= 4:
            size = _INT.unpack_from(self._buf, 0)[0]
            if size <= 0 or size > MAX_FRAME_BYTES:
                raise ValueError("tracker sent a frame of %d bytes" % size)
            if len(self._buf) < 4 + size:
                break
            body = bytes(self._buf[4:4 + size])
            del self._buf[:4 + size]
            values.append(json.loads(body.decode("utf-8")))
        return values


class Backoff:
    """Delays between reconnect attempts: first, doubling, capped; reset on success."""

    def __init__(self, first: float = 0.5, cap: float = 10.0):
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first


class TrackerRegistration:
    """Registration of one server with one tracker; never blocks, never gives up.

    The server polls `fileno()` (for writing too while `wants_write()`), calls
    `on_events()` when the socket is ready and `tick()` every loop turn; it says
    `set_idle(True)` when it can take a session (the registration then keeps a
    matchkey in the tracker's free queue) and `session_started()` when a client
    used the matchkey. (Not host_client.tracker.TrackerLink: that one is the
    host's blocking request/reply client.)
    """

    def __init__(self, addr: Tuple[str, int], key: str, port: int,
                 custom_addr: Optional[str], edge: Optional[dict],
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Optional[Callable[[], None]] = None):
        self.addr = addr
        self.key = key
        self.port = port
        self.custom_addr = custom_addr
        self.edge = edge
        self._clock = clock
        self._on_change = on_change or (lambda: None)
        self._backoff = Backoff()
        self._sock: Optional[socket.socket] = None
        self._state = "waiting"          # waiting | connecting | greeting | open
        self._next_attempt = clock()
        self._deadline: Optional[float] = None   # connect/greeting/reply deadline
        self._out = bytearray()
        self._greeting = bytearray()
        self._decoder = FrameDecoder()
        self._replies: Deque[Tuple[str, Callable[[object], None], float]] = deque()
        self._idle = False
        self._announced_state: Optional[str] = None   # "free"/"busy" the tracker last saw
        self._queued_key: Optional[str] = None   # our matchkey in the tracker's queue
        self._put_acked = False
        self._handed_out_since: Optional[float] = None
        self._next_pending_check: Optional[float] = None
        self.matchkey: Optional[str] = None      # the key clients must present
        self.attempts = 0                         # failures since the last success
        self.last_error: Optional[str] = None
        self._ever_registered = False

    # ---- what the server asks -------------------------------------------------
    @property
    def name(self) -> str:
        return "%s:%d" % self.addr

    @property
    def registered(self) -> bool:
        """Open link and our matchkey acknowledged in the free queue."""
        return self._state == "open" and self._put_acked

    @property
    def connected(self) -> bool:
        return self._state == "open"

    def fileno(self) -> Optional[int]:
        return self._sock.fileno() if self._sock is not None else None

    def wants_write(self) -> bool:
        return self._state == "connecting" or bool(self._out)

    def next_deadline(self) -> Optional[float]:
        times = [t for t in (self._deadline, self._next_pending_check) if t is not None]
        if self._state == "waiting":
            times.append(self._next_attempt)
        if self._replies:
            times.append(self._replies[0][2])
        return min(times) if times else None

    def set_idle(self, idle: bool) -> None:
        """Idle: keep one matchkey in the free queue. Busy: stop checking it."""
        self._idle = idle
        if idle and self._state == "open" and self._queued_key is None:
            self._put()
        if not idle:
            self._next_pending_check = None
        self._announce_state()

    def _announce_state(self) -> None:
        """Tell the tracker when this board turns free or busy (after the PUT, so the
        next client does not wait on it): the stock summary counts free servers per
        key only, and `edge-client list` shows each board's state from this."""
        if (self._state == "open" and self.edge is not None
                and self._announced_state != self._state_word()):
            # The tracker merges UPDATE_INFO into what it has: send only the change
            # (it insists on "addr"), not the topology again.
            self._announced_state = self._state_word()
            change = {"addr": [self.custom_addr, self.port], "edge_state": self._announced_state}
            self._send([TrackerCode.UPDATE_INFO, change], "UPDATE_INFO", self._expect_success)

    def session_started(self) -> None:
        """A client presented our matchkey: the tracker no longer queues it."""
        self._queued_key = None
        self._put_acked = False
        self._handed_out_since = None
        self.set_idle(False)

    def update_edge(self, edge: dict) -> None:
        """New capabilities (SIGHUP re-probe): tell the tracker now if we can."""
        self.edge = edge
        if self._state == "open":
            self._send([TrackerCode.UPDATE_INFO, self._info()], "UPDATE_INFO", self._expect_success)

    def retry_now(self) -> None:
        """Skip the rest of the backoff (SIGHUP: the operator says the tracker is back)."""
        if self._state == "waiting":
            self._backoff.reset()
            self._next_attempt = self._clock()

    def close(self) -> None:
        """Drop the link; the tracker then removes our queue entries."""
        self._drop_socket()
        self._state = "closed"

    # ---- driven by the poll loop ------------------------------------------------
    def tick(self, now: float) -> None:
        if self._state == "waiting" and now >= self._next_attempt:
            self._connect(now)
        elif self._state in ("connecting", "greeting") and self._deadline and now >= self._deadline:
            self._fail("%s timed out after %.0fs" % (self._state, CONNECT_TIMEOUT))
        elif self._state == "open":
            if self._replies and now >= self._replies[0][2]:
                self._fail("no reply to %s within %.0fs" % (self._replies[0][0], REPLY_TIMEOUT))
            elif self._next_pending_check is not None and now >= self._next_pending_check:
                self._check_pending(now)

    def on_events(self, readable: bool, writable: bool, error: bool) -> None:
        try:
            if self._state == "connecting" and (writable or error):
                self._finish_connect()
            elif readable or error:
                self._read()
            if writable and self._out and self._sock is not None:
                self._flush()
        except (OSError, ValueError) as err:
            self._fail("%s: %s" % (self._state, _describe(err)))

    # ---- internals --------------------------------------------------------------
    def _info(self) -> dict:
        info = {"key": "server:" + self.key, "addr": [self.custom_addr, self.port]}
        if self.edge is not None:
            info["edge"] = self.edge
            info["edge_state"] = self._announced_state = self._state_word()
        return info

    def _state_word(self) -> str:
        return "free" if self._idle else "busy"

    def _connect(self, now: float) -> None:
        try:
            family, stype, proto, _, sockaddr = socket.getaddrinfo(
                self.addr[0], self.addr[1], 0, socket.SOCK_STREAM, socket.IPPROTO_TCP)[0]
            sock = socket.socket(family, stype, proto)
        except OSError as err:
            self._fail("resolving %s: %s" % (self.addr[0], _describe(err)))
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._sock = sock
        self._state = "connecting"
        self._deadline = now + CONNECT_TIMEOUT
        code = sock.connect_ex(sockaddr)
        if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
            self._fail("connect: %s" % _describe(OSError(code, errno_text(code))))
        elif code == 0:
            self._finish_connect()

    def _finish_connect(self) -> None:
        code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, errno_text(code))
        self._state = "greeting"
        self._greeting = bytearray()
        self._raw_send(_INT.pack(RPC_TRACKER_MAGIC))

    def _read(self) -> None:
        try:
            data = self._sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        _quickack(self._sock)
        if not data:
            raise OSError(errno.ECONNRESET, "tracker closed the connection")
        if self._state == "greeting":
            self._greeting += data
            if len(self._greeting) < 4:
                return
            magic = _INT.unpack_from(self._greeting, 0)[0]
            if magic != RPC_TRACKER_MAGIC:
                raise ValueError("%s is not a TVM tracker (magic 0x%x)" % (self.name, magic & 0xFFFFFFFF))
            rest = bytes(self._greeting[4:])
            self._opened()
            data = rest
            if not data:
                return
        for value in self._decoder.feed(data):
            if self._sock is None:  # a handler failed and dropped the link
                return
            if not self._replies:
                raise ValueError("tracker sent %r without being asked" % (value,))
            _, handler, _ = self._replies.popleft()
            handler(value)

    def _opened(self) -> None:
        self._state = "open"
        self._deadline = None
        self._decoder = FrameDecoder()
        self._queued_key = None
        self._put_acked = False
        self._send([TrackerCode.UPDATE_INFO, self._info()], "UPDATE_INFO", self._expect_success)
        if self._idle:
            self._put()
        self._on_change()

    def _put(self) -> None:
        matchkey = random_key(self.key)
        self._queued_key = matchkey
        self.matchkey = matchkey
        self._put_acked = False
        self._handed_out_since = None
        msg = [TrackerCode.PUT, self.key, [self.port, matchkey], self.custom_addr]
        self._send(msg, "PUT", self._put_done)

    def _put_done(self, value) -> None:
        self._expect_success(value)
        self._put_acked = True
        if self.attempts or self.last_error:
            log.info("tracker %s: registered%s as key %s after %d failed attempts (last error: "
                     "%s)", self.name, " again" if self._ever_registered else "", self.key,
                     self.attempts, self.last_error, extra={"TRACKER": self.name, "KEY": self.key})
        elif not self._ever_registered:
            log.info("tracker %s: registered as key %s", self.name, self.key,
                     extra={"TRACKER": self.name, "KEY": self.key})
        else:
            log.debug("tracker %s: back in the free queue as key %s", self.name, self.key)
        self._ever_registered = True
        self.attempts = 0
        self.last_error = None
        self._backoff.reset()
        self._next_pending_check = self._clock() + PENDING_CHECK_PERIOD if self._idle else None
        self._on_change()

    def _check_pending(self, now: float) -> None:
        self._next_pending_check = None
        self._send([TrackerCode.GET_PENDING_MATCHKEYS], "GET_PENDING_MATCHKEYS", self._pending_done)

    def _pending_done(self, value) -> None:
        if not isinstance(value, list):
            raise ValueError("GET_PENDING_MATCHKEYS answered %r, not a list" % (value,))
        now = self._clock()
        if not self._idle or self._queued_key is None:
            return
        if self._queued_key in value:
            self._handed_out_since = None
        elif self._handed_out_since is None:
            self._handed_out_since = now
        elif now - self._handed_out_since >= UNMATCHED_TIMEOUT:
            log.info("tracker %s: matchkey handed to a client %.0fs ago but nobody connected; "
                     "registering a new one", self.name, now - self._handed_out_since)
            self._put()
            return
        self._next_pending_check = now + PENDING_CHECK_PERIOD

    def _expect_success(self, value) -> None:
        if value != TrackerCode.SUCCESS:
            raise ValueError("tracker answered %r instead of SUCCESS" % (value,))

    def _send(self, value, what: str, handler: Callable[[object], None]) -> None:
        self._replies.append((what, handler, self._clock() + REPLY_TIMEOUT))
        self._raw_send(encode_message(value))

    def _raw_send(self, frame: bytes) -> None:
        """Queue a frame and write it in one send() when nothing is queued before it."""
        self._out += frame
        try:
            self._flush()
        except OSError as err:
            self._fail("sending: %s" % _describe(err))

    def _flush(self) -> None:
        try:
            sent = self._sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        del self._out[:sent]

    def _fail(self, what: str) -> None:
        self.attempts += 1
        self.last_error = what
        delay = self._backoff.next()
        log.warning("tracker %s: %s; retry %d in %.1fs", self.name, what, self.attempts, delay,
                    extra={"TRACKER": self.name})
        self._drop_socket()
        self._state = "waiting"
        self._next_attempt = self._clock() + delay
        self._on_change()

    def _drop_socket(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._out = bytearray()
        self._replies.clear()
        self._deadline = None
        self._next_pending_check = None
        self._put_acked = False
        self._queued_key = None


def _quickack(sock: socket.socket) -> None:
    """Acknowledge at once: the tracker writes length and body separately with Nagle on."""
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        except OSError:
            pass


def errno_text(code: int) -> str:
    return os.strerror(code)


def _describe(err: BaseException) -> str:
    if isinstance(err, OSError) and err.errno:
        return "%s (%s)" % (err.strerror or err, errno.errorcode.get(err.errno, err.errno))
    return str(err)
