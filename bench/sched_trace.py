"""Who keeps which core busy, and beside whom: from the scheduler's own record.

Why this exists: with two one-core slots on a 2-core machine, two slots / one
in sessions/s is at most 2 / (the cores one slot's session stream keeps
busy). /proc/stat says how many cores that is; this says which processes
run *beside* each other (both CPUs busy at once) and in which part of a
session, so the work that holds the ratio down has a name. It reads
`perf record -a -e sched:sched_switch -e sched:sched_process_fork` (as
printed by `perf script -F cpu,time,event,trace`): every context switch,
with the CPU, the time and the tids, and every fork/clone, so that
processes and threads started during the trace get their parent's role.

Pure functions (parse, intervals, overlap) plus `record`, which runs perf.
"""
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Tuple

LINE = re.compile(r"\s*\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)")
SWITCH = re.compile(r"prev_pid=(\d+) .*==> .*next_pid=(\d+)")
FORK = re.compile(r"pid=(\d+) child_comm=.* child_pid=(\d+)")
KERNEL_SLICE = 0.004   # s: a session process's stretch of slices this long is its kernel


@dataclass(frozen=True)
class Switch:
    cpu: int
    time: float
    prev: int
    next: int


@dataclass(frozen=True)
class Slice:
    """One stretch a task ran on a CPU without being switched out."""
    cpu: int
    start: float
    end: float
    tid: int


@dataclass
class Overlap:
    span: float = 0.0                       # s from the first to the last event
    both_busy: float = 0.0                  # s every CPU was busy
    busy: Counter = field(default_factory=Counter)     # role -> s on a CPU
    beside: Counter = field(default_factory=Counter)   # role -> s of it, every other CPU busy
    pairs: Counter = field(default_factory=Counter)    # (role, role) sorted -> s side by side


def parse(text: str) -> Tuple[List[Switch], Dict[int, int]]:
    """(context switches in order, {child tid: parent tid}); lines it does not
    know are skipped (perf prints headers and other events)."""
    switches, parents = [], {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        cpu, when, event, rest = int(m.group(1)), float(m.group(2)), m.group(3), m.group(4)
        if event.endswith("sched_switch"):
            s = SWITCH.search(rest)
            if s:
                switches.append(Switch(cpu, when, int(s.group(1)), int(s.group(2))))
        elif event.endswith("sched_process_fork"):
            f = FORK.search(rest)
            if f:
                parents[int(f.group(2))] = int(f.group(1))
    return switches, parents


def slices(switches: Iterable[Switch]) -> List[Slice]:
    """The run stretches of every task but the idle task (tid 0), per CPU; the
    stretch before a CPU's first switch is unknown and left out."""
    out, running = [], {}
    for sw in sorted(switches, key=lambda s: s.time):
        if sw.cpu in running:
            tid, since = running[sw.cpu]
            if tid != 0 and sw.time > since:
                out.append(Slice(sw.cpu, since, sw.time, tid))
        running[sw.cpu] = (sw.next, sw.time)
    return out


def overlap(runs: List[Slice], role: Callable[[Slice, float], str], cpus: int) -> Overlap:
    """CPU time per role, how much of it ran while every other CPU was busy too,
    and with whom. `role(slice, t)` names the task of a slice at time t."""
    out = Overlap()
    events = sorted([(s.start, 1, s) for s in runs] + [(s.end, -1, s) for s in runs],
                    key=lambda e: (e[0], e[1]))
    if not events:
        return out
    out.span = events[-1][0] - events[0][0]
    on: Dict[int, Slice] = {}
    last = events[0][0]
    for when, kind, sl in events:
        dt = when - last
        if dt > 0 and on:
            names = sorted(role(s, last) for s in on.values())
            for name in names:
                out.busy[name] += dt
                if len(on) == cpus:
                    out.beside[name] += dt
            if len(on) == cpus:
                out.both_busy += dt
                if cpus == 2:
                    out.pairs[tuple(names)] += dt
        if kind == 1:
            on[sl.cpu] = sl
        elif on.get(sl.cpu) is sl:
            del on[sl.cpu]
        last = when
    return out


def ancestry(tid: int, parents: Dict[int, int], known: Dict[int, str]) -> Optional[str]:
    """The role of the nearest known ancestor (or the task itself), None if none."""
    seen = set()
    while tid not in known and tid in parents and tid not in seen:
        seen.add(tid)
        tid = parents[tid]
    return known.get(tid)


def kernel_windows(runs: List[Slice], tids: Iterable[int]) -> Dict[int, Tuple[float, float]]:
    """For each of `tids`, from the start of its first to the end of its last slice of
    KERNEL_SLICE or longer (the kernel a session times runs in long slices); tasks
    with none are left out."""
    wanted, out = set(tids), {}
    for s in runs:
        if s.tid in wanted and s.end - s.start >= KERNEL_SLICE:
            lo, hi = out.get(s.tid, (s.start, s.end))
            out[s.tid] = (min(lo, s.start), max(hi, s.end))
    return out


def record(seconds: float, path: str) -> Optional[str]:
    """Run perf for `seconds`, system-wide; the text of `perf script`, or None when
    perf is missing or not allowed (the caller says so)."""
    perf = shutil.which("perf")
    if perf is None:
        return None
    rec = subprocess.run([perf, "record", "-a", "-q", "-e", "sched:sched_switch", "-e",
                          "sched:sched_process_fork", "-o", path, "--", "sleep", str(seconds)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if rec.returncode:
        return None
    out = subprocess.run([perf, "script", "-i", path, "-F", "cpu,time,event,trace"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    return out.stdout if out.returncode == 0 else None
