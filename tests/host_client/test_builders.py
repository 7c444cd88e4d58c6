"""The fast builders and the fast tensor-intrinsics import, on real TVM."""
import platform
import subprocess
import sys

import pytest
import tvm
from tvm import te
from tvm.s_tir import meta_schedule as ms

import host_client
from edge_server.board.arch import read as read_header
from host_client.builders import EdgeBuilder


def small_mod() -> tvm.IRModule:
    a = te.placeholder((16,), name="A")
    b = te.compute((16,), lambda i: a[i] * 2.0, name="B")
    return tvm.IRModule({"main": te.create_prim_func([a, b])})


def inputs(count=2):
    target = tvm.target.Target({"kind": "llvm"})
    return [ms.builder.BuilderInput(small_mod(), target) for _ in range(count)]


def test_pool_builder_links_shared_libraries_in_its_workers():
    results = host_client.edge_builder(max_workers=1, timeout_sec=300).build(inputs())
    for result in results:
        assert result.error_msg is None, result.error_msg
        assert result.artifact_path.endswith(".so")
        assert read_header(result.artifact_path).arch == platform.machine()


def test_in_process_builder_builds_and_reports_failures_per_candidate():
    builder = host_client.edge_builder(in_process=True)
    assert isinstance(builder, ms.builder.Builder) and isinstance(builder, EdgeBuilder)
    bad = ms.builder.BuilderInput(small_mod(), tvm.target.Target({"kind": "llvm",
                                                                 "mtriple": "no-such-triple"}))
    good, failed = builder.build(inputs(1) + [bad])
    assert good.error_msg is None and good.artifact_path.endswith(".so")
    assert failed.artifact_path is None and failed.error_msg.startswith("EdgeBuilder:")


def aarch64_inputs(count=1):
    target = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu"})
    return [ms.builder.BuilderInput(small_mod(), target) for _ in range(count)]


def test_builder_for_an_aarch64_board_cross_links_in_process_and_in_the_pool():
    for builder in (host_client.edge_builder("aarch64", in_process=True),
                    host_client.edge_builder("aarch64", max_workers=1, timeout_sec=300)):
        (result,) = builder.build(aarch64_inputs())
        assert result.error_msg is None, result.error_msg
        header = read_header(result.artifact_path)
        assert (header.arch, header.bits) == ("aarch64", 64)


def test_builder_without_a_board_follows_the_target_mtriple():
    (result,) = host_client.edge_builder(in_process=True).build(aarch64_inputs())
    assert read_header(result.artifact_path).arch == "aarch64"


def test_a_host_target_for_an_aarch64_board_is_refused_per_candidate():
    (result,) = host_client.edge_builder("aarch64", in_process=True).build(inputs(1))
    assert result.artifact_path is None
    assert "built for %s, board runs aarch64" % __import__("platform").machine() \
        in result.error_msg


def test_missing_cross_toolchain_fails_every_candidate_with_the_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    target = tvm.target.Target({"kind": "llvm", "mtriple": "armv7l-linux-gnueabihf"})
    arm = [ms.builder.BuilderInput(small_mod(), target) for _ in range(2)]
    results = host_client.edge_builder("armv7l", in_process=True).build(arm)
    assert [r.artifact_path for r in results] == [None, None]
    assert all("apt-get install g++-arm-linux-gnueabihf" in r.error_msg for r in results)


def test_board_arch_comes_from_a_runner_or_topology():
    from host_client.builders import board_arch_of
    assert board_arch_of({"arch": "aarch64"}) == "aarch64"
    assert board_arch_of("armv7l") == "armv7l" and board_arch_of(None) is None
    with pytest.raises(ValueError, match="announces no arch"):
        board_arch_of({"classes": []})


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
