"""The architecture this server process can load code for, from its own ELF header.

/proc/cpuinfo describes the kernel's CPU, not the userland: under qemu-user
or docker-binfmt it is the host's, and a 32-bit armhf userland on an arm64
kernel reads "CPU architecture: 8". What TVM must build for is what the
running interpreter (/proc/self/exe) was built for, so the topology's arch
and the target triple come from that ELF header (System V gABI: e_ident
class at byte 4, data encoding at byte 5, e_machine at byte 18, e_flags at
byte 36 in ELF32 and 48 in ELF64).
"""
import struct
from dataclasses import dataclass
from typing import Optional

EM_386 = 3
EM_ARM = 40
EM_X86_64 = 62
EM_AARCH64 = 183
EM_RISCV = 243
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
# ARM ELF ABI (aaelf32) e_flags: the float ABI of an EABI5 executable.
EF_ARM_ABI_FLOAT_SOFT = 0x200
EF_ARM_ABI_FLOAT_HARD = 0x400
HEADER_BYTES = 64

# (e_machine, class) -> arch name as `uname -m` prints it for that userland.
_MACHINES = {
    (EM_AARCH64, ELFCLASS64): "aarch64",
    (EM_ARM, ELFCLASS32): "armv7l",
    (EM_X86_64, ELFCLASS64): "x86_64",
    (EM_386, ELFCLASS32): "i686",
    (EM_RISCV, ELFCLASS64): "riscv64",
}
_TRIPLES = {"aarch64": "aarch64-linux-gnu", "x86_64": "x86_64-linux-gnu",
            "i686": "i686-linux-gnu", "riscv64": "riscv64-linux-gnu"}


class ElfError(ValueError):
    """Bytes that are not an ELF header this module can read."""


@dataclass(frozen=True)
class ElfArch:
    """What an ELF file was built for."""

    machine: int
    bits: int
    big_endian: bool
    hard_float: Optional[bool]  # 32-bit ARM only: EF_ARM_ABI_FLOAT_HARD set
    arch: Optional[str]         # None: a machine this project has no name for

    def mtriple(self) -> Optional[str]:
        """The LLVM triple TVM needs to build code this process can dlopen."""
        if self.arch is None:
            return None
        if self.machine == EM_ARM:
            return "armv7l-linux-gnueabihf" if self.hard_float else "armv7l-linux-gnueabi"
        return _TRIPLES.get(self.arch)


def parse_header(data: bytes) -> ElfArch:
    """The ElfArch of an ELF header (the first 52 or 64 bytes of the file)."""
    if len(data) < 20 or data[:4] != b"\x7fELF":
        raise ElfError("not an ELF file (no \\x7fELF magic in %r)" % bytes(data[:8]))
    cls, encoding = data[4], data[5]
    if cls not in (ELFCLASS32, ELFCLASS64) or encoding not in (ELFDATA2LSB, ELFDATA2MSB):
        raise ElfError("ELF class %d / data encoding %d is not 1 or 2" % (cls, encoding))
    order = "<" if encoding == ELFDATA2LSB else ">"
    flags_at = 36 if cls == ELFCLASS32 else 48
    if len(data) < flags_at + 4:
        raise ElfError("ELF header cut short at %d bytes" % len(data))
    (machine,) = struct.unpack_from(order + "H", data, 18)
    (flags,) = struct.unpack_from(order + "I", data, flags_at)
    hard = bool(flags & EF_ARM_ABI_FLOAT_HARD) if machine == EM_ARM else None
    return ElfArch(machine, 32 if cls == ELFCLASS32 else 64, encoding == ELFDATA2MSB, hard,
                   _MACHINES.get((machine, cls)))


def read(path: str = "/proc/self/exe") -> ElfArch:
    """The ElfArch of a file; OSError and ElfError go to the caller."""
    with open(path, "rb") as f:
        return parse_header(f.read(HEADER_BYTES))
