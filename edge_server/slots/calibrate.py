"""How much slots disturb each other, measured on the board itself.

Method. For each slot and each of two probe kinds, the probe runs pinned on
every core of the slot, alone (every other slot idle) and busy (every core
of every other slot runs the same kind of probe without pause), in
alternating rounds so that drift of the machine hits both conditions alike.
The figure per slot and kind is the median time of a fixed amount of work;
slowdown = busy / alone - 1.

- memory-bound: copy one array into another, each `memory_mb` MiB (default
  32, larger than the last-level cache of ARM boards and of this x86 host),
  so every pass streams through DRAM and shares its bandwidth and the LLC;
- compute-bound: `np.sin` over an 8192-element float64 array (64 KiB, in
  L1/L2), which contends only for what cores share at the core level (SMT
  siblings, a shared FPU, thermal and power limits).

Why numpy and not TVM kernels: the board has no compiler (a minbase image
cannot link), numpy is already there (TVM depends on it), and these two
element-wise operations use no BLAS thread pool, so one process is exactly
one busy core. The probes run in forked processes that never touch TVM.

Results are cached per boot (the kernel's boot_id): a reboot may change
clocks, governors or firmware, and `--slots auto` must not pay for a
calibration on every restart of the daemon.
"""
import json
import logging
import os
import select
import signal
import statistics
import tempfile
import time
from typing import Dict, List, Optional, Sequence

from edge_common.cpulist import format_cpulist
from edge_common.slots import resolve_slots
from edge_server.board.sysfs import Reader

log = logging.getLogger("edge_server.slots.calibrate")

KINDS = ("memory", "compute")
METHOD = ("median time of a fixed amount of work per slot, pinned on each of its cores, alone "
          "vs with every core of every other slot running the same probe; memory: copy of a "
          "%d MiB float64 array; compute: np.sin over 8192 float64 (64 KiB), %d passes; "
          "%d alternating rounds of %d repetitions; slowdown = busy/alone - 1")
COMPUTE_PASSES = 40
READY_TIMEOUT = 60.0   # s for a worker to allocate and touch its arrays
CACHE_VERSION = 1


class CalibrationError(RuntimeError):
    """The calibration cannot run here; the message says why and what would work."""


# ---------------------------------------------------------------- the probes (in forked workers)

def _probe(kind: str, memory_mb: int):
    """A closure doing one fixed amount of `kind` work; allocations done up front."""
    import numpy as np
    if kind == "memory":
        n = memory_mb * (1 << 20) // 8
        src = np.ones(n)
        dst = np.empty(n)

        def work():
            np.copyto(dst, src)
    else:
        a = np.linspace(0.0, 1.0, 8192)
        out = np.empty_like(a)

        def work():
            for _ in range(COMPUTE_PASSES):
                np.sin(a, out=out)
    work()   # touch every page before anything is timed
    return work


def _worker(cpu: int, kind: str, memory_mb: int, ready_w: int, go_r: int, out_w: int,
            reps: int) -> int:
    """Pin to `cpu`, say ready, then either time `reps` runs (reps > 0) and
    write them, or loop until killed (a loader, reps == 0)."""
    os.sched_setaffinity(0, {cpu})
    work = _probe(kind, memory_mb)
    os.write(ready_w, b"r")
    if reps == 0:
        while True:
            work()
    os.read(go_r, 1)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    os.write(out_w, (json.dumps(times) + "\n").encode())
    return 0


class _Workers:
    """Forked probe processes pinned one per CPU; killed and reaped on close."""

    def __init__(self):
        self.pids: List[int] = []
        self._fds: List[int] = []

    def start(self, cpus: Sequence[int], kind: str, memory_mb: int, reps: int) -> List[int]:
        """Fork one worker per cpu; returns the read ends of their result pipes
        (empty for loaders). Returns once every worker is ready."""
        ready_r, ready_w = os.pipe()
        go_r, go_w = os.pipe()
        outs = []
        self._fds += [ready_r, go_w]
        for cpu in cpus:
            out_r, out_w = os.pipe()
            pid = os.fork()
            if pid == 0:   # pragma: no cover - runs in the child
                code = 70
                try:
                    signal.signal(signal.SIGTERM, signal.SIG_DFL)
                    code = _worker(cpu, kind, memory_mb, ready_w, go_r, out_w, reps)
                finally:
                    os._exit(code)
            os.close(out_w)
            self.pids.append(pid)
            if reps:
                outs.append(out_r)
            else:
                os.close(out_r)
        os.close(ready_w)
        os.close(go_r)
        got, deadline = 0, time.monotonic() + READY_TIMEOUT
        while got < len(cpus):
            left = deadline - time.monotonic()
            data = os.read(ready_r, len(cpus) - got) if left > 0 and \
                select.select([ready_r], [], [], left)[0] else b""
            if not data:
                raise CalibrationError("probe workers on cpus %s were not ready within %.0fs "
                                       "(out of memory? try a smaller --memory-mb)"
                                       % (format_cpulist(cpus), READY_TIMEOUT))
            got += len(data)
        self._go_w = go_w
        return outs

    def go(self, outs: List[int]) -> List[List[float]]:
        os.write(self._go_w, b"g" * len(outs))
        results = []
        for fd in outs:
            with os.fdopen(fd, "r") as f:
                line = f.readline()
            if not line:
                raise CalibrationError("a probe worker died while measuring")
            results.append(json.loads(line))
        return results

    def close(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in self.pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.pids, self._fds = [], []


def _time_slot(cpus, kind, memory_mb, reps, busy_cpus) -> float:
    """Median seconds of one unit of `kind` work on the slot's cores, with
    loaders on `busy_cpus` (none: alone). The slot's figure is its slowest core."""
    loaders, measurers = _Workers(), _Workers()
    try:
        if busy_cpus:
            loaders.start(busy_cpus, kind, memory_mb, 0)
        outs = measurers.start(cpus, kind, memory_mb, reps)
        per_cpu = measurers.go(outs)
    finally:
        measurers.close()
        loaders.close()
    return max(statistics.median(times) for times in per_cpu)


def calibrate(topology: dict, spec: str, *, memory_mb: int = 32, rounds: int = 3,
              reps: int = 8, progress=None) -> dict:
    """Measure the slowdown of every slot of `spec` (see the module doc)."""
    slots = resolve_slots(topology, spec)
    allowed = set(os.sched_getaffinity(0))
    for slot in slots:
        missing = sorted(set(slot.cpus) - allowed)
        if missing:
            raise CalibrationError("slot %d needs cpus %s, which this process may not run on "
                                   "(allowed: cpus %s); calibrate on the board itself, without "
                                   "--root" % (slot.index, format_cpulist(missing),
                                               format_cpulist(allowed)))
    started = time.time()
    entries = []
    for slot in slots:
        others = sorted(c for s in slots if s.index != slot.index for c in s.cpus)
        alone: Dict[str, List[float]] = {k: [] for k in KINDS}
        busy: Dict[str, List[float]] = {k: [] for k in KINDS}
        for kind in KINDS:
            for _ in range(rounds):
                alone[kind].append(_time_slot(slot.cpus, kind, memory_mb, reps, []))
                if others:
                    busy[kind].append(_time_slot(slot.cpus, kind, memory_mb, reps, others))
            if progress:
                progress(slot, kind)
        entry = {"index": slot.index, "cpus": list(slot.cpus), "class": slot.cls,
                 "alone_ms": {k: round(1e3 * statistics.median(v), 4) for k, v in alone.items()},
                 "busy_ms": {k: round(1e3 * statistics.median(v), 4)
                             for k, v in busy.items() if v},
                 "slowdown": {}}
        for kind in KINDS:
            if others:
                entry["slowdown"][kind] = round(
                    statistics.median(busy[kind]) / statistics.median(alone[kind]) - 1, 4)
            else:
                entry["slowdown"][kind] = 0.0    # no co-slot: nothing to disturb it
        entries.append(entry)
    return {"version": CACHE_VERSION, "spec": spec, "slots": entries,
            "method": METHOD % (memory_mb, COMPUTE_PASSES, rounds, reps),
            "seconds": round(time.time() - started, 2),
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


# ---------------------------------------------------------------- per-boot cache

def default_cache_dir(environ=None) -> str:
    env = os.environ if environ is None else environ
    if env.get("STATE_DIRECTORY"):
        return env["STATE_DIRECTORY"].split(":")[0]
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "edge-server")


def boot_id(root: str = "/") -> Optional[str]:
    """The kernel's id of this boot, or None if it cannot be read."""
    text = Reader(root).text("proc/sys/kernel/random/boot_id")
    if text and all(c in "0123456789abcdef-" for c in text.lower()):
        return text.lower()
    return None


def _cache_path(cache_dir: Optional[str], root: str) -> Optional[str]:
    ident = boot_id(root)
    if ident is None:
        return None
    return os.path.join(cache_dir or default_cache_dir(), "calibration-%s.json" % ident)


def _key(topology: dict, spec: str) -> str:
    """A cache entry holds for the same slots on the same cores."""
    return ";".join(format_cpulist(s.cpus) for s in resolve_slots(topology, spec))


def _read_cache(path: Optional[str]) -> dict:
    if path is None or not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        log.warning("ignoring calibration cache %s: %s", path, err)
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    return data.get("results") or {}


def load_cached(topology: dict, spec: str, cache_dir: Optional[str] = None,
                root: str = "/") -> Optional[dict]:
    """This boot's calibration of `spec`'s slots, if one was made."""
    return _read_cache(_cache_path(cache_dir, root)).get(_key(topology, spec))


def store(topology: dict, result: dict, cache_dir: Optional[str] = None, root: str = "/") -> \
        Optional[str]:
    """Add `result` to this boot's cache (atomic replace); the path, or None."""
    path = _cache_path(cache_dir, root)
    if path is None:
        log.warning("no boot_id under %s: the calibration is not cached", root)
        return None
    results = _read_cache(path)
    results[_key(topology, result["spec"])] = result
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".calibration-")
    with os.fdopen(fd, "w") as f:
        json.dump({"version": CACHE_VERSION, "results": results}, f, indent=1)
    os.replace(tmp, path)
    return path


def calibrated(topology: dict, specs: Sequence[str], cache_dir: Optional[str] = None,
               root: str = "/", **kwargs) -> List[dict]:
    """One result per spec: this boot's cached one, else measured now and cached."""
    out = []
    for spec in specs:
        result = load_cached(topology, spec, cache_dir, root)
        if result is None:
            if len(resolve_slots(topology, spec)) == 1:
                result = {"version": CACHE_VERSION, "spec": spec, "method": "one slot: no co-slot",
                          "slots": [{"index": 0, "cpus": list(resolve_slots(topology, spec)[0].cpus),
                                     "slowdown": {k: 0.0 for k in KINDS}}]}
            else:
                log.info("calibrating slots %s (memory- and compute-bound probes)", spec)
                result = calibrate(topology, spec, **kwargs)
                where = store(topology, result, cache_dir, root)
                log.info("calibrated slots %s in %.1fs: worst slowdown %s%s", spec,
                         result["seconds"], _worst_text(result),
                         "; cached in %s" % where if where else "")
        out.append(result)
    return out


def _worst_text(result: dict) -> str:
    figures = [v for s in result.get("slots") or [] for v in (s.get("slowdown") or {}).values()]
    return "%.1f%%" % (100 * max(figures)) if figures else "n/a"
