"""A verdict on one measurement: VALID, SUSPECT (with reasons in words) or UNKNOWN.

The session takes a conditions snapshot (edge_server.board.conditions) just
before and just after a timed run; evaluate() compares them. SUSPECT means
something we can see went wrong while the clock was running (a core below
its clock, a capped clock, a zone at its trip point or rising fast, a
throttle bit, another task on a measured core, the session's threads
preempted or moved, a busy co-slot next to a slot whose calibrated slowdown
is over --slot-threshold). UNKNOWN means nothing went wrong that we could
see but a check the verdict rests on could not be made: the clock of every
measured core and at least one thermal zone (and, in a slot, the calibration
when a co-slot was busy). A machine with neither (a VM, this
development box) therefore never says VALID.

Reasons are sentences a user reads in a tuning log, with the numbers in
them; `facts` holds the same numbers for programs.
"""
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from edge_common.cpulist import format_cpulist
from edge_common.slots import CoSlots
from edge_server.board.conditions import CLK_TCK, SLOWING_TRIPS, Snapshot

VALID, SUSPECT, UNKNOWN = "VALID", "SUSPECT", "UNKNOWN"
RPI_NOW_BITS = {0: "under-voltage", 1: "arm frequency capped", 2: "throttled",
                3: "soft temperature limit"}
RPI_STICKY_SHIFT = 16     # bits 16-19: the same events, "has occurred since boot"


class ThresholdError(ValueError):
    """A threshold override that makes no sense; str() says which and why."""


@dataclass(frozen=True)
class Thresholds:
    """When a measurement becomes SUSPECT. Defaults are daemon flags
    (--verdict-*) and a client may override them per call."""
    min_clock_ratio: float = 0.95   # a core below this share of its max (or locked) clock
    max_slow_share: float = 0.10    # share of the run's time_in_state spent below that clock
    trip_margin_c: float = 0.0      # a zone within this of a passive/hot/critical trip
    max_rise_c: float = 5.0         # a zone that warmed more than this during the run
    max_other_ms: float = 20.0      # CPU time other tasks took on one measured core...
    max_other_share: float = 0.05   # ...or this share of the run, whichever is larger
    max_preemptions: int = 10       # involuntary context switches of the session's threads
    max_coslot_busy: float = 0.5    # share of the run a co-slot's core was busy (--slots)

    def with_overrides(self, overrides: Optional[dict]) -> "Thresholds":
        """A copy with `overrides` applied; ThresholdError names a bad key or value."""
        if not overrides:
            return self
        if not isinstance(overrides, dict):
            raise ThresholdError("thresholds must be a JSON object like "
                                 '{"max_rise_c": 3}, not %r' % (overrides,))
        names = {f.name: f.type for f in dataclasses.fields(self)}
        values = {}
        for key, value in overrides.items():
            if key not in names:
                raise ThresholdError("unknown threshold %r; known: %s"
                                     % (key, ", ".join(sorted(names))))
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or math.isnan(value) or value < 0:
                raise ThresholdError("threshold %s=%r must be a number >= 0" % (key, value))
            values[key] = int(value) if key == "max_preemptions" else float(value)
        if values.get("min_clock_ratio", 0) > 1:
            raise ThresholdError("min_clock_ratio %r must be between 0 and 1 (e.g. 0.95)"
                                 % values["min_clock_ratio"])
        return dataclasses.replace(self, **values)


@dataclass
class Verdict:
    status: str
    reasons: List[str] = field(default_factory=list)    # why SUSPECT
    unknown: List[str] = field(default_factory=list)    # what could not be checked
    facts: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def line(self) -> str:
        """One line for a table or a log: the status and why."""
        why = self.reasons if self.status == SUSPECT else self.unknown
        return self.status + (": " + "; ".join(why) if why else "")


def evaluate(before: Snapshot, after: Snapshot, thresholds: Thresholds = Thresholds(),
             expected_khz: Optional[Dict[str, int]] = None,
             coslots: Optional[CoSlots] = None) -> Verdict:
    """The verdict on a run between two snapshots of the same ConditionsReader.

    expected_khz: per policy name, the clock the run should have had when it
    is locked to a fixed frequency (clocks.py); else cpuinfo_max_freq.
    coslots: the session's slot and its neighbours (--slots); None for a
    whole-board server, which has no co-slot to judge."""
    v = Verdict(status=UNKNOWN)
    duration_ms = max(0.0, (after.monotonic - before.monotonic) * 1e3)
    v.facts["duration_ms"] = round(duration_ms, 3)
    _check_clocks(before, after, thresholds, expected_khz or {}, v)
    _check_heat(before, after, thresholds, v)
    _check_rpi(before, after, v)
    _check_intruders(before, after, thresholds, duration_ms, v)
    _check_threads(before, after, thresholds, v)
    if coslots is not None:
        _check_coslots(before, after, thresholds, coslots, v)
    if v.reasons:
        v.status = SUSPECT
    elif not v.unknown:
        v.status = VALID
    return v


def _mhz(khz: float) -> str:
    return "%d" % round(khz / 1000)


def _check_clocks(before, after, th, expected, v) -> None:
    if after.no_cpufreq:
        v.unknown.append("no cpufreq for cpu%s: their clock cannot be checked"
                         % format_cpulist(after.no_cpufreq))
    clocks = v.facts.setdefault("clocks", {})
    for b, a in zip(before.policies, after.policies):
        cpus = "cpu" + format_cpulist(a.cpus)
        want = expected.get(a.name) or a.max_khz
        if a.cur_khz is None or not want:
            v.unknown.append("%s: no current or maximum clock to compare" % cpus)
            continue
        floor = th.min_clock_ratio * want
        clocks[a.name] = {"cur_mhz_before": b.cur_khz and round(b.cur_khz / 1000),
                          "cur_mhz_after": round(a.cur_khz / 1000),
                          "want_mhz": round(want / 1000), "governor": a.governor,
                          "transitions": _delta(b.total_trans, a.total_trans)}
        if a.cur_khz < floor:
            v.reasons.append("%s ran at %s of %s MHz under %s"
                             % (cpus, _mhz(a.cur_khz), _mhz(want), a.governor or "an unknown governor"))
        cap = min(c for c in (b.cap_khz, a.cap_khz, want) if c)
        if cap < floor:
            v.reasons.append("%s was capped at %s of %s MHz (scaling_max_freq lowered: a "
                             "thermal or power limit)" % (cpus, _mhz(cap), _mhz(want)))
        _check_time_in_state(b, a, floor, th, cpus, v)


def _check_time_in_state(b, a, floor, th, cpus, v) -> None:
    if not b.time_in_state or not a.time_in_state:
        return
    spent = {f: a.time_in_state[f] - b.time_in_state.get(f, 0) for f in a.time_in_state}
    total = sum(t for t in spent.values() if t > 0)
    slow = sum(t for f, t in spent.items() if f < floor and t > 0)
    if total and slow / total > th.max_slow_share:
        v.reasons.append("%s spent %d of %d ms below %s MHz" % (cpus, slow * 10, total * 10,
                                                               _mhz(floor)))


def _delta(b: Optional[int], a: Optional[int]) -> Optional[int]:
    return None if a is None or b is None else a - b


def _check_heat(before, after, th, v) -> None:
    temps = v.facts.setdefault("temps_c", {})
    read = [(b, a) for b, a in zip(before.zones, after.zones)
            if a.temp_mc is not None and b.temp_mc is not None]
    if not read:
        v.unknown.append("no readable thermal zone: heat cannot be checked")
    for b, a in read:
        temps[a.type] = [round(b.temp_mc / 1000, 1), round(a.temp_mc / 1000, 1)]
        hot = max(b.temp_mc, a.temp_mc)
        trips = [t for t in a.trips if t.type in SLOWING_TRIPS
                 and hot >= t.temp_mc - th.trip_margin_c * 1000]
        if trips:
            trip = min(trips, key=lambda t: t.temp_mc)
            verb = "rose to" if a.temp_mc > b.temp_mc else "was at"
            v.reasons.append("%s %s %s °C, trip at %s °C (%s)"
                             % (a.type, verb, _c(hot), _c(trip.temp_mc), trip.type))
        elif a.temp_mc - b.temp_mc > th.max_rise_c * 1000:
            v.reasons.append("%s rose from %s to %s °C during the run"
                             % (a.type, _c(b.temp_mc), _c(a.temp_mc)))
    cpus = {c for p in after.policies for c in p.cpus} | set(after.cpus)
    for b, a in zip(before.cooling, after.cooling):
        state = max(s for s in (b.cur_state, a.cur_state, 0) if s is not None)
        if state > 0 and _cooling_applies(a.type, cpus):
            v.reasons.append("%s was slowing the clock (cooling state %d of %s)"
                             % (a.type, state, a.max_state if a.max_state is not None else "?"))


def _cooling_applies(kind: str, cpus) -> bool:
    """cpufreq-cpuN (kernel >= 5.10) names the first core of its policy; other
    names cannot be tied to a core, so they count."""
    if kind.startswith("cpufreq-cpu") and kind[len("cpufreq-cpu"):].isdigit():
        return int(kind[len("cpufreq-cpu"):]) in cpus
    return True


def _c(mc: int) -> str:
    return ("%.1f" % (mc / 1000)).rstrip("0").rstrip(".")


def _check_rpi(before, after, v) -> None:
    if after.rpi_throttled is None:
        return
    v.facts["rpi_throttled"] = "0x%x" % after.rpi_throttled
    now = [name for bit, name in RPI_NOW_BITS.items()
           if (after.rpi_throttled | (before.rpi_throttled or 0)) & (1 << bit)]
    new = [name for bit, name in RPI_NOW_BITS.items()
           if after.rpi_throttled & (1 << (bit + RPI_STICKY_SHIFT))
           and not (before.rpi_throttled or 0) & (1 << (bit + RPI_STICKY_SHIFT))]
    for name in now:
        v.reasons.append("the Raspberry Pi firmware reports %s (get_throttled 0x%x)"
                         % (name, after.rpi_throttled))
    for name in new:
        if name not in now:
            v.reasons.append("the Raspberry Pi firmware saw %s during the run "
                             "(get_throttled 0x%x)" % (name, after.rpi_throttled))


def _check_intruders(before, after, th, duration_ms, v) -> None:
    if before.cpu_busy_ticks is None or after.cpu_busy_ticks is None \
            or before.tasks is None or after.tasks is None:
        v.facts["other_ms"] = None
        return
    own: Dict[int, int] = {}
    for tid, task in after.tasks.items():
        if tid in before.tasks and task.processor is not None:
            own[task.processor] = own.get(task.processor, 0) + task.ticks - before.tasks[tid].ticks
    limit = max(th.max_other_ms, th.max_other_share * duration_ms)
    other = {}
    for cpu in after.cpus:
        if cpu not in after.cpu_busy_ticks or cpu not in before.cpu_busy_ticks:
            continue
        busy = after.cpu_busy_ticks[cpu] - before.cpu_busy_ticks[cpu]
        ms = max(0, busy - own.get(cpu, 0)) * 1000.0 / CLK_TCK
        other[cpu] = ms
        if ms > limit:
            v.reasons.append("another task took %d ms on cpu%d" % (round(ms), cpu))
    v.facts["other_ms"] = other


def _check_threads(before, after, th, v) -> None:
    if before.tasks is None or after.tasks is None:
        return
    both = [(before.tasks[t], a) for t, a in after.tasks.items() if t in before.tasks]
    pre = sum(a.nonvoluntary - b.nonvoluntary for b, a in both
              if a.nonvoluntary is not None and b.nonvoluntary is not None)
    moved = sum(a.migrations - b.migrations for b, a in both
                if a.migrations is not None and b.migrations is not None)
    v.facts["preemptions"], v.facts["migrations"] = pre, moved
    if pre > th.max_preemptions:
        v.reasons.append("the session's threads were preempted %d times" % pre)
    if moved > 0:
        v.reasons.append("the session's threads moved between cores %d times "
                         "(pinning did not hold)" % moved)


def busy_share(before: Snapshot, after: Snapshot, cpus) -> Optional[float]:
    """How busy the busiest of `cpus` was between two snapshots: its non-idle
    ticks over its elapsed ticks (/proc/stat). None when /proc/stat was not
    read or the run was shorter than a clock tick on all of them."""
    if None in (before.cpu_busy_ticks, after.cpu_busy_ticks, before.cpu_ticks, after.cpu_ticks):
        return None
    shares = []
    for cpu in cpus:
        try:
            busy = after.cpu_busy_ticks[cpu] - before.cpu_busy_ticks[cpu]
            elapsed = after.cpu_ticks[cpu] - before.cpu_ticks[cpu]
        except KeyError:        # an offline CPU has no line
            continue
        if elapsed > 0:
            shares.append(min(1.0, max(0.0, busy / elapsed)))
    return max(shares) if shares else None


def _pct(share: float) -> str:
    return "%d%%" % round(100 * share)


def _check_coslots(before, after, th, slots: CoSlots, v) -> None:
    """A busy co-slot is SUSPECT when this slot's calibrated slowdown next to
    busy co-slots is over --slot-threshold, UNKNOWN when it was not calibrated
    on this boot, and only a fact when the calibration says it does not matter."""
    matters = slots.slowdown is None or slots.slowdown > slots.threshold
    facts = v.facts["co_slots"] = []
    v.facts["slot"] = slots.facts()
    for index, cpus in slots.others:
        share = busy_share(before, after, cpus)
        facts.append({"index": index, "cpus": list(cpus),
                      "busy_share": None if share is None else round(share, 3)})
        where = "slot %d (cpu%s)" % (index, format_cpulist(cpus))
        if share is None:
            if matters:
                v.unknown.append("whether %s was busy cannot be told (/proc/stat unreadable, "
                                 "or the run was shorter than a clock tick)" % where)
            continue
        if share <= th.max_coslot_busy:
            continue
        if slots.slowdown is None:
            v.unknown.append("%s was busy %s of the run; interference not calibrated on this "
                             "boot (edge-server calibrate)" % (where, _pct(share)))
        elif slots.slowdown > slots.threshold:
            v.reasons.append("%s was busy %s of the run; calibrated slowdown next to it is %s "
                             "(over %s)" % (where, _pct(share), _pct(slots.slowdown),
                                            _threshold_pct(slots.threshold)))


def _threshold_pct(threshold: float) -> str:
    return ("%.1f" % (100 * threshold)).rstrip("0").rstrip(".") + "%"
