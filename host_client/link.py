"""Linking on the host for the board's architecture, and checking what we upload.

A board only has to *load* a shared library; linking one needs a compiler,
which most boards lack (a plain `pip install` brings none) and which costs far
more on an A53 than here. So the host links, with the cross toolchain for the
arch the board announces (topology "arch", what its interpreter can load):

    aarch64            aarch64-linux-gnu-g++      (Debian: g++-aarch64-linux-gnu)
    armv7l/armv8l/...  arm-linux-gnueabihf-g++    (Debian: g++-arm-linux-gnueabihf)
    same as the host   g++

and before anything goes up, the ELF header of the file is compared with the
board's arch, so an x86 library never reaches an aarch64 board to fail there
with glibc's misleading "cannot open shared object file".
"""
import io
import os
import platform
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Tuple, Union

from edge_common.arch import family as arch_family
from edge_common.elf import ElfArch, ElfError, parse_header as parse_elf
from host_client.errors import ArchMismatch, CrossCompilerMissing

ELF_MAGIC = b"\x7fELF"
# ElfArch.arch -> how a person names what a file was built for
_BUILT_FOR = {"x86_64": "x86-64", "aarch64": "aarch64", "armv7l": "32-bit ARM",
              "i686": "32-bit x86", "riscv64": "riscv64"}

# arch family (edge_common.arch.family) -> (cross g++, Debian package holding it)
CROSS_CXX = {
    "aarch64": ("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu"),
    "arm": ("arm-linux-gnueabihf-g++", "g++-arm-linux-gnueabihf"),
    "x86_64": ("x86_64-linux-gnu-g++", "g++-x86-64-linux-gnu"),
    "i686": ("i686-linux-gnu-g++", "g++-i686-linux-gnu"),
    "riscv64": ("riscv64-linux-gnu-g++", "g++-riscv64-linux-gnu"),
}
LINK_SUFFIXES = (".o", ".tar")


@dataclass(frozen=True)
class Toolchain:
    """The C++ driver that links shared libraries for one board arch."""
    board_arch: str
    cxx: str          # command or path
    native: bool      # the host's own g++

    def fcompile(self):
        """export_library's fcompile: a shared library linked by this toolchain."""
        from tvm.support.cc import cross_compiler

        return cross_compiler(self.cxx)


def host_arch() -> str:
    return platform.machine() or "unknown"


def family(arch: Optional[str]) -> Optional[str]:
    """edge_common.arch.family, limited to the arches this host can link for
    (CROSS_CXX); None for the rest, so nothing is refused or linked on a guess."""
    name = arch_family(arch)
    return name if name in CROSS_CXX else None


def built_for(elf: ElfArch) -> str:
    """"x86-64", "aarch64", "32-bit ARM hard-float", ... for a message."""
    name = _BUILT_FOR.get(elf.arch, elf.arch or "ELF machine %d" % elf.machine)
    return name + " hard-float" if elf.hard_float else name


def loads_on(elf: ElfArch, board_arch: Optional[str]) -> Optional[bool]:
    """Can a process of `board_arch` load this ELF? None when either side is
    unknown: nothing is refused on a guess."""
    want, have = family(board_arch), family(elf.arch)
    if want is None or have is None:
        return None
    return want == have


def toolchain_for(board_arch: Optional[str], which: Callable[[str], Optional[str]] = shutil.which,
                  host: Optional[str] = None) -> Toolchain:
    """The toolchain that builds for `board_arch`, or a CrossCompilerMissing
    naming the Debian package to install."""
    host = host or host_arch()
    want = family(board_arch)
    if want is None:
        raise CrossCompilerMissing(
            "cannot link for the board: its arch %r is not one this host knows how to link for "
            "(known: aarch64, armv7l, x86_64, i686, riscv64); upgrade edge-server on the board "
            "so it announces its arch, or link the module yourself and upload a .so"
            % (board_arch,))
    if want == family(host):
        if which("g++") is None:
            raise CrossCompilerMissing(
                "linking for this %s board needs g++ on the host, which is not on PATH: "
                "install it (Debian/Ubuntu: sudo apt-get install g++)" % board_arch)
        return Toolchain(board_arch, "g++", native=True)
    cxx, package = CROSS_CXX.get(want, ("%s-linux-gnu-g++" % want, "g++-%s-linux-gnu" % want))
    if which(cxx) is None:
        raise CrossCompilerMissing(
            "the board runs %s but this host is %s, and the cross compiler %s is not on PATH: "
            "install it (Debian/Ubuntu: sudo apt-get install %s)"
            % (board_arch, host, cxx, package))
    return Toolchain(board_arch, cxx, native=False)


def fcompile_for(board_arch: Optional[str]):
    """export_library(path, fcompile=fcompile_for(arch)) links for that board."""
    return toolchain_for(board_arch).fcompile()


def export_for_board(lib, path: str, board_arch: Optional[str]) -> str:
    """Export a compiled module as a shared library the board can load, linked
    here: objects first, checked against the board's arch (so a wrong target
    reads "built for x86-64, board runs aarch64", not a linker error), then
    linked and the result checked again."""
    from tvm.support.tar import tar

    toolchain_for(board_arch)  # a missing toolchain is reported before compiling
    with tempfile.TemporaryDirectory(prefix="edge-export-") as tmp:
        archive = os.path.join(tmp, "objects.tar")
        lib.export_library(archive, fcompile=tar)
        link_on_host(archive, board_arch, out=path, label=os.path.basename(path))
    return path


def link_on_host(archive: str, board_arch: Optional[str], out: Optional[str] = None,
                 label: Optional[str] = None) -> str:
    """Link a `.o` or MetaSchedule's `.tar` export into `out` (default archive
    + ".so") with the board's toolchain; what the board would otherwise do.
    label: the name error messages give the module (default: its members)."""
    from tvm.support import cc

    toolchain = toolchain_for(board_arch)
    out = out or archive + ".so"
    check_file(archive, board_arch, label)
    if archive.endswith(".o"):
        cc.create_shared(out, [archive], cc=toolchain.cxx)
    else:
        with tempfile.TemporaryDirectory(prefix="edge-link-") as unpack:
            with tarfile.open(archive) as tar:
                members = [m for m in tar.getmembers() if m.isfile()]
                _extract(tar, members, unpack)
            objects = sorted(os.path.join(unpack, m.name) for m in members)
            cc.create_shared(out, objects, cc=toolchain.cxx)
    check_file(out, board_arch, label)
    return out


def _extract(tar: tarfile.TarFile, members, into: str) -> None:
    for member in members:
        if os.path.isabs(member.name) or ".." in member.name.split("/"):
            raise ValueError("archive member %r points outside the archive" % member.name)
    tar.extractall(into, members=members)


# ------------------------------------------------------------ checks


def parse_header(head: bytes) -> Optional[ElfArch]:
    """The ElfArch of a file's first bytes; None when they are not ELF at all."""
    return parse_elf(head) if head[:4] == ELF_MAGIC else None


def headers_of(data: Union[str, bytes, bytearray]) -> List[Tuple[str, ElfArch]]:
    """(name, header) of every ELF inside `data`: the file itself, or each
    member of a tar archive. A path or the bytes of one."""
    if isinstance(data, str):
        with open(data, "rb") as f:
            blob = f.read()
        name = os.path.basename(data)
    else:
        blob, name = bytes(data), "the upload"
    header = parse_header(blob[:64])
    if header is not None:
        return [(name, header)]
    try:
        tar = tarfile.open(fileobj=io.BytesIO(blob), mode="r:*")  # TVM's .tar is gzipped
    except (tarfile.TarError, EOFError, OSError):
        return []
    found = []
    try:
        with tar:
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                member_header = parse_header(tar.extractfile(member).read(64))
                if member_header is not None:
                    found.append(("%s:%s" % (name, member.name), member_header))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise ElfError("the archive is damaged (%s)" % err) from None
    return found


def check_file(data: Union[str, bytes, bytearray], board_arch: Optional[str],
               label: Optional[str] = None) -> None:
    """Refuse, in one line, a shared library / object / archive built for
    another machine than the board's; data that holds no ELF passes.
    label: the name to give in the message (default: the file's, or its member's)."""
    try:
        headers = headers_of(data)
    except ElfError as err:
        raise ArchMismatch("%s cannot be checked for the board: %s"
                           % (label or _label(data), err)) from None
    if label:
        headers = [(label, header) for _, header in headers]
    check_headers(headers, board_arch)


def check_headers(headers: Iterable[Tuple[str, ElfArch]], board_arch: Optional[str]) -> None:
    for name, elf in headers:
        if loads_on(elf, board_arch) is False:
            raise ArchMismatch("%s: built for %s, board runs %s"
                               % (name, built_for(elf), board_arch))


def _label(data) -> str:
    return os.path.basename(data) if isinstance(data, str) else "the upload"
