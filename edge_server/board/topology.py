"""The board's CPU topology: what each core is, how cores group, what TVM should target.

TVM's own detection reads only cpuinfo_max_freq and splits cores into two
groups, which is wrong on tri-cluster phones, binned RK3588s, boards with
offline cores and x86 with SMT. This probe collects kernel facts per CPU
(sysfs topology, cpufreq, capacity, MIDR from /proc/cpuinfo) and derives:

- physical clusters (cache/frequency domains) from the kernel's own lists,
  split where they would mix two kinds of core;
- core classes (kinds of core: uarch, capacity, max frequency, Intel hybrid
  type) ranked fastest first, which is what thread modes name;
- the ISA features and a TVM target dict.

Every file comes through edge_server.board.sysfs under an injectable root, so the
same code runs on a fixture tree. A fact the kernel does not give stays None
(it is never guessed from another board); anything unreadable is a warning.
"""
import os
import platform
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from edge_server.board import arch as arch_mod
from edge_server.board import clusters as clusters_mod
from edge_server.board import isa as isa_mod
from edge_server.board import naming
from edge_server.board import soc as soc_mod
from edge_server.board import uarch as uarch_mod
from edge_common.cpulist import format_cpulist
from edge_server.board.procinfo import ProcInfo, ProcessorRecord, format_midr
from edge_server.board.procinfo import parse as parse_cpuinfo
from edge_server.board.sysfs import Reader

SCHEMA = 1
CPU_DIR = "sys/devices/system/cpu"
CLASS_NAMES = {1: ["big"], 2: ["big", "little"], 3: ["prime", "big", "little"],
               4: ["prime", "big", "mid", "little"]}
MTRIPLES = {"aarch64": "aarch64-linux-gnu", "armv7l": "armv7l-linux-gnueabihf",
            "x86_64": "x86_64-linux-gnu"}
# Intel hybrid PMU devices: which CPUs are P-cores ("core") and E-cores ("atom").
HYBRID_TYPES = (("core", "sys/devices/cpu_core/cpus"), ("atom", "sys/devices/cpu_atom/cpus"))
_HYBRID_ORDER = {"core": 0, "atom": 1}
# DMI strings firmware vendors leave in place of a real name.
_DMI_PLACEHOLDERS = {"", "to be filled by o.e.m.", "system product name", "default string",
                     "system manufacturer", "not applicable", "none"}


class ProbeError(RuntimeError):
    """No CPU could be found at all: nothing else makes the probe give up."""


# A core "kind": (uarch or undecoded-MIDR key, hybrid type, max kHz, capacity).
Kind = Tuple[Optional[str], Optional[str], Optional[int], Optional[int]]


@dataclass
class _Cpu:
    """Every fact read about one present CPU; None = the kernel did not say."""

    id: int
    online: Optional[bool] = None
    allowed: Optional[bool] = None
    record: Optional[ProcessorRecord] = None
    midr: Optional[int] = None
    uarch: Optional[str] = None
    uarch_source: Optional[str] = None
    max_freq: Optional[int] = None
    capacity: Optional[int] = None
    core_id: Optional[int] = None
    package: Optional[int] = None
    smt: Optional[List[int]] = None
    cluster_list: Optional[List[int]] = None
    core_siblings: Optional[List[int]] = None
    related: Optional[List[int]] = None
    hybrid: Optional[str] = None
    cls: Optional[str] = None
    cluster: Optional[int] = None

    @property
    def kind(self) -> Kind:
        key = self.uarch
        if key is None and self.midr is not None:
            key = "midr:" + format_midr(self.midr)
        return (key, self.hybrid, self.max_freq, self.capacity)


def probe(root: str = "/") -> dict:
    """The topology document (schema 1) of the board whose files are under root."""
    if not os.path.isdir(root):
        raise ProbeError("root %s is not a directory; give the directory that holds the "
                         "board's proc/ and sys/ (or / for this machine)" % root)
    reader = Reader(root)
    live = os.path.realpath(root) == "/"
    info = _read_cpuinfo(reader)
    ids = _present_cpus(reader, info)
    cpus = [_Cpu(cpu) for cpu in ids]
    _read_online(reader, cpus, info)
    _note_isolated(reader, cpus)
    _read_allowed(cpus, live, reader.warnings)
    _read_sysfs(reader, cpus)
    for cpu in cpus:
        cpu.record = info.processors.get(cpu.id) if info is not None else None
    soc = _identify_soc(reader, info)
    naming.name_cores(cpus, info, soc, reader.warnings)
    classes = _assign_classes(cpus, reader.warnings)
    clusters = clusters_mod.assign(cpus, soc, reader.warnings)
    elf = _own_elf(live, reader.warnings)
    arch = _arch(info, elf, reader.warnings)
    isa = _isa(info, cpus, live, reader.warnings)
    return {
        "schema": SCHEMA,
        "board": _board(reader, info),
        "arch": arch,
        "cpus": [_cpu_doc(c) for c in cpus],
        "clusters": clusters,
        "classes": classes,
        "isa": isa,
        "tvm_target": _tvm_target(arch, elf, isa, classes, cpus, reader.warnings),
        "warnings": _unique(reader.warnings),
    }


# ---------------------------------------------------------------- reading


def _read_cpuinfo(reader: Reader) -> Optional[ProcInfo]:
    text = reader.text("proc/cpuinfo", strip=False)
    if text is None:
        if not reader.exists("proc/cpuinfo"):
            reader.warnings.append("/proc/cpuinfo is missing: uarch, MIDR and ISA "
                                   "features are unknown")
        return None
    info = parse_cpuinfo(text)
    reader.warnings.extend("/proc/cpuinfo: " + w for w in info.warnings)
    return info


def _identify_soc(reader: Reader, info: Optional[ProcInfo]) -> Optional[soc_mod.Soc]:
    """The known SoC the board names (device tree, cpuinfo Hardware/Revision, build.prop)."""
    glob = {k.lower(): v for k, v in (info.global_fields if info else {}).items()}
    return soc_mod.identify(reader, glob.get("hardware"), glob.get("revision"))


def _present_cpus(reader: Reader, info: Optional[ProcInfo]) -> List[int]:
    """Present CPUs: the kernel's list, else cpuN directories, else cpuinfo."""
    present = reader.cpulist(CPU_DIR + "/present")
    if present:
        return present
    dirs = sorted(int(name[3:]) for name in reader.listdir(CPU_DIR)
                  if name.startswith("cpu") and name[3:].isascii() and name[3:].isdigit())
    if dirs:
        reader.warnings.append("/%s/present is missing or empty; CPUs taken from the "
                               "cpuN directories: %s" % (CPU_DIR, format_cpulist(dirs)))
        return dirs
    if info is not None and info.processors:
        found = sorted(info.processors)
        reader.warnings.append("no CPUs listed under /%s; CPUs taken from /proc/cpuinfo: %s"
                               % (CPU_DIR, format_cpulist(found)))
        return found
    raise ProbeError("no CPU found under %s: /%s/present, the cpuN directories and "
                     "/proc/cpuinfo name none; point --root at a directory holding the "
                     "board's proc/ and sys/" % (reader.root, CPU_DIR))


def _read_online(reader: Reader, cpus: List[_Cpu], info: Optional[ProcInfo]) -> None:
    """online from the kernel's list; else per-CPU online files; else cpuinfo listing."""
    online = reader.cpulist(CPU_DIR + "/online")
    ids = {c.id for c in cpus}
    if online == []:  # the kernel always has a CPU online: a failed capture, not a fact
        reader.warnings.append("/%s/online is empty; online CPUs are taken from the cpuN/online "
                               "files and /proc/cpuinfo instead" % CPU_DIR)
        online = None
    if online is not None:
        stray = sorted(set(online) - ids)
        if stray:
            reader.warnings.append("/%s/online lists CPUs %s that are not present; ignored"
                                   % (CPU_DIR, format_cpulist(stray)))
        for cpu in cpus:
            cpu.online = cpu.id in online
        return
    listed = set(info.processors) if info is not None else set()
    for cpu in cpus:
        flag = reader.integer("%s/cpu%d/online" % (CPU_DIR, cpu.id))
        if flag in (0, 1):
            cpu.online = flag == 1
        elif cpu.id in listed:
            cpu.online = True  # /proc/cpuinfo lists only online processors
    unknown = [c.id for c in cpus if c.online is None]
    if unknown:
        reader.warnings.append("cannot tell whether CPUs %s are online (no /%s/online)"
                               % (format_cpulist(unknown), CPU_DIR))


def _note_isolated(reader: Reader, cpus: List[_Cpu]) -> None:
    """isolcpus= CPUs stay in their classes; say so, since the scheduler leaves them idle."""
    isolated = [c for c in reader.cpulist(CPU_DIR + "/isolated") or []
                if c in {cpu.id for cpu in cpus}]
    if isolated:
        reader.warnings.append("CPUs %s are isolated (isolcpus=): the scheduler does not "
                               "balance onto them; a thread mode can still pin to them when "
                               "they are allowed" % format_cpulist(isolated))


def _read_allowed(cpus: List[_Cpu], live: bool, warnings: List[str]) -> None:
    """The affinity of this process on the live board; a dump's allowed set is its online set."""
    if not live:
        for cpu in cpus:
            cpu.allowed = cpu.online
        return
    try:
        affinity = os.sched_getaffinity(0)
    except (AttributeError, OSError) as exc:
        warnings.append("cannot read this process's CPU affinity: %s" % exc)
        return
    for cpu in cpus:
        cpu.allowed = cpu.id in affinity


def _read_sysfs(reader: Reader, cpus: List[_Cpu]) -> None:
    ids = {c.id for c in cpus}
    policies = None
    for cpu in cpus:
        base = "%s/cpu%d" % (CPU_DIR, cpu.id)
        cpu.core_id = reader.integer(base + "/topology/core_id")
        cpu.package = reader.integer(base + "/topology/physical_package_id")
        cpu.smt = _within(reader.cpulist(base + "/topology/thread_siblings_list"), ids)
        cpu.cluster_list = _within(reader.cpulist(base + "/topology/cluster_cpus_list"), ids)
        cpu.core_siblings = _within(reader.cpulist(base + "/topology/core_siblings_list"), ids)
        cpu.capacity = reader.integer(base + "/cpu_capacity")
        cpu.max_freq = reader.integer(base + "/cpufreq/cpuinfo_max_freq")
        cpu.related = _within(reader.cpu_numbers(base + "/cpufreq/related_cpus"), ids)
        midr = reader.hex_register(base + "/regs/identification/midr_el1")
        cpu.midr = None if midr is None else midr & 0xFFFFFFFF
        if cpu.max_freq is None and cpu.related is None:
            if policies is None:
                policies = _read_policies(reader)
            cpu.related, cpu.max_freq = policies.get(cpu.id, (None, None))
            cpu.related = _within(cpu.related, ids)
    _share_policies(cpus)
    _read_hybrid(reader, cpus)
    _warn_missing(reader.warnings, cpus)


def _share_policies(cpus: List[_Cpu]) -> None:
    """An offline CPU loses its cpuN/cpufreq link on old kernels, but its policy's
    related_cpus (read through an online sibling) still names it."""
    for cpu in cpus:
        if cpu.related is not None:
            continue
        owner = next((o for o in cpus if o.related and cpu.id in o.related), None)
        if owner is not None:
            cpu.related = owner.related
            if cpu.max_freq is None:
                cpu.max_freq = owner.max_freq


def _read_policies(reader: Reader) -> Dict[int, Tuple[Optional[List[int]], Optional[int]]]:
    """cpufreq/policyN, for CPUs whose cpuN/cpufreq link is gone (offline CPUs on some kernels)."""
    by_cpu: Dict[int, Tuple[Optional[List[int]], Optional[int]]] = {}
    base = CPU_DIR + "/cpufreq"
    for name in reader.listdir(base):
        if not (name.startswith("policy") and name[6:].isascii() and name[6:].isdigit()):
            continue
        related = reader.cpu_numbers("%s/%s/related_cpus" % (base, name))
        max_freq = reader.integer("%s/%s/cpuinfo_max_freq" % (base, name))
        for cpu in related or []:
            by_cpu.setdefault(cpu, (related, max_freq))
    return by_cpu


def _read_hybrid(reader: Reader, cpus: List[_Cpu]) -> None:
    by_id = {c.id: c for c in cpus}
    for hybrid, path in HYBRID_TYPES:
        for cpu_id in reader.cpulist(path) or []:
            if cpu_id in by_id:
                by_id[cpu_id].hybrid = hybrid


def _warn_missing(warnings: List[str], cpus: List[_Cpu]) -> None:
    """One line per kind of missing fact on online CPUs (offline ones lack them normally)."""
    online = [c for c in cpus if c.online is not False]
    no_freq = [c.id for c in online if c.max_freq is None]
    if no_freq:
        warnings.append("no cpufreq cpuinfo_max_freq for CPUs %s (kernel without a cpufreq "
                        "driver?): their max_freq_khz is unknown" % format_cpulist(no_freq))
    no_topo = [c.id for c in online if c.smt is None and c.core_siblings is None
               and c.cluster_list is None]
    if no_topo:
        warnings.append("no topology files for CPUs %s: SMT siblings and clusters come from "
                        "weaker evidence" % format_cpulist(no_topo))


def _within(cpus: Optional[List[int]], ids) -> Optional[List[int]]:
    return None if cpus is None else [c for c in cpus if c in ids]


# ------------------------------------------------------------ classes


def _assign_classes(cpus: List[_Cpu], warnings: List[str]) -> List[dict]:
    """Group CPUs of one kind into classes, ranked fastest first, and name them."""
    kinds = _effective_kinds(cpus, warnings)
    members: Dict[Kind, List[int]] = {}
    for cpu in cpus:
        if kinds[cpu.id] is not None:
            members.setdefault(kinds[cpu.id], []).append(cpu.id)
    # A class known only by its core type (offline CPUs named by the SoC table)
    # has no speed to compare: then the core type ranks first.
    by_tier = any(k[2] is None and k[3] is None and k[0] is not None for k in members)
    ordered = sorted(members, key=lambda k: _rank_key(k, members[k], by_tier))
    names = CLASS_NAMES.get(len(ordered)) or ["class%d" % i for i in range(len(ordered))]
    by_id = {c.id: c for c in cpus}
    classes = []
    for rank, (kind, name) in enumerate(zip(ordered, names)):
        for cpu_id in members[kind]:
            by_id[cpu_id].cls = name
        classes.append({"name": name, "rank": rank, "cpus": members[kind],
                        "uarch": _kind_uarch(kind), "max_freq_khz": kind[2],
                        "capacity": kind[3]})
    return classes


def _effective_kinds(cpus: List[_Cpu], warnings: List[str]) -> Dict[int, Optional[Kind]]:
    """Each CPU's kind, completing partly known CPUs (offline ones) from kernel facts.

    An offline CPU has no cpuinfo block, so its uarch is unknown; if its
    known facts (max frequency, capacity) fit exactly one fuller kind, best
    one its frequency domain or cluster shares, it belongs to that class. Its
    own uarch field stays null. A CPU that fits several kinds gets no class.
    """
    own = {c.id: c.kind for c in cpus}
    result: Dict[int, Optional[Kind]] = {}
    unplaced = []
    for cpu in cpus:
        richer = {k for k in set(own.values()) if k != cpu.kind and _fits(cpu.kind, k)}
        richer = {k for k in richer if not any(o != k and _fits(k, o) for o in richer)}
        if not richer:
            result[cpu.id] = cpu.kind
            continue
        mates = set(cpu.related or []) | set(cpu.cluster_list or []) | set(cpu.core_siblings or [])
        near = {own[m] for m in mates if m != cpu.id and m in own} & richer
        choice = near if len(near) == 1 else richer
        if len(choice) == 1:
            result[cpu.id] = next(iter(choice))
        else:
            result[cpu.id] = None
            unplaced.append(cpu.id)
    if unplaced:
        warnings.append("CPUs %s: too little is known about them to tell their core class "
                        "(offline, no cpuinfo block); they are in no class"
                        % format_cpulist(unplaced))
    return result


def _fits(partial: Kind, fuller: Kind) -> bool:
    return all(p is None or p == f for p, f in zip(partial, fuller))


def _rank_key(kind: Kind, members: List[int], by_tier: bool = False):
    """Fastest first: capacity, then Intel P before E, then max frequency, then uarch tier
    (by_tier: uarch tier first, for classes whose speed is unknown)."""
    _, hybrid, max_freq, capacity = kind
    tier = uarch_mod.perf_rank(_kind_uarch(kind))
    key = (_desc(capacity), _HYBRID_ORDER.get(hybrid, 0.5) if hybrid else 0.5,
           _desc(max_freq), _desc(tier), min(members))
    return (_desc(tier),) + key if by_tier else key


def _desc(value: Optional[int]):
    """Sort key: larger first, unknown last."""
    return (1, 0) if value is None else (0, -value)


def _kind_uarch(kind: Kind) -> Optional[str]:
    key = kind[0]
    return None if key is None or key.startswith("midr:") else key


# ---------------------------------------------------- arch, ISA, target


def _own_elf(live: bool, warnings: List[str]) -> Optional[arch_mod.ElfArch]:
    """What this server process is built for, on the live board only."""
    if not live:
        return None
    try:
        return arch_mod.read("/proc/self/exe")
    except (OSError, arch_mod.ElfError) as exc:
        warnings.append("cannot read the ELF header of /proc/self/exe (%s); arch comes from "
                        "/proc/cpuinfo" % exc)
        return None


def _arch(info: Optional[ProcInfo], elf: Optional[arch_mod.ElfArch],
          warnings: List[str]) -> Optional[str]:
    """The arch TVM must build for: the server's own ELF on the live board.

    /proc/cpuinfo describes the kernel's CPU (under qemu-user, the host's),
    so it only decides for a fixture or capture root, and between ARMv6 and
    ARMv7 for a 32-bit ARM userland (the ELF header does not say).
    """
    from_cpuinfo = _arch_from_cpuinfo(info) if info is not None else None
    if elf is not None and elf.arch is not None:
        if elf.arch == "armv7l" and from_cpuinfo == "armv6l":
            return "armv6l"
        return elf.arch
    found = from_cpuinfo
    if found is None and elf is not None:
        found = platform.machine() or None
    if found is None:
        warnings.append("/proc/cpuinfo gives no architecture evidence; arch unknown")
    return found


_ARM32_HWCAPS = {"neon", "vfp", "vfpv3", "vfpv4", "thumb", "half", "edsp"}


def _arch_from_cpuinfo(info: ProcInfo) -> Optional[str]:
    """The userland that read this cpuinfo: 32-bit ARM readers see arm hwcaps, even on arm64."""
    records = list(info.processors.values())
    archs = {r.architecture for r in records if r.architecture}
    glob = {k.lower(): v for k, v in info.global_fields.items()}
    if glob.get("cpu architecture"):
        archs.add(glob["cpu architecture"])
    names = " ".join([r.model_name or "" for r in records] + [glob.get("processor", ""),
                                                              glob.get("model name", "")])
    features = {w.lower() for r in records for w in (r.features or [])}
    features.update(w.lower() for w in glob.get("features", "").split())
    if "(v6l)" in names:
        return "armv6l"
    if "asimd" not in features and features & _ARM32_HWCAPS:
        return "armv7l"
    if archs & {"8", "AArch64"} or "AArch64" in names:
        return "aarch64"
    if "(v7l)" in names or "7" in archs:
        return "armv7l"
    flags = set()
    for r in records:
        flags.update(r.flags or [])
    if flags:
        return "x86_64" if "lm" in flags else "i686"
    return None


def _isa(info: Optional[ProcInfo], cpus: List[_Cpu], live: bool,
         warnings: List[str]) -> List[str]:
    """Features every online core reports; the global Features line on old kernels."""
    records = [c.record for c in cpus
               if c.record is not None and (c.record.features or c.record.flags)]
    if records:
        common = isa_mod.common_features(records)
        every = set().union(*(isa_mod.isa_features(r) for r in records))
        if set(common) != every:
            warnings.append("processors report different ISA features (%s not on all); isa "
                            "lists those every core has" % " ".join(sorted(every - set(common))))
        return common
    glob = {k.lower(): v for k, v in (info.global_fields if info else {}).items()}
    if glob.get("features"):
        return sorted({w.lower() for w in glob["features"].split()})
    if live:
        return _cpuinfo_package_flags(warnings)
    return []


def _cpuinfo_package_flags(warnings: List[str]) -> List[str]:
    """py-cpuinfo as the last resort on the live machine (it may run cpuid itself)."""
    try:
        import cpuinfo  # py-cpuinfo
        return sorted({f.lower() for f in cpuinfo.get_cpu_info().get("flags", [])})
    except Exception as exc:  # a third-party probe must not stop ours
        warnings.append("py-cpuinfo failed to read ISA flags: %s" % exc)
        return []


def _tvm_target(arch: Optional[str], elf: Optional[arch_mod.ElfArch], isa: List[str],
                classes: List[dict], cpus: List[_Cpu], warnings: List[str]) -> dict:
    """The llvm target dict for TVM 0.27 (which takes no CLI strings), tuned to the fastest class."""
    target: Dict[str, object] = {"kind": "llvm"}
    own_triple = elf.mtriple() if elf is not None and elf.arch == arch else None
    if own_triple:
        target["mtriple"] = own_triple  # soft- or hard-float as this process was built
    elif arch in MTRIPLES:
        target["mtriple"] = MTRIPLES[arch]
    elif arch is not None:
        warnings.append("no LLVM triple known for arch %s; tvm_target has no mtriple" % arch)
    if str(target.get("mtriple", "")).endswith("gnueabihf"):
        # TVM's LLVM codegen does not take the float ABI from the triple: without
        # this the object passes floats in core registers and the armhf linker
        # refuses it ("uses VFP register arguments, lib0.o does not").
        target["mfloat-abi"] = "hard"
    usable = {c.id for c in cpus if c.online is not False and c.allowed is not False}
    fastest = next((c["uarch"] for c in classes if usable & set(c["cpus"])),
                   classes[0]["uarch"] if classes else None)
    mcpu = uarch_mod.llvm_cpu(fastest, arch=arch) if fastest else None
    if mcpu:
        target["mcpu"] = mcpu
    attrs = isa_mod.mattr(isa, arch)
    if attrs:
        target["mattr"] = attrs
    target["num-cores"] = max(1, _physical_cores(cpus))
    return target


def _physical_cores(cpus: List[_Cpu]) -> int:
    """Online, allowed CPUs counted once per SMT group."""
    usable = {c.id for c in cpus if c.online is not False and c.allowed is not False}
    cores = {tuple(sorted(set(c.smt or [c.id]) & usable)) for c in cpus if c.id in usable}
    return len(cores)


# ------------------------------------------------------------- output


def _board(reader: Reader, info: Optional[ProcInfo]) -> Optional[str]:
    """Device-tree model, else DMI vendor + product, else the cpuinfo Model/Hardware line."""
    model = reader.text("proc/device-tree/model")
    if model:
        return model
    vendor = _dmi(reader.text("sys/class/dmi/id/sys_vendor"))
    product = _dmi(reader.text("sys/class/dmi/id/product_name"))
    if product:
        return product if not vendor or product.startswith(vendor) else vendor + " " + product
    glob = {k.lower(): v for k, v in (info.global_fields if info else {}).items()}
    return glob.get("model") or glob.get("hardware") or vendor or None


def _dmi(value: Optional[str]) -> Optional[str]:
    if value is None or value.strip().lower() in _DMI_PLACEHOLDERS:
        return None
    return value.strip()


def _cpu_doc(cpu: _Cpu) -> dict:
    return {"id": cpu.id, "online": cpu.online, "allowed": cpu.allowed, "uarch": cpu.uarch,
            "midr": format_midr(cpu.midr) if cpu.midr is not None else None,
            "uarch_source": cpu.uarch_source if cpu.uarch is not None else None,
            "max_freq_khz": cpu.max_freq, "capacity": cpu.capacity, "cluster": cpu.cluster,
            "class": cpu.cls, "core_id": cpu.core_id, "package": cpu.package,
            "smt_siblings": cpu.smt}


def _unique(items: Iterable[str]) -> List[str]:
    seen = set()
    return [i for i in items if not (i in seen or seen.add(i))]
