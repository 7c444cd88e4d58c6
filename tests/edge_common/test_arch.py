"""One spelling per architecture, and the family questions callers ask."""
import pytest

from edge_common.arch import family, is_arm, normalise


@pytest.mark.parametrize("name, norm, fam", [
    ("aarch64", "aarch64", "aarch64"), ("ARM64", "aarch64", "aarch64"),
    ("aarch64_be", "aarch64_be", "aarch64"), ("armv7l", "armv7l", "arm"),
    ("armhf", "armv7l", "arm"), ("armv8l", "armv8l", "arm"), ("armv6l", "armv6l", "arm"),
    ("x86_64", "x86_64", "x86_64"), ("amd64", "x86_64", "x86_64"), ("i686", "i686", "i686"),
    ("i386", "i686", "i686"), ("riscv64", "riscv64", "riscv64"),
    (" x86_64\n", "x86_64", "x86_64"), ("aarch64-linux-gnu", "aarch64-linux-gnu", "aarch64"),
    ("armv7a-linux-gnueabihf", "armv7a-linux-gnueabihf", "arm"),
    (None, None, None), ("", None, None),
])
def test_names_and_families(name, norm, fam):
    assert normalise(name) == norm
    assert family(name) == fam
    assert is_arm(name) == (fam in ("aarch64", "arm"))


def test_the_board_readers_use_the_same_families():
    from edge_server.board.isa import mattr
    from edge_server.board.uarch import _backend
    assert mattr(["asimd"], "arm64") == mattr(["asimd"], "aarch64") != []
    assert (_backend("ARM64"), _backend("armv7l"), _backend("x86_64")) == ("a64", "a32", "other")
