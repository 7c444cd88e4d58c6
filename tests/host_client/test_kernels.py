"""The bench kernel, built for this host and cross-linked for an ARM board."""
import numpy as np
import pytest
import tvm

from edge_server.board.arch import read as read_header
from host_client.errors import ArchMismatch
from host_client.kernels import build_matmul


def test_matmul_is_correct_and_parallel(tmp_path):
    kernel = build_matmul(40, {"kind": "llvm", "num-cores": 2}, str(tmp_path))
    assert kernel.func == "matmul" and kernel.shapes == ((40, 40),) * 3
    module = tvm.runtime.load_module(kernel.path)
    dev = tvm.cpu()
    a, b = (np.random.rand(40, 40).astype("float32") for _ in range(2))
    c = tvm.runtime.empty((40, 40), "float32", dev)
    module["matmul"](tvm.runtime.tensor(a, dev), tvm.runtime.tensor(b, dev), c)
    np.testing.assert_allclose(c.numpy(), a @ b, rtol=1e-4)


def test_matmul_for_an_aarch64_board_is_an_aarch64_library(tmp_path):
    target = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "num-cores": 4}
    kernel = build_matmul(16, target, str(tmp_path), board_arch="aarch64")
    header = read_header(kernel.path)
    assert (header.arch, header.bits) == ("aarch64", 64)


def test_matmul_built_for_the_wrong_machine_is_refused_before_upload(tmp_path):
    with pytest.raises(ArchMismatch, match=r"^matmul_16.so: built for x86-64, board runs armv7l$"):
        build_matmul(16, {"kind": "llvm"}, str(tmp_path), board_arch="armv7l")


def test_bad_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="1..8192"):
        build_matmul(0, {"kind": "llvm"}, str(tmp_path))
