"""What a verdict adds to one measurement (issue 13): goal < 1 ms, median.

Two views, in one run:

- on the board: the work itself, in this process: two conditions snapshots
  and evaluate(), on this machine's /sys and /proc (no cpufreq, no thermal
  zones: the least there is to read) and on a fake RK3399 tree with two
  cpufreq policies with stats, two thermal zones with trip points, two CPU
  cooling devices and /proc counters (what a real board has to read);
- from the host: one `time_evaluator` call of a tiny kernel (number=1,
  repeat=1), plain and with the verdict (edge.measure_begin and
  edge.measure_end round trips around it), alternating call by call in one
  session, on edge-server serving this machine and serving the fake RK3399;
  the stock `python -m tvm.exec.rpc_server`'s plain call in the same run for
  scale. The added cost is the median of per-pair differences.
"""
import argparse
import shutil
import sys

from bench import benchlib as bl

NAME = "verdict"
GOAL_MS = 1.0
EDGE_KEY, FAKE_KEY, STOCK_KEY = "bench-verdict-edge", "bench-verdict-rk", "bench-verdict-stock"


def local_cost(root: str, cpus, n: int) -> dict:
    """ms for snapshot + snapshot + evaluate, in this process."""
    from edge_server.board.conditions import ConditionsReader
    from edge_server.session.verdict import evaluate
    reader = ConditionsReader(root, cpus)
    times = []
    for _ in range(n):
        t0 = bl.now()
        before = reader.snapshot()
        after = reader.snapshot()
        evaluate(before, after)
        times.append((bl.now() - t0) * 1e3)
    return bl.summary(times)


def fake_board(tmp, name="rk3399"):
    """A fixture topology with a board's conditions written in: rk3399 for the
    file counts of a real board; this-machine for the server row (uploads are
    checked against the board's arch, so kernels built here must fit)."""
    sys.path.insert(0, str(bl.REPO))
    from tests.support import conditions_kit
    root = tmp / name
    shutil.copytree(bl.procs.FIXTURES / name, root, symlinks=True)
    if name == "rk3399":
        conditions_kit.rk3399_conditions(root)
    else:
        conditions_kit.this_machine_conditions(root)
    return root


def host_pairs(remote, so_path, n: int, verdict: bool) -> dict:
    """Per call ms, plain and (if verdict) with the verdict, alternating."""
    import numpy as np
    import tvm
    from host_client.verdicts import measured
    remote.upload(so_path, "add.so")
    mod = remote.load_module("add.so")
    dev = remote.cpu()
    a = tvm.runtime.tensor(np.zeros(1024, "float32"), dev)
    b = tvm.runtime.tensor(np.zeros(1024, "float32"), dev)
    feval = mod.time_evaluator("add_one", dev, number=1, repeat=1)
    timed = measured(remote, feval) if verdict else None
    plain, with_verdict, statuses = [], [], {}
    for _ in range(n):
        t0 = bl.now()
        feval(a, b)
        plain.append((bl.now() - t0) * 1e3)
        if timed is not None:
            t0 = bl.now()
            _, v = timed(a, b)
            with_verdict.append((bl.now() - t0) * 1e3)
            statuses[v.status] = statuses.get(v.status, 0) + 1
    out = {"plain": bl.summary(plain)}
    if timed is not None:
        out["verdict"] = bl.summary(with_verdict)
        out["added"] = bl.summary([w - p for w, p in zip(with_verdict, plain)])
        out["statuses"] = statuses
    del timed, feval, mod, a, b
    return out


def run(args) -> dict:
    import os
    data = {"machine": bl.machine(), "n": args.n, "local": {}, "host": {}}
    cpus = sorted(os.sched_getaffinity(0))
    with bl.workdir(NAME) as tmp, bl.Stack(tmp) as stack:
        root = fake_board(tmp)
        data["local"]["this machine (/)"] = local_cost("/", cpus, args.n)
        data["local"]["fake RK3399 tree, cpus 0-1"] = local_cost(str(root), [0, 1], args.n)
        data["local"]["fake RK3399 tree, cpus 0-5"] = local_cost(str(root), list(range(6)),
                                                                 args.n)
        so = bl.build_add_so(tmp / "add.so")
        stack.stock_server(STOCK_KEY)
        quiet = ("--verdict-max-other-ms", "1e9")
        stack.edge_server(EDGE_KEY, args=quiet)
        stack.edge_server(FAKE_KEY, args=("--root", fake_board(tmp, "this-machine")) + quiet)
        from tvm import rpc
        import host_client
        tracker = "%s:%d" % (bl.procs.HOST, stack.port)
        stock = rpc.connect_tracker(bl.procs.HOST, stack.port).request(STOCK_KEY)
        data["host"]["stock rpc_server"] = host_pairs(stock, so, args.n, verdict=False)
        del stock
        for label, key, mode in (("edge-server, this machine", EDGE_KEY, "all"),
                                 ("edge-server, fake board conditions", FAKE_KEY, "cpus:0-1")):
            session = host_client.connect(tracker, key, thread_mode=mode)
            data["host"][label] = host_pairs(session, so, args.n, verdict=True)
            session.release()
            del session
    added = [row["added"]["median"] for row in data["host"].values() if "added" in row]
    worst = max(added) if added else None
    data["target"] = {"added_median_ms": worst, "max_ms": GOAL_MS,
                      "met": None if worst is None else worst < GOAL_MS}
    return data


def render(data) -> str:
    local_rows = [[name, bl.fmt(s["median"], " ms"), bl.fmt(s["p90"], " ms"), str(s["n"])]
                  for name, s in data["local"].items()]
    host_rows = []
    for name, row in data["host"].items():
        host_rows.append([name, bl.fmt(row["plain"]["median"], " ms"),
                          bl.fmt(row["verdict"]["median"], " ms") if "verdict" in row else "–",
                          bl.fmt(row["added"]["median"], " ms") if "added" in row else "–",
                          bl.fmt(row["added"]["p90"], " ms") if "added" in row else "–",
                          ", ".join("%s %d" % kv for kv in sorted(row.get("statuses", {})
                                                                  .items())) or "–"])
    t = data["target"]
    return "\n".join([
        "## Measurement verdicts (`bench/verdict.py`)", "",
        bl.machine_markdown(data["machine"]), "",
        "Two snapshots and the verdict, in one process (what the session adds on the board):",
        "",
        bl.table(["conditions read", "median", "p90", "n"], local_rows), "",
        "One `time_evaluator` call of a 1024-float add (number=1, repeat=1) from the host, "
        "plain and with the verdict (two extra round trips: edge.measure_begin, "
        "edge.measure_end), alternating call by call in one session; added = per-pair "
        "difference. The intruder check is off on the servers (this machine is shared).", "",
        bl.table(["server", "plain call", "with verdict", "added, median", "added, p90",
                  "verdicts"], host_rows), "",
        "Goal: under %.0f ms added per measurement, median: **%s** (worst median %s)."
        % (t["max_ms"], bl.verdict(t["met"]), bl.fmt(t["added_median_ms"], " ms")),
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.add_common_args(parser)
    parser.add_argument("--n", type=int, default=300, help="calls per row")
    args = parser.parse_args(argv)
    if args.quick:
        args.n = 10
    data = run(args)
    bl.finish(NAME, data, render, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
