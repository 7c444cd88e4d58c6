"""Thread modes: one string naming the cores a session measures on.

A mode travels through TVM RPC as a plain string (RPC cannot carry arrays),
so the whole request is in its text:

    all            every usable physical core
    <class>        every usable physical core of a class: prime, big, mid,
                   little, or class0..classN by rank (0 = fastest)
    <class>:<n>    n cores of that class, the lowest-numbered usable ones
    cpus:<list>    exactly these logical CPUs, a Linux CPU list ("4,5", "0-3")

"Usable" means online and allowed for this process. Class modes and `all`
take one CPU per physical core (SMT siblings of a chosen core are left out,
because two threads on one core measure neither); `cpus:` is explicit, so it
takes what it names, siblings included, but never the same CPU twice.

This module is pure (no TVM, no sysfs): the topology (edge_common.topology)
comes in, a CPU list goes out, and everything the board cannot meet is a ModeError that
says what was asked, what the board has and what would work. Nothing else
may escape `resolve`, whatever the input: it is the first thing hostile
strings from the network reach.
"""
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from edge_common.cpulist import MAX_CPU_ID, CpuListError, format_cpulist, parse_cpulist
from edge_common.topology import CoreClass, Cpu, Topology, as_topology

# A mode is a short word; anything longer is garbage or an attack, and echoing
# 10 kB back in an error message helps nobody.
MAX_MODE_LEN = 256
# Longest part of the input quoted back in error messages.
_ECHO_LEN = 40

GRAMMAR = "all | <class> | <class>:<n> | cpus:<list>"

_NAME_RE = re.compile(r"^[a-z][a-z]*[0-9]*$")
_COUNT_RE = re.compile(r"^[0-9]+$")
_CLASSK_RE = re.compile(r"^class([0-9]+)$")


class ModeError(ValueError):
    """A thread mode this board cannot meet; the message says what would."""


@dataclass(frozen=True)
class ModeSpec:
    """A parsed mode, not yet checked against any board.

    kind is "all", "class" or "cpus"; `name` is the class word for "class",
    `count` the requested core count (None = every core of the class),
    `cpus` the explicit CPU ids for "cpus", sorted.
    """
    kind: str
    name: Optional[str] = None
    count: Optional[int] = None
    cpus: Optional[Tuple[int, ...]] = None

    def text(self) -> str:
        """The canonical spelling, which parse() maps back to this spec."""
        if self.kind == "all":
            return "all"
        if self.kind == "cpus":
            return "cpus:" + format_cpulist(self.cpus or ())
        if self.count is None:
            return str(self.name)
        return "%s:%d" % (self.name, self.count)


@dataclass(frozen=True)
class Resolution:
    """What a mode means on one board: the canonical mode, the CPUs (one
    thread each, in the order threads get them) and the class, if any."""
    mode: str
    cpus: List[int]
    cls: Optional[str]


def _echo(text: str) -> str:
    """The request, quoted for an error message, cut short if long."""
    if len(text) > _ECHO_LEN:
        return repr(text[:_ECHO_LEN]) + "... (%d characters)" % len(text)
    return repr(text)


def parse(mode) -> ModeSpec:
    """Parse a mode string; raise ModeError for anything outside the grammar.

    Case and surrounding whitespace are normalised; everything else must be
    exact (ASCII digits only, no empty items, no signs).
    """
    if not isinstance(mode, str):
        raise ModeError("thread mode must be a string like 'big:2', got %s %s"
                        % (type(mode).__name__, _echo(repr(mode))))
    if len(mode) > MAX_MODE_LEN:
        raise ModeError("thread mode %s is longer than %d characters; modes look like %s"
                        % (_echo(mode), MAX_MODE_LEN, GRAMMAR))
    if not mode.isascii():
        # Refuse before lower(): U+212A KELVIN SIGN lower-cases to ASCII 'k',
        # and Unicode digits are digits to str.isdigit().
        raise ModeError("thread mode %s contains non-ASCII characters; modes look like %s "
                        "(e.g. 'all', 'big:2', 'cpus:0-3')" % (_echo(mode), GRAMMAR))
    body = mode.strip().lower()
    if not body:
        raise ModeError("empty thread mode; give one of %s, e.g. 'all' or 'big:2'" % GRAMMAR)
    head, sep, tail = body.partition(":")
    head, tail = head.strip(), tail.strip()
    if head == "cpus":
        if not sep:
            raise ModeError("thread mode 'cpus' needs a CPU list, e.g. 'cpus:0-3' or 'cpus:4,5'")
        return ModeSpec("cpus", cpus=_explicit_cpus(tail, mode))
    if not head.isascii() or not _NAME_RE.match(head):
        raise ModeError("thread mode %s is not understood; modes look like %s "
                        "(e.g. 'all', 'big', 'little:2', 'class1', 'cpus:0-3')"
                        % (_echo(mode), GRAMMAR))
    if head == "all":
        if sep:
            raise ModeError("thread mode %s: 'all' takes no count; use <class>:<n> "
                            "(e.g. 'big:2') or 'cpus:<list>' for fewer cores" % _echo(mode))
        return ModeSpec("all")
    if not sep:
        return ModeSpec("class", name=head)
    return ModeSpec("class", name=head, count=_count(tail, head, mode))


def _count(tail: str, head: str, whole: str) -> int:
    if not tail.isascii() or not _COUNT_RE.match(tail):
        raise ModeError("thread mode %s: the count after '%s:' must be a whole number of "
                        "cores like '%s:2'" % (_echo(whole), head, head))
    count = int(tail)
    if count > MAX_CPU_ID + 1:
        raise ModeError("thread mode %s asks for more cores than any board has (at most %d); "
                        "try '%s' for every core of the class" % (_echo(whole), MAX_CPU_ID + 1, head))
    if count < 1:
        raise ModeError("thread mode %s asks for %d cores; ask for at least 1 ('%s:1') or "
                        "every core of the class ('%s')" % (_echo(whole), count, head, head))
    return count


def _explicit_cpus(tail: str, whole: str) -> Tuple[int, ...]:
    """The CPUs of a `cpus:` mode, sorted; a CPU named twice is refused."""
    if not tail:
        raise ModeError("thread mode %s has an empty CPU list; write e.g. 'cpus:0-3' or "
                        "'cpus:4,5'" % _echo(whole))
    try:
        return tuple(parse_cpulist(tail, repeats=False))
    except CpuListError as err:
        raise ModeError("thread mode %s: %s; CPU lists look like '0-3' or '4,5'"
                        % (_echo(whole), err)) from None


# ---------------------------------------------------------------- resolution

def _one_per_core(cpu_ids: List[int], table: Dict[int, Cpu]) -> List[int]:
    """Lowest-numbered usable CPU of each physical core, in id order."""
    chosen: List[int] = []
    taken = set()
    for cpu in sorted(cpu_ids):
        info = table.get(cpu)
        if info is None or not info.usable or cpu in taken:
            continue
        chosen.append(cpu)
        taken.add(cpu)
        taken.update(info.smt_siblings or ())
    return chosen


def _find_class(topology: Topology, name: str) -> Optional[CoreClass]:
    classes = topology.ranked_classes()
    for cls in classes:
        if cls.name == name:
            return cls
    match = _CLASSK_RE.match(name)
    if match:
        rank = int(match.group(1))
        for cls in classes:
            if cls.rank == rank:
                return cls
    # On a one-class board every core is both the biggest and the littlest.
    if name in ("big", "little") and len(classes) == 1:
        return classes[0]
    return None


def describe(topology) -> str:
    """One line of what the board offers, for error messages."""
    topology = as_topology(topology)
    table = topology.cpu_table()
    parts = []
    for cls in topology.ranked_classes():
        cores = _one_per_core(cls.cpus, table)
        parts.append("%s (class%s): %d usable core%s%s" % (
            cls.name, cls.rank, len(cores), "" if len(cores) == 1 else "s",
            " (cpus %s)" % format_cpulist(cores) if cores else ""))
    usable = topology.usable_cpus()
    unusable = sorted(set(table) - set(usable))
    line = "this board has " + ("; ".join(parts) if parts else "no core classes")
    line += "; usable cpus %s" % (format_cpulist(usable) or "none")
    if unusable:
        line += " (offline or not allowed: %s)" % format_cpulist(unusable)
    return line


def _suggestions(topology: Topology) -> str:
    table = topology.cpu_table()
    names = ["all"]
    for cls in topology.ranked_classes():
        cores = _one_per_core(cls.cpus, table)
        if cores:
            names.append(cls.name)
            names.append("%s:%d" % (cls.name, len(cores)))
    usable = topology.usable_cpus()
    if usable:
        names.append("cpus:" + format_cpulist(usable))
    return ", ".join(names)


def resolve(topology, mode) -> Resolution:
    """The CPUs `mode` means on this board; ModeError if it cannot be met.

    topology: a Topology, or the document as a dict (parsed on every call:
    a caller that resolves often passes the Topology)."""
    spec = parse(mode)
    topology = as_topology(topology)
    if spec.kind == "cpus":
        return _resolve_cpus(topology, spec)
    table = topology.cpu_table()
    if spec.kind == "all":
        cpus = _one_per_core(list(table), table)
        if not cpus:
            raise ModeError("thread mode 'all' found no usable CPU: %s" % describe(topology))
        return Resolution("all", cpus, None)
    cls = _find_class(topology, spec.name)
    if cls is None:
        names = [c.name for c in topology.ranked_classes()]
        raise ModeError("thread mode %s asks for class '%s', which this board does not have "
                        "(its classes are %s); %s; try %s"
                        % (_echo(spec.text()), spec.name, ", ".join(names) or "none",
                           describe(topology), _suggestions(topology)))
    cores = _one_per_core(cls.cpus, table)
    if not cores:
        raise ModeError("thread mode %s: class '%s' has no usable core (cpus %s are offline or "
                        "not allowed); %s; try %s"
                        % (_echo(spec.text()), cls.name, format_cpulist(cls.cpus) or "none",
                           describe(topology), _suggestions(topology)))
    if spec.count is None:
        return Resolution(spec.text(), cores, cls.name)
    if spec.count > len(cores):
        raise ModeError("thread mode %s asks for %d %s cores but this board has %d (cpus %s); "
                        "try %s:%d or %s"
                        % (_echo(spec.text()), spec.count, spec.name, len(cores),
                           format_cpulist(cores), spec.name, len(cores), spec.name))
    return Resolution(spec.text(), cores[:spec.count], cls.name)


def _resolve_cpus(topology: Topology, spec: ModeSpec) -> Resolution:
    table = topology.cpu_table()
    usable = topology.usable_cpus()
    for cpu in spec.cpus or ():
        info = table.get(cpu)
        if info is None:
            raise ModeError("thread mode %s names CPU %d, which this board does not have "
                            "(present cpus %s); %s; try cpus:%s"
                            % (_echo(spec.text()), cpu, format_cpulist(table) or "none",
                               describe(topology), format_cpulist(usable) or "0"))
        if info.online is False:
            raise ModeError("thread mode %s names CPU %d, which is offline; usable cpus are %s"
                            % (_echo(spec.text()), cpu, format_cpulist(usable) or "none"))
        if info.allowed is False:
            raise ModeError("thread mode %s names CPU %d, which this server may not use (not in "
                            "its affinity mask); usable cpus are %s"
                            % (_echo(spec.text()), cpu, format_cpulist(usable) or "none"))
    cpus = list(spec.cpus or ())
    classes = {table[c].cls for c in cpus}
    cls = classes.pop() if len(classes) == 1 else None
    return Resolution(spec.text(), cpus, cls)
