"""board/arch.py on real ELF headers: this interpreter, cross-built binaries, literal bytes."""
import platform
import shutil
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_server.board import arch

# The first 52 bytes of `arm-linux-gnueabihf-gcc -nostdlib -static` output
# (readelf: "Flags: 0x5000400, Version5 EABI, hard-float ABI").
ARMHF_HEADER = bytes.fromhex(
    "7f454c46010101000000000000000000" "0200280001000000b900010034000000"
    "9002000000040005340020000300280008000700")
# Same program with -mfloat-abi=soft: e_flags 0x05000200.
ARMSF_HEADER = ARMHF_HEADER[:36] + bytes.fromhex("00020005") + ARMHF_HEADER[40:]
# ELF64 little-endian, e_machine 183 (EM_AARCH64), e_flags 0.
AARCH64_HEADER = (b"\x7fELF\x02\x01\x01" + bytes(9) + bytes.fromhex("0200b700") + bytes(44))


def test_this_interpreter_matches_uname():
    found = arch.read(sys.executable)
    expected = {"x86_64": "x86_64", "aarch64": "aarch64", "armv7l": "armv7l"}
    assert found.arch == expected.get(platform.machine(), found.arch)
    assert found.mtriple() == {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu",
                               "armv7l": "armv7l-linux-gnueabihf"}.get(found.arch)


def test_proc_self_exe_is_the_default():
    assert arch.read() == arch.read(sys.executable)


def test_armhf_header_bytes():
    found = arch.parse_header(ARMHF_HEADER)
    assert (found.arch, found.bits, found.hard_float) == ("armv7l", 32, True)
    assert found.mtriple() == "armv7l-linux-gnueabihf"


def test_arm_soft_float_gets_the_gnueabi_triple():
    found = arch.parse_header(ARMSF_HEADER)
    assert found.hard_float is False
    assert found.mtriple() == "armv7l-linux-gnueabi"


def test_aarch64_header_bytes():
    found = arch.parse_header(AARCH64_HEADER)
    assert (found.arch, found.bits, found.hard_float) == ("aarch64", 64, None)
    assert found.mtriple() == "aarch64-linux-gnu"


@pytest.mark.parametrize("compiler,flags,name,triple", [
    ("aarch64-linux-gnu-gcc", [], "aarch64", "aarch64-linux-gnu"),
    ("arm-linux-gnueabihf-gcc", [], "armv7l", "armv7l-linux-gnueabihf"),
    ("arm-linux-gnueabihf-gcc", ["-mfloat-abi=soft"], "armv7l", "armv7l-linux-gnueabi"),
])
def test_cross_built_executables(tmp_path, compiler, flags, name, triple):
    if shutil.which(compiler) is None:
        pytest.skip("%s not installed (apt-get install gcc-aarch64-linux-gnu "
                    "gcc-arm-linux-gnueabihf); the literal-header tests cover this" % compiler)
    src = tmp_path / "s.c"
    src.write_text("void _start(void) { for (;;); }\n")
    out = tmp_path / "prog"
    subprocess.run([compiler, *flags, "-nostdlib", "-static", str(src), "-o", str(out)],
                   check=True)
    found = arch.read(str(out))
    assert (found.arch, found.mtriple()) == (name, triple)


@pytest.mark.parametrize("data,what", [
    (b"", "no \\x7fELF magic"),
    (b"#!/bin/sh\necho hi\n" + bytes(60), "no \\x7fELF magic"),
    (b"\x7fELF\x03\x01" + bytes(58), "class 3"),
    (AARCH64_HEADER[:30], "cut short"),
])
def test_not_elf_is_a_clear_error(data, what):
    with pytest.raises(arch.ElfError, match=what.replace("\\", "\\\\")):
        arch.parse_header(data)


def test_unknown_machine_has_no_arch():
    sparc = AARCH64_HEADER[:18] + (43).to_bytes(2, "little") + AARCH64_HEADER[20:]
    found = arch.parse_header(sparc)
    assert found.arch is None and found.mtriple() is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_junk_is_elferror_or_a_header(junk):
    try:
        found = arch.parse_header(junk)
    except arch.ElfError:
        return
    assert junk[:4] == b"\x7fELF" and found.bits in (32, 64)
