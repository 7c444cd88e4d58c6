"""`edge-server probe [--json] [--root DIR]`: show what the probe finds on a board.

The table is for a person deciding which thread modes to tune with; it says
where each core's uarch came from ("uarch from": midr_el1, cpuinfo,
cpuinfo-global, soc-table, frequency, guess) and which kernel list grouped
each cluster ("grouped by"), so a weak guess is visible as one. --json
is the topology document the daemon serves and the tracker carries. --root
reads a fixture or a dump made by scripts/capture-board.sh instead of this
machine.
"""
import argparse
import json
import os
import sys
import textwrap
from typing import List, Optional

from edge_common.cpulist import format_cpulist
from edge_server.board.topology import ProbeError, probe


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if not os.path.isdir(args.root):
        print("edge-server probe: --root %s is not a directory; give the directory that "
              "holds a board's proc/ and sys/ (e.g. tests/fixtures/boards/rk3399)" % args.root,
              file=sys.stderr)
        return 2
    try:
        doc = probe(args.root)
    except ProbeError as exc:
        print("edge-server probe: %s" % exc, file=sys.stderr)
        return 1
    try:
        print(json.dumps(doc, indent=2) if args.json else render(doc, args.root))
        sys.stdout.flush()
    except BrokenPipeError:  # `probe --json | head -1`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-server probe",
        description="Show the CPU topology edge-server sees: core classes, clusters, "
                    "per-CPU facts, ISA features and the suggested TVM target.")
    parser.add_argument("--json", action="store_true",
                        help="print the topology document (JSON) instead of a table")
    parser.add_argument("--root", default="/",
                        help="read proc/ and sys/ under this directory instead of / "
                             "(a fixture or a capture from a board); the allowed set is "
                             "then every online CPU")
    return parser


def render(doc: dict, root: str = "/") -> str:
    """The document as tables, unknown values shown as "-"."""
    lines = ["board: %s   arch: %s%s" % (_v(doc.get("board")), _v(doc.get("arch")),
                                         "" if root == "/" else "   (read from %s)" % root)]
    lines += ["", "core classes (rank 0 = fastest):"]
    lines += _table(["rank", "class", "cpus", "uarch", "max MHz", "capacity"],
                    [[c["rank"], c["name"], format_cpulist(c["cpus"]), c["uarch"],
                      _mhz(c["max_freq_khz"]), c["capacity"]] for c in doc["classes"]])
    lines += ["", "clusters:"]
    lines += _table(["cluster", "cpus", "class", "grouped by"],
                    [[c["id"], format_cpulist(c["cpus"]), c["class"], c.get("source")]
                     for c in doc["clusters"]])
    lines += ["", "cpus:"]
    lines += _table(["cpu", "online", "allowed", "class", "cluster", "uarch", "uarch from", "midr",
                     "max MHz", "capacity", "core", "pkg", "smt siblings"],
                    [[c["id"], _yes(c["online"]), _yes(c["allowed"]), c["class"], c["cluster"],
                      c["uarch"], c.get("uarch_source"), c["midr"], _mhz(c["max_freq_khz"]),
                      c["capacity"],
                      c["core_id"], c["package"],
                      None if c["smt_siblings"] is None else format_cpulist(c["smt_siblings"])]
                     for c in doc["cpus"]])
    lines += [""] + textwrap.wrap("isa: %s" % (" ".join(doc["isa"]) or "-"), width=100,
                                  subsequent_indent="     ", break_on_hyphens=False)
    lines += ["tvm target: %s" % json.dumps(doc["tvm_target"])]
    if doc["warnings"]:
        lines += ["", "warnings:"] + ["  - " + w for w in doc["warnings"]]
    return "\n".join(lines)


def _table(header: List[str], rows: List[list]) -> List[str]:
    cells = [header] + [[_v(x) for x in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
            for row in cells]


def _v(value) -> str:
    return "-" if value is None else str(value)


def _yes(flag: Optional[bool]) -> Optional[str]:
    return None if flag is None else ("yes" if flag else "no")


def _mhz(khz: Optional[int]) -> Optional[str]:
    return None if khz is None else "%g" % (khz / 1000.0)
