"""Put TVM's thread pool and every other thread of the session on a CPU set,
one pool thread per CPU, and prove it from /proc.

How TVM 0.27's pool behaves (src/runtime/thread_pool.cc, threading_backend.cc
in the wheel), and what this module does about each point:

* The pool is `thread_local` to the thread that launches parallel work (in a
  session: the thread running ServerLoop), and its worker count is fixed when
  it is created, from the thread-local max concurrency (TVM_NUM_THREADS or the
  hardware count, halved on x86). Later configuration can use fewer workers,
  never more.
  -> `ThreadPinner.create` builds the pool itself, first thing in the serving
  thread, with one worker per CPU this process may use (`pool_size`). Every
  later mode is a subset of those CPUs, so any mode can be applied at any
  time in the session, before or after kernels ran, and a stock client that
  never asks gets the default mode with one thread per core (stock TVM would
  use one thread on this 2-core x86 machine).

* `runtime.config_threadpool(-2, n, cpus)` sets the max concurrency to
  `len(cpus)`, uses `n` workers and, when `len(cpus)` is at least the pool
  size, pins worker i (i >= 1) to `cpus[i]`; with a shorter list TVM gives up
  pinning and lets every worker float over the set.
  -> `apply` always passes a list exactly as long as the pool: the mode's
  CPUs, then the same CPUs again for the workers the mode leaves idle (they
  never receive a task, since a kernel launches `n` tasks). Worker 0 is the
  serving thread itself, which TVM leaves on the whole set: `apply` pins it to
  `cpus[0]`. A Python list of str passes as the `Array<String>` TVM wants;
  that only works locally, which is why this runs inside the session
  instead of over RPC.

* TVM_BIND_THREADS=0 would turn TVM's binding off and TVM_EXCLUDE_WORKER0=0
  would move task 0 off the serving thread; both are forced to TVM's defaults
  before the pool exists so the layout above holds.

* Other threads (numpy's BLAS pool, anything a loaded library started) are
  pinned to the whole set with sched_setaffinity; threads started later
  inherit the serving thread's single CPU, which is inside the set.

* Verification lists the threads in /proc/self/task, reads each one's mask
  back from the kernel (sched_getaffinity) and asks `runtime.NumThreads`; if the layout differs
  from the request, `apply` raises instead of returning a state that lies.

Calling `runtime.NumThreads` creates a pool in the calling thread, so every
TVM call here must run in the serving thread; `ThreadPinner` checks that.
"""
import os
import threading
from collections import Counter
from typing import Dict, List, Optional, Sequence

from edge_common.cpulist import format_cpulist

# AffinityMode kSpecifyOneCorePerThread in threading_backend.h.
_ONE_CORE_PER_THREAD = -2


class PinningError(RuntimeError):
    """The thread layout could not be set up or is not what was asked."""


def read_affinities(pid="self") -> Dict[int, List[int]]:
    """{tid: allowed CPUs} for every thread of a process, as the kernel has them.

    The threads come from /proc/<pid>/task; each one's mask from
    sched_getaffinity(tid), the value /proc/<pid>/task/<tid>/status prints as
    Cpus_allowed_list (minus CPUs that are offline), at a tenth of the cost of
    generating and parsing that file: this read-back is part of every
    set_thread_mode round trip. Threads that exit while we read are skipped."""
    out: Dict[int, List[int]] = {}
    for name in os.listdir("/proc/%s/task" % pid):
        try:
            out[int(name)] = sorted(os.sched_getaffinity(int(name)))
        except (ProcessLookupError, FileNotFoundError):
            continue
    return out


def _tids() -> List[int]:
    return sorted(int(t) for t in os.listdir("/proc/self/task"))


_TVM_FUNCS = None


def _tvm_funcs():
    """(runtime.config_threadpool, runtime.NumThreads), looked up once per process."""
    global _TVM_FUNCS
    if _TVM_FUNCS is None:
        import tvm  # noqa: F401  (loads libtvm_runtime, which registers these)
        import tvm_ffi
        _TVM_FUNCS = (tvm_ffi.get_global_func("runtime.config_threadpool"),
                      tvm_ffi.get_global_func("runtime.NumThreads"))
    return _TVM_FUNCS


def warm_up() -> None:
    """Convert config_threadpool-like arguments once without touching any pool
    (ffi.Array only builds an array): Python's ABC caches filled here are
    inherited by every forked session process, which then starts its pool
    about 0.5 ms sooner. Safe in the daemon: it creates no thread."""
    import tvm_ffi
    tvm_ffi.get_global_func("ffi.Array")(_ONE_CORE_PER_THREAD, 1, ["0"])


def prepare_environment(pool_size: int) -> None:
    """Set TVM's thread variables to what ThreadPinner relies on; must run
    before TVM creates any pool in this process."""
    os.environ["TVM_BIND_THREADS"] = "1"
    os.environ.pop("TVM_EXCLUDE_WORKER0", None)
    os.environ["TVM_NUM_THREADS"] = str(pool_size)


class ThreadPinner:
    """Owns TVM's pool in the serving thread and the affinity of every thread
    of the process. Create it, and call everything, from the serving thread."""

    def __init__(self, host_cpus: Sequence[int], pool_tids: Sequence[int], serving_tid: int):
        self.host_cpus = sorted(host_cpus)
        self.pool_size = len(pool_tids) + 1
        self.pool_tids = sorted(pool_tids)
        self.serving_tid = serving_tid
        self.mode: Optional[str] = None
        self.cpus: List[int] = []

    @classmethod
    def create(cls, host_cpus: Optional[Sequence[int]] = None,
               pool_size: Optional[int] = None) -> "ThreadPinner":
        """Build TVM's pool in the calling thread: `pool_size` threads (default:
        one per CPU this process may use), before anything else can.

        Raises PinningError if a pool already existed in this thread (its size
        would be unknown, so no request could be honoured reliably)."""
        host = sorted(host_cpus if host_cpus is not None else os.sched_getaffinity(0))
        if not host:
            raise PinningError("this process may run on no CPU at all")
        size = pool_size if pool_size is not None else len(host)
        if size < 1:
            raise PinningError("a thread pool needs at least one thread, asked for %d" % size)
        prepare_environment(size)
        config, _ = _tvm_funcs()
        before = set(_tids())
        padded = [host[i % len(host)] for i in range(size)]
        config(_ONE_CORE_PER_THREAD, size, [str(c) for c in padded])
        new = sorted(set(_tids()) - before)
        if len(new) != size - 1:
            raise PinningError(
                "expected TVM to start %d pool thread(s) in this thread, saw %d new thread(s) "
                "(%s): a pool existed before the session set it up" % (size - 1, len(new), new))
        return cls(host, new, threading.get_native_id())

    def _check_thread(self) -> None:
        tid = threading.get_native_id()
        if tid != self.serving_tid:
            raise PinningError("TVM's pool belongs to thread %d; called from thread %d"
                               % (self.serving_tid, tid))

    def apply(self, mode: str, cpus: Sequence[int]) -> dict:
        """Run TVM's pool on `cpus`, one thread each, pin every other thread to
        the set, verify, and return the state.

        Raises PinningError for a set this session cannot run on (the previous
        layout stays), or when the read-back differs from the request (then
        `state()` tells what the threads really run on)."""
        self._check_thread()
        cpus = [int(c) for c in cpus]
        if not cpus or len(set(cpus)) != len(cpus):
            raise PinningError("need distinct CPUs, one per thread; got %s" % cpus)
        missing = sorted(set(cpus) - set(self.host_cpus))
        if missing:
            raise PinningError("CPU %s not available to this server process (it may use %s)"
                               % (",".join(map(str, missing)), _fmt(self.host_cpus)))
        if len(cpus) > self.pool_size:
            raise PinningError(
                "mode %s needs %d threads but TVM's thread pool in this session was created "
                "with %d and can only shrink; call set_thread_mode before running anything "
                "that needs more threads, or open a new session" % (mode, len(cpus), self.pool_size))
        config, _ = _tvm_funcs()
        padded = [cpus[i % len(cpus)] for i in range(self.pool_size)]
        config(_ONE_CORE_PER_THREAD, len(cpus), [str(c) for c in padded])
        os.sched_setaffinity(0, {cpus[0]})
        self._pin_others(set(cpus))
        self.mode, self.cpus = mode, cpus
        state = self.state()
        self._verify(state, padded)
        return state

    def _pin_others(self, cpu_set: set) -> None:
        for tid in _tids():
            if tid == self.serving_tid or tid in self.pool_tids:
                continue
            try:
                os.sched_setaffinity(tid, cpu_set)
            except (ProcessLookupError, FileNotFoundError):
                continue   # the thread ended meanwhile

    def state(self) -> dict:
        """The session's thread layout as it is now, read back from /proc."""
        self._check_thread()
        _, num_threads = _tvm_funcs()
        threads = read_affinities()
        return {"mode": self.mode, "cpus": list(self.cpus), "nthreads": len(self.cpus),
                "pid": os.getpid(),
                "threads": [{"tid": tid, "cpus": threads[tid]} for tid in sorted(threads)],
                "tvm_num_threads": int(num_threads())}

    def _verify(self, state: dict, padded: List[int]) -> None:
        cpus = set(self.cpus)
        threads = {t["tid"]: t["cpus"] for t in state["threads"]}
        problems = []
        if state["tvm_num_threads"] != len(self.cpus):
            problems.append("TVM uses %d threads, asked for %d"
                            % (state["tvm_num_threads"], len(self.cpus)))
        if threads.get(self.serving_tid) != [self.cpus[0]]:
            problems.append("serving thread %d runs on %s, not CPU %d"
                            % (self.serving_tid, threads.get(self.serving_tid), self.cpus[0]))
        workers = [threads.get(t) for t in self.pool_tids]
        if any(w is None or len(w) != 1 for w in workers):
            problems.append("pool threads are not each on one CPU: %s"
                            % dict(zip(self.pool_tids, workers)))
        elif Counter(w[0] for w in workers) != Counter(padded[1:]):
            problems.append("pool threads run on %s, expected %s"
                            % (sorted(w[0] for w in workers), sorted(padded[1:])))
        for tid, allowed in threads.items():
            if not set(allowed) <= cpus:
                problems.append("thread %d may run on %s, outside %s" % (tid, allowed, sorted(cpus)))
        if problems:
            raise PinningError("thread layout for mode %s is not what was asked: %s"
                               % (self.mode, "; ".join(problems)))


def _fmt(cpus: Sequence[int]) -> str:
    return "cpus " + format_cpulist(cpus)
