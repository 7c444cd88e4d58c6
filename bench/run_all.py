"""Run every benchmark against stock TVM and write bench/RESULTS.md (`make bench`).

Each script runs in its own process (a MetaSchedule run must not share a
process, or a loaded TVM, with the session benchmarks) and writes its JSON
under bench/out/; this script then rebuilds RESULTS.md from those JSON files:
a summary of the targets, each script's section, and where the time goes.
A script that fails is reported in its section and the exit code; the rest
still run.
"""
import argparse
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import benchlib as bl

# Order: the daemon start-up times first, while nothing else of ours is warm;
# MetaSchedule, the longest, last.
SCRIPTS = ["daemon", "sessions", "set_thread_mode", "measurement", "sandbox", "verdict",
           "metaschedule",
           "slots", "slot_isolation", "slots_cpu", "fork_cost"]
EXTRA_ARGS = {"sessions": ["--profile"], "slots_cpu": ["--trace", "3"]}


def run_script(name, args) -> dict:
    argv = [sys.executable, "-m", "bench.%s" % name, "--no-results",
            "--out-dir", args.out_dir] + EXTRA_ARGS.get(name, [])
    if args.quick:
        argv.append("--quick")
    print("== %s: %s" % (name, " ".join(argv[1:])), flush=True)
    t0 = time.time()
    proc = subprocess.run(argv, cwd=str(bl.REPO), env=_env(), stdin=subprocess.DEVNULL)
    return {"name": name, "exit": proc.returncode, "seconds": time.time() - t0}


def _env() -> dict:
    env = dict(os.environ)
    parent = "make bench" if os.environ.get("MAKELEVEL") else bl.command_line()
    env["BENCH_PARENT_COMMAND"] = parent
    return env


def render_results(out_dir, outcomes=None) -> str:
    """RESULTS.md from the JSON under `out_dir`."""
    outcomes = {o["name"]: o for o in outcomes or []}
    data = {name: bl.read_json(name, out_dir) for name in SCRIPTS}
    parts = [bl.RESULTS_HEADER.strip(), "", summary_section(data), "",
             time_section(data)]
    for name in SCRIPTS:
        module = importlib.import_module("bench." + name)
        start, end = bl._markers(name)
        if data[name] is None:
            outcome = outcomes.get(name)
            why = ("the script exited with %s" % outcome["exit"]) if outcome else "not run"
            body = "## %s\n\nNo results: %s (see its output)." % (name, why)
        else:
            body = module.render(data[name])
            if outcomes.get(name, {}).get("exit"):
                body += "\n\n**This run of the script failed (exit %s); the figures above " \
                        "are from its JSON, which may be older.**" % outcomes[name]["exit"]
        parts += ["", start, body.strip(), end]
    return "\n".join(parts).rstrip() + "\n"


def _row(what, target, figure, ok):
    return [what, target, figure, bl.verdict(ok)]


def summary_section(data) -> str:
    rows = []
    s = data.get("sessions")
    if s:
        t = s["target"]
        rows.append(_row("session turnover, edge-server + host_client vs stock + stock",
                         ">= 5x", bl.fmt(t["ratio_median"], "x"), t["met"]))
        for name in ("edge-server + stock client", "stock server + host_client"):
            ratio = s["combos"].get(name, {}).get("ratio_vs_stock") or {}
            rows.append([" " + name + " (each side's share)", "report",
                         bl.fmt(ratio.get("median"), "x"), "–"])
    st = data.get("set_thread_mode")
    if st:
        t = st["target"]
        row = st["rows"]["edge.set_thread_mode"]
        p90 = row["ms"]["p90"] if row.get("available") else None
        rows.append(_row("`edge.set_thread_mode` round trip, median (p90)", "< 2 ms",
                         "%s (%s)" % (bl.fmt(t["median_ms"], " ms"), bl.fmt(p90, " ms")),
                         t["met"]))
        first = st["rows"].get("edge.set_thread_mode, first call in a fresh session") or {}
        if first.get("available"):
            rows.append([" first `edge.set_thread_mode` in a fresh session (once per "
                         "MetaSchedule trial), median", "report",
                         bl.fmt(first["ms"]["median"], " ms"), "–"])
    d = data.get("daemon")
    if d:
        t = d["target"]
        rows.append(_row("daemon listener RSS, edge-server / stock", "<= 0.5",
                         bl.fmt((t.get("rss_ratio") or {}).get("median"), "x"),
                         t.get("rss_met")))
        rows.append(_row("daemon start to registered, edge-server / stock", "<= 0.5",
                         bl.fmt((t.get("start_ratio") or {}).get("median"), "x"),
                         t.get("start_met")))
        rows.append(_row("daemon maps libtvm_runtime.so only (no compiler library)", "yes",
                         {True: "yes", False: "no", None: "–"}[t.get("runtime_only")],
                         t.get("runtime_only")))
    v = data.get("verdict")
    if v:
        t = v["target"]
        rows.append(_row("verdict added to one measurement (2 snapshots + 2 round trips), "
                         "median", "< 1 ms", bl.fmt(t["added_median_ms"], " ms"), t["met"]))
    m = data.get("metaschedule")
    if m:
        t = m["target"]
        rows.append(_row("MetaSchedule session creation per trial (plugin + edge-server)",
                         "< 15 ms (stock ~95 ms)", bl.fmt(t["create_ms_median"], " ms"),
                         t["met"]))
        stock_c = m["sides"]["stock"].get("hooks_ms", {}).get("f_create_session", {})
        rows.append([" stock RPCRunner session creation per trial, same run", "report",
                     bl.fmt(stock_c.get("median"), " ms"), "–"])
        ratio = (t.get("trials_per_s_ratio") or {}).get("median")
        rows.append([" MetaSchedule trials/s, ours / stock", "report", bl.fmt(ratio, "x"), "–"])
    sb = data.get("sandbox")
    if sb:
        rows.append(_row("per-session sandbox (%s), added at session start, median"
                         % sb["apply"]["applied"], "< 2 ms",
                         bl.fmt(sb["target"]["added_ms_median"], " ms"), sb["target"]["met"]))
    me = data.get("measurement")
    if me:
        vs = me.get("all_vs_stock")
        if vs:
            rows.append(["parallel kernel: stock time / mode `all` time (threads %s vs %s)"
                         % (",".join(map(str, vs["stock_threads"])),
                            ",".join(map(str, vs["all_threads"]))), "report",
                         bl.fmt(vs["speedup"].get("median"), "x"), "–"])
        else:
            rows.append(["parallel kernel, mode `all` vs stock", "report", bl.NOT_AVAILABLE,
                         "–"])
    rows += slots_rows(data.get("slots"))
    if not rows:
        return "## Targets\n\nNo benchmark results yet: run `make bench`."
    return "\n".join(["## Targets", "", "Medians of per-round ratios from the sections "
                      "below (same run, same machine).", "",
                      bl.table(["what", "target", "measured", "verdict"], rows)])


def slots_rows(sl) -> list:
    """Issue 14's targets: two one-core slots against one, and the ceiling of the
    sessions/s ratio (bench/slots.py)."""
    if not sl:
        return []
    t = sl["target"]
    rows = [_row("MetaSchedule runner trials/s, two one-core slots / one", ">= 1.8x",
                 bl.fmt(t["runner_ratio"].get("median"), "x"), t["runner_met"]),
            _row("sessions/s through the tracker, two one-core slots / one", ">= 1.8x",
                 bl.fmt(t["sessions_ratio"].get("median"), "x"), t["sessions_met"])]
    if t.get("sessions_ceiling", {}).get("n"):
        rows.append([" ceiling here: 2 / (cores one slot's session stream keeps busy)",
                     "report", bl.fmt(t["sessions_ceiling"]["median"], "x"), "–"])
    if t.get("sessions_ratio_one_of_two", {}).get("n"):
        rows.append([" against one client on the two-slot board", "report",
                     bl.fmt(t["sessions_ratio_one_of_two"]["median"], "x"), "–"])
    rows.append(_row("sessions that overlapped in time never shared a core", "yes",
                     "%d pairs, %d shared" % (t["overlapping_pairs"],
                                              t["sessions_sharing_a_core"]),
                     t["sessions_sharing_a_core"] == 0 and t["overlapping_pairs"] > 0))
    return rows


def time_section(data) -> str:
    """Where a session's time goes, from the phase timings and the profile."""
    s = data.get("sessions")
    if not s:
        return "## Where the time goes\n\nNo session results."
    lines = ["## Where the time goes", ""]
    for name, entry in s["combos"].items():
        if not entry.get("available") or not entry.get("phase_medians_ms"):
            continue
        med = entry["phase_medians_ms"]
        parts = ["%s %s" % (p, bl.fmt(med.get(p), " ms")) for p in
                 ("tracker", "rpc_connect", "thread", "upload", "load", "call", "close")
                 if med.get(p) is not None]
        lines.append("- %s: %s per session = %s." % (name, bl.fmt(med.get("total"), " ms"),
                                                      ", ".join(parts)))
    lines += ["", NOTES]
    return "\n".join(lines)


NOTES = """How to read it (phases as defined in the session table below):

- `tracker` is the time from opening a connection to the tracker until its
  reply names a server. It contains the wait for the server to re-register
  after the previous session (`PUT`), so it carries the server's tracker
  writes as well as the client's. The stock side writes every tracker message
  as two `send()` calls (length, then body) with Nagle on, so each message
  waits for the peer's delayed ACK (~40 ms on Linux): the stock client's
  REQUEST, the tracker's two-part reply, and the stock server's PUT.
  host_client writes one message per `send()` with TCP_NODELAY and sets
  TCP_QUICKACK before each read (so the tracker's own two-part replies are
  not held back); edge-server writes each message in one `send()` with
  TCP_NODELAY. The tracker itself is unchanged.
- `rpc_connect` is TVM's C++ `RPCConnect`: TCP connect, the handshake, and on
  the server the fork of the session process and TVM's session set-up.
- `thread` on an edge-server is `edge.set_thread_mode`: resolve the mode,
  configure TVM's pool, pin every thread of the session process and read the
  pinning back from /proc (see the set_thread_mode section for its own
  figures); on a stock server it is `runtime.config_threadpool(1, 0)`.
- `upload`, `load`, `call`, `close` are TVM's own RPC calls, unchanged on
  both sides; `close` is dropping the last reference (no `gc.collect()`:
  with TVM loaded a full collection costs ~40 ms and real clients do not
  call it).

The server side of ours, from `strace -f -tt` of an edge-server over three
back-to-back host_client sessions (2026-11-23 23:03, edge-server as of commit
e31bca8; strace slows every syscall, so read the proportions, not the sums):

- accept to serving: the daemon reads and answers the handshake in under
  1 ms (one write) and passes the connection to a spare child. The spare
  creates TVM's pool, pins the default mode and verifies it (~5-8 ms) when
  the daemon tells it to prepare, which it does right after the previous
  session's client has gone and the PUT is out (not while a session is
  measuring). A client that requests again at once therefore meets a spare
  still preparing: `rpc_connect` was 4 ms when the spare was ready and
  8-15 ms when it was not. This preparation is most of what remains of
  `rpc_connect`.
- `edge.set_thread_mode("all")` inside the child: ~1.5 ms under strace
  (median 0.5-0.7 ms without it, see its section).
- session end to registered again: the daemon sends its one-write PUT
  ~0.4 ms after the client's socket closes (it polls it for RDHUP), before
  the session process has exited, so `tracker` for the next session is
  ~1.6 ms: the tracker round trip itself."""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny counts: check everything runs; figures mean little")
    parser.add_argument("--only", nargs="+", choices=SCRIPTS, help="run only these scripts")
    parser.add_argument("--render-only", action="store_true",
                        help="do not run anything; rebuild RESULTS.md from the JSON")
    parser.add_argument("--out-dir", default=str(bl.OUT_DIR))
    parser.add_argument("--results", default=str(bl.RESULTS))
    args = parser.parse_args(argv)
    args.out_dir = str(Path(args.out_dir).resolve())
    outcomes = []
    if not args.render_only:
        for name in args.only or SCRIPTS:
            outcomes.append(run_script(name, args))
    text = render_results(args.out_dir, outcomes)
    Path(args.results).write_text(text)
    print(text)
    failed = [o for o in outcomes if o["exit"]]
    for o in outcomes:
        print("%-16s exit %s after %.0f s" % (o["name"], o["exit"], o["seconds"]),
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
