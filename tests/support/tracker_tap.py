"""A relay in front of the real stock tracker that records every message its
clients send, so a test can count what a server or a host client costs the
tracker per session (counts, never timings).

Servers and clients are pointed at the tap's port instead of the tracker's;
the tap forwards bytes both ways unchanged and decodes the client-to-tracker
direction (the 4-byte magic, then TVM's length-prefixed JSON frames) with
edge_common.wire. The tracker hands out the address a server reports, not
the tap's, so sessions themselves never pass through here.
"""
import socket
import threading
from typing import List, Optional, Tuple

from edge_common import wire
from tests.support.procs import HOST

CODE_NAMES = {v: k for k, v in vars(wire.TrackerCode).items() if isinstance(v, int)}


class TrackerTap:
    """Listens on a free port of 127.0.0.1 and relays to the tracker at `port`."""

    def __init__(self, tracker_port: int):
        self.tracker_port = tracker_port
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self._lock = threading.Lock()
        self._messages: List[Tuple[int, str, int]] = []   # (connection, code name, bytes)
        self._conns = 0
        self._open: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return "%s:%d" % (HOST, self.port)

    def messages(self, conn: Optional[int] = None) -> List[Tuple[str, int]]:
        """(code name, JSON body bytes) of every message so far (of one connection)."""
        with self._lock:
            return [(name, size) for c, name, size in self._messages
                    if conn is None or c == conn]

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.messages() if n == name)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def close(self) -> None:
        self.sock.close()
        for s in list(self._open):
            try:
                s.close()
            except OSError:
                pass

    # ---- relaying ----------------------------------------------------------------
    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.sock.accept()
            except OSError:
                return
            try:
                up = socket.create_connection((HOST, self.tracker_port))
            except OSError:
                down.close()
                continue
            for s in (down, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns += 1
                conn = self._conns
                self._open += [down, up]
            threading.Thread(target=self._pump, args=(down, up, conn), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, None), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, conn: Optional[int]) -> None:
        decoder = wire.FrameDecoder()
        magic = bytearray()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                if conn is None:
                    continue
                if len(magic) < 4:       # the opening magic is not a frame
                    take = 4 - len(magic)
                    magic += data[:take]
                    data = data[take:]
                self._record(conn, decoder, data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _record(self, conn: int, decoder: wire.FrameDecoder, data: bytes) -> None:
        """Log each completed frame as (connection, code name, size of its compact JSON)."""
        values = decoder.feed(data)
        with self._lock:
            for value in values:
                code = value[0] if isinstance(value, list) and value else None
                self._messages.append((conn, CODE_NAMES.get(code, repr(code)),
                                       len(wire.encode(value)) - 4))
