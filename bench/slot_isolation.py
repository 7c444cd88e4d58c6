"""Slot isolation: how much a measurement in one slot moves while the other slot
is idle, busy, crashing or losing its clients, against the calibrated slowdown.

Issue 14 asks that crashes and client kills in one slot leave the other slot's
timing "unaffected beyond its calibrated slowdown". A timing cannot be an
assertion in a test on a shared machine, so it is measured here.

One `edge-server --slots "cpus:0;cpus:1"` on a stock tracker. This process
holds one slot for the whole run (set_thread_mode("all") = its core) and times
a 1-core matmul with TVM's time_evaluator, in alternating rounds, while a
neighbour process works the other slot through the same tracker:

- idle: nothing;
- busy: sessions that run the same kind of matmul without pause (a normal
  co-tenant, the case calibration measures);
- crash: sessions whose library segfaults when loaded, one after another;
- killed: sessions whose client process is SIGKILLed while its library sleeps
  in the session, one after another.

Reported per condition: the median kernel time and its ratio to idle in the
same round, next to `edge-server calibrate`'s slowdown of the measured slot.
"""
import argparse
import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import benchlib as bl
from bench.slots import KEYS, calibration, start_slots
from edge_common.cpulist import format_cpulist
from tests.support import daemon_kit

NAME = "slot_isolation"
SPEC = "cpus:0;cpus:1"
CONDITIONS = ("idle", "busy", "crash", "killed")
N = 256


# ---------------------------------------------------------------- the neighbour (child)

def neighbour(kind, port, key, lib, seconds) -> int:
    """Work the free slot of `key` in the way `kind` says for `seconds`; one line per
    session begun (the measurer counts them: a condition with none proves nothing)."""
    end = time.time() + seconds
    while time.time() < end:
        print(kind, flush=True)
        if kind == "busy":
            busy_session(port, key, lib, min(2.0, max(0.1, end - time.time())))
        elif kind == "crash":
            daemon_kit.misbehaving_session(port, key, lib)
        elif kind == "killed":
            killed_client(port, key, lib)
    return 0


def busy_session(port, key, so_path, seconds) -> None:
    """One session that runs the matmul back to back for about `seconds`."""
    import numpy as np
    import tvm
    from tvm import rpc
    remote = rpc.connect_tracker(bl.procs.HOST, port).request(key, session_timeout=120)
    remote.get_function("edge.set_thread_mode")("all")
    remote.upload(so_path)
    mod = remote.load_module(os.path.basename(so_path))
    dev = remote.cpu()
    args = [tvm.runtime.tensor(np.ones((N, N), "float32"), dev) for _ in range(3)]
    mod.time_evaluator("matmul", dev, number=1, repeat=1,
                       min_repeat_ms=int(seconds * 1000))(*args)
    del remote, mod, args
    gc.collect()


def killed_client(port, key, sleep_lib) -> None:
    """A client that loads a sleeping library, SIGKILLed once the session runs it."""
    proc = subprocess.Popen(daemon_kit.client_argv("hold", port, key, sleep_lib),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, **daemon_kit.client_env()))
    try:
        proc.stdout.readline()          # "loading": the session is in the library now
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    bl.procs.wait_free(port, key)       # the daemon noticed and freed the slot


# ---------------------------------------------------------------- the measurer

def start_neighbour(stack, kind, key, libs, seconds, tmp):
    if kind == "idle":
        return None
    lib = {"busy": libs["kernel"], "crash": libs["segv"], "killed": libs["sleep"]}[kind]
    argv = [sys.executable, "-m", "bench.slot_isolation", "--neighbour", kind,
            str(stack.port), key, lib, str(seconds)]
    return subprocess.Popen(argv, cwd=str(bl.REPO), stdout=subprocess.PIPE,
                            stderr=open(Path(tmp) / ("neighbour-%s.log" % kind), "a"),
                            text=True, start_new_session=True)


def measure(timer, args, samples) -> list:
    """`samples` kernel times (ms), each the mean of one time_evaluator repeat
    (min_repeat_ms long, so a sample spans several neighbour events)."""
    return [timer(*args).mean * 1e3 for _ in range(samples)]


def stop_neighbour(proc, stack, key) -> int:
    """Stop the neighbour; the number of sessions it began while we measured."""
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    bl.procs.wait_free(stack.port, key)
    return len(out.split())


def run(args) -> dict:
    import numpy as np
    import tvm
    from tvm import rpc
    from host_client.kernels import build_matmul
    data = {"machine": bl.machine(), "rounds": args.rounds, "samples": args.samples,
            "seconds": args.seconds, "n": N, "measured": [], "neighbours": []}
    with bl.workdir(NAME) as tmp, bl.Stack(tmp) as stack:
        libs = {"kernel": build_matmul(N, {"kind": "llvm", "num-cores": 1}, str(tmp)).path,
                "segv": daemon_kit.build_misbehaving_lib(tmp, "segv"),
                "sleep": daemon_kit.build_misbehaving_lib(tmp, "sleep", 60)}
        cache = str(Path(tmp) / "calibration")   # calibrated first, given to the slot servers
        data["calibration"] = calibration(cache)
        start_slots(stack, SPEC, cache)
        key = KEYS[SPEC]
        remote = rpc.connect_tracker(bl.procs.HOST, stack.port).request(key,
                                                                         session_timeout=0)
        state = json.loads(remote.get_function("edge.set_thread_mode")("all"))
        data["slot"] = json.loads(remote.get_function("edge.topology")())["slot"]
        remote.upload(libs["kernel"])
        mod = remote.load_module(os.path.basename(libs["kernel"]))
        dev = remote.cpu()
        kargs = [tvm.runtime.tensor(np.random.rand(N, N).astype("float32"), dev)
                 for _ in range(3)]
        timer = mod.time_evaluator("matmul", dev, number=1, repeat=1, min_repeat_ms=100)
        measure(timer, kargs, 3)        # warm up
        for i in range(args.rounds):
            order = CONDITIONS if i % 2 == 0 else tuple(reversed(CONDITIONS))
            for kind in order:
                proc = start_neighbour(stack, kind, key, libs, args.seconds + 30, tmp)
                time.sleep(1.0 if proc else 0)  # let it reach the other slot
                times = measure(timer, kargs, args.samples)
                events = stop_neighbour(proc, stack, key) if proc else 0
                data["measured"].append({"round": i, "kind": kind, "ms": times,
                                         "cpus": state["cpus"], "neighbour_sessions": events})
                print("round %d %-7s median %.3f ms, %d neighbour sessions"
                      % (i, kind, sorted(times)[len(times) // 2], events),
                      file=sys.stderr, flush=True)
        final = json.loads(remote.get_function("edge.thread_state")())
        data["thread_state"] = final["cpus"]
        data["session_pid_kept"] = final["pid"] == state["pid"]
        del remote, mod, kargs, timer
        gc.collect()
    summarise(data)
    return data


def summarise(data) -> None:
    """Per round: median of each condition / median of idle in that round."""
    by_round = {}
    for rec in data["measured"]:
        by_round.setdefault(rec["round"], {})[rec["kind"]] = bl.summary(rec["ms"])["median"]
    data["ratio"] = {kind: bl.summary([r[kind] / r["idle"] for r in by_round.values()
                                       if kind in r and r.get("idle")])
                     for kind in CONDITIONS if kind != "idle"}
    data["events"] = {kind: sum(r["neighbour_sessions"] for r in data["measured"]
                                if r["kind"] == kind) for kind in CONDITIONS}
    data["ms"] = {kind: bl.summary([x for rec in data["measured"] if rec["kind"] == kind
                                    for x in rec["ms"]]) for kind in CONDITIONS}


def calibrated(data):
    """The calibrate step's slowdown of the measured slot: {memory, compute} or None."""
    index = (data.get("slot") or {}).get("index")
    for slot in (data.get("calibration") or {}).get("slots", []):
        if slot.get("index") == index:
            return slot.get("slowdown")
    return None


def render(data) -> str:
    cal = calibrated(data)
    worst = max(cal.values()) if cal else None
    rows = [[kind, str(data["events"][kind]), bl.fmt_spread(data["ms"][kind], " ms"),
             "1" if kind == "idle" else bl.fmt_spread(data["ratio"][kind], "x")]
            for kind in CONDITIONS]
    lines = [
        "## Slot isolation (`bench/slot_isolation.py`)", "",
        bl.machine_markdown(data["machine"]), "",
        "One edge-server with `--slots \"%s\"` on a stock tracker. The bench holds slot %s "
        "(cpus %s) for the whole run and times a 1-core %d³ float32 matmul "
        "(time_evaluator min_repeat_ms=100, %d samples per condition and round, %d alternating "
        "rounds) while a neighbour process works the other slot: idle; busy (sessions "
        "running the same matmul without pause); crash (sessions whose library segfaults "
        "on load, one after another); killed (clients SIGKILLed while their library sleeps "
        "in the session). Ratio = median of the condition / median of idle, per round."
        % (SPEC, (data.get("slot") or {}).get("index"),
           format_cpulist(data.get("thread_state") or []), data["n"], data["samples"],
           data["rounds"]), "",
        bl.table(["neighbour slot", "its sessions begun meanwhile",
                  "kernel time in the measured slot", "vs idle (per round)"],
                 rows), "",
    ]
    if cal:
        lines.append("- calibrated slowdown of the measured slot (`edge-server calibrate "
                     "--slots \"%s\" --fresh`, same run): memory %+.1f%%, compute %+.1f%%"
                     % (SPEC, 100 * cal["memory"], 100 * cal["compute"]))
        for kind in ("crash", "killed"):
            med = data["ratio"][kind].get("median")
            if med is not None:
                lines.append("- %s neighbour: %+.1f%% against idle; within the calibrated "
                             "worst slowdown (%+.1f%%): **%s**"
                             % (kind, 100 * (med - 1), 100 * worst,
                                bl.verdict(med - 1 <= worst)))
    else:
        lines.append("- calibration: %s" % ((data.get("calibration") or {}).get("error")
                                             or "not measured"))
    lines.append("- the measured session kept its process and core through every neighbour's "
                 "crash and kill: **%s**" % bl.verdict(
                     data.get("session_pid_kept") and data.get("thread_state") ==
                     data["measured"][0]["cpus"]))
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--neighbour":
        kind, port, key, lib, seconds = argv[1:6]
        return neighbour(kind, int(port), key, lib, float(seconds))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.add_common_args(parser)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--samples", type=int, default=15)
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="longest a neighbour runs per condition (it is stopped once "
                             "the samples are taken)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.samples = 2, 5
    data = run(args)
    bl.finish(NAME, data, render, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
