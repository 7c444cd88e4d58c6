"""ELF header parsing: round trips, junk, and real files of three machines."""
import shutil
import struct
import subprocess
import sys

import pytest
from hypothesis import given, strategies as st

from edge_common.elf import (MAGIC, ElfError, ElfHeader, family, parse_header, read_header,
                             same_machine)


def header_bytes(bits, little, machine, flags, e_type=3):
    end = "<" if little else ">"
    ident = MAGIC + bytes([1 if bits == 32 else 2, 1 if little else 2, 1, 0]) + bytes(8)
    body = struct.pack(end + "HHI", e_type, machine, 1)
    if bits == 32:
        rest = struct.pack(end + "IIII", 0, 0, 0, flags) + bytes(16)   # entry phoff shoff flags
    else:
        rest = struct.pack(end + "QQQI", 0, 0, 0, flags) + bytes(12)
    return ident + body + rest


@given(bits=st.sampled_from([32, 64]), little=st.booleans(),
       machine=st.integers(0, 0xFFFF), flags=st.integers(0, 0xFFFFFFFF))
def test_round_trip(bits, little, machine, flags):
    data = header_bytes(bits, little, machine, flags)
    assert parse_header(data) == ElfHeader(bits, little, machine, flags)


@given(st.binary(max_size=80))
def test_junk_is_none_or_elf_error(data):
    try:
        header = parse_header(data)
    except ElfError as err:
        assert data.startswith(MAGIC) and str(err)
    else:
        assert (header is None) == (not data.startswith(MAGIC))


@given(st.binary(max_size=80))
def test_junk_after_magic_never_crashes(tail):
    data = MAGIC + tail
    try:
        header = parse_header(data)
    except ElfError:
        return
    assert header.bits in (32, 64)


def test_cut_and_bad_headers_say_why():
    with pytest.raises(ElfError, match="cut short"):
        parse_header(MAGIC + b"\x02\x01")
    with pytest.raises(ElfError, match="class byte is 7"):
        parse_header(MAGIC + b"\x07\x01" + bytes(60))
    with pytest.raises(ElfError, match="data byte is 9"):
        parse_header(MAGIC + b"\x02\x09" + bytes(60))
    assert parse_header(b"#!/bin/sh\n") is None


def test_this_interpreter():
    header = read_header(sys.executable)
    assert header is not None
    import platform
    assert same_machine(header, platform.machine()) is True


def compile_with(cxx, tmp_path, *flags):
    if shutil.which(cxx) is None:
        pytest.fail("%s is missing: scripts/setup.sh installs it (apt)" % cxx)
    src = tmp_path / "x.c"
    src.write_text("int f(int x) { return x + 1; }\n")
    out = tmp_path / (cxx + (".so" if flags else ".o"))
    subprocess.run([cxx, *(flags or ["-c"]), "-x", "c", str(src), "-o", str(out)], check=True)
    return read_header(str(out))


@pytest.mark.parametrize("cxx, family_name, bits, describe, board", [
    ("aarch64-linux-gnu-g++", "aarch64", 64, "aarch64", "aarch64"),
    ("arm-linux-gnueabihf-g++", "arm", 32, "32-bit ARM", "armv7l"),
])
def test_cross_compiled_objects(tmp_path, cxx, family_name, bits, describe, board):
    header = compile_with(cxx, tmp_path)
    assert (header.family, header.bits, header.describe()) == (family_name, bits, describe)
    assert same_machine(header, board) is True
    assert same_machine(header, "x86_64") is False
    assert same_machine(header, "sparc64") is None


@pytest.mark.parametrize("name, fam", [
    ("aarch64", "aarch64"), ("arm64", "aarch64"), ("aarch64-linux-gnu", "aarch64"),
    ("armv7l", "arm"), ("armv8l", "arm"), ("armhf", "arm"), ("armv7a-linux-gnueabihf", "arm"),
    ("x86_64", "x86_64"), ("AMD64", "x86_64"), ("i686", "i386"), ("riscv64", "riscv"),
    ("sparc64", None), ("", None), (None, None),
])
def test_family(name, fam):
    assert family(name) == fam


def test_64_bit_x86_object_is_not_for_a_32_bit_x86_board():
    header = parse_header(header_bytes(64, True, 62, 0))
    assert same_machine(header, "i686") is False
    assert header.describe() == "x86-64"


def test_linked_armhf_library_says_hard_float(tmp_path):
    header = compile_with("arm-linux-gnueabihf-g++", tmp_path, "-shared", "-fPIC")
    assert header.describe() == "32-bit ARM hard-float"
