"""The emulated arm64 board beside this machine: what one MetaSchedule trial costs.

One tracker on the host; edge-server natively on this x86_64 machine and on the
emulated arm64 board of `make test-arm` (scripts/arm-board.sh: Debian 12 arm64
under qemu-user, no compiler). Rounds alternate native and emulated. Per round
and side, what the plugin does for every trial:

- session creation: tracker request + RPC connect + `edge.set_thread_mode("big:1")`
  (host_client.connect, as EdgeSessionFactory does it);
- the whole trial: that, then upload of a kernel linked on the host for the
  board's arch, load, one timed call, close;
- `edge.set_thread_mode` round trips inside one session.

EMULATED figures are functional, not performance figures: qemu-user runs the
board's Python several times slower and its kernels ~30-40x slower than silicon. They show that the path works
and where time goes, nothing about a real board's speed.

    python -m bench.arm [--rounds N] [--quick]     (needs: scripts/arm-board.sh install)
"""
import argparse
import os
import statistics
import sys

from bench import benchlib as bl

NAME = "arm"
NATIVE_KEY = "bench-arm-native"
BOARD_KEY = "bench-arm-emulated"
MODE = "big:1"
SIDES = (("native", NATIVE_KEY), ("emulated", BOARD_KEY))


def one_trial(tracker: str, key: str, kernel_path: str) -> dict:
    """What RPCRunner does for one candidate, through the plugin; phases in ms."""
    import numpy as np
    import tvm

    import host_client

    t0 = bl.now()
    session = host_client.connect(tracker, key, thread_mode=MODE, wait=120)
    t1 = bl.now()
    try:
        module = session.upload_module(kernel_path, os.path.basename(kernel_path))
        dev = session.cpu()
        x = tvm.runtime.tensor(np.zeros(1024, "float32"), dev)
        y = tvm.runtime.tensor(np.zeros(1024, "float32"), dev)
        module.time_evaluator("add_one", dev, number=1, repeat=1)(x, y)
        timings = dict(session.timings_ms)
    finally:
        module = x = y = dev = None
        session.release()
        del session
    t2 = bl.now()
    return {"create_ms": (t1 - t0) * 1e3, "trial_ms": (t2 - t0) * 1e3,
            "set_thread_mode_first_ms": timings.get("set_thread_mode")}


def round_trips(tracker: str, key: str, calls: int) -> list:
    import host_client

    session = host_client.connect(tracker, key, thread_mode="all", wait=120)
    try:
        times = []
        for i in range(calls):
            t0 = bl.now()
            session.set_thread_mode(MODE if i % 2 == 0 else "all")
            times.append((bl.now() - t0) * 1e3)
        return times
    finally:
        session.release()
        del session


def kernels(tmp) -> dict:
    """The same tiny kernel linked for each side's arch (host g++ / aarch64 cross g++)."""
    import tvm
    from tvm import te

    from host_client.link import export_for_board

    a = te.placeholder((1024,), name="A", dtype="float32")
    b = te.compute((1024,), lambda i: a[i] + 1.0, name="B")
    func = te.create_prim_func([a, b]).with_attr("global_symbol", "add_one")
    out = {}
    for side, arch, triple in (("native", "x86_64", None), ("emulated", "aarch64",
                                                             "aarch64-linux-gnu")):
        target = {"kind": "llvm"}
        if triple:
            target["mtriple"] = triple
        lib = tvm.compile(tvm.IRModule({"add_one": func}), target=tvm.target.Target(target))
        out[side] = export_for_board(lib, str(tmp / ("add_%s.so" % side)), arch)
    return out


def run(args) -> dict:
    from tests.support import arm_board

    data = {"machine": bl.machine(), "rounds": args.rounds, "calls": args.calls,
            "board": "Debian 12 arm64 under qemu-user (%s)" % _runner(), "mode": MODE,
            "sides": {side: {"create_ms": [], "trial_ms": [], "set_thread_mode_first_ms": [],
                             "round_trip_ms": []} for side, _ in SIDES}}
    with bl.workdir(NAME) as tmp, bl.Stack(tmp) as stack:
        tracker = "%s:%d" % (bl.procs.HOST, stack.port)
        stack.edge_server(NATIVE_KEY)
        stack.procs.append(arm_board.start_edge_server(tmp, stack.port, BOARD_KEY))
        paths = kernels(tmp)
        for side, key in SIDES:               # one warm-up trial each, not counted
            bl.procs.wait_free(stack.port, key, timeout=120)
            one_trial(tracker, key, paths[side])
        for _ in range(args.rounds):
            for side, key in SIDES:
                bl.procs.wait_free(stack.port, key, timeout=120)
                for name, value in one_trial(tracker, key, paths[side]).items():
                    data["sides"][side][name].append(value)
        for side, key in SIDES:
            bl.procs.wait_free(stack.port, key, timeout=120)
            data["sides"][side]["round_trip_ms"] = round_trips(tracker, key, args.calls)
    return data


def _runner() -> str:
    import subprocess
    from tests.support import arm_board
    out = subprocess.run([str(arm_board.SCRIPT), "runner"], capture_output=True, text=True)
    return "binfmt_misc + chroot" if out.stdout.strip() == "binfmt" else "proot -q"


def render(data: dict) -> str:
    def med(side, name):
        values = [v for v in data["sides"][side][name] if v is not None]
        return statistics.median(values) if values else None

    rows = []
    for label, name in (("session creation per trial (connect + set_thread_mode)", "create_ms"),
                        ("whole trial (+ upload .so, load, one call, close)", "trial_ms"),
                        ("first `edge.set_thread_mode` in the fresh session",
                         "set_thread_mode_first_ms"),
                        ("`edge.set_thread_mode` round trip in a session", "round_trip_ms")):
        native, emulated = med("native", name), med("emulated", name)
        ratio = emulated / native if native and emulated else None
        rows.append([label, bl.fmt(native, " ms"), bl.fmt(emulated, " ms"),
                     bl.fmt(ratio, "x")])
    return "\n".join([
        "## The emulated arm64 board beside native (`bench/arm.py`)",
        "",
        "**EMULATED: functional, not performance.** The aarch64 column is edge-server on %s "
        "with no compiler, every instruction of the board run through qemu-user "
        "(Python and RPC paths several times slower, compiled kernels ~30-40x slower "
        "than silicon); kernels are linked on the host with "
        "aarch64-linux-gnu-g++. Native = edge-server on this x86_64 machine, same tracker, "
        "rounds alternating; the emulated one runs with `--sandbox off` (qemu's own thread "
        "cannot be pinned once the sandbox drops capabilities: tests/support/arm_board.py). "
        "Mode %s; medians of %d trials per side, %d round trips."
        % (data["board"], data["mode"], data["rounds"], data["calls"]),
        "",
        bl.table(["per MetaSchedule trial", "native x86_64", "EMULATED aarch64", "emulated / native"],
                 rows),
        "",
        bl.machine_markdown(data["machine"]),
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.arm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="trials per side (10)")
    parser.add_argument("--calls", type=int, default=40, help="set_thread_mode round trips (40)")
    bl.add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.calls = 2, 6
    data = run(args)
    bl.finish(NAME, data, render, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
