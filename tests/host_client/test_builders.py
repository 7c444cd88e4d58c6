"""The fast builders and the fast tensor-intrinsics import, on real TVM."""
import subprocess
import sys

import tvm
from tvm import te
from tvm.s_tir import meta_schedule as ms

import host_client
from host_client.builders import InProcessBuilder


def small_mod() -> tvm.IRModule:
    a = te.placeholder((16,), name="A")
    b = te.compute((16,), lambda i: a[i] * 2.0, name="B")
    return tvm.IRModule({"main": te.create_prim_func([a, b])})


def inputs(count=2):
    target = tvm.target.Target({"kind": "llvm"})
    return [ms.builder.BuilderInput(small_mod(), target) for _ in range(count)]


def test_pool_builder_with_fast_build_builds_in_its_workers():
    results = host_client.edge_builder(max_workers=1, timeout_sec=300).build(inputs())
    for result in results:
        assert result.error_msg is None, result.error_msg
        assert result.artifact_path.endswith(".tar")


def test_in_process_builder_builds_and_reports_failures_per_candidate():
    builder = host_client.edge_builder(in_process=True)
    assert isinstance(builder, ms.builder.Builder)
    bad = ms.builder.BuilderInput(small_mod(), tvm.target.Target({"kind": "llvm",
                                                                 "mtriple": "no-such-triple"}))
    good, failed = builder.build(inputs(1) + [bad])
    assert good.error_msg is None and good.artifact_path.endswith(".tar")
    assert failed.artifact_path is None and failed.error_msg.startswith("InProcessBuilder:")
    assert isinstance(builder, InProcessBuilder)


def test_preload_imports_the_intrinsics_and_leaves_inspect_as_it_was():
    code = (
        "import inspect, sys\n"
        "import tvm\n"
        "before = dict(inspect.modulesbyfile)\n"
        "from host_client.intrin_preload import preload_tensor_intrin, pseudo_files\n"
        "took = preload_tensor_intrin()\n"
        "assert 'tvm.s_tir.tensor_intrin' in sys.modules\n"
        "from tvm.s_tir import TensorIntrin\n"
        "assert TensorIntrin.get('dot_4x4_i8i8s32_neon') is not None\n"
        "assert not any(inspect.modulesbyfile.get(f) == '' for f in pseudo_files())\n"
        "assert preload_tensor_intrin() == 0.0\n"
        "print('ok', took)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ")
