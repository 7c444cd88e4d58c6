"""ISA features from /proc/cpuinfo, and the LLVM -mattr list a TVM target needs.

TVM's ARM schedules look at the target's mattr (+neon, +dotprod, +i8mm,
+sve, +fullfp16) to choose intrinsics, and the kernel's "Features" line is
the authority on what the core and the kernel really enable: a feature the
kernel does not report traps at run time even if the core has it.
"""
from typing import Iterable, List, Optional, Tuple

from edge_common.arch import family

from edge_server.board.procinfo import ProcessorRecord

# aarch64: kernel hwcap names -> LLVM features. An entry with several hwcaps
# needs all of them (fullfp16 needs the scalar and the vector half).
_AARCH64: Tuple[Tuple[Tuple[str, ...], str], ...] = (
    (("fp",), "+fp-armv8"),
    (("asimd",), "+neon"),
    (("fphp", "asimdhp"), "+fullfp16"),
    (("asimdfhm",), "+fp16fml"),
    (("asimddp",), "+dotprod"),
    (("i8mm",), "+i8mm"),
    (("bf16",), "+bf16"),
    (("asimdrdm",), "+rdm"),
    (("crc32",), "+crc"),
    (("atomics",), "+lse"),
    (("lrcpc",), "+rcpc"),
    (("aes", "pmull"), "+aes"),
    (("sha2",), "+sha2"),
    (("sha3", "sha512"), "+sha3"),
    (("sve",), "+sve"),
    (("sve2",), "+sve2"),
    (("sme",), "+sme"),
)

# 32-bit ARM: kernel hwcap names -> LLVM ARM features. An ARMv8 core under a
# 32-bit kernel reports the v8 names (asimddp, fphp) too.
_ARM32: Tuple[Tuple[Tuple[str, ...], str], ...] = (
    (("neon",), "+neon"),
    (("fphp", "asimdhp"), "+fullfp16"),
    (("asimddp",), "+dotprod"),
    (("i8mm",), "+i8mm"),
    (("idiva",), "+hwdiv-arm"),
    (("idivt",), "+hwdiv"),
    (("crc32",), "+crc"),
    (("aes", "pmull"), "+aes"),
    (("sha2",), "+sha2"),
)


def isa_features(record: Optional[ProcessorRecord]) -> List[str]:
    """Sorted, lowercase, de-duplicated ARM Features or x86 flags of one processor."""
    if record is None:
        return []
    words = list(record.features or []) + list(record.flags or [])
    return sorted({w.lower() for w in words if w.strip()})


def common_features(records: Iterable[ProcessorRecord]) -> List[str]:
    """Features every given processor has: what code pinned to any of them may use."""
    sets = [set(isa_features(r)) for r in records]
    if not sets:
        return []
    return sorted(set.intersection(*sets))


def mattr(isa: Iterable[str], arch: Optional[str]) -> List[str]:
    """LLVM -mattr for a TVM target on `arch` ("aarch64", "armv7l", "x86_64", ...).

    x86 gets [] because -mcpu (from the host's LLVM detection) already implies
    the features; unknown arches get [] rather than a guess.
    """
    have = {w.lower() for w in isa}
    if family(arch) == "aarch64":
        return [attr for needs, attr in _AARCH64 if all(n in have for n in needs)]
    if family(arch) == "arm":
        return _arm32(have)
    return []


def _arm32(have: set) -> List[str]:
    attrs = [attr for needs, attr in _ARM32 if all(n in have for n in needs)]
    vfp = _arm32_vfp(have)
    if vfp:
        attrs.insert(1 if "+neon" in attrs else 0, vfp)
    return attrs


def _arm32_vfp(have: set) -> Optional[str]:
    """Newest VFP the kernel reports, with d16 variants when it lacks 32 D registers."""
    d32 = "vfpd32" in have or "neon" in have
    if "vfpv4" in have:
        return "+vfp4" if d32 else "+vfp4d16"
    if "vfpv3" in have:
        return "+vfp3" if d32 else "+vfp3d16"
    if "vfpv3d16" in have:
        return "+vfp3d16"
    if "vfp" in have:
        return "+vfp2"
    return None
