"""Run one kernel under several thread modes, each in fresh sessions.

This is the table users asked for when the thread setting alone moved
their inference time from 104 ms to 395 ms: same module, same board, only
the core set changes, and the board reports which cores it really used.
"""
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, List, Optional

from host_client.errors import ArchMismatch, SessionError, ThreadModeRefused
from host_client.kernels import Kernel
from host_client.session import connect


@dataclass
class ModeResult:
    mode: str
    times_ms: List[float] = field(default_factory=list)
    cpus: Optional[List[int]] = None
    nthreads: Optional[int] = None
    sessions: int = 0
    correct: Optional[bool] = None  # output checked against numpy (matmul only)
    board: Optional[str] = None     # the server (slot) of the last session
    error: Optional[str] = None
    verdicts: List[dict] = field(default_factory=list)   # one per session (issue 13)

    @property
    def verdict(self) -> Optional[str]:
        """The worst verdict of the row's sessions: SUSPECT > UNKNOWN > VALID."""
        seen = [v["status"] for v in self.verdicts]
        return next((s for s in ("SUSPECT", "UNKNOWN", "VALID") if s in seen), None)

    @property
    def mean_ms(self) -> Optional[float]:
        return sum(self.times_ms) / len(self.times_ms) if self.times_ms else None

    @property
    def stddev_ms(self) -> Optional[float]:
        if len(self.times_ms) < 2:
            return 0.0 if self.times_ms else None
        mean = self.mean_ms
        return math.sqrt(sum((t - mean) ** 2 for t in self.times_ms) / (len(self.times_ms) - 1))

    @property
    def cv(self) -> Optional[float]:
        mean, sd = self.mean_ms, self.stddev_ms
        return sd / mean if mean else None

    def to_json(self, baseline: Optional[float]) -> dict:
        return {"mode": self.mode, "cpus": self.cpus, "nthreads": self.nthreads,
                "sessions": self.sessions, "times_ms": [round(t, 6) for t in self.times_ms],
                "mean_ms": self.mean_ms, "stddev_ms": self.stddev_ms, "cv": self.cv,
                "speed_vs_first": speed(baseline, self.mean_ms), "correct": self.correct,
                "error": self.error, "board": self.board, "verdict": self.verdict,
                "verdicts": self.verdicts}


def speed(baseline: Optional[float], mean: Optional[float]) -> Optional[float]:
    """How many times faster than the first mode (>1 = faster)."""
    if not baseline or not mean:
        return None
    return baseline / mean


def measure_once(session, kernel: Kernel, repeat: int, min_repeat_ms: int,
                 check: bool) -> (List[float], Optional[bool], Optional[dict]):
    """Upload, load and time the kernel in one session; times in ms per call,
    and the board's verdict on the repeats (None from a board without one)."""
    from host_client.verdicts import NoVerdicts, measured

    import numpy as np
    import tvm

    # Checked against the board's arch first; a .o/.tar is linked here for it.
    module = session.upload_module(kernel.path, os.path.basename(kernel.path))
    dev = session.cpu()
    rng = np.random.default_rng(0)
    host = [rng.uniform(-1, 1, size=s).astype(kernel.dtype) for s in kernel.shapes]
    args = [tvm.runtime.tensor(a, dev) for a in host]
    evaluator = module.time_evaluator(kernel.func, dev, number=1, repeat=repeat,
                                      min_repeat_ms=min_repeat_ms)
    try:
        profile, verdict = measured(session, evaluator)(*args)
    except NoVerdicts:
        profile, verdict = evaluator(*args), None
    times = [t * 1e3 for t in profile.results]
    correct = None
    if check and kernel.func == "matmul":
        module[kernel.func](*args)
        expected = host[0].astype("float64") @ host[1].astype("float64")
        correct = bool(np.allclose(args[2].numpy(), expected, rtol=1e-3, atol=1e-3))
    return times, correct, verdict and verdict.__dict__


def bench_modes(tracker: str, key: str, modes: List[str], kernel: Kernel, *,
                sessions: int = 1, repeat: int = 5, min_repeat_ms: int = 20,
                session_timeout: Optional[float] = None, wait: Optional[float] = None,
                check: bool = True, parallel: int = 1,
                progress: Optional[Callable[[int, int, str], None]] = None) -> List[ModeResult]:
    """Every mode in `sessions` fresh sessions; a refused mode is reported in its
    row (error) and the others still run. Tracker errors abort the whole run.
    parallel > 1: that many modes measure at once, each in its own session,
    which the tracker hands to different slots of the key (edge-server
    --slots); results come back in the order of `modes`."""
    total = len(modes) * sessions
    done = [0]
    lock = threading.Lock()

    def step(mode: str) -> None:
        if progress:
            with lock:
                progress(done[0], total, mode)
                done[0] += 1

    def one(mode: str) -> ModeResult:
        return _bench_mode(tracker, key, mode, kernel, sessions, repeat, min_repeat_ms,
                           session_timeout, wait, check, step)

    if parallel > 1:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            results = list(pool.map(one, modes))
    else:
        results = [one(mode) for mode in modes]
    if progress:
        progress(total, total, "done")
    return results


def _bench_mode(tracker, key, mode, kernel, sessions, repeat, min_repeat_ms, session_timeout,
                wait, check, step) -> ModeResult:
    """One mode's row: `sessions` fresh sessions, or the error that stopped it."""
    result = ModeResult(mode=mode)
    for run in range(sessions):
        step(mode)
        try:
            session = connect(tracker, key, thread_mode=mode,
                              session_timeout=session_timeout, wait=wait)
        except (ThreadModeRefused, SessionError) as err:
            result.error = str(err)
            break
        state = session.thread_state or {}
        result.board = session.board
        result.cpus, result.nthreads = state.get("cpus"), state.get("nthreads")
        try:
            times, correct, verdict = measure_once(session, kernel, repeat, min_repeat_ms, check)
        except ArchMismatch:  # the file is wrong for every mode: one line, no table
            raise
        except Exception as err:  # a kernel that fails on the board fails its row only
            result.error = "measuring in mode %r on %s failed: %s" % (
                mode, session.board, str(err).strip().splitlines()[-1] if str(err) else err)
            break
        finally:
            session.release()
            del session
        result.times_ms.extend(times)
        if verdict is not None:
            result.verdicts.append(verdict)
        result.sessions += 1
        result.correct = correct if result.correct is not False else False
    return result


def default_modes(topology) -> List[str]:
    """all, then each class and one core of each class, skipping modes that
    would name the same cores as one already listed. topology: a Topology
    (or its dict)."""
    from edge_common.modes import ModeError
    from edge_common.slots import resolve_mode as resolve   # within a slot, if the board is one
    from edge_common.topology import as_topology

    topology = as_topology(topology)
    modes, seen = [], set()
    candidates = ["all"]
    for cls in topology.ranked_classes():
        candidates += [cls.name, "%s:1" % cls.name]
    for mode in candidates:
        try:
            cpus = tuple(resolve(topology, mode).cpus)
        except ModeError:
            continue
        if cpus not in seen:
            seen.add(cpus)
            modes.append(mode)
    return modes
