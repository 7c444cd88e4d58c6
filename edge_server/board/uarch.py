"""MIDR (implementer, part[, variant]) -> microarchitecture name, LLVM CPU, rank.

Names are lowercase and hyphenated as the vendor names the core
("cortex-a72", "neoverse-n1", "exynos-m3", "carmel"). The part numbers come
from the vendors' published MIDR values, as collected in Linux
arch/arm64/include/asm/cputype.h and arch/arm/include/asm/cputype.h, the Arm
Technical Reference Manuals (MIDR_EL1 reset values), and for parts Linux does
not name (Scorpion, Krait, Kryo, Denver, Exynos M2..M5) the MIDR values
documented by the boards themselves and collected by pytorch/cpuinfo.

Qualcomm "Kryo 2xx/3xx/4xx Gold/Silver" (implementer 0x51, parts 0x800-0x805)
are Arm Cortex cores ("Built on Arm Cortex Technology") with a Qualcomm
MIDR. They decode to the Arm core name because that is the microarchitecture
a compiler and a scheduler care about; Linux treats them the same way (it
lists MIDR_QCOM_KRYO_4XX_GOLD among the Cortex-A76 errata, the 2XX/3XX/4XX
Silver parts with the Cortex-A53/A55 ones). Qualcomm's pre-production
"Falkor V1" server part also used 0x800; it is not decoded as such, since
0x800 on any board this project targets is a Kryo 260/280 Gold.
"""
from typing import Dict, Optional, Tuple

# LLVM version of the apache-tvm wheel pinned in setup.cfg (0.27.0.post1).
PINNED_TVM_LLVM_MAJOR = 22

# (implementer, part) -> uarch name
_PARTS: Dict[Tuple[int, int], str] = {
    # Arm Ltd: ARM11 (arch/arm cputype.h; MIDR architecture field 0xf)
    (0x41, 0xB02): "arm11mpcore",
    (0x41, 0xB36): "arm1136",
    (0x41, 0xB56): "arm1156",
    (0x41, 0xB76): "arm1176",
    # Arm Ltd: ARMv7-A Cortex
    (0x41, 0xC05): "cortex-a5",
    (0x41, 0xC07): "cortex-a7",
    (0x41, 0xC08): "cortex-a8",
    (0x41, 0xC09): "cortex-a9",
    (0x41, 0xC0D): "cortex-a12",
    (0x41, 0xC0E): "cortex-a17",
    (0x41, 0xC0F): "cortex-a15",
    # Arm Ltd: ARMv8/v9-A Cortex, Neoverse
    (0x41, 0xD01): "cortex-a32",
    (0x41, 0xD02): "cortex-a34",
    (0x41, 0xD03): "cortex-a53",
    (0x41, 0xD04): "cortex-a35",
    (0x41, 0xD05): "cortex-a55",
    (0x41, 0xD06): "cortex-a65",
    (0x41, 0xD07): "cortex-a57",
    (0x41, 0xD08): "cortex-a72",
    (0x41, 0xD09): "cortex-a73",
    (0x41, 0xD0A): "cortex-a75",
    (0x41, 0xD0B): "cortex-a76",
    (0x41, 0xD0C): "neoverse-n1",
    (0x41, 0xD0D): "cortex-a77",
    (0x41, 0xD0E): "cortex-a76ae",
    (0x41, 0xD40): "neoverse-v1",
    (0x41, 0xD41): "cortex-a78",
    (0x41, 0xD42): "cortex-a78ae",
    (0x41, 0xD43): "cortex-a65ae",
    (0x41, 0xD44): "cortex-x1",
    (0x41, 0xD46): "cortex-a510",
    (0x41, 0xD47): "cortex-a710",
    (0x41, 0xD48): "cortex-x2",
    (0x41, 0xD49): "neoverse-n2",
    (0x41, 0xD4A): "neoverse-e1",
    (0x41, 0xD4B): "cortex-a78c",
    (0x41, 0xD4C): "cortex-x1c",
    (0x41, 0xD4D): "cortex-a715",
    (0x41, 0xD4E): "cortex-x3",
    (0x41, 0xD4F): "neoverse-v2",
    (0x41, 0xD80): "cortex-a520",
    (0x41, 0xD81): "cortex-a720",
    (0x41, 0xD82): "cortex-x4",
    (0x41, 0xD84): "neoverse-v3",
    (0x41, 0xD85): "cortex-x925",
    (0x41, 0xD87): "cortex-a725",
    (0x41, 0xD8E): "neoverse-n3",
    # Broadcom: Vulcan became Cavium ThunderX2 (Linux BRCM_CPU_PART_VULCAN)
    (0x42, 0x516): "thunderx2",
    # Cavium
    (0x43, 0x0A1): "thunderx",
    (0x43, 0x0A2): "thunderx-81xx",
    (0x43, 0x0A3): "thunderx-83xx",
    (0x43, 0x0AF): "thunderx2",
    # Fujitsu
    (0x46, 0x001): "a64fx",
    # HiSilicon
    (0x48, 0xD01): "tsv110",
    # NVIDIA (Tegra K1 Denver 0x000, Tegra X2 Denver 2 0x003, Xavier Carmel 0x004)
    (0x4E, 0x000): "denver",
    (0x4E, 0x003): "denver-2",
    (0x4E, 0x004): "carmel",
    # APM X-Gene (Linux APM_CPU_PART_XGENE)
    (0x50, 0x000): "x-gene",
    # Qualcomm custom cores
    (0x51, 0x001): "oryon",
    (0x51, 0x00F): "scorpion",
    (0x51, 0x02D): "scorpion",
    (0x51, 0x04D): "krait",
    (0x51, 0x06F): "krait",
    (0x51, 0x201): "kryo",  # Snapdragon 820/821 low-power cluster
    (0x51, 0x205): "kryo",  # Snapdragon 820 performance cluster
    (0x51, 0x211): "kryo",  # Snapdragon 821 performance cluster
    (0x51, 0xC00): "falkor",
    (0x51, 0xC01): "saphira",
    # Qualcomm Kryo 2xx+ Gold/Silver = Arm Cortex cores (see module docstring)
    (0x51, 0x800): "cortex-a73",  # Kryo 260/280 Gold
    (0x51, 0x801): "cortex-a53",  # Kryo 260/280 Silver
    (0x51, 0x802): "cortex-a75",  # Kryo 385 Gold
    (0x51, 0x803): "cortex-a55",  # Kryo 385 Silver
    (0x51, 0x804): "cortex-a76",  # Kryo 485 Gold
    (0x51, 0x805): "cortex-a55",  # Kryo 485 Silver
    # Samsung Exynos M-series (0x001 is M1 or M2: see _SAMSUNG_M2_VARIANT)
    (0x53, 0x001): "exynos-m1",
    (0x53, 0x002): "exynos-m3",
    (0x53, 0x003): "exynos-m4",
    (0x53, 0x004): "exynos-m5",
    # Apple (Linux APPLE_CPU_PART_*; efficiency cores even, performance odd)
    (0x61, 0x022): "apple-icestorm",   # M1
    (0x61, 0x023): "apple-firestorm",
    (0x61, 0x024): "apple-icestorm",   # M1 Pro
    (0x61, 0x025): "apple-firestorm",
    (0x61, 0x028): "apple-icestorm",   # M1 Max
    (0x61, 0x029): "apple-firestorm",
    (0x61, 0x032): "apple-blizzard",   # M2
    (0x61, 0x033): "apple-avalanche",
    (0x61, 0x034): "apple-blizzard",   # M2 Pro
    (0x61, 0x035): "apple-avalanche",
    (0x61, 0x038): "apple-blizzard",   # M2 Max
    (0x61, 0x039): "apple-avalanche",
    # Ampere
    (0xC0, 0xAC3): "ampere-1",
    (0xC0, 0xAC4): "ampere-1a",
}

# Samsung part 0x001 is Exynos M1 (Exynos 8890, MIDR 0x531f0011) and, with
# variant 4, Exynos M2 (Exynos 8895, MIDR 0x534f0010). Linux names the part
# EXYNOS_M1 regardless of variant, which is what an unknown variant decodes to.
_SAMSUNG_M2_VARIANT = 4

# uarch -> (LLVM -mcpu name, first LLVM major that accepts it, fallback uarch
# for older LLVM, backends: "a64" aarch64, "a32" arm). A fallback is an older
# core of the same family whose ISA is a subset, so code stays runnable.
_A64, _A32, _BOTH = ("a64",), ("a32",), ("a64", "a32")
_LLVM: Dict[str, Tuple[str, int, Optional[str], Tuple[str, ...]]] = {
    "arm11mpcore": ("mpcore", 3, None, _A32),
    # ARM11 parts come with or without VFP under one part number; the non-F
    # names are safe and mattr() adds +vfp2 when the kernel reports "vfp".
    "arm1136": ("arm1136j-s", 3, None, _A32),
    "arm1156": ("arm1156t2-s", 3, None, _A32),
    "arm1176": ("arm1176jz-s", 3, None, _A32),
    "cortex-a5": ("cortex-a5", 3, None, _A32),
    "cortex-a7": ("cortex-a7", 3, None, _A32),
    "cortex-a8": ("cortex-a8", 3, None, _A32),
    "cortex-a9": ("cortex-a9", 3, None, _A32),
    "cortex-a12": ("cortex-a12", 3, None, _A32),
    "cortex-a15": ("cortex-a15", 3, None, _A32),
    "cortex-a17": ("cortex-a17", 3, None, _A32),
    "cortex-a32": ("cortex-a32", 4, None, _A32),
    "cortex-a34": ("cortex-a34", 10, None, _A64),
    "cortex-a35": ("cortex-a35", 4, None, _BOTH),
    "cortex-a53": ("cortex-a53", 4, None, _BOTH),
    "cortex-a55": ("cortex-a55", 6, None, _BOTH),
    "cortex-a57": ("cortex-a57", 4, None, _BOTH),
    "cortex-a65": ("cortex-a65", 10, None, _A64),
    "cortex-a65ae": ("cortex-a65ae", 10, None, _A64),
    "cortex-a72": ("cortex-a72", 4, None, _BOTH),
    "cortex-a73": ("cortex-a73", 4, None, _BOTH),
    "cortex-a75": ("cortex-a75", 6, None, _BOTH),
    "cortex-a76": ("cortex-a76", 6, None, _BOTH),
    "cortex-a76ae": ("cortex-a76ae", 10, None, _BOTH),
    "cortex-a77": ("cortex-a77", 11, None, _BOTH),
    "cortex-a78": ("cortex-a78", 11, None, _BOTH),
    "cortex-a78ae": ("cortex-a78ae", 20, "cortex-a78", _BOTH),
    "cortex-a78c": ("cortex-a78c", 13, None, _BOTH),
    "cortex-a510": ("cortex-a510", 14, None, _BOTH),
    "cortex-a520": ("cortex-a520", 18, "cortex-a510", _A64),
    "cortex-a710": ("cortex-a710", 14, None, _BOTH),
    "cortex-a715": ("cortex-a715", 16, None, _A64),
    "cortex-a720": ("cortex-a720", 18, "cortex-a715", _A64),
    "cortex-a725": ("cortex-a725", 19, "cortex-a720", _A64),
    "cortex-x1": ("cortex-x1", 11, None, _BOTH),
    "cortex-x1c": ("cortex-x1c", 14, None, _BOTH),
    "cortex-x2": ("cortex-x2", 14, None, _A64),
    "cortex-x3": ("cortex-x3", 16, None, _A64),
    "cortex-x4": ("cortex-x4", 18, "cortex-x3", _A64),
    "cortex-x925": ("cortex-x925", 19, "cortex-x4", _A64),
    "neoverse-e1": ("neoverse-e1", 10, None, _A64),
    "neoverse-n1": ("neoverse-n1", 10, None, _BOTH),
    "neoverse-n2": ("neoverse-n2", 12, None, _BOTH),
    "neoverse-n3": ("neoverse-n3", 19, "neoverse-n2", _A64),
    "neoverse-v1": ("neoverse-v1", 12, None, _BOTH),
    "neoverse-v2": ("neoverse-v2", 16, None, _A64),
    "neoverse-v3": ("neoverse-v3", 19, "neoverse-v2", _A64),
    "thunderx": ("thunderxt88", 4, None, _A64),
    "thunderx-81xx": ("thunderxt81", 4, None, _A64),
    "thunderx-83xx": ("thunderxt83", 4, None, _A64),
    "thunderx2": ("thunderx2t99", 5, None, _A64),
    "a64fx": ("a64fx", 11, None, _A64),
    "tsv110": ("tsv110", 9, None, _A64),
    "carmel": ("carmel", 11, None, _A64),
    "oryon": ("oryon-1", 19, None, _A64),
    "krait": ("krait", 3, None, _A32),
    "kryo": ("kryo", 4, None, _BOTH),
    "falkor": ("falkor", 6, None, _A64),
    "saphira": ("saphira", 7, None, _A64),
    "exynos-m3": ("exynos-m3", 6, None, _BOTH),
    "exynos-m4": ("exynos-m4", 10, None, _BOTH),
    "exynos-m5": ("exynos-m5", 11, None, _BOTH),
    "apple-icestorm": ("apple-m1", 13, None, _A64),
    "apple-firestorm": ("apple-m1", 13, None, _A64),
    "apple-blizzard": ("apple-m2", 16, "apple-icestorm", _A64),
    "apple-avalanche": ("apple-m2", 16, "apple-firestorm", _A64),
    "ampere-1": ("ampere1", 16, None, _A64),
    "ampere-1a": ("ampere1a", 17, "ampere-1", _A64),
    # No LLVM CPU: denver, denver-2, scorpion, x-gene, exynos-m1, exynos-m2
    # (LLVM dropped exynos-m1/m2).
}

# Coarse single-core performance tiers (higher = faster), used only to order
# core classes when capacity and max frequency do not decide. Tiers follow
# public per-clock comparisons; cores of one tier are treated as equals.
_TIERS = (
    (1, ("arm11mpcore", "arm1136", "arm1156", "arm1176")),
    (2, ("cortex-a5", "cortex-a7", "cortex-a8", "cortex-a9", "scorpion")),
    (3, ("cortex-a32", "cortex-a34", "cortex-a35", "cortex-a53", "cortex-a55",
         "cortex-a65", "cortex-a65ae", "neoverse-e1", "thunderx", "thunderx-81xx",
         "thunderx-83xx")),
    (4, ("cortex-a510", "cortex-a520", "cortex-a12", "cortex-a15", "cortex-a17", "krait")),
    (5, ("cortex-a57", "cortex-a72", "denver", "kryo", "x-gene")),
    (6, ("cortex-a73", "cortex-a75", "exynos-m1", "exynos-m2", "exynos-m3", "denver-2",
         "carmel", "falkor", "saphira", "thunderx2", "tsv110", "apple-icestorm",
         "apple-blizzard")),
    (7, ("cortex-a76", "cortex-a76ae", "cortex-a77", "neoverse-n1", "exynos-m4",
         "exynos-m5", "a64fx", "ampere-1", "ampere-1a")),
    (8, ("cortex-a78", "cortex-a78ae", "cortex-a78c", "cortex-a710", "cortex-a715",
         "cortex-a720", "cortex-a725", "neoverse-n2", "neoverse-n3")),
    (9, ("cortex-x1", "cortex-x1c", "neoverse-v1")),
    (10, ("cortex-x2", "cortex-x3", "neoverse-v2", "apple-firestorm", "apple-avalanche")),
    (11, ("cortex-x4", "cortex-x925", "neoverse-v3", "oryon")),
)
_RANK: Dict[str, int] = {name: tier for tier, names in _TIERS for name in names}


def decode(implementer: int, part: int, variant: Optional[int] = None) -> Optional[str]:
    """uarch name for a MIDR implementer/part, None when the part is not in the table.

    variant only matters for Samsung part 0x001 (Exynos M1 vs M2).
    """
    name = _PARTS.get((implementer, part))
    if name == "exynos-m1" and variant == _SAMSUNG_M2_VARIANT:
        return "exynos-m2"
    return name


def decode_midr(midr: int) -> Optional[str]:
    """decode() on a full MIDR value such as 0x410fd083."""
    return decode((midr >> 24) & 0xFF, (midr >> 4) & 0xFFF, (midr >> 20) & 0xF)


def known_uarchs():
    """Every uarch name decode() can return (for tests and docs)."""
    return sorted(set(_PARTS.values()) | {"exynos-m2"})


def llvm_cpu(uarch: str, llvm_major: Optional[int] = None,
             arch: Optional[str] = None) -> Optional[str]:
    """LLVM -mcpu for a TVM target, or None when LLVM has no such CPU.

    llvm_major: the LLVM that will compile (default: the pinned TVM wheel's).
    Cores newer than that LLVM fall back to the closest older core of the same
    family, so the name is always one that LLVM accepts. arch: "aarch64" or
    a 32-bit ARM arch ("armv7l", "arm"); restricts to names that backend has.
    """
    major = PINNED_TVM_LLVM_MAJOR if llvm_major is None else llvm_major
    backend = _backend(arch)
    seen = set()
    while uarch in _LLVM and uarch not in seen:
        seen.add(uarch)
        name, since, fallback, backends = _LLVM[uarch]
        if since <= major and (backend is None or backend in backends):
            return name
        if fallback is None:
            return None
        uarch = fallback
    return None


def _backend(arch: Optional[str]) -> Optional[str]:
    if arch is None:
        return None
    arch = arch.lower()
    if arch in ("aarch64", "arm64", "aarch64_be"):
        return "a64"
    if arch.startswith("arm"):
        return "a32"
    return "other"


def perf_rank(uarch: Optional[str]) -> Optional[int]:
    """Coarse single-core performance tier (higher = faster); None if unknown."""
    if uarch is None:
        return None
    return _RANK.get(uarch)
