"""target_for: the board's suggested target, narrowed to a thread mode."""
import json

import pytest
import tvm

from tests.support import client_kit
from edge_common.modes import ModeError
from host_client.boards import Board
from host_client.target import target_dict_for, target_for

FIXTURES = client_kit.procs.FIXTURES


def topology(board: str) -> dict:
    return json.loads((FIXTURES / board / "expected.json").read_text())


@pytest.mark.parametrize("mode, mcpu, cores", [
    ("little:1", "cortex-a53", 1),
    ("little", "cortex-a53", 4),
    ("big", "cortex-a72", 2),
    ("big:1", "cortex-a72", 1),
    ("all", "cortex-a72", 6),          # mixed classes: the board's suggestion
    ("cpus:0-1", "cortex-a53", 2),     # explicit CPUs of one class
    ("cpus:3-4", "cortex-a72", 2),     # explicit CPUs of two classes
])
def test_rk3399_targets_follow_the_mode(mode, mcpu, cores):
    target = target_for(topology("rk3399"), mode)
    assert isinstance(target, tvm.target.Target)
    assert int(target.attrs["num-cores"]) == cores
    assert str(target.attrs["mcpu"]) == mcpu
    assert str(target.attrs["mtriple"]) == "aarch64-linux-gnu"
    assert "+neon" in [str(a) for a in target.attrs["mattr"]]


def test_rk3588_little_core_target():
    assert target_dict_for(topology("rk3588"), "little:2") == dict(
        topology("rk3588")["tvm_target"], mcpu="cortex-a55", **{"num-cores": 2})


def test_x86_smt_board_counts_physical_cores_and_keeps_its_cpu():
    target = target_dict_for(topology("x86-server-smt"), "all")
    assert target["num-cores"] == 16
    assert "mcpu" not in target


def test_a_mode_the_board_lacks_is_a_clear_error():
    with pytest.raises(ModeError, match="prime"):
        target_for(topology("rk3399"), "prime:1")


def test_stock_board_has_no_target():
    stock = Board(key="stock", address="10.0.0.9:9090", edge=False, key_free=1,
                  key_pending=0, key_total=1)
    with pytest.raises(ValueError, match="10.0.0.9:9090.*edge-server"):
        target_for(stock, "all")


def test_edge_board_from_the_tracker_gives_its_target():
    rk = Board(key="rk3399", address="10.0.0.8:9090", edge=True, key_free=1, key_pending=0,
               key_total=1, topology=topology("rk3399"))
    assert target_dict_for(rk, "little:1")["num-cores"] == 1


def test_default_mode_is_all():
    assert target_dict_for(topology("rk3399"))["num-cores"] == 6


def test_armhf_board_gets_the_hard_float_abi_its_toolchain_links():
    target = target_dict_for(topology("exynos5422-linux3.10"), "all")
    assert target["mtriple"] == "armv7l-linux-gnueabihf" and target["mfloat-abi"] == "hard"
    # an aarch64 board's target is left alone
    assert "mfloat-abi" not in target_dict_for(topology("rk3399"), "little:1")
