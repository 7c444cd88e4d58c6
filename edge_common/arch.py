"""Machine names, one spelling each: what `uname -m`, Debian, Go and the
topology document call the same CPU architecture.

The topology's "arch" is written by the board ("aarch64", "armv7l", ...), but
hosts and older boards spell it other ways ("arm64", "amd64"); everything that
compares or looks one up goes through `normalise`, and asks `family` when all
it needs is "64-bit ARM, 32-bit ARM or something else".
"""
from typing import Optional

_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64", "i386": "i686",
            "armhf": "armv7l", "armv7": "armv7l"}
_AARCH64 = ("aarch64", "aarch64_be")


def normalise(arch: Optional[str]) -> Optional[str]:
    """'ARM64' -> 'aarch64', 'amd64' -> 'x86_64'; None or '' -> None; unknown names
    are returned lower-cased, not refused."""
    if not arch:
        return None
    arch = str(arch).strip().lower()
    return _ALIASES.get(arch, arch) or None


def family(arch: Optional[str]) -> Optional[str]:
    """One name per instruction set and width, whatever the spelling (uname -m,
    Debian, or an LLVM triple such as "aarch64-linux-gnu"): 'aarch64' (64-bit
    ARM), 'arm' (32-bit ARM: armv6l, armv7l, armv8l, armhf), 'x86_64', 'i686'
    (32-bit x86), the normalised name for anything else, None when unknown.
    Width matters: a library for one does not load in a process of the other."""
    name = normalise(arch)
    if name is None:
        return None
    name = normalise(name.split("-")[0])
    if name in _AARCH64:
        return "aarch64"
    if name.startswith("arm"):
        return "arm"
    if len(name) == 4 and name[0] == "i" and name.endswith("86"):
        return "i686"
    return name


def is_arm(arch: Optional[str]) -> bool:
    """64- or 32-bit ARM: the arches whose TVM target takes an ARM -mcpu."""
    return family(arch) in ("aarch64", "arm")
