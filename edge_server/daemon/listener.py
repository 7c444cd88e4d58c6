"""The listen socket and every peer before its session starts.

bind -> accept -> admission (--allow) -> the RPC handshake, read without
ever blocking and within --handshake-timeout -> either answered at once, or
parked while the slot is busy (answered when it frees, closed if the peer
leaves). The stock server reads the handshake with a blocking recv in its
only thread, so one silent peer stalls it forever; here a peer costs one
entry in a list until its deadline.
"""
import errno
import logging
import socket
from dataclasses import dataclass
from typing import Callable, List, Optional

from edge_server.daemon.config import Config
from edge_server.daemon.forking import close_quietly
from edge_server.daemon.handshake import (ClientHello, HandshakeError, HandshakeReader,
                                          SessionRequest, match, mismatch_reply,
                                          success_reply)

log = logging.getLogger("edge_server.daemon.listener")

LISTEN_BACKLOG = 16
MAX_PENDING = 64          # handshakes in progress; beyond this the oldest is closed
MAX_PARKED = 16           # complete handshakes waiting for the running session to end
MAX_ACCEPT_PER_TURN = 32
ACCEPT_PAUSE = 1.0        # s without accept() after EMFILE, so the loop does not spin


class ServerError(RuntimeError):
    """The daemon cannot start; one line naming the action, the address and the OS error."""


@dataclass
class Peer:
    """An accepted connection before its session: handshake, then maybe parked."""
    conn: socket.socket
    peer: str
    deadline: float
    reader: HandshakeReader
    hello: Optional[ClientHello] = None
    closed: bool = False


def peer_text(addr) -> str:
    host, port = addr[0], addr[1]
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def bind(host: str, port: int, port_end: int) -> socket.socket:
    """A non-blocking listen socket on the first free port of [port, port_end)."""
    try:
        family = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP,
                                    socket.AI_PASSIVE)[0][0]
    except OSError as err:
        raise ServerError("cannot listen on --host %s: %s" % (host, err)) from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for candidate in range(port, port_end):
        try:
            sock.bind((host, candidate))
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                continue
            sock.close()
            raise ServerError("cannot bind %s:%d: %s" % (host, candidate, err.strerror)) from None
        break
    else:
        sock.close()
        raise ServerError("cannot bind to any port in [%d, %d) on %s: all in use; "
                          "pass a free range with --port/--port-end" % (port, port_end, host))
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


class Listener:
    """Peers from accept() to the start of their session.

    `busy()` says whether the slot has a client in a session (then complete
    handshakes are parked and accept() waits); `on_ready(peer)` is called with
    a peer whose handshake is complete when the slot is free."""

    def __init__(self, config: Config, clock: Callable[[], float],
                 busy: Callable[[], bool], on_ready: Callable[[Peer], None]):
        self.config = config
        self._clock = clock
        self._busy = busy
        self._on_ready = on_ready
        self.sock: Optional[socket.socket] = None
        self.port: Optional[int] = None
        self.pending: List[Peer] = []
        self.parked: List[Peer] = []
        self._paused_until = 0.0
        self.refused = 0

    # ---- the socket ------------------------------------------------------------
    def open(self) -> int:
        self.sock = bind(self.config.host, self.config.port, self.config.port_end)
        self.port = self.sock.getsockname()[1]
        return self.port

    def close(self) -> None:
        """Stop accepting and close every peer that has not started a session."""
        close_quietly(self.sock)
        self.sock = None
        for peer in self.pending + self.parked:
            close_quietly(peer.conn)
        self.pending, self.parked = [], []

    def inherited(self, keep: Optional[socket.socket] = None) -> list:
        """What a forked child must close: the listen socket and every waiting peer."""
        socks = [self.sock] if self.sock is not None else []
        return socks + [p.conn for p in self.pending + self.parked if p.conn is not keep]

    # ---- the loop's questions -------------------------------------------------------
    def accepting(self, now: float) -> bool:
        return self.sock is not None and not self._busy() and now >= self._paused_until

    def deadlines(self, now: float) -> List[float]:
        times = [p.deadline for p in self.pending]
        if self.sock is not None and self._paused_until > now:
            times.append(self._paused_until)
        return times

    def check_deadlines(self, now: float) -> None:
        for peer in list(self.pending):
            if now >= peer.deadline:
                self.drop(peer, "no complete handshake within %gs (got %d bytes)"
                          % (self.config.handshake_timeout, peer.reader.received))

    # ---- accept and admission -----------------------------------------------------
    def accept(self) -> None:
        for _ in range(MAX_ACCEPT_PER_TURN):
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                log.error("accept on port %d failed: %s; pausing accept for %.0fs",
                          self.port, err.strerror, ACCEPT_PAUSE)
                self._paused_until = self._clock() + ACCEPT_PAUSE
                return
            self._admit(conn, peer_text(addr), addr[0])
            if self._busy() or self.sock is None:
                return          # the rest wait in the backlog, as with the stock server

    def _admit(self, conn: socket.socket, peer: str, ip: str) -> None:
        if not self.config.allows(ip):
            self.refused += 1
            log.warning("refused connection from %s: not in --allow %s", peer,
                        " ".join(str(n) for n in self.config.allow), extra={"PEER": peer})
            close_quietly(conn)
            return
        conn.setblocking(False)
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        new = Peer(conn, peer, self._clock() + self.config.handshake_timeout, HandshakeReader())
        self.pending.append(new)
        if len(self.pending) > MAX_PENDING:
            self.drop(self.pending[0], "too many handshakes in progress (%d); closing the "
                      "oldest" % MAX_PENDING)
        log.debug("accepted %s", peer, extra={"PEER": peer})
        self.read_handshake(new)   # usually already here: no extra poll turn

    def drop(self, peer: Peer, why: str) -> None:
        """Close a peer that will not get a session, saying why."""
        peer.closed = True
        close_quietly(peer.conn)
        if peer in self.pending:
            self.pending.remove(peer)
        if peer in self.parked:
            self.parked.remove(peer)
        self.refused += 1
        log.warning("closed %s: %s", peer.peer, why, extra={"PEER": peer.peer})

    # ---- the handshake --------------------------------------------------------------
    def read_handshake(self, peer: Peer) -> None:
        """Read what has arrived (at most the handshake's own bytes); act when complete."""
        hello = None
        while hello is None and not peer.closed:
            try:
                data = peer.conn.recv(peer.reader.want())
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                self.drop(peer, "handshake read failed: %s" % err.strerror)
                return
            if not data:
                self.drop(peer, "closed the connection after %d bytes of handshake"
                          % peer.reader.received)
                return
            try:
                hello = peer.reader.feed(data)
            except HandshakeError as err:
                self.drop(peer, "not a TVM RPC handshake: %s" % err)
                return
        if hello is None:
            return
        self.pending.remove(peer)
        peer.hello = hello
        if not self._busy():
            self._on_ready(peer)
        elif len(self.parked) >= MAX_PARKED:
            self.drop(peer, "busy, and %d clients already wait" % MAX_PARKED)
        else:
            self.parked.append(peer)   # answered when the running session ends

    def parked_gone(self, peer: Peer) -> None:
        if not peer.closed:
            self.drop(peer, "went away while waiting for the running session to end")

    def serve_parked(self) -> None:
        """The slot is free: answer the peers that waited, oldest first."""
        while self.parked and not self._busy() and self.sock is not None:
            self._on_ready(self.parked.pop(0))

    def answer(self, peer: Peer, expected_key: Optional[str],
               from_tracker: bool) -> Optional[SessionRequest]:
        """Match the client's key and reply: its session request, or None (peer closed)."""
        request = match(peer.hello, expected_key) if expected_key is not None else None
        if request is None:
            try:
                peer.conn.send(mismatch_reply())
            except OSError:
                pass
            self.drop(peer, "key %.80r does not match this server's (key %s%s)"
                      % (peer.hello.key, self.config.key,
                         ", matchkey from the tracker" if from_tracker else ""))
            return None
        try:
            reply = success_reply("server:" + self.config.key)
            if peer.conn.send(reply) != len(reply):
                raise OSError(errno.EAGAIN, "short write of the handshake reply")
        except OSError as err:
            self.drop(peer, "handshake reply failed: %s" % err.strerror)
            return None
        if request.ignored_options:
            log.info("session %s: ignoring unknown key options %s", peer.peer,
                     " ".join(request.ignored_options), extra={"PEER": peer.peer})
        return request
