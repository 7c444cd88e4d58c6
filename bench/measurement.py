"""Measurement truth: one parallel kernel timed in fresh sessions, stock
server against each thread mode of edge-server.

The module is a 512x512x512 float32 matmul whose outer loop is parallel,
compiled once with tvm.compile for {"kind": "llvm", "num-cores": 2} and
exported as a .so. Each sample is a fresh session (the way a tuner measures):
request, (thread mode), upload, load, time_evaluator(number, repeat). The
stock server runs with TVM_NUM_THREADS unset, as users start it, so TVM picks
its own thread count (on x86 it halves the CPU count). Configurations are
alternated round by round; each gets one session per round.

Reported per configuration: the threads the kernel ran on, the mean kernel
time, and the coefficient of variation of the per-session means over the
repeated sessions (how far one session's figure can be trusted).
"""
import argparse
import os
import sys

from bench import benchlib as bl
from edge_common.cpulist import format_cpulist
from host_client import session as host

NAME = "measurement"
EDGE_KEY = "bench-meas-edge"
STOCK_KEY = "bench-meas-stock"
STOCK = "stock server (TVM_NUM_THREADS unset)"
N = 512


def build_matmul_so(path, n=N) -> str:
    import tvm
    from tvm import te
    a = te.placeholder((n, n), name="A", dtype="float32")
    b = te.placeholder((n, n), name="B", dtype="float32")
    k = te.reduce_axis((0, n), name="k")
    c = te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    func = te.create_prim_func([a, b, c]).with_attr("global_symbol", "matmul")
    sch = tvm.s_tir.Schedule(tvm.IRModule({"matmul": func}))
    block = sch.get_sblock("C", func_name="matmul")
    i, j, kk = sch.get_loops(block)
    io, ii = sch.split(i, [None, 16])
    jo, ji = sch.split(j, [None, 64])
    sch.reorder(io, jo, kk, ii, ji)
    sch.parallel(io)
    sch.vectorize(ji)
    ex = tvm.compile(sch.mod, target={"kind": "llvm", "num-cores": 2})
    ex.export_library(str(path))
    return str(path)


def sample(remote, so_path, inputs, number, repeat) -> dict:
    """Upload, load, time; returns per-repeat seconds; checks the result."""
    import numpy as np
    import tvm
    remote.upload(so_path, "matmul.so")
    mod = remote.load_module("matmul.so")
    dev = remote.cpu()
    a_np, b_np = inputs
    a = tvm.runtime.tensor(a_np, dev)
    b = tvm.runtime.tensor(b_np, dev)
    c = tvm.runtime.tensor(np.zeros_like(a_np), dev)
    ev = mod.time_evaluator("matmul", dev, number=number, repeat=repeat)
    res = ev(a, b, c)
    np.testing.assert_allclose(c.numpy(), a_np @ b_np, rtol=1e-3, atol=1e-3)
    del ev, a, b, c, mod
    return {"results_s": [float(x) for x in res.results]}


def stock_sample(port, so_path, inputs, number, repeat) -> dict:
    from tvm import rpc
    remote = rpc.connect_tracker(bl.procs.HOST, port).request(STOCK_KEY)
    rec = sample(remote, so_path, inputs, number, repeat)
    rec["threads"] = int(remote.get_function("runtime.NumThreads")())
    del remote
    return rec


def edge_sample(host, port, mode, so_path, inputs, number, repeat) -> dict:
    session = host.connect("%s:%d" % (bl.procs.HOST, port), EDGE_KEY, thread_mode=mode)
    state = session.thread_state or {}
    rec = sample(session, so_path, inputs, number, repeat)
    rec["threads"] = state.get("nthreads")
    rec["cpus"] = state.get("cpus")
    session.release()
    del session
    return rec


def run(args) -> dict:
    import numpy as np
    data = {"machine": bl.machine(), "rounds": args.rounds, "number": args.number,
            "repeat": args.repeat, "configs": {}, "order": []}
    why = None
    rng = np.random.default_rng(0)
    inputs = (rng.random((N, N), dtype="float32"), rng.random((N, N), dtype="float32"))
    with bl.workdir(NAME) as tmp, bl.Stack(tmp) as stack:
        so_path = build_matmul_so(tmp / "matmul.so")
        # as users start it: TVM_NUM_THREADS (and OMP_NUM_THREADS, its fallback) unset
        data["env_unset"] = {v: os.environ.pop(v) for v in ("TVM_NUM_THREADS",
                                                            "OMP_NUM_THREADS")
                             if v in os.environ}
        stack.stock_server(STOCK_KEY)
        runs = {STOCK: lambda: stock_sample(stack.port, so_path, inputs, args.number,
                                            args.repeat)}
        modes = []
        try:
            stack.edge_server(EDGE_KEY)
            probe = host.connect("%s:%d" % (bl.procs.HOST, stack.port), EDGE_KEY,
                                 thread_mode="all")
            modes = bl.modes_to_cycle(probe.topology())
            probe.release()
            del probe
        except Exception as err:  # noqa: BLE001 - ours failing is a row
            why = "%s: %s" % (type(err).__name__, str(err).splitlines()[0][:300])
        for mode in modes:
            runs["edge-server `%s`" % mode] = (
                lambda m=mode: edge_sample(host, stack.port, m, so_path, inputs, args.number,
                                           args.repeat))
        for name in runs:
            data["configs"][name] = {"available": True, "samples": []}
        if not modes:
            data["configs"]["edge-server"] = {"available": False, "why_not": why}
        names = list(runs)
        data["order"] = names
        for rnd in range(args.rounds):
            order = names[rnd % len(names):] + names[:rnd % len(names)]
            for name in order:
                rec = runs[name]()
                data["configs"][name]["samples"].append(rec)
                print("round %d  %-40s %2s threads  %7.2f ms" % (
                    rnd + 1, name, rec.get("threads"), 1e3 * _mean(rec["results_s"])),
                    file=sys.stderr, flush=True)
    summarise(data)
    return data


def _mean(xs):
    return sum(xs) / len(xs)


def summarise(data) -> None:
    for name, cfg in data["configs"].items():
        if not cfg["available"]:
            continue
        means = [_mean(s["results_s"]) * 1e3 for s in cfg["samples"]]
        within = [bl.summary([x * 1e3 for x in s["results_s"]]).get("cv")
                  for s in cfg["samples"]]
        cfg["session_means_ms"] = bl.summary(means)
        cfg["within_session_cv"] = bl.summary([w for w in within if w is not None])
        cfg["threads"] = sorted({s.get("threads") for s in cfg["samples"]},
                                key=lambda x: (x is None, x))
        cfg["cpus"] = next((s.get("cpus") for s in cfg["samples"] if s.get("cpus")), None)
    stock = data["configs"][STOCK]
    all_name = "edge-server `all`"
    if all_name in data["configs"]:
        ours = data["configs"][all_name]
        s_means = [_mean(s["results_s"]) for s in stock["samples"]]
        o_means = [_mean(s["results_s"]) for s in ours["samples"]]
        data["all_vs_stock"] = {"speedup": bl.ratios(s_means, o_means),
                                "stock_threads": stock["threads"],
                                "all_threads": ours["threads"]}


def render(data) -> str:
    rows = []
    for name, cfg in data["configs"].items():
        if not cfg["available"]:
            rows.append([name, bl.NOT_AVAILABLE + ": %s" % cfg["why_not"], "–", "–", "–", "–"])
            continue
        m = cfg["session_means_ms"]
        rows.append([name, ", ".join(str(t) for t in cfg["threads"]),
                     format_cpulist(cfg["cpus"]) if cfg["cpus"] else "TVM's choice",
                     "%s (median %s)" % (bl.fmt(m["mean"], " ms"), bl.fmt(m["median"], " ms")),
                     bl.fmt(100 * m["cv"], " %") if m.get("cv") is not None else "–",
                     bl.fmt(100 * cfg["within_session_cv"].get("median", 0), " %")])
    text = [
        "## Measurement truth (`bench/measurement.py`)", "",
        bl.machine_markdown(data["machine"]), "",
        "A %dx%dx%d float32 matmul with a parallel outer loop, one .so for every row; "
        "%d rounds, one fresh session per configuration per round (alternating); each "
        "session runs time_evaluator(number=%d, repeat=%d). The stock server runs with "
        "TVM_NUM_THREADS unset." % (N, N, N, data["rounds"], data["number"], data["repeat"]),
        "",
        bl.table(["configuration", "threads", "CPUs", "kernel time, mean over sessions",
                  "CV across sessions", "CV within a session (median)"], rows),
    ]
    vs = data.get("all_vs_stock")
    if vs:
        text += ["", "Mode `all` ran on %s thread(s) where stock ran on %s; stock time / "
                 "`all` time per round: %s." % (
                     ", ".join(map(str, vs["all_threads"])),
                     ", ".join(map(str, vs["stock_threads"])),
                     bl.fmt_spread(vs["speedup"], "x"))]
    return "\n".join(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.add_common_args(parser)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--number", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.number, args.repeat = 1, 2, 2
    data = run(args)
    bl.finish(NAME, data, render, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
