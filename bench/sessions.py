"""Session turnover through the stock tracker: complete sessions per second.

One complete session = request a server of the key from the tracker, set a
thread mode, upload a small .so, load it, call it (and check the result),
close. Four combinations, run alternately round by round:

  stock server + stock client        the baseline users have today
  edge-server  + host_client         ours, both sides (target: >= 5x baseline)
  edge-server  + stock client        the board side's share
  stock server + host_client         the host side's share

"Set a thread mode" is the call the server offers: `edge.set_thread_mode("all")`
on an edge-server; on a stock server, which has no such thing, the closest
thing a stock user can do over RPC, `runtime.config_threadpool(1, 0)` (ints
only: RPC cannot carry the CPU list).
"""
import argparse
import cProfile
import io
import pstats
import socket
import struct
import sys

from bench import benchlib as bl
from host_client import session as host

NAME = "sessions"
HOST = bl.procs.HOST
STOCK_KEY = "bench-stock"
EDGE_KEY = "bench-edge"
MODE = "all"
TARGET_RATIO = 5.0

COMBOS = [
    # (name, server, client)
    ("stock server + stock client", "stock", "stock"),
    ("edge-server + host_client", "edge", "host"),
    ("edge-server + stock client", "edge", "stock"),
    ("stock server + host_client", "stock", "host"),
]
BASELINE = COMBOS[0][0]
OURS = COMBOS[1][0]
PHASES = ["tracker", "rpc_connect", "request", "thread", "upload", "load", "call", "close",
          "total"]


# ---------------------------------------------------------------- clients


def stock_open(port, key, phases):
    """tvm.rpc's TrackerSession.request, step by step, so its parts can be timed.

    Same calls as `connect_tracker(...).request(key)` (tvm/rpc/client.py), with
    a fresh tracker connection per session as MetaSchedule's RPCConfig does.
    """
    from tvm import rpc
    from tvm.rpc import base
    t0 = bl.now()
    sock = socket.socket(base.get_addr_family((HOST, port)), socket.SOCK_STREAM)
    sock.connect((HOST, port))
    sock.sendall(struct.pack("<i", base.RPC_TRACKER_MAGIC))
    if struct.unpack("<i", base.recvall(sock, 4))[0] != base.RPC_TRACKER_MAGIC:
        raise RuntimeError("not a tracker on port %d" % port)
    base.sendjson(sock, [base.TrackerCode.REQUEST, key, "", 1])
    value = base.recvjson(sock)
    sock.close()
    t1 = bl.now()
    if value[0] != base.TrackerCode.SUCCESS:
        raise RuntimeError("tracker refused %s: %r" % (key, value))
    url, rport, matchkey = value[1]
    remote = rpc.connect(url, rport, matchkey, 0)
    t2 = bl.now()
    phases["tracker"] = t1 - t0
    phases["rpc_connect"] = t2 - t1
    return remote


def host_open(host, port, key, thread_mode, phases):
    """host_client: `connect` (request + thread mode) on an edge-server,
    `request_session` (its tracker path alone) on a stock server."""
    tracker = "%s:%d" % (HOST, port)
    if thread_mode is None:
        session = host.request_session(tracker, key)
    else:
        session = host.connect(tracker, key, thread_mode=thread_mode)
    t = getattr(session, "timings_ms", {}) or {}
    if "tracker_request" in t:
        phases["tracker"] = (t.get("tracker_connect", 0.0) + t["tracker_request"]) / 1e3
    if "rpc_connect" in t:
        phases["rpc_connect"] = t["rpc_connect"] / 1e3
    if "set_thread_mode" in t:
        phases["thread_in_connect"] = t["set_thread_mode"] / 1e3
    return session


def set_thread(remote, server):
    if server == "edge":
        return remote.get_function("edge.set_thread_mode")(MODE)
    return remote.get_function("runtime.config_threadpool")(1, 0)


def one_session(open_fn, server, set_mode, so_path, inputs):
    """One complete session; returns its phase times in seconds."""
    import numpy as np
    import tvm
    phases = {}
    t0 = bl.now()
    remote = open_fn(phases)
    t1 = bl.now()
    if set_mode:
        set_thread(remote, server)
    t2 = bl.now()
    # host_client sets the mode inside connect(): count it as the thread phase
    in_connect = phases.pop("thread_in_connect", 0.0)
    t1 -= in_connect
    remote.upload(so_path)
    t3 = bl.now()
    mod = remote.load_module("add.so")
    t4 = bl.now()
    dev = remote.cpu()
    a = tvm.runtime.tensor(inputs, dev)
    b = tvm.runtime.tensor(np.zeros_like(inputs), dev)
    mod["add_one"](a, b)
    out = b.numpy()
    t5 = bl.now()
    if not np.array_equal(out, inputs + 1):
        raise RuntimeError("remote add_one returned wrong values")
    del a, b, mod, remote
    # no gc.collect(): refcounting closes the session (and gc costs ~40 ms with tvm loaded)
    t6 = bl.now()
    phases.update(request=t1 - t0, thread=t2 - t1, upload=t3 - t2, load=t4 - t3,
                  call=t5 - t4, close=t6 - t5, total=t6 - t0)
    return phases


class Runner:
    """Opens sessions for one combination; knows why it cannot, if it cannot."""

    def __init__(self, name, server, client, port, so_path, host, why_not):
        import numpy as np
        self.name, self.server, self.client = name, server, client
        self.key = EDGE_KEY if server == "edge" else STOCK_KEY
        self.port, self.so_path = port, so_path
        self.inputs = np.arange(1024, dtype="float32")
        self.host = host
        self.why_not = why_not

    def open(self, phases):
        if self.client == "stock":
            return stock_open(self.port, self.key, phases)
        mode = MODE if self.server == "edge" else None
        return host_open(self.host, self.port, self.key, mode, phases)

    def session(self):
        # host_client sets the mode inside connect() on an edge-server
        set_mode = not (self.client == "host" and self.server == "edge")
        return one_session(self.open, self.server, set_mode, self.so_path, self.inputs)

    def run(self, count):
        """`count` back-to-back sessions -> (sessions/s, [phases])."""
        records = []
        t0 = bl.now()
        for _ in range(count):
            records.append(self.session())
        return count / (bl.now() - t0), records


def probe_runner(runner) -> None:
    """One session to learn whether the combination works at all here."""
    if runner.why_not:
        return
    try:
        runner.session()
    except Exception as err:  # noqa: BLE001 - a missing piece is a row, not a crash
        runner.why_not = "%s: %s" % (type(err).__name__, str(err).splitlines()[0][:300])


# ---------------------------------------------------------------- run


def run(args) -> dict:
    data = {"machine": bl.machine(), "rounds": args.rounds, "sessions_per_round": args.sessions,
            "mode": MODE, "combos": {}, "profile": None}
    edge_why = ""
    with bl.workdir(NAME) as tmp, bl.Stack(tmp) as stack:
        so_path = bl.build_add_so(tmp / "add.so")
        stack.stock_server(STOCK_KEY)
        try:
            stack.edge_server(EDGE_KEY)
        except Exception as err:  # noqa: BLE001 - ours failing is a row
            edge_why = "edge-server did not register: %s" % str(err).splitlines()[0]
        runners = [Runner(name, server, client, stack.port, so_path, host,
                          edge_why if server == "edge" else "")
                   for name, server, client in COMBOS]
        for runner in runners:
            probe_runner(runner)
            data["combos"][runner.name] = {"available": not runner.why_not,
                                           "why_not": runner.why_not or None,
                                           "rates": [], "phases": []}
        live = [r for r in runners if not r.why_not]
        for rnd in range(args.rounds):
            order = live[rnd % len(live):] + live[:rnd % len(live)] if live else []
            for runner in order:
                rate, records = runner.run(args.sessions)
                entry = data["combos"][runner.name]
                entry["rates"].append(rate)
                entry["phases"].extend(records)
                print("round %d  %-30s %6.1f sessions/s" % (rnd + 1, runner.name, rate),
                      file=sys.stderr, flush=True)
        if args.profile:
            ours = next((r for r in live if r.name == OURS), None)
            if ours is not None:
                data["profile"] = profile(ours, args.profile_sessions)
    summarise(data)
    return data


def profile(runner, count) -> dict:
    """cProfile of our client path: where a session's wall time goes on the host."""
    prof = cProfile.Profile()
    prof.enable()
    rate, _ = runner.run(count)
    prof.disable()
    stream = io.StringIO()
    stats = pstats.Stats(prof, stream=stream)
    stats.sort_stats("tottime").print_stats(12)
    return {"combo": runner.name, "sessions": count, "rate_under_profiler": rate,
            "top_tottime": _top(stats, "tottime", 12), "top_cumtime": _top(stats, "cumulative", 15)}


def _top(stats, key, n):
    stats.sort_stats(key)
    rows = []
    for func in stats.fcn_list[:n]:
        cc, nc, tt, ct, _ = stats.stats[func]
        filename, line, fname = func
        rows.append({"function": "%s:%d(%s)" % (_short(filename), line, fname),
                     "calls": nc, "tottime": tt, "cumtime": ct})
    return rows


def _short(path):
    for marker in ("site-packages/", "/work/main/", "lib/python"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def summarise(data) -> None:
    combos = data["combos"]
    base_rates = combos[BASELINE]["rates"]
    for name, entry in combos.items():
        entry["rate"] = bl.summary(entry["rates"])
        entry["phase_medians_ms"] = {
            p: bl.summary([r[p] * 1e3 for r in entry["phases"] if p in r]).get("median")
            for p in PHASES}
        entry["ratio_vs_stock"] = bl.ratios(entry["rates"], base_rates) if entry["rates"] else {}
    ours = combos[OURS]
    ratio = ours["ratio_vs_stock"].get("median")
    data["target"] = {"ratio_min": TARGET_RATIO, "ratio_median": ratio,
                      "met": None if ratio is None else ratio >= TARGET_RATIO}


# ---------------------------------------------------------------- report


def render(data) -> str:
    rows = []
    for name, entry in data["combos"].items():
        if not entry["available"]:
            rows.append([name, bl.NOT_AVAILABLE + ": " + (entry["why_not"] or ""), "–", "–"])
            continue
        rate = entry["rate"]
        ratio = entry["ratio_vs_stock"]
        rows.append([name, bl.fmt_spread(rate, "/s"),
                     bl.fmt(1e3 / rate["median"], " ms") if rate.get("median") else "–",
                     bl.fmt_spread(ratio, "x") if ratio.get("n") else "–"])
    phase_rows = []
    for name, entry in data["combos"].items():
        if entry["available"]:
            med = entry["phase_medians_ms"]
            phase_rows.append([name] + [bl.fmt(med.get(p)) for p in PHASES])
    t = data["target"]
    text = [
        "## Session turnover (`bench/sessions.py`)", "",
        bl.machine_markdown(data["machine"]), "",
        "%d rounds x %d back-to-back complete sessions per combination, combinations "
        "alternated each round; thread mode `%s`. A complete session: tracker request, "
        "set thread mode, upload a 18 KB .so, load_module, call and check, close. "
        "On an edge-server the thread mode is `edge.set_thread_mode` (host_client sets it "
        "inside `connect()`); on a stock server, which has none, it is "
        "`runtime.config_threadpool(1, 0)`, and host_client opens the session with "
        "`request_session()` (its tracker path without a thread mode)."
        % (data["rounds"], data["sessions_per_round"], data["mode"]), "",
        bl.table(["combination", "sessions/s (median, spread)", "ms per session",
                  "ratio vs stock+stock (per round)"], rows), "",
        "Target: edge-server + host_client >= %.0fx stock + stock: **%s** (median ratio %s)."
        % (t["ratio_min"], bl.verdict(t["met"]), bl.fmt(t["ratio_median"], "x")), "",
        "Median time per phase, ms (`tracker` = tracker connect + REQUEST until the reply, "
        "`rpc_connect` = RPC handshake with the server; the stock client's request is "
        "timed step by step with the same calls as `TrackerSession.request`, "
        "host_client's from its own `timings_ms`; `request` is their sum plus Python "
        "overhead):", "",
        bl.table(["combination"] + PHASES, phase_rows),
    ]
    if data.get("profile"):
        text += ["", render_profile(data["profile"])]
    return "\n".join(text)


def render_profile(prof) -> str:
    rows = [[r["function"], r["calls"], bl.fmt(r["tottime"] * 1e3 / prof["sessions"]),
             bl.fmt(r["cumtime"] * 1e3 / prof["sessions"])] for r in prof["top_cumtime"]]
    return "\n".join([
        "cProfile of %s, %d sessions (%.1f sessions/s under the profiler), top entries by "
        "cumulative time, ms per session:" % (prof["combo"], prof["sessions"],
                                               prof["rate_under_profiler"]), "",
        bl.table(["function", "calls", "own ms/session", "cumulative ms/session"], rows)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.add_common_args(parser)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--sessions", type=int, default=20, help="sessions per round")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile our client path afterwards")
    parser.add_argument("--profile-sessions", type=int, default=40)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.sessions, args.profile_sessions = 1, 2, 2
    data = run(args)
    bl.finish(NAME, data, render, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
