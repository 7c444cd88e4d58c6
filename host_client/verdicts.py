"""Conditions and verdicts of an edge-server session, in Python.

    s = host_client.connect(tracker, key, thread_mode="big")
    timer = host_client.verdicts.time_evaluator(s, mod, "main", s.cpu(), number=10, repeat=3)
    result, verdict = timer(*args)
    if verdict.status != "VALID": print(verdict.line())

`time_evaluator` takes the arguments of TVM's Module.time_evaluator and runs
TVM's own evaluator between `edge.measure_begin` and `edge.measure_end`, at
which the board snapshots its cores' clocks, temperatures and intruders;
the verdict comes back with the times. `conditions(s)` is a
snapshot now, `cooldown(s)` waits until the board is near idle temperature.
"""
import json
from dataclasses import dataclass, field
from typing import Optional

VALID, SUSPECT, UNKNOWN = "VALID", "SUSPECT", "UNKNOWN"


class NoVerdicts(RuntimeError):
    """The server is not an edge-server with verdicts (a stock TVM server, or an older one)."""


@dataclass
class Verdict:
    status: str
    reasons: list = field(default_factory=list)
    unknown: list = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: dict) -> "Verdict":
        return cls(status=doc["status"], reasons=list(doc.get("reasons") or []),
                   unknown=list(doc.get("unknown") or []), facts=dict(doc.get("facts") or {}))

    def line(self) -> str:
        why = self.reasons if self.status == SUSPECT else self.unknown
        return self.status + (": " + "; ".join(why) if why else "")


def _func(session, name: str):
    try:
        return session.get_function(name)
    except (AttributeError, RuntimeError) as err:
        raise NoVerdicts("the board has no %s (%s); run edge-server there for verdicts"
                         % (name, str(err).splitlines()[0] if str(err) else type(err).__name__)) \
            from None


def time_evaluator(session, mod, func_name: str, dev, number: int = 10, repeat: int = 1,
                   min_repeat_ms: int = 0, thresholds: Optional[dict] = None, **kwargs):
    """Module.time_evaluator with a verdict: the returned function gives
    (BenchmarkResult, Verdict). The board snapshots its cores just before
    and just after TVM's own evaluator runs. thresholds: overrides of the
    board's (e.g. {"max_rise_c": 3}); a bad one is refused by the board.
    kwargs: the other arguments of Module.time_evaluator."""
    feval = mod.time_evaluator(func_name, dev, number=number, repeat=repeat,
                               min_repeat_ms=min_repeat_ms, **kwargs)
    return measured(session, feval, thresholds)


def measured(session, run, thresholds: Optional[dict] = None):
    """Wrap any timed call `run(*args)` on the board: (its result, Verdict)."""
    begin = _func(session, "edge.measure_begin")
    end = _func(session, "edge.measure_end")
    overrides = json.dumps(thresholds) if thresholds else ""

    def timed(*args):
        begin(overrides)
        result = run(*args)
        return result, Verdict.from_dict(json.loads(end()))
    return timed


def last_verdict(session) -> Optional[Verdict]:
    doc = json.loads(_func(session, "edge.last_verdict")())
    return Verdict.from_dict(doc) if doc else None


def conditions(session) -> dict:
    """{"summary": governors, clocks, temperatures; "snapshot": everything read;
    "last_verdict": ...} of the session's cores, now."""
    return json.loads(_func(session, "edge.conditions")())


def cooldown(session, margin_c: float = -1, max_wait_s: float = -1) -> dict:
    """Wait on the board until its hottest zone is within margin_c of idle, at
    most max_wait_s (negative: the board's defaults); what happened."""
    return json.loads(_func(session, "edge.cooldown")(float(margin_c), float(max_wait_s)))


class SuspectMeasurement(RuntimeError):
    """A trial measured SUSPECT every time; str() carries the board's reasons."""


class VerdictEvaluator:
    """f_run_evaluator for MetaSchedule's RPCRunner: measure like MetaSchedule
    does (run_evaluator_common), between edge.measure_begin/measure_end, and
    re-measure a SUSPECT trial after a cooldown up to `remeasure` times; then
    raise SuspectMeasurement, which the runner records as the trial's error,
    so a tuning log never holds a time taken while throttled or crowded.
    UNKNOWN (a board without cpufreq or thermal zones) is kept: nothing
    better can be had there. A stock server (no edge.*) is measured plainly.

    Plain attributes only: RPCRunner pickles it into its worker processes.
    record: optional JSON-lines file, one line per attempt with the verdict."""

    def __init__(self, remeasure: int = 2, cooldown: bool = True, margin_c: float = -1,
                 max_wait_s: float = -1, thresholds: Optional[dict] = None,
                 record: Optional[str] = None):
        self.remeasure, self.cooldown = remeasure, cooldown
        self.margin_c, self.max_wait_s = margin_c, max_wait_s
        self.thresholds, self.record = thresholds, record

    def __call__(self, session, rt_mod, device, evaluator_config, repeated_args):
        from tvm.s_tir.meta_schedule.runner.utils import run_evaluator_common

        def run():
            return run_evaluator_common(rt_mod, device, evaluator_config, repeated_args)
        try:
            timed = measured(session, run, self.thresholds)
        except NoVerdicts:
            return run()
        seen = []
        for attempt in range(self.remeasure + 1):
            if attempt and self.cooldown:
                cooldown(session, self.margin_c, self.max_wait_s)
            costs, verdict = timed()
            self._append(attempt, verdict)
            if verdict.status != SUSPECT:
                return costs
            seen.append(verdict)
        raise SuspectMeasurement("measured %d times, SUSPECT every time: %s"
                                 % (len(seen), " | ".join("; ".join(v.reasons) for v in seen)))

    def _append(self, attempt: int, verdict: Verdict) -> None:
        if not self.record:
            return
        import os
        from host_client.metaschedule import append_line
        append_line(self.record, json.dumps({
            "pid": os.getpid(), "attempt": attempt, "status": verdict.status,
            "reasons": verdict.reasons, "unknown": verdict.unknown}))

    def __repr__(self) -> str:
        return "VerdictEvaluator(remeasure=%d)" % self.remeasure
