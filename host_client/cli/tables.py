"""The text `edge-client` prints: boards, a board's topology, bench results and
the progress bar. Tables and the topology view are edge_common.render's, the
same that `edge-server probe` prints on the board."""
import json
from typing import List, Optional

from edge_common.render import cpus_text, describe_classes, render, table
from edge_common.topology import Topology
from host_client.boards import modes_text


def boards_table(boards) -> str:
    """One row per board (its own name, version, state, classes, modes); with slots
    (edge-server --slots) one row per slot, with its cores. Then one line per key
    with the tracker's counts (free/total, pending requests)."""
    slots = any(b.slot for b in boards)
    rows = []
    for b in boards:
        row = [b.hostname or "-", b.name or "-", b.address, b.key,
               b.version or ("stock" if not b.edge else "-"),
               b.state or ("?" if b.edge else "-")]
        if slots:
            row.append(b.describe_slot())
        rows.append(row + [b.describe_classes(), b.sandbox,
                           conditions_text(b.conditions) if b.edge else "-",
                           modes_text(b.modes) or "-"])
    headers = ["HOST", "BOARD", "ADDRESS", "KEY", "VERSION", "STATE"] + (["SLOT"] if slots else [])
    lines = ["\n".join(table(headers + ["CORE CLASSES", "SANDBOX", "AT REGISTRATION", "MODES"],
                             rows))]
    seen = []
    for b in boards:
        if b.key not in seen:
            seen.append(b.key)
            lines.append("key %s: %d/%d free, %d pending" % (b.key, b.key_free, b.key_total,
                                                              b.key_pending))
    return "\n".join(lines[:1] + [""] + lines[1:])


def probe_text(board: str, topology: Topology, state: Optional[dict], targets: dict) -> str:
    """The board's topology as `edge-server probe` shows it, then this session's
    threads and the targets asked for."""
    lines = ["server: %s" % board, render(topology)]
    if state:
        lines.append("session: mode %s on cpus %s, %s threads" % (
            state.get("mode"), cpus_text(state.get("cpus")), state.get("nthreads")))
    cond = (state or {}).get("conditions") or topology.extra.get("conditions")
    if cond is not None:
        lines.append("now: %s" % conditions_text(cond))
    for name, target in targets.items():
        lines.append("target %s: %s" % (name, json.dumps(target, sort_keys=True)))
    return "\n".join(lines)


def bench_table(results, board, kernel_label: str) -> str:
    baseline = next((r.mean_ms for r in results if r.mean_ms), None)
    rows, notes = [], []
    for r in results:
        if r.error:
            rows.append([r.mode, cpus_text(r.cpus), "-", "-", "-", "-", "failed", "-"])
            notes.append("%s: %s" % (r.mode, r.error))
            continue
        rel = baseline / r.mean_ms if baseline and r.mean_ms else None
        if r.correct is False:
            notes.append("%s: the kernel's output differs from numpy's" % r.mode)
        rows.append([r.mode, cpus_text(r.cpus), str(r.nthreads), "%.3f" % r.mean_ms,
                     "%.3f" % r.stddev_ms, "%.1f%%" % (100 * (r.cv or 0)),
                     "%.2fx" % rel if rel else "-", verdict_cell(r.verdicts)])
        notes += verdict_notes(r.mode, r.verdicts)
    head = "%s on %s (key %s), %s" % (kernel_label, board.address, board.key,
                                      describe_classes(board.topology))
    lines = [head] + table(["MODE", "CPUS", "THREADS", "MEAN MS", "STDDEV MS", "CV", "SPEED",
                            "VERDICT"], rows, right=(2, 3, 4, 5, 6))
    return "\n".join(lines + notes)


def verdict_cell(verdicts) -> str:
    """VALID, UNKNOWN or "SUSPECT 2/5": the worst of a row's sessions."""
    seen = [v["status"] for v in verdicts]
    worst = next((s for s in ("SUSPECT", "UNKNOWN", "VALID") if s in seen), None)
    if worst is None:
        return "-"
    return "%s %d/%d" % (worst, seen.count(worst), len(seen)) if worst == "SUSPECT" else worst


def verdict_notes(mode: str, verdicts) -> List[str]:
    """The reasons under the table, each once per mode: SUSPECT's, else why UNKNOWN."""
    out = []
    for v in verdicts:
        why = v.get("reasons") if v["status"] == "SUSPECT" else v.get("unknown")
        for reason in why or []:
            line = "%s: %s: %s" % (mode, v["status"], reason)
            if line not in out:
                out.append(line)
    return out


def conditions_text(cond: Optional[dict]) -> str:
    """"schedutil 1416/1416 MHz, soc-thermal 45 °C": governors, clocks, temperatures."""
    if not cond:
        return "-"
    parts = []
    for name, gov in (cond.get("governors") or {}).items():
        cur, top = (cond.get("cur_mhz") or {}).get(name), (cond.get("max_mhz") or {}).get(name)
        parts.append("%s %s %s/%s MHz" % (name, gov or "?", cur or "?", top or "?"))
    parts += ["%s %s °C" % (zone, t) for zone, t in (cond.get("temps_c") or {}).items()]
    if cond.get("rpi_throttled") not in (None, "0x0"):
        parts.append("throttled %s" % cond["rpi_throttled"])
    return ", ".join(parts) or "no cpufreq, no thermal zones"


class Progress:
    """A progress bar on a terminal; one line per step when not a terminal."""

    def __init__(self, stream, width: int = 30):
        self.stream = stream
        self.width = width
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def __call__(self, done: int, total: int, label: str) -> None:
        if self.tty:
            filled = int(self.width * done / max(total, 1))
            self.stream.write("\r[%s%s] %d/%d %-20s" % ("#" * filled, "." * (self.width - filled),
                                                       done, total, label))
            if done >= total:
                self.stream.write("\n")
        elif done < total:
            self.stream.write("bench: %d/%d %s\n" % (done + 1, total, label))
        self.stream.flush()
