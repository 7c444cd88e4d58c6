"""The bench kernel and the cross-toolchain check."""
import numpy as np
import pytest
import tvm

from host_client.errors import CrossCompilerMissing
from host_client.kernels import build_matmul, compiler_for, host_arch


def test_matmul_is_correct_and_parallel(tmp_path):
    kernel = build_matmul(40, {"kind": "llvm", "num-cores": 2}, str(tmp_path))
    assert kernel.func == "matmul" and kernel.shapes == ((40, 40),) * 3
    module = tvm.runtime.load_module(kernel.path)
    dev = tvm.cpu()
    a, b = (np.random.rand(40, 40).astype("float32") for _ in range(2))
    c = tvm.runtime.empty((40, 40), "float32", dev)
    module["matmul"](tvm.runtime.tensor(a, dev), tvm.runtime.tensor(b, dev), c)
    np.testing.assert_allclose(c.numpy(), a @ b, rtol=1e-4)


def test_same_arch_needs_no_cross_compiler():
    assert compiler_for(host_arch()) is None
    assert compiler_for(None) is None


def test_missing_cross_compiler_says_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    other = "riscv64" if host_arch() != "riscv64" else "aarch64"
    with pytest.raises(CrossCompilerMissing, match="apt-get install gcc-") as info:
        compiler_for(other)
    assert other in str(info.value) and host_arch() in str(info.value)


def test_bad_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="1..8192"):
        build_matmul(0, {"kind": "llvm"}, str(tmp_path))
