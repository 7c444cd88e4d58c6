"""One RPC session, in the forked child: thread layout, work dir, edge.*
functions, then TVM's own ServerLoop on the connected socket.

The daemon has already done the handshake; this module turns the child into
what a stock TVM server child is (the functions of tvm/rpc/server.py's
_server_env, so stock clients work unchanged), with three differences:
file names are confined to the work directory and bounded in size, TVM's
pool runs on the default mode's cores from the start (one thread per core),
and `edge.set_thread_mode` / `edge.thread_state` / `edge.topology` exist.

Every registered function raises a Python exception for a bad request; TVM's
RPC endpoint sends it to the client as an error and keeps serving, so no
request can end the session.
"""
import ctypes
import json
import logging
import os
from dataclasses import dataclass
from typing import Optional

from edge_server.cpulist import format_cpulist
from edge_server.modes import ModeError, resolve
from edge_server.pinning import PinningError, ThreadPinner
from edge_server.workdir import WorkDir

logger = logging.getLogger("edge_server.session")


@dataclass(frozen=True)
class SessionContext:
    topology: dict            # the topology document (see common brief)
    default_mode: str         # e.g. "all"; already validated by the daemon against topology
    work_dir: str             # exists, empty, owned by the daemon (it removes it afterwards)
    peer: str                 # "ip:port" for log lines
    load_library: tuple = ()  # paths from --load-library
    max_upload_bytes: int = 256 << 20      # per file
    max_disk_bytes: int = 1 << 30          # whole work dir
    fixture_root: bool = False  # topology from --root: its CPU ids may not exist here


class ThreadModes:
    """The session's thread mode: resolution against the board's topology,
    pinning on this machine. Lives in (and is only called from) the serving
    thread."""

    def __init__(self, ctx: SessionContext):
        self.ctx = ctx
        self.host_cpus = sorted(os.sched_getaffinity(0))
        self.pinner: Optional[ThreadPinner] = None
        self.setup_error: Optional[str] = None

    def start(self) -> None:
        """Create TVM's pool and apply the default mode. A failure is logged
        and remembered: the session still serves, unpinned, and every
        set_thread_mode says why."""
        try:
            self.pinner = ThreadPinner.create(self.host_cpus)
            mode, cpus = self._default()
            state = self.pinner.apply(mode, cpus)
        except Exception as err:  # noqa: B902 - serve unpinned rather than not at all
            self.setup_error = "%s: %s" % (type(err).__name__, err)
            logger.error("session %s: cannot set up the default thread mode %r: %s",
                         self.ctx.peer, self.ctx.default_mode, err,
                         extra={"PEER": self.ctx.peer, "THREAD_MODE": self.ctx.default_mode})
            return
        logger.info("session %s: default thread mode %s on cpus %s", self.ctx.peer,
                    state["mode"], format_cpulist(state["cpus"]),
                    extra={"PEER": self.ctx.peer, "THREAD_MODE": state["mode"]})

    def _default(self):
        res = resolve(self.ctx.topology, self.ctx.default_mode)
        if set(res.cpus) <= set(self.host_cpus) or not self.ctx.fixture_root:
            return res.mode, res.cpus
        # A fixture board's CPUs need not exist here: serve on this machine's
        # CPUs rather than refuse every session.
        logger.warning("session %s: default mode %s means cpus %s of the fixture topology, "
                       "which this machine lacks; using its cpus %s",
                       self.ctx.peer, res.mode, format_cpulist(res.cpus),
                       format_cpulist(self.host_cpus), extra={"PEER": self.ctx.peer})
        return "cpus:" + format_cpulist(self.host_cpus), self.host_cpus

    def _require_pinner(self) -> ThreadPinner:
        if self.pinner is None or self.pinner.mode is None:
            raise PinningError("thread pinning is unavailable in this session: %s"
                               % self.setup_error)
        return self.pinner

    def set_mode(self, mode) -> str:
        try:
            pinner = self._require_pinner()
            res = resolve(self.ctx.topology, mode)
            self._check_exists_here(res.mode, res.cpus)
            state = pinner.apply(res.mode, res.cpus)
        except (ModeError, PinningError) as err:
            logger.warning("session %s: refused: %s", self.ctx.peer,
                           err, extra={"PEER": self.ctx.peer, "THREAD_MODE": str(mode)[:80]})
            raise
        logger.info("session %s: thread mode %s on cpus %s", self.ctx.peer, state["mode"],
                    format_cpulist(state["cpus"]),
                    extra={"PEER": self.ctx.peer, "THREAD_MODE": state["mode"]})
        return json.dumps(state)

    def _check_exists_here(self, mode: str, cpus) -> None:
        missing = sorted(set(cpus) - set(self.host_cpus))
        if not missing:
            return
        where = ("the topology is a fixture (--root), and " if self.ctx.fixture_root else "")
        raise ModeError("thread mode %s means cpus %s, but %scpus %s do not exist or are not "
                        "allowed on this machine (it may use cpus %s)"
                        % (mode, format_cpulist(cpus), where, format_cpulist(missing),
                           format_cpulist(self.host_cpus)))

    def state(self) -> str:
        return json.dumps(self._require_pinner().state())


def _register(ctx: SessionContext, modes: ThreadModes, work: WorkDir) -> None:
    import tvm_ffi
    from tvm.runtime.module import load_module as tvm_load_module

    def reg(name, func):
        tvm_ffi.register_global_func(name, func, override=True)

    reg("tvm.rpc.server.workpath", work.path)
    reg("tvm.rpc.server.upload", work.upload)
    reg("tvm.rpc.server.download", lambda name: bytearray(work.download(name)))
    reg("tvm.rpc.server.remove", work.remove)
    reg("tvm.rpc.server.listdir", work.listdir)

    def load_module(file_name):
        path = work.path(file_name)
        module = tvm_load_module(path)
        logger.info("session %s: load_module %s", ctx.peer, path, extra={"PEER": ctx.peer})
        return module

    reg("tvm.rpc.server.load_module", load_module)
    reg("tvm.rpc.server.download_linked_module",
        lambda file_name: bytearray(_link_module(work.path(file_name))))
    reg("edge.set_thread_mode", modes.set_mode)
    reg("edge.thread_state", modes.state)
    topology_json = json.dumps(ctx.topology)
    reg("edge.topology", lambda: topology_json)


def _link_module(path: str) -> bytes:
    """What stock download_linked_module does: link a .o or .tar into a .so
    on the board and send it back."""
    from tvm.support import cc, tar
    if path.endswith(".o"):
        cc.create_shared(path + ".so", path)
        path += ".so"
    elif path.endswith(".tar"):
        unpack = path[:-len(".tar")]
        os.makedirs(unpack, exist_ok=True)
        tar.untar(path, unpack)
        cc.create_shared(path + ".so", [os.path.join(unpack, f) for f in sorted(os.listdir(unpack))])
        path += ".so"
    elif not path.endswith((".so", ".dylib")):
        raise ValueError("do not know how to link %s; send a .o, .tar or .so"
                         % os.path.basename(path))
    with open(path, "rb") as f:
        return f.read()


def _load_libraries(ctx: SessionContext) -> None:
    for path in ctx.load_library:
        try:
            ctypes.CDLL(path, ctypes.RTLD_GLOBAL)
        except OSError as err:
            logger.error("session %s: load library %s failed: %s", ctx.peer, path, err,
                         extra={"PEER": ctx.peer})
        else:
            logger.info("session %s: loaded library %s", ctx.peer, path, extra={"PEER": ctx.peer})


def run_session(conn, ctx: SessionContext) -> int:
    """Serve one RPC session on a connected, handshaken socket; returns the
    exit code for the child (0 when the session ended normally)."""
    from tvm.rpc import _ffi_api

    os.chdir(ctx.work_dir)
    modes = ThreadModes(ctx)
    modes.start()
    _load_libraries(ctx)
    _register(ctx, modes, WorkDir(ctx.work_dir, ctx.max_upload_bytes, ctx.max_disk_bytes))
    try:
        _ffi_api.ServerLoop(conn.fileno())
    except Exception as err:  # the client vanished or sent garbage mid-session
        logger.warning("session %s: ended with %s: %s", ctx.peer, type(err).__name__, err,
                       extra={"PEER": ctx.peer})
        return 1
    finally:
        try:
            conn.close()
        except OSError:
            pass
    return 0
