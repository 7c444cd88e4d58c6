"""What machine an ELF file is built for, from its header alone.

Both sides need this answer and neither may guess it from /proc/cpuinfo: the
host checks a shared library before uploading it ("built for x86-64, board
runs aarch64" beats glibc's "cannot open shared object file" on the board),
and a board can ask what its own interpreter (/proc/self/exe) is, which is
what it can load even under qemu-user or a 32-bit userland on a 64-bit kernel.

Only the identification bytes and e_machine/e_flags are read (ELF spec, "ELF
Header"): e_ident[EI_CLASS] at 4 (1 = 32-bit, 2 = 64-bit), e_ident[EI_DATA]
at 5 (1 = little, 2 = big endian), e_type at 16, e_machine at 18, e_flags at
36 (32-bit) or 48 (64-bit).

Arch names: a board announces `uname -m` style names ("aarch64", "armv7l",
"x86_64"); `family()` maps those, Debian/LLVM spellings ("arm64", "armhf",
"aarch64-linux-gnu") and ELF machines onto one family name per instruction
set, so the two can be compared.
"""
import struct
from dataclasses import dataclass
from typing import Optional

MAGIC = b"\x7fELF"
HEADER_BYTES = 64          # enough for the 64-bit header; the 32-bit one is 52

# e_machine -> (family, how people name it in a message)
MACHINES = {
    3: ("i386", "x86 (32-bit)"),
    40: ("arm", "32-bit ARM"),
    62: ("x86_64", "x86-64"),
    183: ("aarch64", "aarch64"),
    243: ("riscv", "RISC-V"),
    8: ("mips", "MIPS"),
    20: ("ppc", "PowerPC"),
    21: ("ppc64", "PowerPC 64"),
}
EF_ARM_ABI_FLOAT_HARD = 0x400   # armhf objects carry this in e_flags

# uname -m / Debian / LLVM triple spellings -> family
_FAMILIES = {
    "aarch64": "aarch64", "arm64": "aarch64", "aarch64_be": "aarch64", "armv8": "aarch64",
    "armv7l": "arm", "armv8l": "arm", "armv6l": "arm", "armv7": "arm", "armv7a": "arm",
    "armhf": "arm", "armel": "arm", "arm": "arm", "armv7hl": "arm",
    "x86_64": "x86_64", "amd64": "x86_64", "x86-64": "x86_64",
    "i386": "i386", "i486": "i386", "i586": "i386", "i686": "i386", "x86": "i386",
    "riscv64": "riscv", "riscv32": "riscv", "riscv": "riscv",
}


class ElfError(ValueError):
    """Bytes that start like an ELF file but cannot be one."""


@dataclass(frozen=True)
class ElfHeader:
    bits: int          # 32 or 64
    little_endian: bool
    machine: int       # e_machine
    flags: int         # e_flags

    @property
    def family(self) -> Optional[str]:
        known = MACHINES.get(self.machine)
        return known[0] if known else None

    def describe(self) -> str:
        """"x86-64", "aarch64", "32-bit ARM", or the raw machine number."""
        known = MACHINES.get(self.machine)
        name = known[1] if known else "ELF machine %d" % self.machine
        if self.machine == 40 and self.flags & EF_ARM_ABI_FLOAT_HARD:
            name += " hard-float"   # linked armhf output; objects keep it in attributes
        return name


def parse_header(data: bytes) -> Optional[ElfHeader]:
    """The header of `data` (at least its first 64 bytes), None if it is not
    ELF at all; ElfError if it says ELF but the header is cut or invalid."""
    if not data.startswith(MAGIC):
        return None
    if len(data) < 20:
        raise ElfError("ELF header cut short: %d bytes, need at least 20" % len(data))
    ei_class, ei_data = data[4], data[5]
    if ei_class not in (1, 2):
        raise ElfError("ELF class byte is %d; 1 (32-bit) or 2 (64-bit) expected" % ei_class)
    if ei_data not in (1, 2):
        raise ElfError("ELF data byte is %d; 1 (little endian) or 2 (big endian) expected"
                       % ei_data)
    end = "<" if ei_data == 1 else ">"
    (machine,) = struct.unpack_from(end + "H", data, 18)
    flags_at = 36 if ei_class == 1 else 48
    flags = struct.unpack_from(end + "I", data, flags_at)[0] if len(data) >= flags_at + 4 else 0
    return ElfHeader(bits=32 if ei_class == 1 else 64, little_endian=ei_data == 1,
                     machine=machine, flags=flags)


def read_header(path: str) -> Optional[ElfHeader]:
    """parse_header of a file's first bytes (OSError propagates: the caller
    knows what the file was for)."""
    with open(path, "rb") as f:
        return parse_header(f.read(HEADER_BYTES))


def family(arch: Optional[str]) -> Optional[str]:
    """One name per instruction set for a uname -m name, a Debian arch or an
    LLVM triple ("aarch64-linux-gnu" -> "aarch64", "armv7l" -> "arm"); None
    for None/"" and unknown names."""
    if not arch:
        return None
    name = str(arch).strip().lower().split("-")[0]
    if name in _FAMILIES:
        return _FAMILIES[name]
    if name.startswith("armv") or name.startswith("thumbv"):
        return "arm"
    return None


def same_machine(header: ElfHeader, arch: Optional[str]) -> Optional[bool]:
    """Can a process of `arch` load this ELF? None when either is unknown
    (the caller then does not refuse on a guess)."""
    want, have = family(arch), header.family
    if want is None or have is None:
        return None
    if want != have:
        return False
    if want == "aarch64":
        return header.bits == 64
    if want in ("arm", "i386"):
        return header.bits == 32
    return True
