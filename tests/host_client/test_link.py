"""Linking on the host for the board's arch, with the real cross toolchains,
and the one-line refusal of a module built for another machine."""
import io
import json
import os
import tarfile

import pytest
import tvm

from edge_common.elf import read as read_header
from host_client.errors import ArchMismatch, CrossCompilerMissing
from host_client.kernels import matmul_module
from host_client.target import target_for
from tests.support.procs import FIXTURES
from host_client.link import (built_for, check_file, export_for_board, family, headers_of,
                              link_on_host, loads_on, toolchain_for)


def nothing_on_path(_name):
    return None


@pytest.mark.parametrize("arch, cxx, package", [
    ("aarch64", "aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu"),
    ("armv7l", "arm-linux-gnueabihf-g++", "g++-arm-linux-gnueabihf"),
    ("armv8l", "arm-linux-gnueabihf-g++", "g++-arm-linux-gnueabihf"),
])
def test_missing_cross_toolchain_names_the_debian_package(arch, cxx, package):
    with pytest.raises(CrossCompilerMissing) as info:
        toolchain_for(arch, which=nothing_on_path, host="x86_64")
    message = str(info.value)
    assert "sudo apt-get install %s" % package in message and cxx in message
    assert arch in message and "x86_64" in message


def test_same_arch_uses_the_host_gpp_and_says_so_when_missing():
    assert toolchain_for("x86_64", host="x86_64", which=lambda n: "/usr/bin/" + n).native
    assert toolchain_for("aarch64", host="aarch64", which=lambda n: "/usr/bin/" + n).cxx == "g++"
    with pytest.raises(CrossCompilerMissing, match=r"apt-get install g\+\+\)"):
        toolchain_for("aarch64", host="aarch64", which=nothing_on_path)


def test_an_x86_host_builds_for_an_aarch64_board_with_the_cross_gpp():
    chain = toolchain_for("aarch64", host="x86_64", which=lambda n: "/usr/bin/" + n)
    assert (chain.cxx, chain.native) == ("aarch64-linux-gnu-g++", False)


def test_unknown_board_arch_is_refused_clearly():
    with pytest.raises(CrossCompilerMissing, match=r"arch None is not one"):
        toolchain_for(None)
    with pytest.raises(CrossCompilerMissing, match=r"'sparc64'.*known: aarch64, armv7l"):
        toolchain_for("sparc64")


def compiled(triple=None):
    target = {"kind": "llvm", "num-cores": 2}
    if triple:
        target["mtriple"] = triple
    return tvm.compile(matmul_module(16), target=tvm.target.Target(target))


@pytest.mark.parametrize("fixture, arch_name, bits, describe", [
    ("rk3399", "aarch64", 64, "aarch64"),
    ("exynos5422-linux3.10", "armv7l", 32, "32-bit ARM hard-float"),
])
def test_export_for_board_links_a_library_of_the_board_arch(tmp_path, fixture, arch_name,
                                                            bits, describe):
    board = json.loads((FIXTURES / fixture / "expected.json").read_text())
    lib = tvm.compile(matmul_module(16), target=target_for(board, "all"))
    path = export_for_board(lib, str(tmp_path / "m.so"), board["arch"])
    header = read_header(path)
    assert (header.arch, header.bits, built_for(header)) == (arch_name, bits, describe)
    check_file(path, board["arch"])  # what the upload check will say: fine


def test_metaschedule_tar_is_linked_on_the_host_for_the_board(tmp_path):
    from tvm.support.tar import tar

    archive = str(tmp_path / "tvm_tmp_mod.tar")
    compiled("aarch64-linux-gnu").export_library(archive, fcompile=tar)
    assert [h.arch for _, h in headers_of(archive)] == ["aarch64"]
    out = link_on_host(archive, "aarch64")
    assert out == archive + ".so" and read_header(out).arch == "aarch64"


def test_host_library_for_an_arm_board_is_refused_in_one_line(tmp_path):
    path = str(tmp_path / "kernel.so")
    compiled().export_library(path)
    with pytest.raises(ArchMismatch) as info:
        check_file(path, "aarch64")
    assert str(info.value) == "kernel.so: built for x86-64, board runs aarch64"
    with pytest.raises(ArchMismatch, match=r"^the upload: built for x86-64, board runs armv7l$"):
        check_file(open(path, "rb").read(), "armv7l")


def test_x86_objects_in_a_tar_are_refused_before_linking(tmp_path):
    from tvm.support.tar import tar

    archive = str(tmp_path / "tvm_tmp_mod.tar")
    compiled().export_library(archive, fcompile=tar)
    with pytest.raises(ArchMismatch, match=r"^tvm_tmp_mod.tar:lib0.o: built for x86-64, "
                                           r"board runs aarch64$"):
        link_on_host(archive, "aarch64")
    assert not os.path.exists(archive + ".so")


def test_data_that_is_not_elf_passes_and_a_damaged_archive_is_named(tmp_path):
    check_file(b"\x00" * 1000, "aarch64")   # params, text: no machine to check
    check_file(b"", "aarch64")
    blob = io.BytesIO()
    with tarfile.open(fileobj=blob, mode="w:gz") as tar:
        info = tarfile.TarInfo("lib0.o")
        info.size = 4000
        tar.addfile(info, io.BytesIO(b"\x7fELF\x02\x01" + os.urandom(3994)))
    damaged = blob.getvalue()[:-200]
    with pytest.raises(ArchMismatch, match="cannot be checked for the board: the archive is "
                                           "damaged"):
        check_file(damaged, "aarch64")


@pytest.mark.parametrize("name, fam", [
    ("aarch64", "aarch64"), ("arm64", "aarch64"), ("aarch64-linux-gnu", "aarch64"),
    ("armv7l", "arm"), ("armv8l", "arm"), ("armhf", "arm"), ("armv7a-linux-gnueabihf", "arm"),
    ("x86_64", "x86_64"), ("AMD64", "x86_64"), ("i686", "i686"), ("riscv64", "riscv64"),
    ("sparc64", None), ("", None), (None, None),
])
def test_arch_spellings_map_to_one_family(name, fam):
    assert family(name) == fam


@pytest.mark.parametrize("cxx, board, other", [
    ("aarch64-linux-gnu-g++", "aarch64", "armv7l"),
    ("arm-linux-gnueabihf-g++", "armv8l", "aarch64"),   # a 32-bit userland on an arm64 CPU
])
def test_cross_built_objects_load_on_their_arch_only(tmp_path, cxx, board, other):
    import subprocess
    src = tmp_path / "x.c"
    src.write_text("int f(int x) { return x + 1; }\n")
    obj = tmp_path / "x.o"
    subprocess.run([cxx, "-c", "-x", "c", str(src), "-o", str(obj)], check=True)
    ((_, elf),) = headers_of(str(obj))
    assert loads_on(elf, board) is True and loads_on(elf, other) is False
    assert loads_on(elf, "sparc64") is None and loads_on(elf, None) is None
