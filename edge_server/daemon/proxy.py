"""Proxy mode (--through-proxy): sessions that come through `tvm.exec.rpc_proxy`.

A board behind NAT cannot be connected to, so it connects out: while the slot
is free the daemon keeps one connection to the proxy (at --host:--port), sends
the server half of the RPC handshake ("server:<key>") and waits; when a client
asks the proxy for that key, the proxy answers with the client's key and from
then on relays bytes, and the connection becomes a session like any accepted
one (thread modes and pinning unchanged). After the session the next
connection is opened.

Why not the stock loop (tvm/rpc/server.py `_connect_proxy_loop`): it blocks the
server's only thread in connect() and recv() and gives up after five failures;
here every step is non-blocking inside the daemon's poll loop (watchdog,
signals and the running session go on), and a proxy that is down is retried
forever with the tracker link's capped backoff, each failure logged.
"""
import errno
import logging
import os
import socket
import struct
from typing import Callable, Optional, Tuple

from tvm.rpc.base import RPC_CODE_DUPLICATE, RPC_CODE_MISMATCH, RPC_CODE_SUCCESS, RPC_MAGIC

from edge_server.daemon.forking import close_quietly
from edge_server.daemon.handshake import MAX_KEY_BYTES, ClientHello, SessionRequest, match
from edge_server.daemon.tracker import Backoff

log = logging.getLogger("edge_server.daemon.proxy")

_INT = struct.Struct("<i")


class ProxyIntake:
    """One outbound connection to the proxy at a time, driven by the poll loop.

    `busy()` says whether the slot has a session (then no connection is kept);
    `on_session(sock, peer, request)` gets a connection whose client arrived."""

    def __init__(self, addr: Tuple[str, int], key: str, clock: Callable[[], float],
                 busy: Callable[[], bool],
                 on_session: Callable[[socket.socket, str, SessionRequest], None]):
        self.addr = addr
        self.key = key
        self._clock = clock
        self._busy = busy
        self._on_session = on_session
        self._backoff = Backoff()
        self._sock: Optional[socket.socket] = None
        self._state = "idle"              # idle | connecting | waiting | closed
        self._buf = bytearray()
        self._next_attempt = clock()
        self.attempts = 0                 # failures since the last client
        self.last_error: Optional[str] = None

    @property
    def name(self) -> str:
        host, port = self.addr
        return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)

    @property
    def waiting(self) -> bool:
        """Registered with the proxy, waiting for a client."""
        return self._state == "waiting"

    def fileno(self) -> Optional[int]:
        return self._sock.fileno() if self._sock is not None else None

    def wants_write(self) -> bool:
        return self._state == "connecting"

    def next_deadline(self) -> Optional[float]:
        return self._next_attempt if self._state == "idle" else None

    def close(self) -> None:
        """No more sessions through the proxy (stop, drain)."""
        close_quietly(self._sock)
        self._sock = None
        self._state = "closed"

    def inherited(self) -> list:
        return [self._sock] if self._sock is not None else []

    # ---- driven by the poll loop ------------------------------------------------
    def tick(self, now: float) -> None:
        if self._state == "idle" and now >= self._next_attempt and not self._busy():
            self._connect()

    def on_events(self, readable: bool, writable: bool, error: bool) -> None:
        try:
            if self._state == "connecting" and (writable or error):
                self._connected()
            elif self._state == "waiting" and (readable or error):
                self._read()
        except OSError as err:
            self._fail("%s: %s" % (self._state, err.strerror or err))

    # ---- internals --------------------------------------------------------------
    def _connect(self) -> None:
        try:
            family = socket.getaddrinfo(self.addr[0], self.addr[1], 0, socket.SOCK_STREAM)[0][0]
            self._sock = socket.socket(family, socket.SOCK_STREAM)
            self._sock.setblocking(False)
            code = self._sock.connect_ex(self.addr)
        except OSError as err:
            self._fail("connecting: %s" % (err.strerror or err))
            return
        if code not in (0, errno.EINPROGRESS):
            self._fail("connecting: %s" % errno.errorcode.get(code, code))
            return
        self._state = "connecting"

    def _connected(self) -> None:
        code = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            self._fail("connecting: %s (%s)" % (os.strerror(code), errno.errorcode.get(code, code)))
            return
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = ("server:" + self.key).encode("utf-8")
        hello = _INT.pack(RPC_MAGIC) + _INT.pack(len(key)) + key
        if self._sock.send(hello) != len(hello):   # a few bytes on a fresh socket
            self._fail("sending the handshake: short write")
            return
        self._buf = bytearray()
        self._state = "waiting"
        if self.attempts or self.last_error:
            log.info("proxy %s: waiting for a client of key %s again after %d failed "
                     "attempts (last error: %s)", self.name, self.key, self.attempts,
                     self.last_error)
        else:
            log.info("proxy %s: waiting for a client of key %s", self.name, self.key)
        self.attempts, self.last_error = 0, None
        self._backoff.reset()

    def _read(self) -> None:
        """The proxy's answer: code, key length, the client's key. Read exactly that
        much: the client's first RPC bytes may follow at once, and belong to the session."""
        data = self._sock.recv(self._want())
        if not data:
            self._fail("the proxy closed the connection while we waited for a client")
            return
        self._buf += data
        if len(self._buf) == 4:
            code = _INT.unpack_from(self._buf, 0)[0]
            if code == RPC_CODE_DUPLICATE:
                self._fail("the proxy already has a server with key %s" % self.key)
            elif code not in (RPC_CODE_SUCCESS, RPC_CODE_MISMATCH):
                self._fail("not a TVM RPC proxy (answered 0x%x)" % (code & 0xFFFFFFFF))
        elif len(self._buf) == 8:
            keylen = _INT.unpack_from(self._buf, 4)[0]
            if not 0 < keylen <= MAX_KEY_BYTES:
                self._fail("the proxy sent a client key of %d bytes" % keylen)
        elif len(self._buf) > 8 and self._want() == 0:
            self._hand_over(bytes(self._buf[8:]).decode("utf-8", "replace"))

    def _want(self) -> int:
        if len(self._buf) < 8:
            return 8 - len(self._buf) if len(self._buf) >= 4 else 4 - len(self._buf)
        return 8 + _INT.unpack_from(self._buf, 4)[0] - len(self._buf)

    def _hand_over(self, client_key: str) -> None:
        """The client is here: its options (-timeout=N) parsed like a direct client's."""
        words = client_key.split() or ["client:" + self.key]
        request = match(ClientHello(" ".join(["client:" + self.key] + words[1:])), self.key)
        sock, self._sock, self._state = self._sock, None, "idle"
        self._next_attempt = self._clock()
        peer = "%s via proxy %s" % (words[0], self.name)
        self._on_session(sock, peer, request)

    def _fail(self, what: str) -> None:
        close_quietly(self._sock)
        self._sock = None
        if self._state == "closed":
            return
        self.attempts += 1
        self.last_error = what
        delay = self._backoff.next()
        log.warning("proxy %s: %s; retrying in %.1fs (attempt %d)", self.name, what, delay,
                    self.attempts)
        self._state = "idle"
        self._next_attempt = self._clock() + delay

