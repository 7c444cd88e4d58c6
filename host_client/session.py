"""Sessions on edge-server boards with a known core set.

`connect()` = tracker request (our fast link, see tracker.py) + TVM's own
RPC connect + `edge.set_thread_mode`, so the caller gets a session whose
threads are already pinned the way it asked, or an error saying why not.
Nothing falls back silently: a stock server, a refused mode, a busy board
each raise their own error class.
"""
import json
import os
import re
import time
from typing import Dict, Optional, Tuple

from tvm import rpc
from tvm.rpc import _ffi_api

from edge_common.topology import Topology, TopologyError
from host_client.errors import (CrossCompilerMissing, NotAnEdgeServer, SessionError,
                                ThreadModeRefused)
from host_client.link import check_file
from host_client.tracker import KEY_RECHECK_AFTER, TrackerLink, default_key, parse_tracker

SET_MODE_FUNC = "edge.set_thread_mode"
STATE_FUNC = "edge.thread_state"
TOPOLOGY_FUNC = "edge.topology"


class EdgeSession(rpc.RPCSession):
    """A tvm.rpc.RPCSession on an edge-server board, plus its thread state.

    Everything RPCSession offers works unchanged (upload, load_module,
    get_function, cpu(), ...). `thread_state` is the board's last answer to
    set_thread_mode/thread_state: {"mode", "cpus", "nthreads", "pid",
    "threads": [{"tid", "cpus"}], "tvm_num_threads", "sandbox", "arch"}.
    """

    def __init__(self, sess, address: Tuple[str, int], key: str):
        super().__init__(sess)
        self.address = address
        self.key = key
        self.thread_state: Optional[dict] = None
        self.timings_ms: Dict[str, float] = {}
        self._topology: Optional[Topology] = None

    @property
    def board(self) -> str:
        return "%s:%d" % self.address

    def _edge_function(self, name: str):
        try:
            return self.get_function(name)
        except AttributeError:
            raise NotAnEdgeServer(
                "board %s (key %r) has no %s: it runs a stock TVM RPC server, not edge-server; "
                "run `edge-server --tracker HOST:PORT --key %s` on that board to get thread modes"
                % (self.board, self.key, name, self.key)) from None

    def set_thread_mode(self, mode: str) -> dict:
        """Ask the board for `mode`; returns (and stores) the new thread state."""
        func = self._edge_function(SET_MODE_FUNC)
        try:
            answer = func(str(mode))
        except Exception as err:  # the board's refusal arrives as an RPCError
            error = refusal(self.board, mode, err)
        else:
            error = None
            self.thread_state = json.loads(answer)
        if error is not None:
            try:
                raise error
            finally:  # break the frame <-> traceback cycle that would keep us alive
                error = None
        return self.thread_state

    def read_thread_state(self) -> dict:
        """Ask the board for the session's current threads and their CPUs."""
        self.thread_state = json.loads(self._edge_function(STATE_FUNC)())
        return self.thread_state

    def topology(self) -> Topology:
        """The board's topology (cached: it does not change in a session)."""
        if self._topology is None:
            text = self._edge_function(TOPOLOGY_FUNC)()
            try:
                self._topology = Topology.from_dict(json.loads(text), "edge.topology")
            except (ValueError, TopologyError) as err:
                raise SessionError("board %s (key %r) answered edge.topology with a document "
                                   "this client cannot read (%s); run the same edge-server "
                                   "version on the board and the host" % (self.board, self.key,
                                                                          err)) from None
        return self._topology

    def board_arch(self) -> Optional[str]:
        """The arch the board's server can load (topology "arch"); None on a
        stock server, which announces nothing (uploads are then not checked).
        Taken from the thread state when the board put it there (it does in
        every mode answer), so an upload costs no edge.topology round trip."""
        if isinstance(self.thread_state, dict) and "arch" in self.thread_state:
            arch = self.thread_state["arch"]
            return arch if isinstance(arch, str) and arch else None
        try:
            return self.topology().arch
        except NotAnEdgeServer:
            return None

    def upload(self, data, target=None):
        """RPCSession.upload, refusing first (ArchMismatch, one line) an ELF
        file or archive built for another machine than the board's."""
        arch = self.board_arch()
        if arch:
            check_file(data, arch)
        return super().upload(data, target)

    def upload_module(self, local_path: str, remote_name: Optional[str] = None):
        """Upload a built module and load it on the board.

        A `.o` or `.tar` (MetaSchedule's default export) is linked here, with
        the toolchain for the board's arch, so the board needs no compiler;
        only when this host has no such toolchain does the board link it,
        if it has a linker. A `.so` goes up as it is, after the arch check."""
        from host_client.link import LINK_SUFFIXES, link_on_host

        name = remote_name or os.path.basename(local_path)
        arch = self.board_arch()
        if arch and local_path.endswith(LINK_SUFFIXES):
            try:
                local_path = link_on_host(local_path, arch)
                name += ".so"
            except CrossCompilerMissing as err:
                if not self.topology().linker:
                    raise CrossCompilerMissing(
                        "%s; board %s has no compiler either (topology linker: null), so %s "
                        "cannot be linked anywhere" % (err, self.board, name)) from None
        self.upload(local_path, name)
        return self.load_module(name)

    def release(self) -> None:
        """Drop our handles so the board ends the session as soon as the last
        reference to this object goes (the tracker hands the board out again
        only then)."""
        self._sess = None
        self._remote_funcs = {}


def board_message(err: BaseException) -> str:
    """The board's own words from an RPC error, without TVM's wrapping."""
    text = str(err).strip()
    text = re.sub(r"^(RPCError: )?Error caught from RPC call:\s*", "", text)
    lines = [line for line in text.splitlines() if line.strip()]
    # A remote Python traceback ends with "SomeError: message"; keep the message.
    for i in range(len(lines) - 1, -1, -1):
        match = re.match(r"^\s*(?:[A-Za-z_.]*(?:Error|Exception)): (.*)$", lines[i])
        if match and any(l.lstrip().startswith(("File ", "Traceback")) for l in lines[:i]):
            return " ".join([match.group(1)] + [l.strip() for l in lines[i + 1:]])
    return " ".join(l.strip() for l in lines) or type(err).__name__


def refusal(board: str, mode: str, err: BaseException) -> ThreadModeRefused:
    said = board_message(err)
    return ThreadModeRefused("board %s refused thread mode %r: %s" % (board, mode, said),
                             board_message=said, mode=str(mode))


def request_session(tracker: Optional[str] = None, key: Optional[str] = None,
                    session_timeout: Optional[float] = None, priority: int = 1,
                    wait: Optional[float] = None, tracker_timeout: float = 10.0,
                    check_key: bool = True) -> EdgeSession:
    """A plain session through the fast tracker path, with no thread mode
    applied (works on stock servers too; `connect()` builds on it).

    wait: seconds to wait for a free board (None = as long as it takes).
    session_timeout: the board ends the session after this many seconds.
    """
    address = parse_tracker(tracker)
    key = default_key(key)
    t0 = time.perf_counter()
    with TrackerLink(address, timeout=tracker_timeout) as link:
        t1 = time.perf_counter()
        recheck = None
        if check_key and link.key_seen(key):
            recheck = KEY_RECHECK_AFTER   # no summary per session; again only if no board came
        elif check_key:
            link.check_key(key)
        host, port, matchkey = link.request(key, priority=priority, wait=wait,
                                            recheck_after=recheck)
    t2 = time.perf_counter()
    session = open_board(host, port, matchkey, key, session_timeout)
    t3 = time.perf_counter()
    session.timings_ms.update({"tracker_connect": (t1 - t0) * 1e3,
                               "tracker_request": (t2 - t1) * 1e3,
                               "rpc_connect": (t3 - t2) * 1e3})
    return session


def open_board(host: str, port: int, matchkey: str, key: str,
               session_timeout: Optional[float] = None) -> EdgeSession:
    """TVM's RPC connect to the board the tracker named, wrapped as EdgeSession."""
    wire_key = matchkey
    if session_timeout:
        wire_key += " -timeout=%s" % _seconds(session_timeout)
    try:
        sess = _ffi_api.Connect(host, int(port), wire_key, False)
    except Exception as err:
        raise SessionError("cannot open a session on board %s:%d (key %r): %s"
                           % (host, port, key, board_message(err))) from None
    return EdgeSession(sess, (host, int(port)), key)


def connect(tracker: Optional[str] = None, key: Optional[str] = None,
            thread_mode: Optional[str] = "all", session_timeout: Optional[float] = None,
            priority: int = 1, wait: Optional[float] = None,
            tracker_timeout: float = 10.0) -> EdgeSession:
    """A session on a board of `key`, with `thread_mode` applied and verified.

    tracker: "host:port" (default TVM_TRACKER_HOST/TVM_TRACKER_PORT).
    key: device key (default TVM_TRACKER_KEY).
    thread_mode: "all", "big", "little:1", "cpus:4,5", ...; None keeps the
        board's default mode (its state is still read, so the core set is known).
    Raises TrackerUnreachable, KeyUnknown, BoardBusy (after `wait` seconds),
    NotAnEdgeServer, ThreadModeRefused, SessionError.
    """
    session = request_session(tracker, key, session_timeout=session_timeout, priority=priority,
                              wait=wait, tracker_timeout=tracker_timeout)
    error = _apply_mode(session, thread_mode)
    if error is not None:
        # Raise from a frame that no longer holds the session, so the board
        # sees the connection close now rather than when a traceback dies.
        session.release()
        del session
        raise error
    return session


def _apply_mode(session: EdgeSession, thread_mode: Optional[str]):
    """Set (or read) the mode; returns the error to raise instead of raising it."""
    t0 = time.perf_counter()
    try:
        if thread_mode is None:
            session.read_thread_state()
        else:
            session.set_thread_mode(thread_mode)
    except (NotAnEdgeServer, ThreadModeRefused) as err:
        return type(err)(*err.args, **_extra(err))
    except Exception as err:  # a session that died under us
        return SessionError("board %s (key %r) failed while setting thread mode %r: %s"
                            % (session.board, session.key, thread_mode, board_message(err)))
    session.timings_ms["set_thread_mode"] = (time.perf_counter() - t0) * 1e3
    return None


def _extra(err: BaseException) -> dict:
    if isinstance(err, ThreadModeRefused):
        return {"board_message": err.board_message, "mode": err.mode}
    return {}


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
