"""Every fixture board against its hand-written expected.json.

The expected documents were written from the boards' public specifications
(see tests/fixtures/boards/README.md), not copied from probe output, so a
difference here is a probe bug or a fixture bug, never "update the file".
"""
import json
from pathlib import Path

import pytest

from edge_server.board.topology import probe

BOARDS = Path(__file__).resolve().parents[2] / "fixtures" / "boards"
REQUIRED = ["rk3399", "rk3588", "rk3588-binned", "rpi4", "snapdragon855", "jetson-xavier",
            "intel-hybrid", "x86-server-smt", "rk3399-offline", "rk3399-nocpufreq",
            "exynos5422-linux3.10", "this-machine", "rk3588s", "rpi5", "jetson-nano",
            "jetson-orin", "nexus5-msm8974", "galaxys3-exynos4412", "galaxys6-exynos7420",
            "galaxys9-exynos9810", "mate10-kirin970", "mate20-kirin980", "dimensity1200",
            "pixel3-sdm845", "orangepi3-h6", "orangepizero2-h616", "odroidn2-s922x",
            "redmi3-msm8939", "heliox20-mt6797"]
ALL = sorted(p.parent.name for p in BOARDS.glob("*/expected.json"))


def expected(name):
    return json.loads((BOARDS / name / "expected.json").read_text())


def test_every_required_board_has_a_fixture():
    assert sorted(REQUIRED) == sorted(set(REQUIRED) & set(ALL))


@pytest.mark.parametrize("name", ALL)
def test_probe_matches_expected(name):
    got = probe(str(BOARDS / name))
    want = expected(name)
    # Compare piece by piece first so a failure names the part that differs.
    for key in ("board", "arch", "classes", "clusters", "tvm_target", "isa", "warnings"):
        assert got[key] == want[key], key
    for got_cpu, want_cpu in zip(got["cpus"], want["cpus"]):
        assert got_cpu == want_cpu
    assert got == want
    json.dumps(got)  # JSON-serialisable


@pytest.mark.parametrize("name", ALL)
def test_expected_documents_are_self_consistent(name):
    """Cross-checks inside each expected.json, so a typo in one place shows up."""
    doc = expected(name)
    cpus = {c["id"]: c for c in doc["cpus"]}
    for cls in doc["classes"]:
        assert all(cpus[i]["class"] == cls["name"] for i in cls["cpus"])
    for cluster in doc["clusters"]:
        assert cluster["source"]
        assert {cpus[i]["cluster"] for i in cluster["cpus"]} == {cluster["id"]}
        assert {cpus[i]["class"] for i in cluster["cpus"]} == {cluster["class"]}
    assert [c["rank"] for c in doc["classes"]] == list(range(len(doc["classes"])))
    classed = sorted(i for cls in doc["classes"] for i in cls["cpus"])
    assert classed == sorted(i for i, c in cpus.items() if c["class"] is not None)
    assert all(c["allowed"] == c["online"] for c in doc["cpus"])  # fixture roots
    assert all((c["uarch"] is None) == (c["uarch_source"] is None) for c in doc["cpus"])


def test_tvm_accepts_every_suggested_target():
    import tvm

    for name in ALL:
        target_dict = expected(name)["tvm_target"]
        target = tvm.target.Target(target_dict)
        assert target.kind.name == "llvm"
        assert int(target.attrs["num-cores"]) == target_dict["num-cores"]
        if "mcpu" in target_dict:
            assert str(target.attrs["mcpu"]) == target_dict["mcpu"]
        if "mtriple" in target_dict:
            assert str(target.attrs["mtriple"]) == target_dict["mtriple"]


def test_armhf_target_links_with_the_armhf_toolchain(tmp_path):
    """The suggested 32-bit target builds a .so the arm-linux-gnueabihf linker accepts.

    TVM's LLVM codegen ignores the triple's "hf": without "mfloat-abi": "hard"
    the link fails with "uses VFP register arguments, lib0.o does not".
    """
    import shutil

    if shutil.which("arm-linux-gnueabihf-gcc") is None:
        pytest.skip("arm-linux-gnueabihf-gcc not installed (apt-get install "
                    "gcc-arm-linux-gnueabihf)")
    from edge_server.board import arch
    from host_client.kernels import build_matmul

    target = dict(expected("exynos5422-linux3.10")["tvm_target"], **{"num-cores": 1})
    kernel = build_matmul(8, target, str(tmp_path), board_arch="armv7l")
    built = arch.read(kernel.path)
    assert (built.arch, built.hard_float) == ("armv7l", True)
