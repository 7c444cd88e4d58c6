"""Slots: a board split into disjoint core sets, each serving its own session.

A slot spec is one string (the `--slots` flag):

    <group>[;<group>...]     groups also separate with ',' where unambiguous
    group:  <mode>           one slot on the cores the thread mode names
                             (`big:2`, `little`, `cpus:0-1`, `all`)
            <class>:<k>x<n>  n slots of k cores each of that class (`little:1x4`)
            cpus:<list>      one slot on exactly these CPUs
    auto                     whole spec only: slots formed from a calibration
                             (see `admit`)

Examples: `little:1x4`, `big:2,little:1x4`, `cpus:0;cpus:1`, `cpus:0,1;cpus:2`.
Inside a `cpus:` group a ',' continues the CPU list as long as the next item
is a number or a range, so `cpus:0,1,big:2` is cpus 0-1 and then big:2.

Resolution reuses edge_common.modes for what each group means on the board;
this module adds the allocation: explicit `cpus:` groups are placed first,
then class groups take the lowest-numbered cores of their class that no
earlier slot holds. Slots never share a core (nor SMT siblings of a core).

Inside a slot, a session's thread mode resolves against the slot's cores
only (`resolve_mode`): `all` is the slot, `little:2` needs two little cores
in the slot, and a mode the board could meet only outside the slot is refused
with what was asked, what the slot has, and what would work.

Pure: a topology document in, slots out; every failure is a SlotError.
"""
import copy
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from edge_common.cpulist import format_cpulist
from edge_common.modes import ModeError, Resolution, describe, parse, resolve
from edge_common.topology import Topology

MAX_SPEC_LEN = 512
DEFAULT_THRESHOLD = 0.03    # --slot-threshold: slowdown next to busy co-slots, as a fraction
MAX_SLOTS = 256
SPEC_GRAMMAR = "<mode> | <class>:<k>x<n> | cpus:<list>, joined by ';' (or 'auto')"

_REPEAT_RE = re.compile(r"^([a-z][a-z]*[0-9]*)\s*:\s*([0-9]+)\s*x\s*([0-9]+)$")
_CPU_ITEM_RE = re.compile(r"^\s*[0-9]+\s*(-\s*[0-9]+\s*)?$")


class SlotError(ValueError):
    """A slot spec this board cannot meet; the message says what would."""


@dataclass(frozen=True)
class Group:
    """One parsed group: `mode` a thread mode (canonical text), or a class
    repeated: `cls` with `per_slot` cores in each of `count` slots."""
    text: str
    mode: Optional[str] = None
    cls: Optional[str] = None
    per_slot: int = 0
    count: int = 0

    @property
    def explicit(self) -> bool:
        return self.mode is not None and self.mode.startswith("cpus:")


@dataclass(frozen=True)
class Slot:
    """One slot on one board: its index, the group it came from, its CPUs
    (one thread each, ascending) and their class when they share one."""
    index: int
    group: str
    cpus: Tuple[int, ...]
    cls: Optional[str]

    @property
    def mode(self) -> str:
        """The thread mode that names exactly this slot's cores."""
        return "cpus:" + format_cpulist(self.cpus)

    def to_json(self, count: int, spec: str, slowdown: Optional[float] = None, *,
                probes: Optional[Dict[str, float]] = None, threshold: Optional[float] = None,
                co_slots: Sequence["Slot"] = ()) -> dict:
        """What the tracker shows under edge.slot, and what resolve_mode and the
        measurement verdict (CoSlots) read: `slowdown` the worst calibrated figure,
        `probes` the figure per probe kind, `threshold` the --slot-threshold the
        verdict holds it to, `co_slots` the other slots' indices and cores."""
        return {"index": self.index, "count": count, "spec": spec, "group": self.group,
                "cpus": list(self.cpus), "class": self.cls, "mode": self.mode,
                "slowdown": slowdown, "slowdown_by_probe": probes, "threshold": threshold,
                "co_slots": [{"index": s.index, "cpus": list(s.cpus)} for s in co_slots
                             if s.index != self.index]}


def _echo(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:60] + "...")


def split_spec(spec) -> List[str]:
    """The group texts of a spec, lower-cased and stripped; SlotError if empty."""
    if not isinstance(spec, str):
        raise SlotError("slot spec must be a string like 'little:1x4' or 'cpus:0;cpus:1', "
                        "got %s" % type(spec).__name__)
    if len(spec) > MAX_SPEC_LEN:
        raise SlotError("slot spec %s is longer than %d characters; write slots as %s"
                        % (_echo(spec), MAX_SPEC_LEN, SPEC_GRAMMAR))
    if not spec.isascii():
        raise SlotError("slot spec %s contains non-ASCII characters; write slots as %s"
                        % (_echo(spec), SPEC_GRAMMAR))
    groups: List[str] = []
    for part in spec.lower().split(";"):
        items = part.split(",")
        current: Optional[str] = None
        for item in items:
            if current is not None and current.strip().startswith("cpus") \
                    and _CPU_ITEM_RE.match(item):
                current += "," + item
                continue
            if current is not None:
                groups.append(current.strip())
            current = item
        if current is not None:
            groups.append(current.strip())
    if not any(groups):
        raise SlotError("empty slot spec; write slots as %s, e.g. 'little:1x4' or "
                        "'cpus:0;cpus:1'" % SPEC_GRAMMAR)
    if "" in groups:
        raise SlotError("slot spec %s has an empty group (two separators in a row?); "
                        "write e.g. 'big:2;little:1x4'" % _echo(spec))
    return groups


def parse_group(text: str) -> Group:
    """One group; SlotError (quoting ModeError's advice) if it is not one."""
    match = _REPEAT_RE.match(text)
    if match:
        cls, per_slot, count = match.group(1), int(match.group(2)), int(match.group(3))
        if per_slot < 1 or count < 1:
            raise SlotError("slot group %s asks for %d slot(s) of %d core(s); both must be at "
                            "least 1, e.g. '%s:1x2'" % (_echo(text), count, per_slot, cls))
        if count > MAX_SLOTS or per_slot > MAX_SLOTS:
            raise SlotError("slot group %s asks for more than %d slots or cores; a board has "
                            "fewer" % (_echo(text), MAX_SLOTS))
        if cls in ("all", "cpus"):
            raise SlotError("slot group %s: '<class>:<k>x<n>' needs a core class (big, little, "
                            "class0, ...), not '%s'" % (_echo(text), cls))
        return Group(text=text, cls=cls, per_slot=per_slot, count=count)
    if text == "auto":
        raise SlotError("'auto' must be the whole slot spec (it forms slots from a "
                        "calibration), not one group of several")
    try:
        spec = parse(text)
    except ModeError as err:
        raise SlotError("slot group %s is neither a thread mode nor '<class>:<k>x<n>' (%s); "
                        "write slots as %s" % (_echo(text), err, SPEC_GRAMMAR)) from None
    return Group(text=text, mode=spec.text())


def parse_spec(spec: str) -> List[Group]:
    """A spec's groups, parsed but not checked against a board."""
    return [parse_group(g) for g in split_spec(spec)]


# ---------------------------------------------------------------- allocation

def _siblings(topology: dict) -> Dict[int, List[int]]:
    return {int(c["id"]): list(c.get("smt_siblings") or [c["id"]])
            for c in topology.get("cpus") or [] if c.get("id") is not None}


def _cls_of(topology: dict, cpus: Sequence[int]) -> Optional[str]:
    names = {c.get("class") for c in topology.get("cpus") or [] if c.get("id") in set(cpus)}
    return names.pop() if len(names) == 1 else None


def _resolve_group(topology: dict, group: Group, spec: str) -> Resolution:
    mode = group.mode if group.mode is not None else group.cls
    try:
        return resolve(topology, mode)
    except ModeError as err:
        raise SlotError("slot spec %s, group %s: %s" % (_echo(spec), _echo(group.text), err)) \
            from None


def resolve_slots(topology: dict, spec: str) -> List[Slot]:
    """The slots `spec` means on this board, disjoint, in spec order."""
    groups = parse_spec(spec)
    siblings = _siblings(topology)
    taken: Dict[int, str] = {}      # cpu -> the group holding it (or a sibling of it)
    placed: Dict[int, List[Tuple[Tuple[int, ...], Optional[str]]]] = {}

    def take(cpus: Sequence[int], group: Group) -> None:
        for cpu in cpus:
            for sib in siblings.get(cpu, [cpu]):
                taken[sib] = group.text

    for i in sorted(range(len(groups)), key=lambda i: _placement_rank(groups[i])):
        group = groups[i]
        res = _resolve_group(topology, group, spec)
        if group.explicit:
            clash = [c for c in res.cpus if c in taken]
            if clash:
                raise SlotError(
                    "slot spec %s: group %s needs cpus %s, already in slot group %s; slots may "
                    "not share a core; %s; free cores: cpus %s"
                    % (_echo(spec), _echo(group.text), format_cpulist(clash),
                       _echo(taken[clash[0]]), describe(topology),
                       format_cpulist(_free(topology, taken)) or "none"))
            take(res.cpus, group)
            placed[i] = [(tuple(sorted(res.cpus)), res.cls or _cls_of(topology, res.cpus))]
            continue
        per_slot, count = _shape(group, res)
        pool = _pool(topology, group, res)
        free = [c for c in pool if c not in taken]
        if per_slot is None:
            per_slot = len(free)
        need = per_slot * count
        if need == 0 or need > len(free):
            raise SlotError(_short_message(spec, group, res, pool, free, per_slot, count))
        chunks = []
        for n in range(count):
            cpus = tuple(free[n * per_slot:(n + 1) * per_slot])
            take(cpus, group)
            chunks.append((cpus, res.cls or _cls_of(topology, cpus)))
        placed[i] = chunks
    slots: List[Slot] = []
    for i, group in enumerate(groups):
        for cpus, cls in placed[i]:
            slots.append(Slot(len(slots), group.text, cpus, cls))
    if len(slots) > MAX_SLOTS:
        raise SlotError("slot spec %s makes %d slots; at most %d" % (_echo(spec), len(slots),
                                                                     MAX_SLOTS))
    return slots


def _placement_rank(group: Group) -> int:
    """Explicit CPUs first, then class groups, then `all` (whatever is left)."""
    if group.explicit:
        return 0
    return 2 if group.mode == "all" else 1


def _shape(group: Group, res: Resolution) -> Tuple[Optional[int], int]:
    """(cores per slot or None for every free one, number of slots) of a non-explicit group."""
    if group.cls is not None:
        return group.per_slot, group.count
    count = parse(group.mode).count
    return count, 1


def _pool(topology: dict, group: Group, res: Resolution) -> List[int]:
    """Every usable core (one per physical core) the group may draw from."""
    if group.mode == "all":
        return list(res.cpus)
    return list(resolve(topology, res.cls).cpus) if res.cls else list(res.cpus)


def _short_message(spec, group, res, pool, free, per_slot, count) -> str:
    what = res.cls or "usable"
    if not free:
        return ("slot spec %s: group %s finds no %s core left: the board has cpus %s and other "
                "groups hold them all; drop the group or give it cores of its own"
                % (_echo(spec), _echo(group.text), what, format_cpulist(pool) or "none"))
    fit = len(free) // per_slot
    if group.cls is not None and fit:
        hint = "%s:%dx%d" % (group.cls, per_slot, fit)
    elif res.cls:
        hint = "%s:%d" % (res.cls, len(free))
    else:
        hint = "cpus:" + format_cpulist(free)
    return ("slot spec %s: group %s needs %d %s core%s (%d slot%s of %d) but the board has %d "
            "(cpus %s), %d of them free of other groups (cpus %s); try %s"
            % (_echo(spec), _echo(group.text), per_slot * count, what,
               "" if per_slot * count == 1 else "s", count, "" if count == 1 else "s", per_slot,
               len(pool), format_cpulist(pool) or "none", len(free),
               format_cpulist(free) or "none", hint))


def _free(topology: dict, taken: Dict[int, str]) -> List[int]:
    return sorted(int(c["id"]) for c in topology.get("cpus") or []
                  if c.get("online") is not False and c.get("allowed") is not False
                  and int(c["id"]) not in taken)


# ---------------------------------------------------------------- modes in a slot

def slot_topology(topology: dict, slot: Slot, count: int, spec: str,
                  slowdown: Optional[float] = None, **calibration) -> dict:
    """The topology document a slot's sessions see: the board's, plus `slot`
    (calibration: Slot.to_json's probes, threshold and co_slots)."""
    doc = copy.deepcopy(topology)
    doc["slot"] = slot.to_json(count, spec, slowdown, **calibration)
    return doc


@dataclass(frozen=True)
class CoSlots:
    """What a session in a slot needs to judge a measurement's neighbours:
    its own slot, the other slots' cores, and this boot's calibrated slowdown
    of its slot next to busy co-slots (None: not calibrated on this boot)."""
    index: int
    cpus: Tuple[int, ...]
    others: Tuple[Tuple[int, Tuple[int, ...]], ...]     # (index, cpus) of every co-slot
    slowdown: Optional[float]                           # worst over the probe kinds
    probes: Optional[Dict[str, float]]                  # per probe kind (memory, compute)
    threshold: float = DEFAULT_THRESHOLD

    def facts(self) -> dict:
        """This slot's calibration, as verdicts and edge.conditions report it."""
        return {"index": self.index, "slowdown": self.slowdown,
                "slowdown_by_probe": self.probes, "threshold": self.threshold}

    @classmethod
    def from_topology(cls, topology) -> Optional["CoSlots"]:
        """The co-slots of the slot a topology document carries; None when the
        document has no slot (a whole-board server) or no co-slot."""
        slot = slot_of(topology)
        if slot is None:
            return None
        others = tuple((int(o["index"]), tuple(int(c) for c in o["cpus"]))
                       for o in slot.get("co_slots") or []
                       if isinstance(o, dict) and o.get("cpus"))
        if not others:
            return None
        probes = slot.get("slowdown_by_probe")
        probes = {str(k): float(v) for k, v in probes.items() if _number(v)} \
            if isinstance(probes, dict) else None
        slowdown = slot.get("slowdown")
        threshold = slot.get("threshold")
        return cls(index=int(slot.get("index", 0)),
                   cpus=tuple(slot_cpus(topology) or ()), others=others,
                   slowdown=float(slowdown) if _number(slowdown) else None,
                   probes=probes or None,
                   threshold=float(threshold) if _number(threshold) else DEFAULT_THRESHOLD)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _restricted(topology: dict, cpus: Sequence[int]) -> dict:
    """The board with every CPU outside `cpus` marked not allowed."""
    inside = set(cpus)
    doc = dict(topology)
    doc["cpus"] = [dict(c, allowed=False) if c.get("id") not in inside else c
                   for c in topology.get("cpus") or []]
    return doc


def _slot_hint(topology: dict, cpus: Sequence[int]) -> str:
    cls = _cls_of(topology, cpus)
    hints = ["all (= cpus %s)" % format_cpulist(cpus)]
    if cls:
        hints += [cls, "%s:%d" % (cls, len(cpus))]
    hints.append("cpus:" + format_cpulist(cpus))
    if len(cpus) > 1:
        hints.append("cpus:%d" % cpus[0])
    return ", ".join(hints)


def slot_of(topology) -> Optional[dict]:
    """The document's `slot` (edge-server --slots); None for a whole board.
    topology: the document, or a Topology."""
    slot = topology.slot if isinstance(topology, Topology) else (
        topology.get("slot") if isinstance(topology, dict) else None)
    return slot if isinstance(slot, dict) else None


def slot_cpus(topology) -> Optional[List[int]]:
    """The cores of the document's slot, ascending; None for a whole board."""
    slot = slot_of(topology)
    return sorted(int(c) for c in slot["cpus"]) if slot and slot.get("cpus") else None


def resolve_mode(topology, mode) -> Resolution:
    """modes.resolve, within the slot if the document has one (topology["slot"]).
    topology: the document, or a Topology."""
    if isinstance(topology, Topology):
        topology = topology.to_dict()
    cpus = slot_cpus(topology)
    if not cpus:
        return resolve(topology, mode)
    slot = slot_of(topology)
    try:
        return resolve(_restricted(topology, cpus), mode)
    except ModeError as inside:
        where = "slot %s of %s (cpus %s%s)" % (
            slot.get("index"), slot.get("count"), format_cpulist(cpus),
            ", %s" % slot["class"] if slot.get("class") else "")
        try:
            outside = resolve(topology, mode)
        except ModeError:
            raise ModeError("in %s: %s" % (where, inside)) from None
        raise ModeError("thread mode %s means cpus %s on this board, outside this session's %s; "
                        "other slots measure there; this slot has %d core%s; try %s"
                        % (_echo(outside.mode), format_cpulist(outside.cpus), where, len(cpus),
                           "" if len(cpus) == 1 else "s", _slot_hint(topology, cpus))) from None


# ---------------------------------------------------------------- auto: admission


def candidate_specs(topology: dict) -> List[str]:
    """Slot specs `auto` may form, most slots first; the last is one slot of
    everything, which has no co-slot and so always passes."""
    table = {int(c["id"]): c for c in topology.get("cpus") or [] if c.get("id") is not None}
    candidates: List[str] = []
    try:
        cores = resolve(topology, "all").cpus
    except ModeError:
        return []
    if len(cores) > 1:
        candidates.append(";".join("cpus:%d" % c for c in cores))
    clusters = []
    for cluster in topology.get("clusters") or []:
        ids = [c for c in cores if c in set(cluster.get("cpus") or [])]
        if ids:
            clusters.append(ids)
    if len(clusters) > 1 and sum(len(c) for c in clusters) == len(cores):
        candidates.append(";".join("cpus:" + format_cpulist(c) for c in clusters))
    classes = []
    for cls in sorted(topology.get("classes") or [], key=lambda c: c.get("rank", 0)):
        ids = [c for c in cores if table.get(c, {}).get("class") == cls.get("name")]
        if ids:
            classes.append(ids)
    if len(classes) > 1 and sum(len(c) for c in classes) == len(cores):
        candidates.append(";".join("cpus:" + format_cpulist(c) for c in classes))
    candidates.append("all")
    out: List[str] = []
    for spec in candidates:
        if spec not in out:
            out.append(spec)
    return out


def worst_slowdown(result: dict) -> Optional[float]:
    """The largest slowdown over slots and probe kinds of one calibration
    result ({"slots": [{"slowdown": {"memory": x, "compute": y}}, ...]});
    None when a slot lacks a figure (not measured is not admitted)."""
    worst = 0.0
    for slot in result.get("slots") or []:
        figures = slot.get("slowdown")
        if not isinstance(figures, dict) or not figures:
            return None
        for value in figures.values():
            if not isinstance(value, (int, float)) or value != value:
                return None
            worst = max(worst, float(value))
    return worst


def admit(results: Sequence[dict], threshold: float = DEFAULT_THRESHOLD) -> Tuple[dict, str]:
    """The first calibrated candidate (most slots first) whose worst slowdown
    stays under `threshold`, and why it was chosen; a one-slot candidate
    passes without co-slots. SlotError when none does."""
    if not isinstance(threshold, (int, float)) or not 0 <= threshold < 10:
        raise SlotError("slowdown threshold %r must be a fraction like 0.03 (3%%)" % (threshold,))
    rejected = []
    for result in results:
        nslots = len(result.get("slots") or [])
        worst = worst_slowdown(result)
        if nslots == 1 and worst is None:
            worst = 0.0
        if worst is not None and worst < threshold:
            why = "%s: %d slot%s, worst measured slowdown %.1f%% < threshold %.1f%%" % (
                result.get("spec"), nslots, "" if nslots == 1 else "s", 100 * worst,
                100 * threshold)
            if rejected:
                why += "; rejected " + "; ".join(rejected)
            return result, why
        rejected.append("%s (%s)" % (result.get("spec"), "not measured" if worst is None
                                     else "%.1f%%" % (100 * worst)))
    raise SlotError("no slot layout stays under the slowdown threshold %.1f%%: %s; raise the "
                    "threshold (--slot-threshold) or name slots explicitly"
                    % (100 * threshold, "; ".join(rejected) or "no candidates"))
