"""Kernels `edge-client bench` runs when the user brings none: a parallel matmul.

The board only loads shared libraries, so the host compiles; when the board's
architecture is not the host's that needs a cross toolchain, which we look
for up front so the user reads what to install instead of a linker trace.
"""
import os
import platform
import shutil
from dataclasses import dataclass
from typing import Optional

from edge_common.arch import normalise
from host_client.errors import CrossCompilerMissing

# Board arch (edge_common.arch.normalise of topology "arch") -> cross gcc, Debian package.
CROSS_GCC = {
    "aarch64": ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
    "armv7l": ("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf"),
    "armv8l": ("arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf"),
    "x86_64": ("x86_64-linux-gnu-gcc", "gcc-x86-64-linux-gnu"),
    "riscv64": ("riscv64-linux-gnu-gcc", "gcc-riscv64-linux-gnu"),
}


@dataclass(frozen=True)
class Kernel:
    """A compiled kernel file and how to call it."""
    path: str
    func: str
    shapes: tuple          # one shape per argument
    dtype: str = "float32"


def host_arch() -> str:
    return normalise(platform.machine()) or "unknown"


def compiler_for(board_arch: Optional[str]):
    """The `fcompile` for export_library: None (host g++) or a cross compiler."""
    arch = normalise(board_arch)
    if arch is None or arch == host_arch():
        return None
    gcc, package = CROSS_GCC.get(arch, ("%s-linux-gnu-gcc" % arch, "gcc-%s-linux-gnu" % arch))
    if shutil.which(gcc) is None:
        raise CrossCompilerMissing(
            "the board is %s but this host is %s, and the cross compiler %s is not on PATH: "
            "install it (Debian/Ubuntu: `sudo apt-get install %s`), or build the kernel "
            "elsewhere and pass MODULE.so" % (arch, host_arch(), gcc, package))
    from tvm.support.cc import cross_compiler

    return cross_compiler(gcc)


def matmul_module(n: int):
    """An n×n float32 matmul, rows spread over the thread pool, columns vectorised."""
    import tvm
    from tvm import te

    a = te.placeholder((n, n), name="A", dtype="float32")
    b = te.placeholder((n, n), name="B", dtype="float32")
    k = te.reduce_axis((0, n), name="k")
    c = te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    func = te.create_prim_func([a, b, c]).with_attr("global_symbol", "matmul")
    sch = tvm.s_tir.Schedule(func)
    block = sch.get_sblock("C")
    i, j, kk = sch.get_loops(block)
    lanes = 8 if n % 8 == 0 else 1
    jo, ji = sch.split(j, [None, lanes])
    sch.reorder(i, jo, kk, ji)
    sch.parallel(i)
    if lanes > 1:
        sch.vectorize(ji)
    return sch.mod


def build_matmul(n: int, target: dict, out_dir: str, board_arch: Optional[str] = None) -> Kernel:
    """Compile the matmul for `target` into out_dir/matmul_<n>.so."""
    import tvm

    if n < 1 or n > 8192:
        raise ValueError("matmul size must be 1..8192, got %d" % n)
    fcompile = compiler_for(board_arch)
    lib = tvm.compile(matmul_module(n), target=tvm.target.Target(target))
    path = os.path.join(out_dir, "matmul_%d.so" % n)
    if fcompile is None:
        lib.export_library(path)
    else:
        lib.export_library(path, fcompile=fcompile)
    return Kernel(path=path, func="matmul", shapes=((n, n), (n, n), (n, n)))
