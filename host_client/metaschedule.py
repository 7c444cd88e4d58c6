"""MetaSchedule plugin: an RPCRunner whose every measurement runs in the thread mode asked for.

Two lines in a tuning script:

    runner = host_client.edge_runner("127.0.0.1:9190", "rk3399", thread_mode="little:1")
    target = host_client.target_for(runner)        # num-cores/mcpu of that mode
    ms.tune_tir(mod, target, work_dir, max_trials_global=64, runner=runner)

RPCRunner runs its hooks in PopenPoolExecutor workers, which receive them
through cloudpickle; so the hooks here are an importable class with plain
attributes (EdgeSessionFactory) and module-level functions
(upload_module, alloc_argument, cleanup). upload_module links MetaSchedule's
`.tar` export here for the board's arch when the builder made one, so a
board without a compiler can be tuned on with the default builder too;
`edge_builder(runner)` skips that step by exporting a `.so` directly. A session that cannot get its mode raises from
f_create_session, before anything is uploaded, and MetaSchedule records
the trial as a runner error carrying the board's message.
"""
import json
import os
import time
from typing import Optional

from edge_common.address import Address
from edge_common.topology import Topology
from host_client.errors import KeyUnknown, NotAnEdgeServer, ThreadModeRefused
from host_client.session import connect
from host_client.tracker import default_key, parse_tracker

RANDOM_FILL = "tvm.contrib.random.random_fill_for_measure"


class EdgeSessionFactory:
    """f_create_session for RPCRunner: connect() with a fixed thread mode.

    record: optional path of a JSON-lines file; each session appends one line
    (board, mode, thread state, where its creation time went), so a tuning
    run can prove every measurement ran in the requested mode.
    """

    def __init__(self, thread_mode: str, wait: Optional[float] = 120.0,
                 record: Optional[str] = None):
        self.thread_mode = thread_mode
        self.wait = wait
        self.record = record

    def __call__(self, rpc_config):
        t0 = time.perf_counter()
        tracker = str(Address(rpc_config.tracker_host, int(rpc_config.tracker_port)))
        session = connect(tracker=tracker, key=rpc_config.tracker_key,
                          thread_mode=self.thread_mode,
                          session_timeout=rpc_config.session_timeout_sec,
                          priority=rpc_config.session_priority, wait=self.wait)
        if self.record:
            self._append(session, (time.perf_counter() - t0) * 1e3)
        return session

    def _append(self, session, total_ms: float) -> None:
        line = json.dumps({"pid": os.getpid(), "board": session.board, "key": session.key,
                           "mode": self.thread_mode, "thread_state": session.thread_state,
                           "create_ms": round(total_ms, 3),
                           "timings_ms": {k: round(v, 3) for k, v in session.timings_ms.items()}})
        append_line(self.record, line)

    def __repr__(self) -> str:
        return "EdgeSessionFactory(thread_mode=%r)" % self.thread_mode


def append_line(path: str, line: str) -> None:
    """One write with O_APPEND: lines from parallel runner workers never interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def alloc_argument(session, device, args_info, alloc_repeat):
    """f_alloc_argument: the board's random filler when it has one (edge-server
    registers one: its runtime-only TVM lacks tvm.contrib.random), else fill on
    the host and copy in (older boards, runtime-only stock servers)."""
    from tvm.s_tir.meta_schedule.runner.utils import alloc_argument_common

    try:
        fill = session.get_function(RANDOM_FILL)
    except AttributeError:
        fill = host_random_fill
    return alloc_argument_common(fill, device, args_info, alloc_repeat)


def upload_module(session, local_path, remote_path):
    """f_upload_module: EdgeSession.upload_module (link here for the board's
    arch unless the artifact is already a .so, arch checked before upload);
    a session that is not an EdgeSession gets MetaSchedule's plain upload."""
    from host_client.session import EdgeSession

    if isinstance(session, EdgeSession):
        return session.upload_module(local_path, remote_path)
    session.upload(local_path, remote_path)
    return session.load_module(remote_path)


def cleanup(session, remote_path) -> None:
    """f_cleanup: remove what this trial uploaded, if it is still there.

    MetaSchedule's default also calls remove("") (the whole temp dir on a
    stock server); edge-server removes the session's work dir itself when the
    session ends, so only this trial's files are removed here, and a name that
    is not there is not an error."""
    if session is None or remote_path is None:
        return
    for name in (remote_path, remote_path + ".so"):
        try:
            session.remove(name)
        except Exception:  # not there: nothing to clean
            pass


def host_random_fill(tensor) -> None:
    """Fill a (remote) tensor with random data made on the host."""
    import numpy as np

    shape = tuple(int(d) for d in tensor.shape)
    dtype = str(tensor.dtype)
    rng = np.random.default_rng()
    if dtype == "bool":
        data = rng.integers(0, 2, size=shape).astype("bool")
    elif dtype.startswith(("int", "uint")):
        data = rng.integers(0, 8, size=shape).astype(dtype)
    else:
        data = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    tensor.copyfrom(data)


def edge_runner(tracker: Optional[str] = None, key: Optional[str] = None,
                thread_mode: str = "all", *, session_timeout: int = 30, priority: int = 1,
                wait: Optional[float] = 120.0, evaluator_config=None, alloc_repeat: int = 1,
                max_workers: Optional[int] = None, parallel: bool = False,
                record: Optional[str] = None, check: bool = True, preload: bool = True,
                remeasure: Optional[int] = 2, verdict_thresholds: Optional[dict] = None,
                verdict_record: Optional[str] = None,
                **runner_kwargs):
    """An RPCRunner measuring every trial on a board of `key` in `thread_mode`.

    tracker/key default to TVM_TRACKER_HOST/PORT/KEY like MetaSchedule.
    check: ask the tracker now whether an edge-server board of `key` exists
    and accepts the mode (from the topology it announces), so a typo fails
    here instead of as N runner errors. The runner remembers `thread_mode`
    and the board's `topology` for `target_for(runner)`.
    preload: import TVM's tensor intrinsics now the fast way (see
    intrin_preload), which tune_tir would otherwise do the slow way.
    parallel: one runner worker per server of `key` on the tracker (the slots
    of `edge-server --slots`), so every free slot measures at once; an
    explicit max_workers wins. Each slot resolves `thread_mode` within its
    own cores, and every slot must accept it (checked here).
    remeasure: a trial the board calls SUSPECT (clock, heat, intruders; see
    host_client.verdicts) is measured again after a cooldown up to this many
    times, then recorded as a runner error with the reasons; None measures
    without verdicts. verdict_thresholds overrides the board's thresholds;
    verdict_record appends every attempt's verdict to a JSON-lines file.
    """
    from host_client.verdicts import VerdictEvaluator
    from tvm.s_tir.meta_schedule.runner import RPCConfig, RPCRunner

    from host_client.intrin_preload import preload_tensor_intrin

    address = parse_tracker(tracker)
    key = default_key(key)
    topology = check_board(str(address), key, thread_mode) if check else None
    if parallel and max_workers is None:
        max_workers = count_servers(str(address), key)
    if preload:
        preload_tensor_intrin()
    runner = RPCRunner(
        rpc_config=RPCConfig(tracker_host=address.host, tracker_port=address.port,
                             tracker_key=key, session_priority=priority,
                             session_timeout_sec=session_timeout),
        evaluator_config=evaluator_config, alloc_repeat=alloc_repeat,
        f_create_session=EdgeSessionFactory(thread_mode, wait=wait, record=record),
        f_upload_module=upload_module, f_alloc_argument=alloc_argument, f_cleanup=cleanup,
        max_workers=max_workers,
        f_run_evaluator=runner_kwargs.pop("f_run_evaluator", None) or (
            VerdictEvaluator(remeasure, thresholds=verdict_thresholds, record=verdict_record)
            if remeasure is not None else None), **runner_kwargs)
    runner.thread_mode = thread_mode
    runner.topology = topology
    runner.max_workers = max_workers or 1
    return runner


def count_servers(tracker: str, key: str) -> int:
    """Servers (slots) registered for `key`; KeyUnknown if none."""
    from host_client.boards import list_boards

    count = sum(1 for b in list_boards(tracker) if b.key == key)
    if not count:
        raise KeyUnknown("no board with key %r on the tracker %s" % (key, tracker))
    return count


def check_board(tracker: str, key: str, thread_mode: str) -> Topology:
    """The topology of an edge-server board of `key` that accepts `thread_mode`;
    with slots, every slot of the key must accept it (the tracker hands a
    trial to any of them)."""
    from edge_common.modes import ModeError
    from edge_common.slots import resolve_mode as resolve

    from host_client.boards import list_boards

    boards = [b for b in list_boards(tracker) if b.key == key]
    if not boards:
        raise KeyUnknown("no board with key %r on the tracker %s" % (key, tracker))
    edge = [b for b in boards if b.topology is not None]
    broken = [b for b in boards if b.edge and b.topology is None]
    if not edge and broken:
        raise NotAnEdgeServer("the edge-server boards with key %r announce a topology this "
                              "client cannot read (%s: %s); run the same edge-server version "
                              "on the boards and the host"
                              % (key, broken[0].address, broken[0].topology_error))
    if not edge:
        raise NotAnEdgeServer("the boards with key %r (%s) run stock TVM servers without thread "
                              "modes; run edge-server there"
                              % (key, ", ".join(b.address for b in boards)))
    refused, shapes = [], {}
    for board in edge:
        try:
            res = resolve(board.topology, thread_mode)
        except ModeError as err:
            refused.append((board, err))
        else:
            cls = res.cls or (board.slot or {}).get("class")
            shapes.setdefault((len(res.cpus), cls), []).append(board)
    if refused and not edge[0].slot:
        board, err = refused[0]
        raise ThreadModeRefused("board %s would refuse thread mode %r: %s"
                                % (board.address, thread_mode, err),
                                board_message=str(err), mode=thread_mode)
    if refused:
        board, err = refused[0]
        raise ThreadModeRefused(
            "%d of the %d slots of key %r would refuse thread mode %r (the tracker hands a "
            "trial to any of them): slot %s: %s; use a mode every slot meets ('all' is each "
            "slot's own cores) or give those slots another key"
            % (len(refused), len(edge), key, thread_mode, board.describe_slot(), err),
            board_message=str(err), mode=thread_mode)
    if len(shapes) > 1:
        raise ThreadModeRefused(
            "the slots of key %r give thread mode %r different cores (%s); a tuning run would "
            "mix their measurements; use a mode that means the same in every slot, or give "
            "each kind of slot its own key"
            % (key, thread_mode, "; ".join("%d slot(s) on %d %s core(s), e.g. %s" % (
                len(boards), n, cls or "mixed", "slot " + boards[0].describe_slot())
                for (n, cls), boards in sorted(shapes.items(), key=lambda kv: -kv[0][0]))),
            board_message="slots differ", mode=thread_mode)
    return edge[0].topology
