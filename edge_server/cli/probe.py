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
from typing import List, Optional

from edge_common.render import render
from edge_common.topology import Topology, TopologyError
from edge_server.board.topology import ProbeError, probe


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if not os.path.isdir(args.root):
        print("edge-server probe: --root %s is not a directory; give the directory that "
              "holds a board's proc/ and sys/ (e.g. tests/fixtures/boards/rk3399)" % args.root,
              file=sys.stderr)
        return 2
    try:
        topology = Topology.from_dict(probe(args.root))
    except (ProbeError, TopologyError) as exc:
        print("edge-server probe: %s" % exc, file=sys.stderr)
        return 1
    try:
        print(json.dumps(topology.to_dict(), indent=2) if args.json
              else render(topology, None if args.root == "/" else args.root))
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
