"""Whether this board can link, and the refusal when it cannot.

TVM's runtime links an uploaded `.o` or `.tar` into a shared library with
the first C/C++ compiler it finds (tvm.support.cc.get_cc: $CXX, $CC, then
g++, gcc, clang++, clang, c++, cc on PATH). Most boards have none (a plain
`pip install` brings no compiler), and TVM then fails deep inside with
"expected str, bytes or os.PathLike object, not NoneType" while the session
goes on as if nothing happened. So the daemon announces its linker in the
topology document ("linker": path or null), found by the same rules, and a
session refuses a `.o`/`.tar` up front, with both ways out, when there is none.
"""
import os
from typing import Mapping, Optional

# The order TVM's get_cc tries them in, so we name the compiler TVM would use.
COMPILER_NAMES = ("g++", "gcc", "clang++", "clang", "c++", "cc")
NEEDS_LINKING = (".o", ".tar")


class CannotLink(ValueError):
    """An object file or archive arrived on a board with no compiler."""


def find_linker(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The compiler TVM's runtime would link uploaded objects with, or None.

    $CXX/$CC win as given (TVM runs them through the shell's PATH lookup);
    otherwise the first executable of COMPILER_NAMES in PATH order."""
    env = os.environ if environ is None else environ
    named = env.get("CXX") or env.get("CC")
    if named:
        return named
    for name in COMPILER_NAMES:
        for directory in os.get_exec_path(env):
            path = os.path.join(directory, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    return None


def with_linker(topology: dict, environ: Optional[Mapping[str, str]] = None) -> dict:
    """The topology document plus "linker" (what this daemon announces)."""
    return dict(topology, linker=find_linker(environ))


def needs_linking(file_name: str) -> bool:
    return str(file_name).endswith(NEEDS_LINKING)


def require_linker(file_name: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """The linker for an uploaded object/archive, or CannotLink saying what
    to do instead."""
    linker = find_linker(environ)
    if linker is not None:
        return linker
    raise CannotLink(
        "cannot load %s: it must be linked into a shared library first and this board has "
        "no C/C++ compiler ($CXX, $CC, g++, gcc, clang++, clang, c++, cc: none found). "
        "Either link on the host and upload a .so (MetaSchedule: "
        "builder=host_client.edge_builder(); by hand: export_library(\"x.so\", "
        "fcompile=host_client.link.fcompile_for(board_arch))), or install a compiler on "
        "the board (Debian/Ubuntu: sudo apt-get install g++)" % os.path.basename(file_name))
