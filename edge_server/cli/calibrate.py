"""`edge-server calibrate [--slots SPEC|auto]`: how much slots slow each other.

Runs the memory- and compute-bound probes of edge_server.slots.calibrate in
each slot alone and with every other slot busy, prints the slowdown per
slot, caches the result for this boot (so `edge-server --slots` shows it in
the edge info, and `--slots auto` need not measure again), and for `auto`
says which layout `--slots auto` would form under --slot-threshold.

Exit codes: 0 done, 1 the calibration could not run, 2 bad arguments.
"""
import argparse
import json
import sys
from typing import List, Optional

from edge_common.cpulist import format_cpulist
from edge_common.slots import SlotError, admit, candidate_specs, parse_spec


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-server calibrate",
        description="Measure how much busy co-slots slow each slot (memory- and compute-bound "
                    "probes, alone vs every other slot busy) and cache it for this boot.")
    p.add_argument("--slots", default="auto", metavar="SPEC",
                   help="slots to calibrate, e.g. 'cpus:0;cpus:1' or little:1x4; auto (default) "
                        "calibrates every layout --slots auto may form and says which it forms")
    p.add_argument("--slot-threshold", default="3%", metavar="PERCENT",
                   help="largest slowdown auto admits (default 3%%)")
    p.add_argument("--calibration-cache", metavar="DIR", help="cache directory (see "
                   "edge-server --help)")
    p.add_argument("--fresh", action="store_true", help="measure again even if this boot's "
                   "cache has a result")
    p.add_argument("--memory-mb", type=int, default=32, help="MiB per array of the "
                   "memory-bound probe (default 32; above the board's last-level cache)")
    p.add_argument("--rounds", type=int, default=3, help="alternating alone/busy rounds")
    p.add_argument("--reps", type=int, default=8, help="timed repetitions per round")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    from edge_server.slots.calibrate import CalibrationError, calibrate, calibrated, store
    from edge_server.slots.plan import parse_threshold
    try:
        threshold = parse_threshold(args.slot_threshold)
        if args.slots.strip().lower() != "auto":
            parse_spec(args.slots)
        if args.memory_mb < 1 or args.rounds < 1 or args.reps < 1:
            raise ValueError("--memory-mb, --rounds and --reps must be at least 1")
    except (ValueError, SlotError) as err:
        print("edge-server calibrate: %s" % err, file=sys.stderr)
        return 2
    from edge_server.board.topology import probe
    topology = probe("/")
    auto = args.slots.strip().lower() == "auto"
    specs = candidate_specs(topology) if auto else [args.slots.strip()]
    kwargs = dict(memory_mb=args.memory_mb, rounds=args.rounds, reps=args.reps)
    try:
        if args.fresh:
            results = []
            for spec in specs:
                result = calibrate(topology, spec, **kwargs)
                store(topology, result, args.calibration_cache)
                results.append(result)
        else:
            results = calibrated(topology, specs, args.calibration_cache, **kwargs)
    except (CalibrationError, SlotError, OSError) as err:
        print("edge-server calibrate: %s" % err, file=sys.stderr)
        return 1
    verdict = None
    if auto:
        try:
            verdict = admit(results, threshold)[1]
        except SlotError as err:
            verdict = str(err)
    if args.json:
        print(json.dumps({"results": results, "threshold": threshold, "auto": verdict},
                         indent=2))
    else:
        print(render(results, verdict))
    return 0


def render(results: List[dict], verdict: Optional[str]) -> str:
    lines = []
    for result in results:
        lines.append("slots %s  (%s)" % (result["spec"], result.get("method", "")))
        lines.append("  %-5s %-8s %-8s %12s %12s %9s %12s %12s %9s" % (
            "SLOT", "CPUS", "CLASS", "MEM ALONE", "MEM BUSY", "MEM SLOW", "CPU ALONE",
            "CPU BUSY", "CPU SLOW"))
        for s in result.get("slots") or []:
            alone, busy, slow = s.get("alone_ms") or {}, s.get("busy_ms") or {}, s["slowdown"]
            lines.append("  %-5s %-8s %-8s %12s %12s %9s %12s %12s %9s" % (
                s["index"], format_cpulist(s["cpus"]), s.get("class") or "-",
                _ms(alone.get("memory")), _ms(busy.get("memory")), _pct(slow.get("memory")),
                _ms(alone.get("compute")), _ms(busy.get("compute")), _pct(slow.get("compute"))))
        lines.append("")
    if verdict:
        lines.append("--slots auto: " + verdict)
    return "\n".join(lines).rstrip()


def _ms(value) -> str:
    return "-" if value is None else "%.3f ms" % value


def _pct(value) -> str:
    return "-" if value is None else "%+.1f%%" % (100 * value)
