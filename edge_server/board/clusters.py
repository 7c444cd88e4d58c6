"""Physical clusters: which CPUs share a cache and clock domain, and what said so.

The kernel's lists are the evidence (cluster_cpus_list, core_siblings_list,
cpufreq related_cpus); the SoC's documented layout fills in where they are
silent; a cluster never mixes two classes of core. Works on the probe's
per-CPU records (topology._Cpu: id, smt, cluster_list, core_siblings,
related, cls; cluster is set here).
"""
from typing import Dict, List, Optional, Sequence, Tuple

from edge_common.cpulist import format_cpulist
from edge_server.board import soc as soc_mod


def assign(cpus: Sequence, soc: Optional[soc_mod.Soc], warnings: List[str]) -> List[dict]:
    """Physical clusters from the kernel's lists, split so none mixes two classes.

    Each cluster says where it came from ("source"): the kernel list that
    grouped it, "soc-table" when only the SoC's documented layout did, or
    "core-kind" when nothing did and CPUs of one class were put together.
    """
    groups, evidence = _kernel_groups(cpus, warnings)
    by_id = {c.id: c for c in cpus}
    parts: List[Tuple[List[int], str]] = []
    for group in groups:
        by_class = _split_by_class(group, by_id)
        if len(by_class) > 1:
            broad = sorted({evidence[c][1] for c in group
                            if c in evidence and evidence[c][0] == set(group)}) or \
                sorted({evidence[c][1] for c in group if c in evidence})
            warnings.append("the kernel groups CPUs %s in one cluster (%s) but they are %d "
                            "kinds of core; split into %s" % (
                                format_cpulist(group), "/".join(broad), len(by_class),
                                ", ".join(format_cpulist(p) for p in by_class)))
        parts.extend((part, _part_source(part, evidence)) for part in by_class)
    parts.extend(_ungrouped(cpus, {c for g in groups for c in g}, soc, warnings))
    clusters = []
    for index, (part, source) in enumerate(sorted(parts, key=lambda p: min(p[0]))):
        for cpu_id in part:
            by_id[cpu_id].cluster = index
        clusters.append({"id": index, "cpus": sorted(part), "class": by_id[part[0]].cls,
                         "source": source})
    return clusters


def _part_source(part: List[int], evidence: Dict[int, Tuple[set, str]]) -> str:
    """The list that put exactly these CPUs together, else the lists + "core-kind" (split)."""
    for cpu_id in part:
        if cpu_id in evidence and evidence[cpu_id][0] == set(part):
            return evidence[cpu_id][1]
    used = sorted({evidence[c][1] for c in part if c in evidence})
    return "+".join(used + ["core-kind"])


def _split_by_class(group: List[int], by_id: Dict[int, object]) -> List[List[int]]:
    by_class: Dict[str, List[int]] = {}
    for cpu_id in group:
        if by_id[cpu_id].cls is not None:
            by_class.setdefault(by_id[cpu_id].cls, []).append(cpu_id)
    return list(by_class.values())


# The kernel's grouping lists, in the order they are trusted.
_LISTS = (("cluster_cpus_list", "cluster_list"), ("core_siblings_list", "core_siblings"),
          ("related_cpus", "related"))


def _kernel_groups(cpus: Sequence, warnings: List[str]):
    """Each CPU with the CPUs every informative kernel list puts it with.

    Returns the groups and, per CPU, (its mates, the list that alone names
    them, else every list used joined by "+").

    A list is informative when it names some CPU beyond the CPU's SMT
    siblings: kernels without a DT cpu-map (Raspberry Pi) write one core per
    cluster_cpus_list, Krait and intel_pstate have one cpufreq policy per
    CPU, and hot-unplug leaves a lone CPU in its masks; none of those says
    the CPU is a cluster of one. The lists are intersected, since a
    frequency domain never spans two clusters and arm64 kernels >= 6.0 put
    every CPU in package 0. One exception: a cpufreq policy whose CPUs are
    all one core type is one cluster even where the topology files split it
    (_one_clock_one_kind).
    """
    clusters_known = any(c.cluster_list and set(c.cluster_list) - set(c.smt or [c.id])
                         for c in cpus)
    parent = {c.id: c.id for c in cpus}
    evidence: Dict[int, Tuple[set, str]] = {}
    merged: set = set()

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for cpu in cpus:
        mates, lists = None, []
        for name, attr in _LISTS:
            listed = getattr(cpu, attr)
            if name == "cluster_cpus_list":
                if not clusters_known or not listed:
                    continue  # a cluster of one is real only where others are bigger
            elif not listed or not set(listed) - set(cpu.smt or [cpu.id]):
                continue
            mates = set(listed) if mates is None else mates & set(listed)
            lists.append((name, set(listed)))
        if mates is None:
            continue
        mates.add(cpu.id)
        if _one_clock_one_kind(cpu, mates, cpus):
            mates, lists = set(cpu.related) | {cpu.id}, [("related_cpus", set(cpu.related))]
            if frozenset(mates) not in merged:
                merged.add(frozenset(mates))
                warnings.append("cpufreq clocks CPUs %s (all %s) from one policy, though the "
                                "topology files split them: one cluster of like cores on one "
                                "clock" % (format_cpulist(mates), cpu.uarch))
        exact = [name for name, listed in lists if listed | {cpu.id} == mates]
        evidence[cpu.id] = (mates, exact[0] if exact else "+".join(n for n, _ in lists))
        for other in mates:
            parent[find(other)] = find(cpu.id)
    evidenced = {find(c) for c in evidence}
    groups: Dict[int, List[int]] = {}
    for cpu in cpus:
        if find(cpu.id) in evidenced:
            groups.setdefault(find(cpu.id), []).append(cpu.id)
    return [sorted(g) for g in groups.values()], evidence


def _one_clock_one_kind(cpu, mates: set, cpus: Sequence) -> bool:
    """True when the CPU's cpufreq policy is wider than its topology cluster and every
    CPU of the policy is one known core type.

    A cluster is a group of like cores on one clock: Snapdragon 625 (MSM8953)
    and MediaTek's MT6592/MT6752 run both cpu-map clusters of eight A53/A7s
    from one PLL, so the kernel's one policy is what a thread pool sees.
    Kinds that differ (big.LITTLE, DynamIQ) keep the topology split.
    """
    related = set(cpu.related or [])
    if not related - set(cpu.smt or [cpu.id]) or not related > mates:
        return False
    members = [c for c in cpus if c.id in related and c.online is not False]
    kinds = {c.uarch for c in members}
    return len(kinds) == 1 and None not in kinds and len(_topology_groups(members)) > 1


def _topology_groups(cpus: Sequence) -> set:
    """The distinct informative topology clusters of these CPUs (hot-unplug shrinks
    a CPU's masks, which is no split: a list naming only the CPU is not counted)."""
    groups = set()
    for cpu in cpus:
        for listed in (cpu.cluster_list, cpu.core_siblings):
            if listed and set(listed) - set(cpu.smt or [cpu.id]):
                groups.add(frozenset(listed))
                break
    return groups


def _ungrouped(cpus: Sequence, grouped: set, soc: Optional[soc_mod.Soc],
               warnings: List[str]) -> List[Tuple[List[int], str]]:
    """CPUs no kernel list groups: the SoC's documented clusters, else one per class."""
    left = [c for c in cpus if c.id not in grouped and c.cls is not None]
    if not left:
        return []
    layout = soc.clusters(len(cpus)) if soc is not None else None
    order = {cpu_id: i for i, cpu_id in enumerate(sorted(c.id for c in cpus))}
    by_id = {c.id: c for c in cpus}
    result: List[Tuple[List[int], str]] = []
    if layout is not None:
        index_of = {i: n for n, (ids, _) in enumerate(layout) for i in ids}
        by_layout: Dict[int, List[int]] = {}
        for cpu in left:
            by_layout.setdefault(index_of[order[cpu.id]], []).append(cpu.id)
        for members in by_layout.values():
            result.extend((part, "soc-table") for part in _split_by_class(members, by_id))
        how = "the documented layout of %s" % soc.name
    else:
        by_class: Dict[str, List[int]] = {}
        for cpu in left:
            by_class.setdefault(cpu.cls, []).append(cpu.id)
        result = [(ids, "core-kind") for ids in by_class.values()]
        how = "one cluster per core class"
    warnings.append("no topology or cpufreq file groups CPUs %s with another CPU: their "
                    "clusters follow %s" % (format_cpulist(c.id for c in left), how))
    return result
