"""The host's link to a stock TVM tracker.

`tvm.rpc.base.sendjson` writes the length and the body of a message in two
`send()` calls with Nagle on, and the tracker answers the same way; each
message then waits for a delayed ACK (~40 ms on Linux). MetaSchedule opens a
session per measurement, so that wait multiplied by every trial. Here every
message is one write on a TCP_NODELAY socket, and we ask the kernel for an
immediate ACK before every read so the tracker's two-part replies are not
held back by its own Nagle. The framing is edge_common.wire (TVM's protocol,
without importing TVM, so `edge-client list` starts fast).
"""
import os
import select
import socket
from typing import Optional, Set, Tuple

from edge_common import wire
from edge_common.address import TRACKER_PORT, Address, AddressError, parse_address
from edge_common.oserror import describe
from edge_common.wire import TrackerCode
from host_client.errors import BoardBusy, KeyUnknown, TrackerError, TrackerUnreachable


def parse_tracker(tracker: Optional[str] = None) -> Address:
    """"host:port" (or None: TVM_TRACKER_HOST/TVM_TRACKER_PORT, as MetaSchedule reads them)."""
    try:
        if tracker is None or tracker == "":
            host = os.environ.get("TVM_TRACKER_HOST")
            if not host:
                raise TrackerError("no tracker given: pass tracker=\"HOST:PORT\" (--tracker "
                                   "HOST:PORT) or set TVM_TRACKER_HOST and TVM_TRACKER_PORT")
            port = os.environ.get("TVM_TRACKER_PORT", str(TRACKER_PORT))
            return parse_address("[%s]:%s" % (host, port) if ":" in host else host + ":" + port,
                                 what="TVM_TRACKER_HOST/TVM_TRACKER_PORT")
        return parse_address(tracker, TRACKER_PORT, what="tracker")
    except AddressError as err:
        raise TrackerError(str(err)) from None


def default_key(key: Optional[str] = None) -> str:
    """The device key, or TVM_TRACKER_KEY like MetaSchedule."""
    key = key or os.environ.get("TVM_TRACKER_KEY")
    if not key:
        raise TrackerError("no device key given: pass key=... (--key KEY) or set TVM_TRACKER_KEY")
    return key


# (tracker host, tracker port, key) of every key this process has seen registered
# or served. connect() checks a key with the tracker's summary (every server's
# entry, topology documents and all) only the first time; after that it asks for
# a board at once, and checks again only if no board came within
# KEY_RECHECK_AFTER seconds, so a key that vanished still ends in KeyUnknown.
_KEYS_SEEN: Set[Tuple[str, int, str]] = set()
KEY_RECHECK_AFTER = 1.0


class TrackerLink:
    """One TCP connection to the tracker; use as a context manager."""

    def __init__(self, address: Address, timeout: float = 10.0):
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
                % (self.address, describe(err), self.address.port,
                   self.address.port + 1)) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            wire.greet(sock, str(self.address))
        except wire.WireError as err:
            sock.close()
            raise TrackerUnreachable(str(err)) from None
        except (OSError, EOFError) as err:
            sock.close()
            raise TrackerUnreachable("%s accepted a connection but did not answer as a TVM "
                                     "tracker: %s" % (self.address, describe(err))) from None
        return sock

    def call(self, message, timeout: Optional[float] = -1.0):
        """Send one message and read one reply; timeout=None waits forever."""
        self.send(message)
        return self.reply(timeout)

    def send(self, message) -> None:
        self._io(lambda: self.sock.sendall(wire.encode(message)), self.timeout)

    def reply(self, timeout: Optional[float] = -1.0):
        """Read one reply; timeout=None waits forever."""
        return self._io(lambda: wire.read_reply(self.sock),
                        self.timeout if timeout == -1.0 else timeout)

    def _io(self, action, timeout: Optional[float]):
        self.sock.settimeout(timeout)
        try:
            return action()
        except socket.timeout:
            raise
        except (OSError, EOFError, ValueError) as err:
            raise TrackerUnreachable("lost the tracker at %s while talking to it: %s"
                                     % (self.address, describe(err))) from None

    def _readable(self, timeout: Optional[float]) -> bool:
        """Whether a reply starts arriving within `timeout` s (None: wait for it)."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000))))

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
            _KEYS_SEEN.discard(self._seen_entry(key))
            known = ", ".join(sorted(keys)) or "none"
            raise KeyUnknown("no board with key %r on the tracker %s (registered keys: %s)"
                             % (key, self.address, known))
        _KEYS_SEEN.add(self._seen_entry(key))

    def key_seen(self, key: str) -> bool:
        """This process has seen a server of `key` on this tracker (check_key or a
        request it answered)."""
        return self._seen_entry(key) in _KEYS_SEEN

    def _seen_entry(self, key: str) -> Tuple[str, int, str]:
        return (self.address.host, self.address.port, key)

    def request(self, key: str, priority: int = 1, wait: Optional[float] = None,
                recheck_after: Optional[float] = None) -> Tuple[str, int, str]:
        """Ask for a free server of `key`: (host, port, matchkey).

        wait: seconds to wait for a board to become free (None = forever).
        recheck_after: for a key not checked just before: if no board came within
        this many seconds, check_key on a second link (KeyUnknown if the key has
        gone; else keep waiting for the rest of `wait`)."""
        self.send([TrackerCode.REQUEST, key, "", priority])
        recheck = recheck_after is not None and (wait is None or wait > recheck_after)
        first = recheck_after if recheck else wait
        if not self._readable(first):
            if not recheck:
                raise self._busy(key, wait)
            with TrackerLink(self.address, timeout=self.timeout) as other:
                other.check_key(key)
            if not self._readable(None if wait is None else wait - first):
                raise self._busy(key, wait)
        try:
            reply = self.reply()
        except socket.timeout:
            raise TrackerUnreachable("tracker %s started a reply to the request for %r but did "
                                     "not finish it within %gs" % (self.address, key,
                                                                   self.timeout)) from None
        if not (isinstance(reply, list) and len(reply) == 2 and reply[0] == TrackerCode.SUCCESS):
            raise TrackerError("tracker %s answered the request for %r with %r"
                               % (self.address, key, reply))
        _KEYS_SEEN.add(self._seen_entry(key))
        host, port, matchkey = reply[1]
        return str(host), int(port), str(matchkey)

    def _busy(self, key: str, wait: Optional[float]) -> BoardBusy:
        return BoardBusy("every board with key %r on the tracker %s stayed busy for %gs; "
                         "wait for the running sessions to end or raise the wait"
                         % (key, self.address, wait))


def registered_keys(summary: dict) -> set:
    """Device keys of every server listed in a tracker summary."""
    keys = set()
    for info in summary.get("server_info", []):
        prefix, _, key = str(info.get("key", "")).partition(":")
        if prefix == "server" and key:
            keys.add(key)
    return keys
