"""What every bench script shares: the machine record, statistics, JSON output,
the RESULTS.md sections, the kernels and the processes (stock tracker, stock
server, edge-server) on 127.0.0.1.

Each script runs stock and ours alternately in one run, so a noisy moment on
the machine hits both sides; ratios are taken per round and summarised by
their median and spread, never by a single best figure.
"""
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from tests.support import procs  # the real processes on 127.0.0.1

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
OUT_DIR = BENCH / "out"
RESULTS = BENCH / "RESULTS.md"


NOT_AVAILABLE = "not available"


# ---------------------------------------------------------------- machine


def machine() -> dict:
    """The facts a reader needs to compare two RESULTS.md files."""
    return {
        "nproc": os.cpu_count(),
        "allowed_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "tvm": _dist_version("apache-tvm"),
        "tvm_ffi": _dist_version("apache-tvm-ffi"),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def command_line() -> str:
    """The exact command, relative to the repo, plus the make target that started it."""
    argv = [os.path.relpath(sys.executable, REPO)] + [
        os.path.relpath(a, REPO) if a.endswith(".py") and os.path.exists(a) else a
        for a in sys.argv]
    cmd = " ".join(shlex.quote(a) for a in argv)
    parent = os.environ.get("BENCH_PARENT_COMMAND")
    return "%s (run by `%s`)" % (cmd, parent) if parent else cmd


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError as err:
        return "unknown (%s)" % err
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return m.group(1).strip() if m else platform.processor() or "unknown"


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version
        return version(name)
    except Exception as err:  # noqa: BLE001 - a missing dist is reported, not fatal
        return "unknown (%s)" % err


def machine_markdown(m: dict) -> str:
    return ("Machine: %d CPUs (%d allowed), %s, kernel %s, Python %s, apache-tvm %s "
            "(tvm-ffi %s); load average at start %s.  \nRun: %s, `%s`" % (
                m["nproc"], m["allowed_cpus"], m["cpu_model"], m["kernel"], m["python"],
                m["tvm"], m["tvm_ffi"], " ".join(str(x) for x in m["loadavg_at_start"]),
                m["date"], m["command"]))


# ---------------------------------------------------------------- statistics


def summary(values) -> dict:
    """Median and spread; the median is the figure, p10..p90 the spread."""
    vals = sorted(float(v) for v in values)
    if not vals:
        return {"n": 0}
    mean = statistics.fmean(vals)
    stdev = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"n": len(vals), "median": statistics.median(vals), "mean": mean,
            "stdev": stdev, "cv": stdev / mean if mean else None,
            "min": vals[0], "max": vals[-1],
            "p10": percentile(vals, 10), "p90": percentile(vals, 90)}


def percentile(sorted_vals, pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if len(sorted_vals) == 1:
        return sorted_vals[0]
    pos = (len(sorted_vals) - 1) * pct / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo)


def ratios(numer, denom) -> dict:
    """Per-round ratios numer[i]/denom[i], summarised."""
    pairs = [(a, b) for a, b in zip(numer, denom) if a is not None and b]
    return summary([a / b for a, b in pairs])


def fmt(x, unit="", digits=3) -> str:
    if x is None:
        return "–"
    if isinstance(x, str):
        return x
    if abs(x) >= 100:
        text = "%.0f" % x
    else:
        text = "%.*g" % (digits, x)
    return text + unit


def fmt_spread(s: dict, unit="", scale=1.0) -> str:
    """'12.3 ms (p10 11.9–p90 13.0, n=20)'."""
    if not s or not s.get("n"):
        return NOT_AVAILABLE
    return "%s (p10 %s – p90 %s, n=%d)" % (
        fmt(s["median"] * scale, unit), fmt(s["p10"] * scale), fmt(s["p90"] * scale), s["n"])


def table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok) -> str:
    if ok is None:
        return NOT_AVAILABLE
    return "met" if ok else "NOT met"


# ---------------------------------------------------------------- output


def out_path(name: str, out_dir=None) -> Path:
    return Path(out_dir or OUT_DIR) / ("%s.json" % name)


def write_json(name: str, data: dict, out_dir=None) -> Path:
    path = out_path(name, out_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_json(name: str, out_dir=None):
    path = out_path(name, out_dir)
    if not path.exists():
        return None
    return json.loads(path.read_text())


def _markers(name):
    return "<!-- bench:%s -->" % name, "<!-- /bench:%s -->" % name


def replace_section(text: str, name: str, body: str) -> str:
    """Rewrite one script's section in RESULTS.md, or append it."""
    start, end = _markers(name)
    block = "%s\n%s\n%s" % (start, body.strip(), end)
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _m: block, text)
    return text.rstrip() + "\n\n" + block + "\n"


def update_results(name: str, body: str, results=None) -> Path:
    path = Path(results or RESULTS)
    text = path.read_text() if path.exists() else RESULTS_HEADER
    path.write_text(replace_section(text, name, body).rstrip() + "\n")
    return path


RESULTS_HEADER = """# Benchmarks: edge-server and host_client against stock TVM RPC

Produced by `make bench` (`bench/run_all.py`); each section below is rewritten
by its script (`bench/<name>.py`), which runs stock and ours alternately in one
run on this machine, over loopback, through the stock tracker
(`python -m tvm.exec.rpc_tracker`). Ratios are taken per round, then
summarised by their median and p10–p90 spread. Raw figures: `bench/out/*.json`.
"""


def finish(name: str, data: dict, render, args) -> None:
    """Write the JSON, rewrite the RESULTS.md section, print the section."""
    path = write_json(name, data, args.out_dir)
    body = render(data)
    if not args.no_results:
        update_results(name, body, args.results)
    print(body)
    print("\n(json: %s)" % path)


def add_common_args(parser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="tiny counts: checks the script runs end to end, figures mean little")
    parser.add_argument("--out-dir", default=str(OUT_DIR), help="where the JSON goes")
    parser.add_argument("--results", default=str(RESULTS), help="the RESULTS.md to update")
    parser.add_argument("--no-results", action="store_true", help="do not touch RESULTS.md")


# ---------------------------------------------------------------- kernels


def build_add_so(path, n=1024) -> str:
    """A tiny kernel exported as a shared library, built once per run."""
    import tvm
    from tvm import te
    a = te.placeholder((n,), name="A", dtype="float32")
    b = te.compute((n,), lambda i: a[i] + 1.0, name="B")
    func = te.create_prim_func([a, b]).with_attr("global_symbol", "add_one")
    ex = tvm.compile(tvm.IRModule({"add_one": func}), target="llvm")
    ex.export_library(str(path))
    return str(path)


# ---------------------------------------------------------------- processes


Stack = procs.Stack   # a stock tracker and the servers a bench starts on it


@contextmanager
def workdir(prefix):
    """A scratch dir for logs and kernels; kept (and named) when the bench fails."""
    path = Path(tempfile.mkdtemp(prefix="bench-%s-" % prefix))
    ok = False
    try:
        yield path
        ok = True
    finally:
        if ok:
            import shutil
            shutil.rmtree(path, ignore_errors=True)
        else:
            print("bench: logs kept in %s" % path, file=sys.stderr)


def modes_to_cycle(topology, whole_class: bool = False) -> list:
    """Modes that keep or shrink the pool `all` made: all, one core of the fastest
    class, each of the first two usable CPUs (and the whole fastest class)."""
    classes = topology.ranked_classes()
    modes = ["all"] + ["%s:1" % c.name for c in classes[:1]]
    modes += ["cpus:%d" % c for c in topology.usable_cpus()[:2]]
    if whole_class:
        modes += [c.name for c in classes[:1]]
    return modes


def now() -> float:
    return time.perf_counter()
