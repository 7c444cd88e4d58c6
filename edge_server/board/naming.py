"""Which microarchitecture each CPU is, and how we know it (the "uarch_source").

Evidence, strongest first; a weaker source only names CPUs no stronger one named:

  midr_el1        cpuN/regs/identification/midr_el1 (arm64 >= 4.7): per core,
                  whichever CPU ran the read;
  cpuinfo         that CPU's own /proc/cpuinfo block;
  frequency       an unnamed CPU (offline: no cpuinfo block) in the cpufreq
                  domain of named CPUs of one uarch, or with their exact max
                  frequency and capacity;
  cpuinfo-global  the one CPU block of old kernels: it describes the CPU that
                  ran the read, so it names every core only when the other
                  facts say the cores are alike (one max frequency, one
                  capacity, one package), or all online CPUs when they are (the
                  reading CPU was online); otherwise only the cluster it can be
                  tied to (the SoC table, else fast/slow by its uarch);
  soc-table       the documented layout of the SoC the board names (soc.py);
  guess           the usual big.LITTLE partner of a global block's core, or
                  of the one core type named when other online CPUs are named
                  by nothing (always with a warning).
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from edge_common.cpulist import format_cpulist
from edge_server.board import uarch as uarch_mod
from edge_server.board.procinfo import ProcInfo, format_midr
from edge_server.board.soc import Soc

# Cores that sit in the slow cluster of a big.LITTLE pair.
LITTLE = {"cortex-a5", "cortex-a7", "cortex-a35", "cortex-a53", "cortex-a55", "cortex-a510",
          "cortex-a520"}
# The usual partner of a core in big.LITTLE SoCs (vendor product lines). A
# Cortex-A53 is most often paired with more A53s at another clock (the
# octa-A53 phones of 2014-2017 outnumber the A53+A57/A72 ones).
PARTNER = {"cortex-a7": "cortex-a15", "cortex-a53": "cortex-a53", "cortex-a55": "cortex-a76",
           "cortex-a510": "cortex-a710", "cortex-a15": "cortex-a7", "cortex-a17": "cortex-a7",
           "cortex-a57": "cortex-a53", "cortex-a72": "cortex-a53", "cortex-a73": "cortex-a53",
           "exynos-m1": "cortex-a53", "exynos-m2": "cortex-a53", "cortex-a75": "cortex-a55",
           "cortex-a76": "cortex-a55", "cortex-a77": "cortex-a55", "cortex-a78": "cortex-a55",
           "exynos-m3": "cortex-a55", "exynos-m4": "cortex-a55", "exynos-m5": "cortex-a55",
           "cortex-x1": "cortex-a55", "cortex-a710": "cortex-a510", "denver-2": "cortex-a57"}


def name_cores(cpus: Sequence, info: Optional[ProcInfo], soc: Optional[Soc],
               warnings: List[str]) -> None:
    """Set uarch/uarch_source (and midr) on every CPU some evidence names.

    cpus: objects with id, online, midr, uarch, uarch_source, record,
    max_freq, capacity, package, related (topology._Cpu).
    """
    _from_cpuinfo_blocks(cpus, info)
    _from_frequency_domain(cpus)
    deferred = None
    if info is not None and _unnamed(cpus):
        deferred = _from_global_block(cpus, info, soc, warnings)
    if soc is not None and _unnamed(cpus):
        _from_soc(cpus, soc, warnings)
    for cpu in cpus:
        if deferred is not None and cpu.uarch_source == "soc-table" and cpu.uarch == deferred:
            cpu.uarch_source = "cpuinfo-global"  # the global block and the table agree
    _from_frequency_domain(cpus)
    _guess_the_rest(cpus, warnings)
    _warn_unknown(cpus, warnings)


def _unnamed(cpus: Sequence) -> list:
    """CPUs no evidence has named yet (an undecodable MIDR is evidence: it stays null)."""
    return [c for c in cpus if c.uarch_source is None]


def _set(cpu, uarch: Optional[str], source: str) -> None:
    cpu.uarch, cpu.uarch_source = uarch, source


def _from_cpuinfo_blocks(cpus: Sequence, info: Optional[ProcInfo]) -> None:
    for cpu in cpus:
        if cpu.midr is not None:  # read from midr_el1 already
            _set(cpu, uarch_mod.decode_midr(cpu.midr), "midr_el1")
            continue
        midr = cpu.record.midr() if cpu.record is not None else None
        if midr is not None:
            cpu.midr = midr
            _set(cpu, uarch_mod.decode_midr(midr), "cpuinfo")


def _from_frequency_domain(cpus: Sequence) -> None:
    """An unnamed CPU in the cpufreq policy of named CPUs of exactly one uarch, else
    (per-core policies, as on Krait) with the max frequency and capacity of exactly one.

    This is how a CPU that was offline when /proc/cpuinfo was read gets named.
    """
    by_id = {c.id: c for c in cpus}
    for cpu in _unnamed(cpus):
        mates = {by_id[m].uarch for m in cpu.related or []
                 if m != cpu.id and m in by_id and by_id[m].uarch is not None}
        if not mates and cpu.max_freq is not None:
            mates = {c.uarch for c in cpus if c.uarch is not None
                     and (c.max_freq, c.capacity) == (cpu.max_freq, cpu.capacity)}
        if len(mates) == 1:
            _set(cpu, mates.pop(), "frequency")


def _alike(cpus: Sequence) -> bool:
    """One max frequency, one capacity and one package among the CPUs that say."""
    for attr in ("max_freq", "capacity", "package"):
        if len({getattr(c, attr) for c in cpus if getattr(c, attr) is not None}) > 1:
            return False
    return True


def _online_alike(cpus: Sequence) -> bool:
    """The online CPUs provably alike: each has a max frequency or capacity, they share
    one of each and one package, and no topology or cpufreq list splits them."""
    online = [c for c in cpus if c.online]
    if not online or any(c.max_freq is None and c.capacity is None for c in online):
        return False
    if not _alike(online):
        return False
    ids = {c.id for c in online}
    for attr in ("cluster_list", "core_siblings", "related"):
        groups = {frozenset(set(getattr(c, attr)) & ids) for c in online
                  if getattr(c, attr) and set(getattr(c, attr)) - {c.id}}
        if len(groups) > 1:
            return False
    return True


def _from_global_block(cpus: Sequence, info: ProcInfo, soc: Optional[Soc],
                       warnings: List[str]) -> Optional[str]:
    """Name CPUs from the global block; returns its uarch when the SoC table is to place it."""
    midr = info.global_midr()
    if midr is None:
        return None
    name = uarch_mod.decode_midr(midr)
    if name is None:
        warnings.append("/proc/cpuinfo: the global CPU block's MIDR %s is not a core this "
                        "probe knows" % format_midr(midr))
        return None
    unnamed = _unnamed(cpus)
    named = {c.uarch for c in cpus if c.uarch is not None}
    soc_kinds = soc.uarchs() if soc is not None and soc.clusters(len(cpus)) else []
    if _alike(cpus) and named <= {name} and len(soc_kinds) <= 1:
        for cpu in unnamed:
            _set(cpu, name, "cpuinfo-global")
        return None
    if soc is not None and soc.uarchs() == [name] and soc.clusters(len(cpus)):
        for cpu in unnamed:  # the SoC has one core type, and the block shows which
            _set(cpu, name, "cpuinfo-global")
        return None
    online = [c for c in unnamed if c.online]
    if online and _online_alike(cpus) and \
            {c.uarch for c in cpus if c.online and c.uarch is not None} <= {name}:
        # The CPU that ran the read was online, and the online CPUs are one kind.
        for cpu in online:
            _set(cpu, name, "cpuinfo-global")
        warnings.append("/proc/cpuinfo prints one global CPU block (%s, %s); the online CPUs "
                        "%s run at one clock in one cluster, and one of them ran the read, so "
                        "it names them all; offline CPUs come from weaker evidence"
                        % (format_midr(midr), name, format_cpulist(c.id for c in online)))
        return None
    if soc is not None and name in soc.uarchs() and soc.clusters(len(cpus)):
        warnings.append("/proc/cpuinfo prints one global CPU block (%s, %s) and the cores "
                        "differ: it names only the %s cores of %s (%s %r); the others come "
                        "from the SoC table" % (format_midr(midr), name, name, soc.name,
                                               soc.source, soc.text))
        return name
    groups = _speed_groups(unnamed)
    if groups is not None and len(groups) == 1 and named <= {name}:
        # Several packages (clusters), one clock and capacity: octa-A53 style.
        for cpu in unnamed:
            _set(cpu, name, "cpuinfo-global")
        warnings.append("/proc/cpuinfo prints one global CPU block (%s, %s); the CPUs are in "
                        "several packages but run at one clock and capacity, so it is taken "
                        "for all of them" % (format_midr(midr), name))
        return None
    if groups is None or len(groups) < 2:
        warnings.append("/proc/cpuinfo prints one global CPU block (%s, %s) for whichever "
                        "CPU ran the read, and the cores differ; it cannot be tied to a "
                        "cluster, so uarch is left null" % (format_midr(midr), name))
        return None
    tied = groups[-1] if name in LITTLE else groups[0]
    for cpu in tied:
        _set(cpu, name, "cpuinfo-global")
    rest = [c for g in groups if g is not tied for c in g]
    partner = _partner(name, tied, rest)
    for cpu in rest:
        _set(cpu, partner, "guess")
    warnings.append("/proc/cpuinfo prints one global CPU block (%s, %s) and the cores "
                    "differ: tied to the %s CPUs %s by speed; CPUs %s are guessed as %s, its "
                    "usual big.LITTLE partner" % (
                        format_midr(midr), name, "slowest" if name in LITTLE else "fastest",
                        format_cpulist(c.id for c in tied), format_cpulist(c.id for c in rest),
                        partner or "unknown"))
    return None


def _partner(name: str, tied: Sequence, rest: Sequence) -> Optional[str]:
    """The uarch of the CPUs the global block does not describe.

    With cpu_capacity on both sides, capacity per MHz is the DT's
    capacity-dmips-mhz: equal means the same core at another clock.
    """
    def per_mhz(cpus):
        values = {(c.capacity / c.max_freq) for c in cpus if c.capacity and c.max_freq}
        return values.pop() if len(values) == 1 else None

    mine, theirs = per_mhz(tied), per_mhz(rest)
    if mine and theirs:
        if abs(mine - theirs) <= 0.05 * max(mine, theirs):
            return name
        if name == PARTNER.get(name):
            return None  # another core, and nothing says which
    return PARTNER.get(name)


def _guess_the_rest(cpus: Sequence, warnings: List[str]) -> None:
    """Online CPUs nothing named, on a board whose named CPUs are all one core type:
    the usual partner of that core, by which side of it they are on."""
    rest = [c for c in _unnamed(cpus) if c.online]
    named = [c for c in cpus if c.uarch is not None and c.online]
    kinds = {c.uarch for c in named}
    if not rest or len(kinds) != 1 or _speed_groups(rest) is None \
            or _speed_groups(named) is None:
        return
    name = kinds.pop()
    faster = min(_speed_key(c) for c in rest) > max(_speed_key(c) for c in named)
    slower = max(_speed_key(c) for c in rest) < min(_speed_key(c) for c in named)
    if not ((faster and name in LITTLE) or (slower and name not in LITTLE)):
        return
    partner = _partner(name, named, rest)
    for cpu in rest:
        _set(cpu, partner, "guess")
    warnings.append("CPUs %s are online but no evidence names their core; the others are "
                    "%s, so they are guessed as %s, its usual big.LITTLE partner"
                    % (format_cpulist(c.id for c in rest), name, partner or "unknown"))


def _speed_key(cpu) -> Tuple[int, int]:
    return (cpu.capacity or 0, cpu.max_freq or 0)


def _speed_groups(cpus: Sequence) -> Optional[List[list]]:
    """CPUs grouped by (capacity, max frequency), fastest group first; None if unknown."""
    if not cpus or any(c.capacity is None and c.max_freq is None for c in cpus):
        return None
    groups: Dict[Tuple[int, int], list] = {}
    for cpu in cpus:
        groups.setdefault(_speed_key(cpu), []).append(cpu)
    return [groups[k] for k in sorted(groups, reverse=True)]


def _from_soc(cpus: Sequence, soc: Soc, warnings: List[str]) -> None:
    layout = soc.clusters(len(cpus))
    if layout is None:
        warnings.append("%s names SoC %s (%r), but the board has %d CPUs where its documented "
                        "layout has a different count; the table is not used"
                        % (soc.source, soc.name, soc.text, len(cpus)))
        return
    unnamed = _unnamed(cpus)
    by_speed = _layout_by_speed(unnamed, layout) if len(unnamed) == len(cpus) else None
    left = _slots_left(cpus, layout) if by_speed is None else None
    if left is not None and len(left) == 1 and len(unnamed) <= sum(left.values()):
        by_speed = {c.id: next(iter(left)) for c in unnamed}
    position = {cpu_id: index for index, cpu_id in
                enumerate(sorted(c.id for c in cpus))}
    by_order = {}
    for ids, uarch in layout:
        for index in ids:
            by_order[index] = uarch
    for cpu in unnamed:
        name = by_speed[cpu.id] if by_speed else by_order.get(position[cpu.id])
        _set(cpu, name, "soc-table")


def _slots_left(cpus: Sequence, layout) -> Optional[Dict[str, int]]:
    """The layout's cores no named CPU takes ({uarch: count}), None when the named CPUs
    do not fit it: when the online CPUs are named, the offline ones are what is left,
    whatever the kernel's CPU numbering."""
    left: Dict[str, int] = {}
    for ids, uarch in layout:
        left[uarch] = left.get(uarch, 0) + len(ids)
    for cpu in cpus:
        if cpu.uarch_source is None:
            continue
        if left.get(cpu.uarch, 0) == 0:
            return None
        left[cpu.uarch] -= 1
    return {u: n for u, n in left.items() if n}


def _layout_by_speed(cpus: Sequence, layout) -> Optional[Dict[int, str]]:
    """Match the layout's uarchs to CPUs by speed: fastest CPUs get the highest-tier core.

    Needed because CPU numbering differs between kernels of one SoC (some
    boot on the big cluster). None when speeds are unknown or a speed group
    would straddle two kinds of core.
    """
    uarchs = {u for _, u in layout}
    if len(uarchs) == 1:
        only = uarchs.pop()
        return {c.id: only for c in cpus}
    groups = _speed_groups(cpus)
    if groups is None or len(groups) < 2:
        return None
    rank: Callable[[str], int] = lambda u: uarch_mod.perf_rank(u) or 0
    slots = [u for ids, u in sorted(layout, key=lambda item: -rank(item[1])) for _ in ids]
    result, start = {}, 0
    for group in groups:
        kinds = set(slots[start:start + len(group)])
        if len(kinds) != 1:
            return None
        kind = kinds.pop()
        for cpu in group:
            result[cpu.id] = kind
        start += len(group)
    return result


def _warn_unknown(cpus: Sequence, warnings: List[str]) -> None:
    unknown: Dict[int, List[int]] = {}
    for cpu in cpus:
        if cpu.uarch is None and cpu.midr is not None:
            unknown.setdefault(cpu.midr, []).append(cpu.id)
    for midr, ids in sorted(unknown.items()):
        warnings.append("CPUs %s: MIDR %s (implementer 0x%02x, part 0x%03x) is not a core "
                        "this probe knows; uarch null" % (format_cpulist(ids), format_midr(midr),
                                                          (midr >> 24) & 0xFF,
                                                          (midr >> 4) & 0xFFF))
    missing = [c.id for c in cpus if c.uarch is None and c.midr is None and c.online is not False]
    x86 = any(c.record is not None and c.record.flags for c in cpus)  # no MIDR there
    if missing and not x86:
        warnings.append("online CPUs %s: no MIDR (midr_el1, /proc/cpuinfo) and no known SoC "
                        "names their core; uarch is unknown" % format_cpulist(missing))
