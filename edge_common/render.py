"""Plain-text tables, and the topology as a person reads it.

`edge-server probe` (on the board) and `edge-client probe` (on the host) show
the same document, so they share this one renderer; unknown values are "-".
"""
import json
import textwrap
from typing import Iterable, List, Optional, Sequence

from edge_common.cpulist import format_cpulist
from edge_common.topology import Topology


def table(headers: Sequence[str], rows: Iterable[Sequence], right: Sequence[int] = (),
          indent: str = "") -> List[str]:
    """Columns padded to their widest cell, a dashed line under the headers;
    `right` = indexes of right-aligned columns; None cells show as "-"."""
    cells = [[cell_text(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]

    def line(row):
        return (indent + "  ".join(c.rjust(w) if i in right else c.ljust(w)
                                   for i, (c, w) in enumerate(zip(row, widths)))).rstrip()

    return [line(list(headers)), indent + "  ".join("-" * w for w in widths)] + \
        [line(row) for row in cells]


def cell_text(value) -> str:
    return "-" if value is None else str(value)


def cpus_text(cpus) -> str:
    """A CPU list as the kernel writes it, "-" when empty or unknown."""
    return format_cpulist(cpus) if cpus else "-"


def mhz(khz: Optional[int]) -> Optional[str]:
    return None if khz is None else "%g" % (khz / 1000.0)


def _yes(flag: Optional[bool]) -> Optional[str]:
    return None if flag is None else ("yes" if flag else "no")


def describe_classes(topology: Topology) -> str:
    """'big 2×cortex-a72@1.8GHz, little 4×cortex-a53@1.42GHz' ("" without classes)."""
    parts = []
    for cls in topology.ranked_classes():
        count = len(cls.cpus)
        if cls.uarch:
            text = "%s %d×%s" % (cls.name, count, cls.uarch)
        else:
            text = "%s %d core%s" % (cls.name, count, "" if count == 1 else "s")
        if cls.max_freq_khz:
            text += "@%sGHz" % _ghz(cls.max_freq_khz)
        parts.append(text)
    return ", ".join(parts)


def _ghz(khz: int) -> str:
    text = "%.2f" % (khz / 1e6)
    return text.rstrip("0").rstrip(".") if "." in text else text


def render(topology: Topology, source: Optional[str] = None) -> str:
    """Board line, classes, clusters, CPUs, ISA, suggested target and warnings.

    source: where the document was read, shown on the board line (a --root)."""
    t = topology
    lines = ["board: %s   arch: %s%s" % (cell_text(t.board), cell_text(t.arch),
                                         "   (read from %s)" % source if source else "")]
    lines += ["", "core classes (rank 0 = fastest):"]
    lines += table(["rank", "class", "cpus", "uarch", "max MHz", "capacity"],
                   [[c.rank, c.name, cpus_text(c.cpus), c.uarch, mhz(c.max_freq_khz),
                     c.capacity] for c in t.ranked_classes()], indent="  ")
    # Where each fact came from is shown next to it, so a weak guess reads as one.
    lines += ["", "clusters:"]
    lines += table(["cluster", "cpus", "class", "grouped by"],
                   [[c.id, cpus_text(c.cpus), c.cls, c.source] for c in t.clusters],
                   indent="  ")
    lines += ["", "cpus:"]
    lines += table(["cpu", "online", "allowed", "class", "cluster", "uarch", "uarch from",
                    "midr", "max MHz", "capacity", "core", "pkg", "smt siblings"],
                   [[c.id, _yes(c.online), _yes(c.allowed), c.cls, c.cluster, c.uarch,
                     c.uarch_source, c.midr, mhz(c.max_freq_khz), c.capacity, c.core_id,
                     c.package, None if c.smt_siblings is None else format_cpulist(c.smt_siblings)]
                    for c in t.cpus], indent="  ")
    lines += [""] + textwrap.wrap("isa: %s" % (" ".join(t.isa) or "-"), width=100,
                                  subsequent_indent="     ", break_on_hyphens=False)
    lines += ["tvm target: %s" % json.dumps(t.tvm_target)]
    if t.warnings:
        lines += ["", "warnings:"] + ["  - " + w for w in t.warnings]
    return "\n".join(lines)
