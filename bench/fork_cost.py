"""What a fork plus the child's exit costs, by the parent's touched memory.

Why: every session is a process forked from its slot server, so the daemon's
anonymous memory is copied (page tables) at each fork and torn down at each
exit, beside the next session (docs/session-cost.md). This measures the CPU
of N fork + immediate `_exit` + wait cycles of a plain Python process that
has touched M MB of anonymous memory (parent's and reaped child's
utime+stime, /proc via getrusage), for a few M, in alternating rounds; the
slope is the cost per MB of daemon that each session pays for its own fresh
process.
"""
import argparse
import mmap
import os
import resource
import sys

from bench import benchlib as bl

NAME = "fork_cost"
SIZES_MB = (0, 25, 50, 100)


def cpu_s() -> float:
    own, reaped = resource.getrusage(resource.RUSAGE_SELF), \
        resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


def forks(count: int) -> float:
    """ms of CPU per fork + child _exit + wait."""
    t0 = cpu_s()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    return 1e3 * (cpu_s() - t0) / count


def touched(mb: int) -> mmap.mmap:
    """M MB of private anonymous memory, every page written. A mapping of its own,
    closed after its round: a freed bytearray may stay in malloc's heap and
    count in the next size's round."""
    buf = mmap.mmap(-1, max(mb << 20, mmap.PAGESIZE),
                    flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for i in range(0, mb << 20, mmap.PAGESIZE):
        buf[i] = 1
    return buf


def slope(points) -> float:
    """Least-squares ms per MB over (MB, ms) points."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def run(args) -> dict:
    data = {"machine": bl.machine(), "forks": args.forks, "rounds": args.rounds, "ms": {}}
    for i in range(args.rounds):
        for mb in (SIZES_MB if i % 2 == 0 else SIZES_MB[::-1]):
            buf = touched(mb)
            data["ms"].setdefault(str(mb), []).append(forks(args.forks))
            buf.close()
    medians = [(int(mb), bl.summary(v)["median"]) for mb, v in data["ms"].items()]
    data["ms_per_mb"] = slope(medians)
    return data


def render(data) -> str:
    rows = [[mb + " MB", bl.fmt_spread(bl.summary(v), " ms")]
            for mb, v in sorted(data["ms"].items(), key=lambda kv: int(kv[0]))]
    return "\n".join([
        "## Fork and exit by memory (`bench/fork_cost.py`)", "",
        bl.machine_markdown(data["machine"]), "",
        "%d fork + child `_exit` + wait cycles of a Python process that touched M MB of "
        "anonymous memory, CPU of parent and child (getrusage), %d alternating rounds per "
        "size. Each session process is such a fork of its slot server (~55 MB anonymous "
        "here), so this is the part of a session's cost that grows with the daemon "
        "(docs/session-cost.md)." % (data["forks"], data["rounds"]), "",
        bl.table(["touched memory", "ms CPU per fork + exit"], rows), "",
        "- slope: %s per MB" % bl.fmt(1e3 * data["ms_per_mb"], " us")])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.add_common_args(parser)
    parser.add_argument("--forks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    if args.quick:
        args.forks, args.rounds = 20, 2
    bl.finish(NAME, run(args), render, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
