"""A parallel kernel to pin, and the tests' own reading of thread affinities
from /proc (independent of edge_server.session.pinning.read_affinities)."""
import os
from pathlib import Path


def build_kernel(path: Path) -> None:
    """A 512x512 float32 matmul whose outer loop is parallel."""
    import tvm
    from tvm import te
    n = 512
    a = te.placeholder((n, n), name="A")
    b = te.placeholder((n, n), name="B")
    k = te.reduce_axis((0, n), name="k")
    c = te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    sch = tvm.s_tir.Schedule(te.create_prim_func([a, b, c]))
    outer = sch.get_loops(sch.get_sblock("C"))[0]
    sch.parallel(outer)
    tvm.compile(sch.mod, target="llvm").export_library(str(path))


def status_affinities(pid) -> dict:
    """{tid: CPUs} from each thread's Cpus_allowed_list in /proc/<pid>/task/<tid>/status:
    the tests' own reading, independent of read_affinities (which uses sched_getaffinity)."""
    from edge_common.cpulist import parse_cpulist
    out = {}
    for tid in os.listdir("/proc/%s/task" % pid):
        try:
            with open("/proc/%s/task/%s/status" % (pid, tid)) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            continue
        [line] = [x for x in lines if x.startswith("Cpus_allowed_list:")]
        out[int(tid)] = parse_cpulist(line.split(":", 1)[1])
    return out


def stock_tvm_threads(machine: str, cpus: int) -> int:
    """How many threads TVM's own sizing gives a parallel kernel: its x86-64
    build halves the CPU count "for hyper-threading" (threading_backend.cc,
    MaxConcurrency), its ARM builds use every CPU."""
    if machine in ("x86_64", "AMD64"):
        return max(1, cpus // 2)
    return cpus
