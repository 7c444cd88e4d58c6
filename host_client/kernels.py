"""Kernels `edge-client bench` runs when the user brings none: a parallel matmul.

The board only loads shared libraries, so the host compiles and links them
(host_client.link): with the cross toolchain for the board's arch when it is
not the host's, looked for up front so the user reads what to install
instead of a linker trace.
"""
import os
from dataclasses import dataclass
from typing import Optional

from host_client.link import export_for_board, host_arch

@dataclass(frozen=True)
class Kernel:
    """A compiled kernel file and how to call it."""
    path: str
    func: str
    shapes: tuple          # one shape per argument
    dtype: str = "float32"


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
    lib = tvm.compile(matmul_module(n), target=tvm.target.Target(target))
    path = os.path.join(out_dir, "matmul_%d.so" % n)
    export_for_board(lib, path, board_arch or host_arch())
    return Kernel(path=path, func="matmul", shapes=((n, n), (n, n), (n, n)))
