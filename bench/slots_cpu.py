"""Where the CPU of one bench/slots session goes, per process.

With two slots on this 2-core machine, sessions/s is bound by the CPU that
everything besides the kernel burns per session (the clients, the stock
tracker, the slot servers, the session processes): this script measures it.
One client process runs N complete sessions, exactly bench/slots' session
(request through the tracker, set_thread_mode("all"), upload a 1-core
matmul .so, load, time_evaluator(min_repeat_ms=20), close), against an
edge-server `--slots cpus:0`, one session at a time. Before the first and
after the last session it reads utime+stime of every process from
/proc/PID/stat (the session processes and spares, reaped by their slot
server, are that server's cutime+cstime), and the client its own
getrusage. ms CPU per session = delta / N. The kernel's own CPU (the
time_evaluator call, ~20 ms) is inside "session processes".

`--profile FILE` also writes the client's cProfile of the N sessions.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psutil

from bench import benchlib as bl
from bench import sched_trace
from edge_server.board.conditions import CLK_TCK as TICK, parse_proc_stat
from tests.support.daemon_kit import children
from bench.slots import KEYS, N, start_slots

NAME = "slots_cpu"
SPEC = "cpus:0"
SETTLE = 0.5      # s for the slot server to reap a session and prepare its spare


def proc_times(pid: int):
    """(own utime+stime, reaped children's cutime+cstime) of pid in seconds, or None."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return None
    return t.user + t.system, t.children_user + t.children_system


def tree_time(pid: int) -> float:
    """CPU seconds of pid and every live descendant (TVM's tracker serves from a
    multiprocessing child of the process we started)."""
    times = proc_times(pid)
    if times is None:
        return 0.0
    return times[0] + sum(tree_time(child) for child in children(pid))


def live_tree_cpu(pid: int) -> float:
    """CPU seconds of pid and its live descendants, each with what it reaped (an
    edge-server's session processes are in their slot server's cutime)."""
    times = proc_times(pid)
    if times is None:
        return 0.0
    return sum(times) + sum(live_tree_cpu(child) for child in children(pid))


def machine_busy() -> float:
    """CPU seconds every CPU of the machine has been busy (/proc/stat: all but idle
    and iowait, the verdict's own parser), whoever ran."""
    ticks = parse_proc_stat(Path("/proc/stat").read_text())
    return sum(busy for busy, _ in ticks.values()) / TICK


def snapshot(tracker_pid: int, server_pid: int) -> dict:
    """CPU seconds so far of the tracker, the supervisor, each slot server and what
    each slot server has reaped (its sessions and spares)."""
    out = {"tracker (stock, with its server process)": tree_time(tracker_pid),
           "edge-server supervisor": proc_times(server_pid)[0]}
    for i, pid in enumerate(sorted(children(server_pid))):
        times = proc_times(pid)
        if times is None:
            continue
        out["slot server %d" % i] = times[0]
        out["slot %d session processes + spares (reaped)" % i] = times[1]
    return out


# ---------------------------------------------------------------- the client (child process)

def client(tracker_port, key, so_path, count, out, profile=None):
    """`count` sessions of bench/slots' kind; CPU and wall of them to `out`."""
    import numpy as np
    import tvm

    import host_client
    tracker = "%s:%d" % (bl.procs.HOST, tracker_port)
    host = [np.random.default_rng(0).uniform(-1, 1, (N, N)).astype("float32")
            for _ in range(3)]

    def one():
        session = host_client.connect(tracker, key, thread_mode="all", wait=60)
        state = session.thread_state
        session.upload(so_path)
        module = session.load_module(os.path.basename(so_path))
        dev = session.cpu()
        args = [tvm.runtime.tensor(a, dev) for a in host]
        module.time_evaluator("matmul", dev, number=1, repeat=1, min_repeat_ms=20)(*args)
        session.release()
        del session, module, args
        return state

    one()                                # imports and first-use costs are not per session
    Path(out + ".ready").touch()         # the parent snapshots, then says go
    while not os.path.exists(out + ".go"):
        time.sleep(0.01)
    prof = None
    if profile:
        import cProfile
        prof = cProfile.Profile(time.process_time)   # CPU, not wall
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    if prof:
        prof.enable()
    for _ in range(count):
        one()
    if prof:
        prof.disable()
        prof.dump_stats(profile)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    Path(out).write_text(json.dumps({
        "cpu_s": (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime),
        "wall_s": t1 - t0, "count": count,
        "host_client": os.path.dirname(host_client.__file__)}))   # which tree ran


# ---------------------------------------------------------------- the run

THIS = "this tree"
_SHIMS = []      # removed when the run ends (its processes import from them until then)


@contextmanager
def code_from(tree):
    """Processes started inside run another checkout's edge_server, host_client and
    tests.support (`tree`), with this bench package in front (a symlink), so one run
    can set an older tree beside this one. None: this tree."""
    if tree is None:
        yield
        return
    shim = tempfile.mkdtemp(prefix="bench-shim-")
    _SHIMS.append(shim)
    os.symlink(str(bl.BENCH), os.path.join(shim, "bench"))
    old, cwd = os.environ.get("PYTHONPATH"), os.getcwd()
    os.environ["PYTHONPATH"] = shim + os.pathsep + os.path.abspath(tree)
    os.chdir(shim)               # `python -m` puts the cwd first on sys.path
    try:
        yield
    finally:
        os.chdir(cwd)
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def one_round(stack, server, so_path, tmp, args, tree, i) -> dict:
    """N sessions of one client; CPU per session per process over them."""
    out = Path(tmp) / ("client-%d-%d.json" % (i, time.time_ns()))
    argv = [sys.executable, "-m", "bench.slots_cpu", "--client", str(stack.port), KEYS[SPEC],
            so_path, str(args.sessions), str(out)]
    if args.profile and tree is None:
        argv.append(args.profile)
    with code_from(tree):
        proc = subprocess.Popen(argv, cwd=None if tree else str(bl.REPO),
                                start_new_session=True)
    # the client's warm-up session (imports, first use) is not in the window
    while proc.poll() is None and not Path(str(out) + ".ready").exists():
        time.sleep(0.01)
    time.sleep(SETTLE)           # its warm-up session reaped, the spare prepared
    before = snapshot(stack.tracker_proc.pid, server.pid)
    known = roles_now(stack.tracker_proc.pid, server.pid, proc.pid)
    Path(str(out) + ".go").touch()
    tracing = bool(args.trace) and tree is None and i == 0   # the first round of this tree
    trace = sched_trace.record(args.trace, str(Path(tmp) / "sched.data")) if tracing else None
    proc.wait()
    time.sleep(SETTLE)           # the last session reaped
    after = snapshot(stack.tracker_proc.pid, server.pid)
    if proc.returncode:
        raise RuntimeError("client exited %s" % proc.returncode)
    got = json.loads(out.read_text())
    per = {name: 1e3 * (after[name] - before.get(name, after[name])) / got["count"]
           for name in after}
    per["client (getrusage)"] = 1e3 * got["cpu_s"] / got["count"]
    traced = None
    if tracing:
        traced = (beside_table(trace, known, 1e3 * got["wall_s"] / got["count"])
                  if trace else {"why_not": "perf is missing or may not trace the scheduler "
                                            "here (root or kernel.perf_event_paranoid <= -1)"})
    return {"per_session_ms": per, "trace": traced,
            "wall_ms": 1e3 * got["wall_s"] / got["count"],
            "count": got["count"], "code": THIS if tree is None else tree, "round": i,
            "client_code": got["host_client"], "server_cwd": os.readlink("/proc/%d/cwd"
                                                                        % server.pid)}


SESSION = "session process"


def roles_now(tracker_pid: int, server_pid: int, client_pid: int) -> dict:
    """{tid: role} of every thread of the long-lived processes, as the trace starts;
    tasks forked later take their parent's role (session processes: their own)."""
    known = {}
    slot_servers = sorted(children(server_pid))
    for role, pids in (("tracker", [tracker_pid] + list(children(tracker_pid))),
                       ("supervisor", [server_pid]), ("slot server", slot_servers),
                       ("client", [client_pid])):
        for pid in pids:
            for tid in _tasks(pid):
                known[tid] = role
    for pid in slot_servers:                 # the spare waiting as the trace starts
        for child in children(pid):
            for tid in _tasks(child):
                known[tid] = SESSION
    return known


def _tasks(pid: int) -> list:
    """Thread ids of pid; none if it is gone."""
    try:
        return [t.id for t in psutil.Process(pid).threads()]
    except psutil.Error:
        return []


def beside_table(text: str, known: dict, wall_ms: float) -> dict:
    """From one trace: per role, ms CPU per session and how much of it ran while the
    other CPU was busy too; the pairs that ran side by side; the cores one slot kept
    busy. A slot server's children are session processes (and spares), split by
    their kernel's stretch."""
    switches, parents = sched_trace.parse(text)
    runs = sched_trace.slices(switches)
    servers = {t for t, r in known.items() if r == "slot server"}
    sessions = {s.tid for s in runs if known.get(s.tid) == SESSION or (
        s.tid not in known and parents.get(s.tid) in servers)}
    kernels = sched_trace.kernel_windows(runs, sessions)
    in_session = {t: SESSION for t in sessions}      # threads a session process started

    def role(sl, when):
        if sl.tid in sessions:
            if sl.tid not in kernels:
                return "session process, no kernel (spare)"
            lo, hi = kernels[sl.tid]
            return ("session process, before its kernel" if when < lo else
                    "session process, after its kernel" if when >= hi else
                    "session process, its kernel")
        if sched_trace.ancestry(sl.tid, parents, in_session):
            return "session process, other threads"
        return sched_trace.ancestry(sl.tid, parents, known) or "other"
    ov = sched_trace.overlap(runs, role, cpus=os.cpu_count() or 1)
    count = max(1e-9, ov.span * 1e3 / wall_ms)
    return {"sessions": count, "span_s": ov.span,
            "cores": sum(ov.busy.values()) / max(1e-9, ov.span),
            "both_busy_ms": 1e3 * ov.both_busy / count,
            "busy_ms": {r: 1e3 * v / count for r, v in ov.busy.most_common()},
            "beside_ms": {r: 1e3 * v / count for r, v in ov.beside.items()},
            "pairs_ms": [[list(k), 1e3 * v / count] for k, v in ov.pairs.most_common(8)]}


def _commit(tree: str) -> str:
    """The checkout's HEAD (short), and '+changes' when its files differ from it."""
    def git(*argv):
        return subprocess.run(["git", "-C", tree, *argv], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" +changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def run(args) -> dict:
    trees = [None] + ([args.before] if args.before else [])
    data = {"machine": bl.machine(), "sessions": args.sessions, "rounds": [],
            "codes": [THIS] + trees[1:],
            "commits": {tree or THIS: _commit(tree or str(bl.REPO)) for tree in trees}}
    with bl.workdir(NAME) as tmp, bl.Stack(tmp) as stack:
        from host_client.kernels import build_matmul
        so_path = build_matmul(N, {"kind": "llvm", "num-cores": 1}, str(tmp)).path
        stacks = {}
        for tree in trees:       # a tracker and an edge-server each, so nothing is shared
            own = stack if tree is None else bl.Stack(Path(tmp) / ("before-%d" % len(stacks)))
            if tree is not None:
                Path(own.workdir).mkdir()
                own.__enter__()
            with code_from(tree):
                # no calibration: these sessions time the kernel without a verdict
                stacks[tree] = (own, start_slots(own, SPEC, str(Path(own.workdir) / "no-cal")))
        try:
            for i in range(args.rounds):
                order = trees if i % 2 == 0 else trees[::-1]
                for tree in order:
                    own, server = stacks[tree]
                    rec = one_round(own, server, so_path, tmp, args, tree, i)
                    data["rounds"].append(rec)
                    print(json.dumps(rec, indent=1), file=sys.stderr, flush=True)
        finally:
            for tree, (own, _) in stacks.items():
                if tree is not None:
                    own.stop()
            while _SHIMS:
                shutil.rmtree(_SHIMS.pop(), ignore_errors=True)
    return data


def render(data) -> str:
    codes = data.get("codes") or [THIS]
    by_code = {c: [r for r in data["rounds"] if r.get("code", THIS) == c] for c in codes}
    names = list(data["rounds"][0]["per_session_ms"])
    rows = []

    def cell(rounds, value):
        return bl.fmt_spread(bl.summary([value(r) for r in rounds]), " ms")
    for name in names:
        rows.append([name] + [cell(by_code[c], lambda r: r["per_session_ms"].get(name, 0.0))
                              for c in codes])
    rows.append(["**all processes**"] + [cell(by_code[c], lambda r: sum(
        r["per_session_ms"].values())) for c in codes])
    rows.append(["wall time per session (client, one at a time)"] +
                [cell(by_code[c], lambda r: r["wall_ms"]) for c in codes])
    commits = data.get("commits") or {}
    header = ["process"] + ["ms CPU per session (%s%s)" % (
        c, ", %s" % commits[c] if commits.get(c) else "") for c in codes]
    return "\n".join([
        "### CPU per session, per process (`bench/slots_cpu.py`)", "",
        bl.machine_markdown(data["machine"]), "",
        "One client process runs %d complete sessions of bench/slots' kind (request through "
        "the tracker, set_thread_mode(\"all\"), upload the 1-core %d³ matmul .so, load, "
        "time_evaluator(min_repeat_ms=20), close), one at a time, against `edge-server "
        "--slots cpus:0` on the stock tracker, %d rounds%s. CPU = utime+stime deltas from "
        "/proc/PID/stat over the N sessions (the tracker: TVM's tracker process and the "
        "server process it forks; session processes and spares: their slot server's "
        "cutime+cstime once reaped; the client: its getrusage), divided by N. The "
        "kernel's own timing (min_repeat_ms=20, ~22 ms of CPU) runs in the session "
        "process; with two slots on 2 cores, sessions/s can be at most 2000 / (all "
        "processes) per s."
        % (data["sessions"], N, len(by_code[THIS]),
           "" if len(codes) == 1 else ", alternating with the same run of %s (its own "
           "tracker and edge-server)" % ", ".join("`%s`" % c for c in codes[1:])), "",
        bl.table(header, rows)] + render_trace(data))


def render_trace(data) -> list:
    """The --trace table: who ran beside whom during one round."""
    traced = [r["trace"] for r in data["rounds"] if r.get("trace")]
    if not traced:
        return []
    t = traced[0]
    if t.get("why_not"):
        return ["", "Scheduler trace: %s: %s." % (bl.NOT_AVAILABLE, t["why_not"])]
    rows = [[role, bl.fmt(ms, " ms"), bl.fmt(t["beside_ms"].get(role, 0.0), " ms")]
            for role, ms in sorted(t["busy_ms"].items(), key=lambda kv: -kv[1])]  # JSON sorts keys
    pairs = "; ".join("%s + %s %s" % (a, b, bl.fmt(ms, " ms")) for (a, b), ms in t["pairs_ms"])
    return [
        "", "Scheduler trace of the first round (`--trace`: `perf record -a -e "
        "sched:sched_switch -e sched:sched_process_fork` for %.3g s, %.0f sessions; "
        "bench/sched_trace.py): CPU per session by who ran, and how much of it ran while "
        "the other CPU was busy too. A session process's kernel is the stretch of its "
        "slices of %g ms or longer." % (t["span_s"], t["sessions"],
                                         1e3 * sched_trace.KERNEL_SLICE), "",
        bl.table(["who", "ms CPU per session", "of which beside other work"], rows), "",
        "- both CPUs busy: %s per session; the session stream kept %.3g cores busy, so two "
        "one-core slots can give at most 2 / %.3g = %.3gx its sessions/s"
        % (bl.fmt(t["both_busy_ms"], " ms"), t["cores"], t["cores"], 2 / t["cores"]),
        "- side by side, per session: %s" % pairs]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--client":
        port, key, so_path, count, out = argv[1:6]
        client(int(port), key, so_path, int(count), out, argv[6] if len(argv) > 6 else None)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.add_common_args(parser)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", help="write the client's cProfile (CPU time) here")
    parser.add_argument("--trace", type=float, metavar="SECONDS",
                        help="during the first round, record the scheduler for SECONDS "
                             "(perf; root) and say which processes ran beside each other")
    parser.add_argument("--before", metavar="TREE",
                        help="also measure another checkout (e.g. a worktree of main), "
                             "rounds alternating, for a before/after table")
    args = parser.parse_args(argv)
    if args.quick:
        args.sessions, args.rounds, args.trace = 20, 1, None   # too short to trace
    data = run(args)
    bl.finish(NAME, data, render, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
