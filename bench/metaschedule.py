"""MetaSchedule through the runner: stock RPCRunner + stock server against
host_client's plugin (`host_client.edge_runner`) + edge-server.

The same job on both sides: tune a 128x128x128 float32 matmul with
`ms.tune_tir`, the same target ({"kind": "llvm", "num-cores": 2}), seed,
trial count and evaluator settings; each side uses its own builder (stock
LocalBuilder, or the plugin's edge_builder); the runner uses one worker
(max_workers=1) so a trial's session creation is creation, not queueing
behind the previous trial for the one server. Every runner hook is wrapped
with a timer (bench/mshooks.py), so the per-trial session-creation time is
measured where MetaSchedule spends it, in the runner's worker process.
Runs alternate stock / ours, each job in a fresh process.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench import benchlib as bl
from bench import mshooks

NAME = "metaschedule"
SIDES = ["stock", "edge", "stock-edge"]
LABELS = {"stock": "stock RPCRunner + stock server",
          "edge": "host_client.edge_runner + edge-server",
          "stock-edge": "stock RPCRunner + edge-server"}
KEYS = {"stock": "bench-ms-stock", "edge": "bench-ms-edge", "stock-edge": "bench-ms-edge"}
TARGET_CREATE_MS = 15.0
# TVM's builder worker imports tvm.s_tir.tensor_intrin inside the first
# candidate's build (a new worker pool per search iteration), which parses
# hundreds of TVMScript functions: 10-80 s on a 2-core machine, more than the
# default 30 s build timeout when the machine is busy. An initializer would not
# help (the builder's sanity check pays it once more), so the timeout is raised.
BUILD_TIMEOUT_S = 600
N = 128


def matmul_mod(n=N):
    import tvm
    from tvm import te
    a = te.placeholder((n, n), name="A", dtype="float32")
    b = te.placeholder((n, n), name="B", dtype="float32")
    k = te.reduce_axis((0, n), name="k")
    c = te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    return tvm.IRModule({"main": te.create_prim_func([a, b, c])})


def make_runner(side, tracker_port, record=None):
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, RPCConfig, RPCRunner
    evaluator = EvaluatorConfig(number=3, repeat=1, min_repeat_ms=100,
                                enable_cpu_cache_flush=False)
    if side in ("stock", "stock-edge"):
        return RPCRunner(rpc_config=RPCConfig(tracker_host=bl.procs.HOST,
                                              tracker_port=tracker_port,
                                              tracker_key=KEYS[side], session_timeout_sec=60),
                         evaluator_config=evaluator, max_workers=1,
                         initializer=mshooks.preimport_runner)
    import host_client
    return host_client.edge_runner("%s:%d" % (bl.procs.HOST, tracker_port), KEYS[side],
                                   thread_mode="all", session_timeout=60,
                                   evaluator_config=evaluator, max_workers=1,
                                   initializer=mshooks.preimport_runner, record=record)


def make_builder(side):
    """Stock: MetaSchedule's LocalBuilder. Ours: host_client.edge_builder, the
    plugin's LocalBuilder whose workers import TVM's tensor intrinsics the fast
    way (part of what a user of the plugin gets)."""
    if side in ("stock", "stock-edge"):
        from tvm.s_tir.meta_schedule.builder import LocalBuilder
        return LocalBuilder(max_workers=1, timeout_sec=BUILD_TIMEOUT_S)
    import host_client
    return host_client.edge_builder(max_workers=1, timeout_sec=BUILD_TIMEOUT_S)


def tune_once(side, tracker_port, trials, per_iter, tmp) -> dict:
    """One tuning job, in this process (the child of tune_in_child)."""
    import cloudpickle
    import tvm
    from tvm.s_tir import meta_schedule as ms
    cloudpickle.register_pickle_by_value(mshooks)
    log = Path(tempfile.mkstemp(prefix="hooks-%s-" % side, suffix=".jsonl", dir=tmp)[1])
    work_dir = tempfile.mkdtemp(prefix="ms-%s-" % side, dir=tmp)
    target = tvm.target.Target({"kind": "llvm", "num-cores": 2})
    t0 = bl.now()
    record = str(log) + ".sessions"
    runner = make_runner(side, tracker_port, record)
    builder = make_builder(side)
    mshooks.wrap_runner(runner, log)
    t1 = bl.now()
    db = ms.tune_tir(matmul_mod(), target, work_dir, max_trials_global=trials,
                     num_trials_per_iter=per_iter, runner=runner, seed=0, builder=builder)
    wall = bl.now() - t0
    records = db.get_all_tuning_records()
    costs = [float(sum(r.run_secs) / len(r.run_secs)) for r in records if r.run_secs]
    ok = [c for c in costs if c < 1e9]
    hooks = mshooks.read_log(log)
    try:
        runner.pool.shutdown()
    except Exception:  # noqa: BLE001 - the pool dies with us anyway
        pass
    per_hook = {h: [e["ms"] for e in hooks if e["hook"] == h] for h in mshooks.HOOKS}
    # the plugin's own record of where each session's creation time went
    parts = {}
    for line in mshooks.read_log(record):
        for part, ms in (line.get("timings_ms") or {}).items():
            parts.setdefault(part, []).append(ms)
    return {"side": side, "create_parts_ms": {k: bl.summary(v)["median"]
                                              for k, v in parts.items()}, "first_error": first_error(work_dir), "wall_s": wall,
            "setup_s": t1 - t0, "trials": len(records), "ok_trials": len(ok),
            "failed_trials": len(costs) - len(ok),
            "trials_per_s": len(records) / wall if wall else None,
            "best_ms": min(ok) * 1e3 if ok else None,
            "hook_ms": per_hook,
            "create_session_ms": bl.summary(per_hook["f_create_session"]),
            "runner_ms_per_trial": (sum(sum(v) for v in per_hook.values())
                                    / max(1, len(per_hook["f_create_session"])))}


def tune_in_child(side, tracker_port, trials, per_iter, tmp) -> dict:
    """tune_once in a fresh process: each job pays its own imports, as a
    user's tuning script does, and one side's imports never warm the other's."""
    import subprocess
    out = Path(tempfile.mkstemp(prefix="result-%s-" % side, suffix=".json", dir=tmp)[1])
    argv = [sys.executable, "-m", "bench.metaschedule", "--child", side,
            "--tracker-port", str(tracker_port), "--trials", str(trials),
            "--per-iter", str(per_iter), "--child-dir", str(tmp), "--child-out", str(out)]
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, cwd=str(bl.REPO))
    if proc.returncode != 0 or not out.read_text().strip():
        tail = " | ".join(proc.stdout.strip().splitlines()[-5:])
        raise RuntimeError("tuning child for %s exited %s: %s" % (side, proc.returncode,
                                                                 tail[:600]))
    return json.loads(out.read_text())


def first_error(work_dir):
    """The first "Error in building/running" MetaSchedule logged, shortened."""
    for log in sorted(Path(work_dir, "logs").glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            if "Error in building" in line or "Error in running" in line:
                body = []
                for follow in lines[i + 1:i + 40]:
                    if follow.startswith("# from tvm.script") or not follow.strip():
                        break
                    body.append(follow.strip())
                # the header and the exception at the end of the traceback
                head = line.split("]", 3)[-1].strip()
                tail = [b for b in body if not b.startswith(("File ", "^"))][-3:]
                return (head + " ... " + " | ".join(tail))[:600]
    return None


def run(args) -> dict:
    data = {"machine": bl.machine(), "trials": args.trials, "per_iter": args.per_iter,
            "pairs": args.pairs, "runs": [], "sides": {}}
    why = {side: None for side in SIDES}
    edge_ok, edge_why = bl.edge_available()
    try:
        import host_client
        host_client.edge_runner  # noqa: B018 - importable?
    except Exception as err:  # noqa: BLE001
        edge_ok, edge_why = False, "host_client.edge_runner not usable: %s" % err
    with bl.workdir(NAME) as tmp, bl.Stack(tmp) as stack:
        stack.stock_server(KEYS["stock"])
        sides = ["stock"]
        if edge_ok:
            try:
                stack.edge_server(KEYS["edge"])
                sides += ["edge", "stock-edge"]
            except Exception as err:  # noqa: BLE001
                edge_why = "edge-server did not register: %s" % str(err).splitlines()[0]
        for side in ("edge", "stock-edge"):
            why[side] = None if side in sides else edge_why
        if args.sides:
            sides = [s for s in sides if s in args.sides]
        for i in range(args.pairs):
            order = sides if i % 2 == 0 else list(reversed(sides))
            for side in list(order):
                if side not in sides or (side == "stock-edge" and i > 0):
                    continue  # the stock runner against edge-server: one run is enough
                try:
                    rec = tune_in_child(side, stack.port, args.trials, args.per_iter, tmp)
                except Exception as err:  # noqa: BLE001 - ours failing is a row
                    if side == "stock":
                        raise
                    why[side] = "the tuning job failed: %s" % str(err).splitlines()[0][:300]
                    sides.remove(side)
                    continue
                data["runs"].append(rec)
                print("%-40s %d trials (%d failed) in %.1f s = %.2f trials/s, create_session "
                      "median %.1f ms" % (LABELS[side], rec["trials"], rec["failed_trials"],
                                          rec["wall_s"], rec["trials_per_s"],
                                          rec["create_session_ms"].get("median", -1)),
                      file=sys.stderr, flush=True)
    summarise(data, why)
    return data


def summarise(data, why) -> None:
    for side in SIDES:
        runs = [r for r in data["runs"] if r["side"] == side]
        if not runs:
            data["sides"][side] = {"available": False, "why_not": why[side]}
            continue
        hooks = {h: bl.summary([ms for r in runs for ms in r["hook_ms"][h]])
                 for h in mshooks.HOOKS}
        data["sides"][side] = {
            "available": True,
            "trials_per_s": bl.summary([r["trials_per_s"] for r in runs]),
            "failed_trials": sum(r["failed_trials"] for r in runs),
            "first_error": next((r["first_error"] for r in runs if r["first_error"]), None),
            "trials": sum(r["trials"] for r in runs),
            "best_ms": bl.summary([r["best_ms"] for r in runs if r["best_ms"] is not None]),
            "runner_ms_per_trial": bl.summary([r["runner_ms_per_trial"] for r in runs]),
            "create_parts_ms": runs[-1].get("create_parts_ms") or {},
            "hooks_ms": hooks}
    edge = data["sides"]["edge"]
    if edge["available"]:
        s_runs = [r for r in data["runs"] if r["side"] == "stock"]
        e_runs = [r for r in data["runs"] if r["side"] == "edge"]
        create = edge["hooks_ms"]["f_create_session"].get("median")
        data["target"] = {
            "create_ms_median": create, "create_ms_max": TARGET_CREATE_MS,
            "met": create is not None and create < TARGET_CREATE_MS,
            "trials_per_s_ratio": bl.ratios([r["trials_per_s"] for r in e_runs],
                                            [r["trials_per_s"] for r in s_runs]),
            "runner_ms_ratio": bl.ratios([r["runner_ms_per_trial"] for r in s_runs],
                                         [r["runner_ms_per_trial"] for r in e_runs])}
    else:
        data["target"] = {"met": None, "create_ms_median": None,
                          "create_ms_max": TARGET_CREATE_MS}


def render(data) -> str:
    rows = []
    hook_rows = []
    for side in SIDES:
        s = data["sides"][side]
        if not s["available"]:
            rows.append([LABELS[side], bl.NOT_AVAILABLE + ": %s" % s["why_not"], "–", "–", "–",
                         "–"])
            continue
        rows.append([LABELS[side], bl.fmt_spread(s["trials_per_s"], "/s"),
                     "%d of %d" % (s["failed_trials"], s["trials"]),
                     bl.fmt_spread(s["hooks_ms"]["f_create_session"], " ms"),
                     bl.fmt(s["runner_ms_per_trial"].get("median"), " ms"),
                     bl.fmt(s["best_ms"].get("median"), " ms")])
        hook_rows.append([LABELS[side]] + [bl.fmt(s["hooks_ms"][h].get("median"))
                                           for h in mshooks.HOOKS])
    t = data["target"]
    text = [
        "## MetaSchedule (`bench/metaschedule.py`)", "",
        bl.machine_markdown(data["machine"]), "",
        "`ms.tune_tir` of a %dx%dx%d float32 matmul, %d trials (%d per iteration), seed 0, "
        "target {\"kind\": \"llvm\", \"num-cores\": 2}; builder max_workers=1, "
        "timeout_sec=%d (stock: LocalBuilder; ours: host_client.edge_builder, whose workers "
        "import TVM's tensor intrinsics the fast way); runner max_workers=1 (its workers "
        "import TVM in an initializer, before the first trial); each job in a fresh "
        "process, timed from creating the runner to the end of tune_tir; the stock runner "
        "against edge-server (a compatibility row) runs in the first pair only; EvaluatorConfig(number=3, repeat=1, min_repeat_ms=100); %d "
        "alternating pair(s) of runs; ours in thread mode `all`."
        % (N, N, N, data["trials"], data["per_iter"], BUILD_TIMEOUT_S, data["pairs"]), "",
        bl.table(["runner", "trials/s (whole tuning job)", "failed trials",
                  "session creation per trial", "runner time per trial (all hooks)",
                  "best kernel"], rows), "",
        "Median per-trial time in each runner hook, ms (measured inside the runner's "
        "worker process):", "",
        bl.table(["runner"] + mshooks.HOOKS, hook_rows), "",
    ]
    parts = data["sides"]["edge"].get("create_parts_ms")
    if parts:
        text.append("- where the plugin's session creation goes (its own `timings_ms`, medians "
                    "of the last run): %s" % ", ".join("%s %s" % (k, bl.fmt(v, " ms"))
                                                       for k, v in parts.items()))
    for side in SIDES:
        err = data["sides"][side].get("first_error")
        if err:
            text.append("- first trial error of %s: `%s`" % (LABELS[side], err[:400]))
    if t.get("trials_per_s_ratio"):
        text.append("- trials/s of the whole job, ours / stock (per pair): %s"
                    % bl.fmt_spread(t["trials_per_s_ratio"], "x"))
        text.append("- runner time per trial, stock / ours (per pair): %s"
                    % bl.fmt_spread(t["runner_ms_ratio"], "x"))
    text.append("- session creation per trial under %.0f ms: **%s** (median %s)"
                % (t["create_ms_max"], bl.verdict(t["met"]), bl.fmt(t["create_ms_median"], " ms")))
    return "\n".join(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.add_common_args(parser)
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--per-iter", type=int, default=None,
                        help="trials per search iteration (default: all in one, so the "
                             "builder's per-iteration worker start is paid once)")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--sides", nargs="+", choices=SIDES, help="run only these (debugging)")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--tracker-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        rec = tune_once(args.child, args.tracker_port, args.trials, args.per_iter,
                        args.child_dir)
        Path(args.child_out).write_text(json.dumps(rec))
        return 0
    if args.quick:
        args.trials, args.pairs = 4, 1
    args.per_iter = args.per_iter or args.trials
    data = run(args)
    bl.finish(NAME, data, render, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
