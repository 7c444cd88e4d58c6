"""Timed runs with a verdict: the session's side of issue 13.

Remote functions (registered by child.register_functions):

- `edge.measure_begin(thresholds_json)`: just before a timed run (TVM's own
  time_evaluator, unchanged): take the before snapshot. thresholds_json:
  overrides of the daemon's thresholds ("" for none).
- `edge.measure_end()`: just after it: the after snapshot and the verdict,
  JSON {"status", "reasons", "unknown", "facts"}. A stock evaluator between
  the two keeps working for every client; the two calls cost two round trips.
- `edge.last_verdict()`: that verdict as JSON (null before any run).
- `edge.conditions()`: a snapshot of the session's cores now, JSON.
- `edge.cooldown(margin_c, max_wait_s)`: wait until the hottest zone is
  within margin_c of its idle level, at most max_wait_s (negative: the
  daemon's defaults); JSON of what happened.

With --lock-clocks the daemon locked every policy the session may use before
it handed the client over (edge_server.daemon.clock_lock) and told the
session the held clocks: the verdict compares against them, and a policy the
daemon could not lock makes every verdict on it UNKNOWN with the reason. The
clock check still runs against the top clock there, so a clock that ramped
is still SUSPECT; UNKNOWN says the lock the operator asked for did not hold.
"""
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from edge_common.slots import CoSlots
from edge_server.board.conditions import ConditionsReader, summary
from edge_server.session.clocks import HeldClocks
from edge_server.session.cooldown import IDLE_FILE, IdleTemps, wait_until_cool
from edge_server.session.verdict import UNKNOWN, VALID, Thresholds, Verdict, evaluate

logger = logging.getLogger("edge_server.session.timed")
MAX_READERS = 16


@dataclass(frozen=True)
class MeasureSettings:
    """The daemon's verdict, cooldown and clock-lock settings (daemon flags)."""
    root: str = "/"                          # where the board's sysfs/procfs are read
    thresholds: Thresholds = field(default_factory=Thresholds)
    cooldown_margin_c: float = 3.0
    cooldown_max_wait_s: float = 60.0
    lock_clocks: Optional[object] = None     # None, "max" or kHz (the daemon locks)
    state_dir: Optional[str] = None          # idle temperatures and clock-lock state files

    def clock_dir(self) -> str:
        """Where clock-lock state files go (the daemon restores from there)."""
        return os.path.join(self.state_dir or ".", "clock-locks")


class Measurements:
    """Conditions, verdicts, cooldown and clock lock of one session.

    cpus: returns the cores the session runs on now (they change with
    edge.set_thread_mode), so the reader follows the session's mode."""

    def __init__(self, settings: MeasureSettings, cpus: Callable[[], List[int]],
                 coslots: Optional[CoSlots] = None):
        self.settings = settings
        self._cpus = cpus
        self.coslots = coslots     # the slot's neighbours (--slots), judged by every verdict
        self._readers: Dict[Tuple[int, ...], ConditionsReader] = {}
        self.last: Optional[Verdict] = None
        self._open = None          # (reader, thresholds, expected clocks, before) of begin()
        self.peer = "(not connected yet)"
        self.idle = IdleTemps(os.path.join(settings.state_dir, IDLE_FILE)
                              if settings.state_dir else None)
        self.held: Optional[HeldClocks] = None   # what the daemon locked (--lock-clocks)
        self.reader()   # the static discovery now, in the spare, before a client waits

    def reader(self) -> ConditionsReader:
        """The reader for the session's cores now; one per core set, a bounded few
        (a client cycling through endless cpus: lists must not grow the session)."""
        key = tuple(self._cpus())
        if key not in self._readers:
            if len(self._readers) >= MAX_READERS:
                self._readers.clear()
            self._readers[key] = ConditionsReader(self.settings.root, list(key))
        return self._readers[key]

    def start(self, peer: str, held: Optional[HeldClocks] = None) -> None:
        """At serve(): the board was idle until this client came; note its temperatures.
        held: the clocks the daemon locked for this session (--lock-clocks)."""
        self.peer, self.held = peer, held
        snap = self.reader().snapshot()
        self.idle.record(snap)
        brief = summary(snap)
        governors = ",".join(sorted({g for g in brief["governors"].values() if g})) or "none"
        temps = " ".join("%s=%s" % kv for kv in brief["temps_c"].items()) or "none"
        logger.info("session %s: cores %s, governor %s, temperatures %s", peer,
                    ",".join(map(str, snap.cpus)), governors, temps,
                    extra={"PEER": peer, "GOVERNOR": governors, "TEMPS_C": temps})

    def conditions(self) -> dict:
        snap = self.reader().snapshot()
        return {"summary": summary(snap), "snapshot": snap.to_dict(),
                "last_verdict": self.last.to_dict() if self.last else None,
                "slot": self.coslots.facts() if self.coslots else None}

    def begin(self, thresholds_json: str = "") -> None:
        """Take the before snapshot; the client runs TVM's own evaluator next and
        then calls end()."""
        thresholds = self.settings.thresholds.with_overrides(
            json.loads(thresholds_json) if thresholds_json else None)
        reader = self.reader()
        expected = self.held.khz if self.held is not None else None
        self._open = (reader, thresholds, expected, reader.snapshot())

    def end(self) -> Verdict:
        """The after snapshot and the verdict on what ran since begin()."""
        if self._open is None:
            raise RuntimeError("edge.measure_end without edge.measure_begin: call "
                               "edge.measure_begin() just before the timed run")
        reader, thresholds, expected, before = self._open
        after = reader.snapshot()
        self._open = None
        self.last = self._lock_failures(
            evaluate(before, after, thresholds, expected, self.coslots), reader)
        self._log(self.last)
        return self.last

    def _lock_failures(self, verdict: Verdict, reader: ConditionsReader) -> Verdict:
        """The daemon could not lock a measured policy: not VALID, and why."""
        failures = self.held.failures_for(reader.policy_names()) if self.held else []
        if failures:
            verdict.unknown += failures
            if verdict.status == VALID:
                verdict.status = UNKNOWN
        return verdict

    def measured(self, run: Callable[[], object], thresholds_json: str = ""):
        """run() between begin() and end(), in the session (bench/verdict.py)."""
        self.begin(thresholds_json)
        result = run()
        return result, self.end()

    def _log(self, verdict: Verdict) -> None:
        extra = {"PEER": self.peer, "VERDICT": verdict.status,
                 "VERDICT_REASONS": "; ".join(verdict.reasons or verdict.unknown)}
        level = logging.WARNING if verdict.status == "SUSPECT" else logging.INFO
        logger.log(level, "session %s: measurement %s", self.peer, verdict.line(), extra=extra)

    def cooldown(self, margin_c: float, max_wait_s: float) -> dict:
        s = self.settings
        margin = s.cooldown_margin_c if margin_c < 0 else margin_c
        bound = s.cooldown_max_wait_s if max_wait_s < 0 else max_wait_s
        reader = self.reader()
        if not self.idle.readings:
            self.idle.record(reader.snapshot())
        out = wait_until_cool(reader.snapshot, self.idle, margin, bound)
        logger.info("session %s: cooldown %s", self.peer, json.dumps(out),
                    extra={"PEER": self.peer})
        return out


def register(reg, session: Callable[[], object]) -> None:
    """Register the edge.* measurement functions; `session()` is the current
    PreparedSession, whose `measure` is a Measurements."""
    reg("edge.measure_begin", lambda thresholds="": session().measure.begin(thresholds))
    reg("edge.measure_end", lambda: json.dumps(session().measure.end().to_dict()))
    reg("edge.last_verdict", lambda: json.dumps(
        session().measure.last.to_dict() if session().measure.last else None))
    reg("edge.conditions", lambda: json.dumps(session().measure.conditions()))
    reg("edge.cooldown", lambda margin, bound: json.dumps(
        session().measure.cooldown(float(margin), float(bound))))
