"""One RPC session, in the forked child: thread layout, work dir, edge.*
functions, then TVM's own ServerLoop on the connected socket.

The daemon has already done the handshake; this module turns the child into
what a stock TVM server child is (the functions of tvm/rpc/server.py's
_server_env, so stock clients work unchanged), with three differences:
file names are confined to the work directory and bounded in size, TVM's
pool runs on the default mode's cores from the start (one thread per core),
and `edge.set_thread_mode` / `edge.thread_state` / `edge.topology` exist.

Setting up is split in two so that a client does not wait for what does not
depend on it: `prepare_session(ctx)` builds TVM's pool, pins the default mode,
loads --load-library and registers the functions; the daemon runs it in a
spare process while it is idle, with a context whose work_dir is "" and whose
peer is a placeholder, so it must not touch the file system or log a peer.
`PreparedSession.serve(conn, ctx)` then does what needs the client: chdir
into its work dir, log with its peer, tell the daemon the effective mode, and
run ServerLoop. `run_session` is both in a row.

Every registered function raises a Python exception for a bad request; TVM's
RPC endpoint sends it to the client as an error and keeps serving, so no
request can end the session.
"""
import ctypes
import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from edge_common.cpulist import format_cpulist
from edge_server.session.ipc import ModeReporter
from edge_common.modes import ModeError, Resolution
from edge_common.slots import CoSlots, slot_cpus
from edge_common.slots import resolve_mode as resolve   # within the session's slot, if any
from edge_server.session import sandbox as sandbox_mod
from edge_server.session.clocks import HeldClocks
from edge_server.session.pinning import PinningError, ThreadPinner
from edge_server.session.timed import MeasureSettings, Measurements
from edge_server.session.toolchain import CannotLink, needs_linking, require_linker
from edge_server.session.workdir import WorkDir

logger = logging.getLogger("edge_server.session.child")

UNPINNED = "unpinned"          # the effective mode reported when the default could not be set
MAX_REMEMBERED_MODES = 64      # resolutions kept per topology (hostile clients send endless ones)


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
    mode_report_fd: Optional[int] = None   # pipe to the daemon for the effective mode
                                           # (edge_server.session.ipc); None: nobody listens
    measure: MeasureSettings = MeasureSettings()  # verdicts, cooldown, --lock-clocks
    sandbox: Optional[sandbox_mod.Plan] = None   # None or mode off: no sandbox
    clocks: Optional[HeldClocks] = None   # what the daemon holds (--lock-clocks), per client


class ThreadModes:
    """The session's thread mode: resolution against the board's topology,
    pinning on this machine. Lives in (and is only called from) the serving
    thread.

    `start()` does the work that needs no client (it runs in the spare
    process before one connects) and logs nothing: the outcome is logged by
    `announce()`, once the session's peer is known."""

    def __init__(self, ctx: SessionContext):
        self.ctx = ctx
        self.host_cpus = sorted(os.sched_getaffinity(0))
        self.pinner: Optional[ThreadPinner] = None
        self.setup_error: Optional[str] = None
        self.report: Callable[[str], None] = lambda mode: None
        self._fallback_from = None      # the fixture resolution this machine lacks
        self._default_state: Optional[dict] = None
        self.extra: dict = {}           # more keys of every state (the sandbox's)

    def start(self) -> None:
        """Create TVM's pool and apply the default mode. A failure is
        remembered: the session still serves, unpinned, and every
        set_thread_mode says why."""
        try:
            mode, cpus = self._default()
            self.pinner = ThreadPinner.create(self._pool_cpus(cpus))
            self._default_state = self.pinner.apply(mode, cpus)
        except Exception as err:  # noqa: B902 - serve unpinned rather than not at all
            self.setup_error = "%s: %s" % (type(err).__name__, err)

    def announce(self, ctx: SessionContext, report: Callable[[str], None]) -> None:
        """Bind to the session's real context (its peer), log how the default
        mode was set up, and tell the daemon the effective mode."""
        self.ctx, self.report = ctx, report
        extra = {"PEER": ctx.peer}
        if self._fallback_from is not None:
            res = self._fallback_from
            logger.warning("session %s: default mode %s means cpus %s of the fixture topology, "
                           "which this machine lacks; using its cpus %s", ctx.peer, res.mode,
                           format_cpulist(res.cpus), format_cpulist(self.host_cpus), extra=extra)
        if self.setup_error is not None:
            logger.error("session %s: cannot set up the default thread mode %r: %s",
                         ctx.peer, ctx.default_mode, self.setup_error,
                         extra=dict(extra, THREAD_MODE=ctx.default_mode))
            report(UNPINNED)
            return
        state = self._default_state
        logger.info("session %s: default thread mode %s on cpus %s", ctx.peer,
                    state["mode"], format_cpulist(state["cpus"]),
                    extra=dict(extra, THREAD_MODE=state["mode"]))
        report(state["mode"])

    def _pool_cpus(self, default_cpus) -> List[int]:
        """The CPUs TVM's pool is built on, one thread each: the slot's cores when the
        session serves a slot (every mode resolves inside it), else every core this
        process may use. A pool wider than the slot would start workers on other
        slots' cores, where each spins in sched_yield (TVM's 300000-round wait for a
        first task) next to the measurement running there."""
        pool = sorted(set(slot_cpus(self.ctx.topology) or ()) & set(self.host_cpus))
        if not pool or not set(default_cpus) <= set(pool):
            return self.host_cpus    # no slot, or a fixture whose slot is not this machine
        return pool

    def _default(self):
        res = resolved_mode(self.ctx.topology, self.ctx.default_mode)
        if set(res.cpus) <= set(self.host_cpus) or not self.ctx.fixture_root:
            return res.mode, res.cpus
        # A fixture board's CPUs need not exist here: serve on this machine's
        # CPUs rather than refuse every session.
        self._fallback_from = res
        return "cpus:" + format_cpulist(self.host_cpus), self.host_cpus

    def _require_pinner(self) -> ThreadPinner:
        if self.pinner is None or self.pinner.mode is None:
            raise PinningError("thread pinning is unavailable in this session: %s"
                               % self.setup_error)
        return self.pinner

    def _resolve(self, mode) -> Resolution:
        """resolve(), remembered per mode string (resolved_mode), then checked
        against the CPUs this machine has."""
        res = resolved_mode(self.ctx.topology, mode)
        self._check_exists_here(res.mode, res.cpus)
        return res

    def set_mode(self, mode) -> str:
        try:
            pinner = self._require_pinner()
            res = self._resolve(mode)
            state = pinner.apply(res.mode, res.cpus)
        except (ModeError, PinningError) as err:
            logger.warning("session %s: refused: %s", self.ctx.peer,
                           err, extra={"PEER": self.ctx.peer, "THREAD_MODE": str(mode)[:80]})
            if self.pinner is not None and self.pinner.mode is not None:
                self.report(self.pinner.mode)   # a failed apply may have left another layout
            raise
        logger.info("session %s: thread mode %s on cpus %s", self.ctx.peer, state["mode"],
                    format_cpulist(state["cpus"]),
                    extra={"PEER": self.ctx.peer, "THREAD_MODE": state["mode"]})
        self.report(state["mode"])
        return json.dumps(dict(state, **self.extra))

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
        return json.dumps(dict(self._require_pinner().state(), **self.extra))


# The last topology document modes were resolved against, and {mode string:
# Resolution}. The daemon fills it before it forks (warm_modes), so a session
# process inherits the resolution of its default mode and of "all" and spends
# nothing on them (each resolve parses the whole document: ~0.7 ms).
_RESOLVED: Tuple[Optional[dict], Dict[str, Resolution]] = (None, {})


def resolved_mode(topology: dict, mode) -> Resolution:
    """resolve(topology, mode), remembered per mode string for this topology
    object (the daemon replaces the object, never edits it, on a re-probe). A
    refusal is not remembered; at most MAX_REMEMBERED_MODES resolutions are,
    since hostile clients send endless distinct modes."""
    global _RESOLVED
    if _RESOLVED[0] is not topology:
        _RESOLVED = (topology, {})
    memo = _RESOLVED[1]
    if isinstance(mode, str) and mode in memo:
        return memo[mode]
    res = resolve(topology, mode)
    if isinstance(mode, str) and len(memo) < MAX_REMEMBERED_MODES:
        memo[mode] = res
    return res


def warm_modes(ctx: SessionContext) -> None:
    """In the daemon, before it forks a session process: resolve the default mode
    and "all" once, so every session process starts with both (see _RESOLVED).
    A mode that does not resolve, or a document that does not parse, is left for
    the session to report to its client."""
    for mode in (ctx.default_mode, "all"):
        try:
            resolved_mode(ctx.topology, mode)
        except (ModeError, ValueError):    # TopologyError is a ValueError
            pass


class PreparedSession:
    """A session process set up before its client arrived; `serve` runs it."""

    def __init__(self, ctx: SessionContext):
        global _SESSION
        self.ctx = ctx
        self.work: Optional[WorkDir] = None
        # First, while this process has one thread: Landlock misses threads that exist.
        self.sandbox = sandbox_mod.apply(ctx.sandbox, ctx.work_dir)
        self.modes = ThreadModes(ctx)
        self.modes.extra["sandbox"] = self.sandbox.state()
        # what the host checks every upload against: in the mode answer it needs no
        # edge.topology round trip (and no topology document) per session
        self.modes.extra["arch"] = ctx.topology.get("arch")
        self.modes.start()
        self.libraries = _load_libraries(ctx)
        self._topology_json: Optional[str] = None
        self.measure = Measurements(ctx.measure, self.session_cpus,
                                    CoSlots.from_topology(ctx.topology))
        register_functions()
        _SESSION = self

    def session_cpus(self) -> List[int]:
        """The cores the session's threads run on now (all it may use when unpinned)."""
        pinner = self.modes.pinner
        return list(pinner.cpus) if pinner is not None and pinner.mode else self.modes.host_cpus

    def thread_state(self) -> str:
        """edge.thread_state: the thread layout, the cores' conditions, the last verdict."""
        state = json.loads(self.modes.state())
        cond = self.measure.conditions()
        state["conditions"], state["last_verdict"] = cond["summary"], cond["last_verdict"]
        return json.dumps(state)

    def work_dir(self) -> WorkDir:
        if self.work is None:   # no client can call before serve(); a bug if one does
            raise RuntimeError("the session has no work directory yet")
        return self.work

    def load_module(self, file_name):
        from tvm.runtime.module import load_module as tvm_load_module
        path = self.work_dir().path(file_name)
        self.check_can_link(path, "load_module")
        module = tvm_load_module(path)
        logger.info("session %s: load_module %s", self.ctx.peer, path,
                    extra={"PEER": self.ctx.peer})
        return module

    def check_can_link(self, path: str, action: str) -> None:
        """Refuse (and log) an object/archive this board has nothing to link with."""
        if not needs_linking(path):
            return
        try:
            require_linker(path)
        except CannotLink as err:
            logger.error("session %s: %s %s refused: %s", self.ctx.peer, action, path, err,
                         extra={"PEER": self.ctx.peer})
            raise

    def link_module(self, file_name) -> bytes:
        path = self.work_dir().path(file_name)
        self.check_can_link(path, "download_linked_module")
        return _link_module(path)

    def topology_json(self) -> str:
        if self._topology_json is None:
            self._topology_json = json.dumps(self.ctx.topology)
        return self._topology_json

    def serve(self, conn, ctx: SessionContext) -> int:
        """Serve one RPC session on a connected, handshaken socket; returns the
        exit code for the child (0 when the session ended normally)."""
        from tvm.rpc import _ffi_api
        _check_same_setup(self.ctx, ctx)
        _check_sandboxed_dir(self.ctx, ctx, self.sandbox)
        os.chdir(ctx.work_dir)
        if self.sandbox is not sandbox_mod.OFF:
            sandbox_mod.enter(ctx.work_dir)
        self.ctx = ctx
        self.work = WorkDir(ctx.work_dir, ctx.max_upload_bytes, ctx.max_disk_bytes)
        self.modes.announce(ctx, ModeReporter(ctx.mode_report_fd))
        _log_libraries(ctx, self.libraries)
        self.measure.start(ctx.peer, ctx.clocks)
        _log_sandbox(ctx, self.sandbox)
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


# The session of this process; the registered functions act on it.
_SESSION: Optional[PreparedSession] = None
_REGISTERED = False


def _session() -> PreparedSession:
    if _SESSION is None:
        raise RuntimeError("no session is set up in this process")
    return _SESSION


def register_functions() -> None:
    """Register the stock session functions (work-dir confined) and edge.* in
    TVM's global registry. They act on the session of the process they run
    in, so the daemon calls this once before it forks (see preload) and no
    session process pays for it again; idempotent."""
    global _REGISTERED
    if _REGISTERED:
        return
    import tvm_ffi
    from tvm.rpc import _ffi_api  # noqa: F401  (its import cost paid here, once)

    def reg(name, func):
        tvm_ffi.register_global_func(name, func, override=True)

    reg("tvm.rpc.server.workpath", lambda name: _session().work_dir().path(name))
    reg("tvm.rpc.server.upload", lambda name, data: _session().work_dir().upload(name, data))
    reg("tvm.rpc.server.download",
        lambda name: bytearray(_session().work_dir().download(name)))
    reg("tvm.rpc.server.remove", lambda name: _session().work_dir().remove(name))
    reg("tvm.rpc.server.listdir", lambda name: _session().work_dir().listdir(name))
    reg("tvm.rpc.server.load_module", lambda name: _session().load_module(name))
    reg("tvm.rpc.server.download_linked_module",
        lambda name: bytearray(_session().link_module(name)))
    reg("edge.set_thread_mode", lambda mode: _session().modes.set_mode(mode))
    reg("edge.thread_state", lambda: _session().thread_state())
    reg("edge.topology", lambda: _session().topology_json())
    from edge_server.session import measure, timed
    timed.register(reg, _session)
    measure.register()  # stock RPCRunner's default argument filler
    _REGISTERED = True


def preload() -> None:
    """What the daemon does once, before it forks session processes, so each of
    them starts with it done: import what they run (the spare's loop, the
    argument filler's numpy.random), register the session functions, and make
    the argument conversions TVM's pool calls need (see pinning.warm_up).
    tests/edge_server/session/test_preload.py checks a session imports nothing."""
    from edge_server.session.pinning import warm_up
    from edge_server.session import spare  # noqa: F401 (every spare runs it: imported here)
    register_functions()
    warm_up()


def _check_same_setup(prepared: SessionContext, ctx: SessionContext) -> None:
    """The daemon retires a spare when its settings change; if one slipped
    through, its pool and pinning would be for other settings: refuse."""
    same = dataclasses.replace(ctx, work_dir=prepared.work_dir, peer=prepared.peer,
                               mode_report_fd=prepared.mode_report_fd, clocks=prepared.clocks)
    if same != prepared:
        changed = [f.name for f in dataclasses.fields(ctx)
                   if getattr(same, f.name) != getattr(prepared, f.name)]
        raise ValueError("session %s: prepared for other settings (%s differ); "
                         "a fresh session process is needed" % (ctx.peer, ", ".join(changed)))


def _check_sandboxed_dir(prepared: SessionContext, ctx: SessionContext, applied) -> None:
    """A sandboxed process may write only the work dir it was prepared for."""
    if applied.grants(ctx.work_dir):
        return
    raise ValueError("session %s: sandboxed for work dir %s, asked to serve in %s; a fresh "
                     "session process is needed" % (ctx.peer, prepared.work_dir, ctx.work_dir))


def _log_sandbox(ctx: SessionContext, applied) -> None:
    cost = sum(applied.cost_ms.values())
    extra = {"PEER": ctx.peer}
    logger.info("session %s: sandbox %s (%.2f ms)", ctx.peer, applied.description, cost,
                extra=extra)
    for error in applied.errors:
        logger.warning("session %s: sandbox part left out: %s", ctx.peer, error, extra=extra)


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


def _load_libraries(ctx: SessionContext) -> List[Tuple[str, Optional[str]]]:
    """dlopen each --load-library; [(path, error or None)], logged in serve()."""
    out = []
    for path in ctx.load_library:
        try:
            ctypes.CDLL(path, ctypes.RTLD_GLOBAL)
        except OSError as err:
            out.append((path, str(err)))
        else:
            out.append((path, None))
    return out


def _log_libraries(ctx: SessionContext, results) -> None:
    for path, error in results:
        if error is not None:
            logger.error("session %s: load library %s failed: %s", ctx.peer, path, error,
                         extra={"PEER": ctx.peer})
        else:
            logger.info("session %s: loaded library %s", ctx.peer, path, extra={"PEER": ctx.peer})


def prepare_session(ctx: SessionContext) -> PreparedSession:
    """Everything that does not depend on the client: TVM's pool, the default
    mode's pinning, --load-library, the registered functions. Must run in the
    thread that will call serve(): TVM's pool belongs to it. Touches no file
    and logs nothing (ctx.work_dir and ctx.peer may be placeholders)."""
    return PreparedSession(ctx)


def run_session(conn, ctx: SessionContext) -> int:
    """Serve one RPC session on a connected, handshaken socket; returns the
    exit code for the child (0 when the session ended normally)."""
    return prepare_session(ctx).serve(conn, ctx)
