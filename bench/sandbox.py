"""What the per-session sandbox costs at session start, side by side with it off.

Two measurements in one run:

1. The sandbox itself: a process that has imported TVM and edge_server (as the
   daemon has) forks children the way the daemon does, and each child times
   `sandbox.apply` (no_new_privs, Landlock ruleset, rlimits, capabilities,
   seccomp load) with the daemon's plan, alternating with children that apply
   the "off" plan. The target is on this: < 2 ms added per session, median.
2. Whole sessions through the stock tracker, alternating round by round between
   an edge-server with `--sandbox auto` and one with `--sandbox off`, and the
   stock `python -m tvm.exec.rpc_server`: request a server, call
   `edge.thread_state` (or, on stock, `runtime.config_threadpool(1, 0)`), close.
   The sandbox is applied in the spare session process before the client
   arrives, so it should not show here; the row says whether it does.
"""
import argparse
import json
import os
import shutil
import sys
import time

from bench import benchlib as bl
from tests.support import hostile_kit

NAME = "sandbox"
TARGET_MS = 2.0
KEYS = {"edge-server --sandbox auto": "bench-sbx-on", "edge-server --sandbox off": "bench-sbx-off",
        "stock rpc_server": "bench-sbx-stock"}


def plan_for(mode: str):
    from edge_server.daemon.config import parse_args
    from edge_server.session import sandbox
    config = parse_args(["--sandbox", mode])
    return sandbox.make_plan(config.sandbox, config.session_limits, os.getpid(),
                             config.allow_perf, config.load_library)


def time_apply(plan, work_root: str) -> dict:
    """Fork one child like a session; it applies `plan` and reports ms per part."""
    from edge_server.session import sandbox
    work = os.path.join(work_root, "s%d" % time.monotonic_ns())
    os.mkdir(work, 0o700)

    def body():
        t0 = time.perf_counter()
        applied = sandbox.apply(plan, work)
        total = (time.perf_counter() - t0) * 1e3
        return {"total": total, "parts": applied.cost_ms, "applied": applied.description}
    out = hostile_kit.in_child(body)
    shutil.rmtree(work, ignore_errors=True)
    if "crash" in out:
        raise RuntimeError("sandbox.apply failed in the child: %s" % out["crash"])
    return out


def apply_rows(rounds: int, work_root: str) -> dict:
    os.environ.setdefault("TVM_USE_RUNTIME_LIB", "1")
    import tvm.rpc  # noqa: F401  (what the daemon has imported before it forks)
    import edge_server.session.child  # noqa: F401
    plans = {"on": plan_for("auto"), "off": plan_for("off")}
    series = {"on": [], "off": []}
    parts = {}
    described = None
    for _ in range(rounds):
        for name in ("on", "off"):
            got = time_apply(plans[name], work_root)
            series[name].append(got["total"])
            if name == "on":
                described = got["applied"]
                for part, ms in got["parts"].items():
                    parts.setdefault(part, []).append(ms)
    added = [a - b for a, b in zip(series["on"], series["off"])]
    return {"applied": described, "on_ms": bl.summary(series["on"]),
            "off_ms": bl.summary(series["off"]), "added_ms": bl.summary(added),
            "parts_ms": {k: bl.summary(v) for k, v in parts.items()}}


def session_ms(port: int, key: str, stock: bool) -> float:
    """Request, one call, close: ms as the client sees it."""
    from tvm import rpc
    t0 = bl.now()
    remote = rpc.connect_tracker(bl.procs.HOST, port).request(key)
    if stock:
        remote.get_function("runtime.config_threadpool")(1, 0)
    else:
        json.loads(remote.get_function("edge.thread_state")())
    ms = (bl.now() - t0) * 1e3
    del remote
    return ms


def session_rows(rounds: int) -> dict:
    series = {name: [] for name in KEYS}
    states = {}
    with bl.workdir(NAME) as tmp, bl.Stack(tmp) as stack:
        stack.edge_server(KEYS["edge-server --sandbox auto"], args=["--sandbox", "auto"])
        stack.edge_server(KEYS["edge-server --sandbox off"], args=["--sandbox", "off"])
        stack.stock_server(KEYS["stock rpc_server"])
        for _ in range(rounds):
            for name, key in KEYS.items():
                bl.procs.wait_free(stack.port, key)
                series[name].append(session_ms(stack.port, key, stock=name.startswith("stock")))
        from tvm import rpc
        for name in ("edge-server --sandbox auto", "edge-server --sandbox off"):
            bl.procs.wait_free(stack.port, KEYS[name])
            remote = rpc.connect_tracker(bl.procs.HOST, stack.port).request(KEYS[name])
            states[name] = json.loads(remote.get_function("edge.thread_state")())["sandbox"]
            del remote
    on, off = series["edge-server --sandbox auto"], series["edge-server --sandbox off"]
    return {"ms": {k: bl.summary(v) for k, v in series.items()},
            "added_ms": bl.summary([a - b for a, b in zip(on, off)]),
            "sandbox_state": states}


def run(args) -> dict:
    data = {"machine": bl.machine(), "kernel": os.uname().release, "rounds": args.rounds,
            "sessions": args.sessions}
    with bl.workdir(NAME + "-apply") as tmp:
        data["apply"] = apply_rows(args.rounds, str(tmp))
    data["session"] = session_rows(args.sessions)
    med = data["apply"]["added_ms"]["median"]
    data["target"] = {"added_ms_median": med, "max_ms": TARGET_MS, "met": med < TARGET_MS}
    return data


def render(data) -> str:
    a, s = data["apply"], data["session"]
    rows = [["sandbox on (%s)" % a["applied"], bl.fmt(a["on_ms"]["median"], " ms"),
             bl.fmt(a["on_ms"]["p90"], " ms")],
            ["sandbox off", bl.fmt(a["off_ms"]["median"], " ms"), bl.fmt(a["off_ms"]["p90"], " ms")],
            ["added per session (on - off, per round)", bl.fmt(a["added_ms"]["median"], " ms"),
             bl.fmt(a["added_ms"]["p90"], " ms")]]
    rows += [[" part: " + part, bl.fmt(v["median"], " ms"), bl.fmt(v["p90"], " ms")]
             for part, v in a["parts_ms"].items()]
    srows = [[name, bl.fmt(v["median"], " ms"), bl.fmt(v["p90"], " ms")]
             for name, v in s["ms"].items()]
    srows.append(["added by the sandbox (auto - off, per round)",
                  bl.fmt(s["added_ms"]["median"], " ms"), bl.fmt(s["added_ms"]["p90"], " ms")])
    t = data["target"]
    return "\n".join([
        "## Per-session sandbox cost (`bench/sandbox.py`)", "",
        bl.machine_markdown(data["machine"]) + " Kernel %s." % data["kernel"], "",
        "`sandbox.apply` in %d forked children each way, alternating, in a process that has "
        "imported TVM's runtime and edge_server like the daemon (the daemon's plan: its "
        "seccomp program is built once, at start):" % data["rounds"], "",
        bl.table(["session start", "median", "p90"], rows), "",
        "Target: under %.0f ms added per session, median: **%s** (%s)."
        % (t["max_ms"], bl.verdict(t["met"]), bl.fmt(t["added_ms_median"], " ms")), "",
        "Whole sessions through the stock tracker (request, one call, close), %d rounds "
        "alternating; the sandbox is applied in the spare session process before the "
        "client arrives:" % data["sessions"], "",
        bl.table(["server", "median", "p90"], srows),
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.add_common_args(parser)
    parser.add_argument("--rounds", type=int, default=200, help="forked children each way")
    parser.add_argument("--sessions", type=int, default=40, help="sessions per server")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.sessions = 10, 3
    bl.finish(NAME, run(args), render, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
