"""The board daemon itself: start-to-registered time and idle memory.

Each run starts a fresh daemon (stock `python -m tvm.exec.rpc_server`, or
`edge-server`) against the stock tracker, and measures:

  start-to-registered  from just before the process is spawned until the
                       tracker's summary lists the daemon's key as free
                       (polled every 2 ms over a no-Nagle connection);
  listener RSS         RSS of the process that holds the listening socket,
                       one second after registration, idle;
  tree RSS             all processes of the daemon added up (the stock
                       server is two full-TVM processes: the launcher and
                       the PopenWorker that listens);
  TVM libraries        which libtvm*.so each process of the daemon mapped
                       (/proc/<pid>/maps): the board never compiles, so ours
                       should map libtvm_runtime.so only.

Runs alternate stock / edge-server (first one flips each pair).
"""
import argparse
import re
import sys
import time
from pathlib import Path

import psutil

from bench import benchlib as bl

NAME = "daemon"
SIDES = ["stock", "edge"]
LABELS = {"stock": "stock rpc_server", "edge": "edge-server"}
IDLE_S = 1.0


def argv_for(side, port, tracker_port, key):
    common = ["--host", bl.procs.HOST, "--port", str(port), "--port-end", str(port + 1),
              "--key", key, "--tracker", "%s:%d" % (bl.procs.HOST, tracker_port)]
    if side == "stock":
        return [sys.executable, "-m", "tvm.exec.rpc_server"] + common
    return bl.procs.edge_server_argv(*common)


def tvm_libs(pid) -> list:
    """The libtvm*.so files mapped into `pid` (basenames, sorted)."""
    try:
        text = Path("/proc/%d/maps" % pid).read_text()
    except OSError as err:
        return ["unreadable: %s" % err]
    return sorted({Path(m).name for m in re.findall(r"(\S*/libtvm[^/\s]*\.so[^/\s]*)", text)})


def is_compiler_lib(name) -> bool:
    """libtvm.so (older wheels) or libtvm_compiler.so (0.27): the compiler, which
    a board never needs. libtvm_ffi*.so and libtvm_runtime*.so are the runtime."""
    return name.startswith("libtvm.so") or name.startswith("libtvm_compiler")


def listener_of(tree, port):
    for proc in tree:
        try:
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
                    return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def one_run(side, stack, poller, tmp, index) -> dict:
    key = "bench-daemon-%s-%d" % (side, index)
    port = bl.procs.free_port()
    argv = argv_for(side, port, stack.port, key)
    t0 = bl.now()
    proc = bl.procs.Proc(argv, Path(tmp) / ("%s.log" % key))
    try:
        seen = poller.wait_free(key, timeout=60.0, proc=proc, interval=0.002)
        start_s = seen - t0
        time.sleep(IDLE_S)
        root = psutil.Process(proc.pid)
        tree = [root] + root.children(recursive=True)
        listener = listener_of(tree, port)
        rec = {"side": side, "start_to_registered_s": start_s,
               "tree": [{"pid": p.pid, "cmd": " ".join(p.cmdline()[1:4]),
                         "rss_mb": p.memory_info().rss / 2 ** 20,
                         "libs": tvm_libs(p.pid)} for p in tree],
               "listener_pid": listener.pid if listener else None}
        rec["tree_rss_mb"] = sum(p["rss_mb"] for p in rec["tree"])
        rec["listener_rss_mb"] = (listener.memory_info().rss / 2 ** 20) if listener else None
        rec["listener_libs"] = tvm_libs(listener.pid) if listener else []
        return rec
    finally:
        proc.stop()


def run(args) -> dict:
    data = {"machine": bl.machine(), "pairs": args.pairs, "runs": [], "sides": {}}
    edge_why, sides = None, list(SIDES)
    with bl.workdir(NAME) as tmp, bl.Stack(tmp) as stack:
        poller = bl.procs.TrackerWatch(stack.port)
        try:
            for i in range(args.pairs):
                order = sides if i % 2 == 0 else list(reversed(sides))
                for side in order:
                    try:
                        rec = one_run(side, stack, poller, tmp, i)
                    except Exception as err:  # noqa: BLE001 - a failed side is a row
                        if side == "stock":
                            raise
                        edge_why = "edge-server failed: %s" % str(err).splitlines()[0][:300]
                        sides = ["stock"]
                        continue
                    data["runs"].append(rec)
                    print("%-16s registered after %6.0f ms, listener RSS %5.1f MB, tree %5.1f MB"
                          % (LABELS[side], rec["start_to_registered_s"] * 1e3,
                             rec["listener_rss_mb"] or -1, rec["tree_rss_mb"]),
                          file=sys.stderr, flush=True)
        finally:
            poller.close()
    summarise(data, edge_why)
    return data


def summarise(data, edge_why) -> None:
    for side in SIDES:
        runs = [r for r in data["runs"] if r["side"] == side]
        if not runs:
            data["sides"][side] = {"available": False, "why_not": edge_why}
            continue
        last = runs[-1]
        data["sides"][side] = {
            "available": True,
            "start_s": bl.summary([r["start_to_registered_s"] for r in runs]),
            "listener_rss_mb": bl.summary([r["listener_rss_mb"] for r in runs
                                           if r["listener_rss_mb"] is not None]),
            "tree_rss_mb": bl.summary([r["tree_rss_mb"] for r in runs]),
            "processes": len(last["tree"]),
            "listener_libs": last["listener_libs"],
            "all_libs": sorted({lib for r in runs for p in r["tree"] for lib in p["libs"]}),
        }
    stock, edge = data["sides"]["stock"], data["sides"].get("edge", {})
    if edge.get("available"):
        # pair the runs in order: run i of stock against run i of edge
        s_runs = [r for r in data["runs"] if r["side"] == "stock"]
        e_runs = [r for r in data["runs"] if r["side"] == "edge"]
        rss_ratio = bl.ratios([r["listener_rss_mb"] for r in e_runs],
                              [r["listener_rss_mb"] for r in s_runs])
        start_ratio = bl.ratios([r["start_to_registered_s"] for r in e_runs],
                                [r["start_to_registered_s"] for r in s_runs])
        tree_ratio = bl.ratios([r["tree_rss_mb"] for r in e_runs],
                               [r["tree_rss_mb"] for r in s_runs])
        only_runtime = ("libtvm_runtime.so" in edge["all_libs"]
                        and not any(is_compiler_lib(lib) for lib in edge["all_libs"]))
        data["target"] = {
            "rss_ratio": rss_ratio, "start_ratio": start_ratio, "tree_rss_ratio": tree_ratio,
            "rss_met": rss_ratio["median"] <= 0.5, "start_met": start_ratio["median"] <= 0.5,
            "runtime_only": only_runtime}
    else:
        data["target"] = {"rss_met": None, "start_met": None, "runtime_only": None}


def render(data) -> str:
    rows = []
    for side in SIDES:
        s = data["sides"].get(side, {})
        if not s.get("available"):
            rows.append([LABELS[side], bl.NOT_AVAILABLE + ": %s" % s.get("why_not"), "–", "–",
                         "–", "–"])
            continue
        rows.append([LABELS[side], bl.fmt_spread(s["start_s"], " ms", 1e3),
                     bl.fmt_spread(s["listener_rss_mb"], " MB"),
                     bl.fmt_spread(s["tree_rss_mb"], " MB"), s["processes"],
                     ", ".join(s["all_libs"]) or "none"])
    t = data["target"]
    text = [
        "## Daemon start and footprint (`bench/daemon.py`)", "",
        bl.machine_markdown(data["machine"]), "",
        "%d alternating pairs of fresh daemons; start = spawn until the tracker lists the "
        "key free (polled every 2 ms); RSS read %.0f s after registration, idle."
        % (data["pairs"], IDLE_S), "",
        bl.table(["daemon", "start to registered", "listener RSS", "all processes RSS",
                  "processes", "TVM libraries mapped"], rows), "",
    ]
    if "rss_ratio" in t:
        text += [
            "- listener RSS, edge-server / stock (per pair): %s — target <= 0.5: **%s**"
            % (bl.fmt_spread(t["rss_ratio"], "x"), bl.verdict(t["rss_met"])),
            "- all processes RSS, edge-server / stock: %s" % bl.fmt_spread(t["tree_rss_ratio"],
                                                                          "x"),
            "- start to registered, edge-server / stock: %s — target <= 0.5: **%s**"
            % (bl.fmt_spread(t["start_ratio"], "x"), bl.verdict(t["start_met"])),
            "- edge-server mapped TVM's runtime only: libtvm_runtime.so (plus tvm-ffi), "
            "no compiler library (libtvm_compiler.so in 0.27, libtvm.so in older wheels), "
            "read from /proc/<pid>/maps of every process of the daemon: **%s**"
            % ("yes" if t["runtime_only"] else "NO"),
        ]
    else:
        text.append("Targets: **%s** (edge-server did not run)." % bl.NOT_AVAILABLE)
    return "\n".join(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bl.add_common_args(parser)
    parser.add_argument("--pairs", type=int, default=6, help="stock/edge pairs of fresh daemons")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs = 1
    data = run(args)
    bl.finish(NAME, data, render, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
