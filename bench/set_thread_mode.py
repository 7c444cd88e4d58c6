"""`edge.set_thread_mode` round trip, in one session, over ~200 calls.

The modes alternate among ones that never need the pool to grow (the first
call, `all`, makes it as large as it will get): all, big:1, cpus:0, cpus:1,
... as the board's topology allows. Each call is timed from the host through
host_client's `EdgeSession.set_thread_mode` (RPC call, resolve, configure
TVM's pool, pin every thread, read it back from /proc, JSON back and parsed).

For scale, in blocks alternating with ours: the same session's
`edge.thread_state` (an RPC round trip that only reads /proc), and on a stock
server the only thread call stock offers, `runtime.config_threadpool(1, 0)`
(ints only; it cannot pin a CPU list).
"""
import argparse
import json
import sys

from bench import benchlib as bl
from host_client import session as host

NAME = "set_thread_mode"
EDGE_KEY = "bench-stm-edge"
STOCK_KEY = "bench-stm-stock"
TARGET_MEDIAN_MS = 2.0
FIRST_EDGE = "edge.set_thread_mode, first call in a fresh session"
FIRST_STOCK = "stock runtime.config_threadpool(1, 0), first call in a fresh session"
BLOCK = 20


def time_calls(fn, args_list) -> list:
    times = []
    for args in args_list:
        t0 = bl.now()
        fn(*args)
        times.append((bl.now() - t0) * 1e3)
    return times


def run(args) -> dict:
    data = {"machine": bl.machine(), "calls": args.calls, "fresh": args.fresh, "rows": {},
            "modes": None,
            "refused": {}}
    why = None
    with bl.workdir(NAME) as tmp, bl.Stack(tmp) as stack:
        stack.stock_server(STOCK_KEY)
        tracker = "%s:%d" % (bl.procs.HOST, stack.port)
        from tvm import rpc
        stock = rpc.connect_tracker(bl.procs.HOST, stack.port).request(STOCK_KEY)
        stock_cfg = stock.get_function("runtime.config_threadpool")
        session = None
        try:
            stack.edge_server(EDGE_KEY)
            session = host.connect(tracker, EDGE_KEY, thread_mode="all")
        except Exception as err:  # noqa: BLE001 - ours failing is a row
            why = "%s: %s" % (type(err).__name__, str(err).splitlines()[0][:300])
        series = {"edge.set_thread_mode": [], "edge.thread_state": [],
                  "stock runtime.config_threadpool(1, 0)": [],
                  FIRST_EDGE: [], FIRST_STOCK: []}
        if session is not None:
            modes = bl.modes_to_cycle(session.topology(), whole_class=True)
            modes = [m for m in modes if _accepted(session, m, data["refused"])]
            data["modes"] = modes
            state_fn = session.get_function("edge.thread_state")
        done = 0
        while done < args.calls:
            n = min(BLOCK, args.calls - done)
            if session is not None:
                picks = [(modes[(done + i) % len(modes)],) for i in range(n)]
                series["edge.set_thread_mode"] += time_calls(session.set_thread_mode, picks)
                series["edge.thread_state"] += time_calls(state_fn, [()] * n)
            series["stock runtime.config_threadpool(1, 0)"] += time_calls(
                stock_cfg, [(1, 0)] * n)
            done += n
        if session is not None:
            data["last_state"] = json.loads(state_fn())
            del state_fn
            session.release()
            del session
        del stock_cfg, stock
        ours_ok = data["modes"] is not None
        for _ in range(args.fresh):
            series[FIRST_STOCK].append(first_call_stock(stack.port))
            if ours_ok:
                series[FIRST_EDGE].append(first_call_edge(host, tracker))
    for name, times in series.items():
        if times:
            data["rows"][name] = {"available": True, "ms": bl.summary(times)}
        else:
            data["rows"][name] = {"available": False, "why_not": why}
    ours = data["rows"]["edge.set_thread_mode"]
    med = ours["ms"]["median"] if ours["available"] else None
    data["target"] = {"median_ms": med, "max_ms": TARGET_MEDIAN_MS,
                      "met": None if med is None else med < TARGET_MEDIAN_MS}
    return data


def first_call_stock(port) -> float:
    """ms of the first config_threadpool call in a fresh stock session."""
    from tvm import rpc
    remote = rpc.connect_tracker(bl.procs.HOST, port).request(STOCK_KEY)
    fn = remote.get_function("runtime.config_threadpool")
    t0 = bl.now()
    fn(1, 0)
    ms = (bl.now() - t0) * 1e3
    del fn, remote
    return ms


def first_call_edge(host, tracker) -> float:
    """ms of the first set_thread_mode in a fresh edge-server session, the call
    MetaSchedule's plugin makes once per trial."""
    session = host.request_session(tracker, EDGE_KEY)
    t0 = bl.now()
    session.set_thread_mode("all")
    ms = (bl.now() - t0) * 1e3
    session.release()
    del session
    return ms


def _accepted(session, mode, refused) -> bool:
    try:
        session.set_thread_mode(mode)
        return True
    except Exception as err:  # noqa: BLE001 - a refused mode leaves the cycle, recorded
        refused[mode] = str(err)[:300]
        return False


def render(data) -> str:
    rows = []
    for name, row in data["rows"].items():
        if not row["available"]:
            rows.append([name, bl.NOT_AVAILABLE + ": %s" % row["why_not"], "–", "–"])
            continue
        ms = row["ms"]
        rows.append([name, bl.fmt(ms["median"], " ms"), bl.fmt(ms["p90"], " ms"),
                     "%s / %s ms, n=%d" % (bl.fmt(ms["min"]), bl.fmt(ms["max"]), ms["n"])])
    t = data["target"]
    text = [
        "## `edge.set_thread_mode` round trip (`bench/set_thread_mode.py`)", "",
        bl.machine_markdown(data["machine"]), "",
        "%d calls in one session, in blocks of %d alternating with the other rows; modes "
        "cycled: %s. The first-call rows open %d fresh sessions each (alternating stock "
        "and ours) and time only the first call: it is the one MetaSchedule's plugin makes "
        "per trial." % (data["calls"], BLOCK,
                        ", ".join("`%s`" % m for m in data["modes"] or []) or "–",
                        data.get("fresh", 0)), "",
        bl.table(["call", "median", "p90", "min / max"], rows), "",
        "Target: median under %.0f ms: **%s** (median %s)."
        % (t["max_ms"], bl.verdict(t["met"]), bl.fmt(t["median_ms"], " ms")),
    ]
    if data["refused"]:
        text.append("Modes the board refused (left out of the cycle): %s"
                    % "; ".join("`%s`: %s" % kv for kv in data["refused"].items()))
    return "\n".join(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.add_common_args(parser)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--fresh", type=int, default=20,
                        help="fresh sessions for the first-call rows")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.fresh = 10, 2
    data = run(args)
    bl.finish(NAME, data, render, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
