import os

import pytest

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_server.board.sysfs import Reader


def write(root, rel, content, mode="w"):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode) as f:
        f.write(content)
    return path


def test_missing_file_is_none_without_a_warning(tmp_path):
    reader = Reader(str(tmp_path))
    assert reader.text("sys/devices/system/cpu/online") is None
    assert reader.integer("sys/x/cpu_capacity") is None
    assert reader.cpulist("sys/x/cluster_cpus_list") is None
    assert reader.cpu_numbers("sys/x/related_cpus") is None
    assert reader.hex_register("sys/x/midr_el1") is None
    assert reader.warnings == []


def test_values_are_read_below_the_root_and_stripped(tmp_path):
    write(tmp_path, "sys/devices/system/cpu/online", "0-3,5\n")
    write(tmp_path, "sys/devices/system/cpu/cpu0/cpu_capacity", "381\n")
    write(tmp_path, "proc/device-tree/model", "Pine64 RockPro64 v2.1\0")
    reader = Reader(str(tmp_path))
    assert reader.cpulist("sys/devices/system/cpu/online") == [0, 1, 2, 3, 5]
    assert reader.integer("/sys/devices/system/cpu/cpu0/cpu_capacity") == 381
    assert reader.text("proc/device-tree/model") == "Pine64 RockPro64 v2.1"
    assert reader.warnings == []


def test_negative_ids_are_integers(tmp_path):
    # Some kernels write -1 for an unknown package or cluster id.
    write(tmp_path, "sys/physical_package_id", "-1\n")
    assert Reader(str(tmp_path)).integer("sys/physical_package_id") == -1


def test_empty_cpulist_is_the_empty_set(tmp_path):
    write(tmp_path, "sys/devices/system/cpu/isolated", "\n")
    reader = Reader(str(tmp_path))
    assert reader.cpulist("sys/devices/system/cpu/isolated") == []
    assert reader.warnings == []


def test_garbage_integer_is_none_and_a_warning_quoting_path_and_value(tmp_path):
    write(tmp_path, "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "<unknown>\n")
    reader = Reader(str(tmp_path))
    warnings = reader.warnings
    assert reader.integer("sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq") is None
    assert len(warnings) == 1
    assert "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq" in warnings[0]
    assert "'<unknown>'" in warnings[0]
    # The board path is named, not the fixture root it was read from.
    assert str(tmp_path) not in warnings[0]


def test_empty_file_is_not_an_integer(tmp_path):
    write(tmp_path, "sys/cpu_capacity", "")
    reader = Reader(str(tmp_path))
    assert reader.integer("sys/cpu_capacity") is None
    assert "is not an integer" in reader.warnings[0]


@pytest.mark.parametrize("read,value,what", [
    ("cpulist", "0-3,zz\n", "not a CPU list"),
    ("cpu_numbers", "0-3\n", "show_cpus"),  # a range is not what show_cpus() writes
    ("hex_register", "410fd034 junk\n", "hexadecimal register"),
])
def test_garbage_is_none_and_a_warning_quoting_path_and_value(tmp_path, read, value, what):
    write(tmp_path, "sys/devices/system/cpu/f", value)
    reader = Reader(str(tmp_path))
    assert getattr(reader, read)("sys/devices/system/cpu/f") is None
    assert reader.warnings[0].startswith("/sys/devices/system/cpu/f: %r" % value.strip())
    assert what in reader.warnings[0]


def test_unreadable_file_is_none_and_a_warning_with_the_os_error(tmp_path):
    # A directory where a file should be: open() fails with an OS error even as root.
    (tmp_path / "sys" / "online").mkdir(parents=True)
    reader = Reader(str(tmp_path))
    assert reader.text("sys/online") is None
    assert reader.warnings == ["cannot read /sys/online: Is a directory"]


def test_unlistable_directory_is_empty_and_a_warning(tmp_path):
    write(tmp_path, "sys/devices/system/cpu", "not a directory")
    reader = Reader(str(tmp_path))
    assert reader.listdir("sys/devices/system/cpu") == []
    assert reader.warnings == ["cannot list /sys/devices/system/cpu: Not a directory"]
    assert Reader(str(tmp_path)).listdir("sys/nothing/here") == []


def test_non_utf8_bytes_do_not_crash(tmp_path):
    write(tmp_path, "proc/device-tree/model", b"Board \xff name\0", mode="wb")
    assert Reader(str(tmp_path)).text("proc/device-tree/model") == "Board \ufffd name"


def test_huge_file_is_refused(tmp_path, monkeypatch):
    import edge_server.board.sysfs as sysfs
    monkeypatch.setattr(sysfs, "MAX_READ_BYTES", 16)
    write(tmp_path, "proc/cpuinfo", "x" * 17)
    reader = Reader(str(tmp_path))
    assert reader.text("proc/cpuinfo") is None
    assert "larger than 16 bytes" in reader.warnings[0]


def test_reads_follow_sysfs_symlinks(tmp_path):
    write(tmp_path, "sys/devices/system/cpu/cpufreq/policy4/related_cpus", "4-5\n")
    os.makedirs(tmp_path / "sys/devices/system/cpu/cpu4")
    os.symlink("../cpufreq/policy4", tmp_path / "sys/devices/system/cpu/cpu4/cpufreq")
    reader = Reader(str(tmp_path))
    assert reader.cpulist("sys/devices/system/cpu/cpu4/cpufreq/related_cpus") == [4, 5]


# ---- one test per kernel format, each quoting the kernel function that writes it


def test_related_cpus_is_what_cpufreq_show_cpus_writes(tmp_path):
    """drivers/cpufreq/cpufreq.c show_cpus():
        for_each_cpu(cpu, mask) { i += sysfs_emit_at(buf, i, "%u ", cpu); ... }
        i += sysfs_emit_at(buf, i, "\n");
    so "0 1 2 3 \n" (a space after every number), never "0-3"."""
    write(tmp_path, "p/related_cpus", "0 1 2 3 \n")
    write(tmp_path, "p/affected_cpus", "4 5 \n")
    write(tmp_path, "p/single", "7 \n")
    write(tmp_path, "p/empty", "\n")
    reader = Reader(str(tmp_path))
    assert reader.cpu_numbers("p/related_cpus") == [0, 1, 2, 3]
    assert reader.cpu_numbers("p/affected_cpus") == [4, 5]
    assert reader.cpu_numbers("p/single") == [7]
    assert reader.cpu_numbers("p/empty") == []
    assert reader.warnings == []


def test_topology_lists_are_what_pbl_writes(tmp_path):
    """drivers/base/topology.c (core_siblings_list, cluster_cpus_list, ...) and
    drivers/base/cpu.c (online, possible, present) print with "%*pbl\n":
    ranges joined by commas, "0-3,6\n"."""
    write(tmp_path, "t/core_siblings_list", "0-3,6\n")
    write(tmp_path, "t/online", "0\n")
    reader = Reader(str(tmp_path))
    assert reader.cpulist("t/core_siblings_list") == [0, 1, 2, 3, 6]
    assert reader.cpulist("t/online") == [0]
    assert reader.warnings == []


def test_midr_el1_is_what_arm64_cpuinfo_c_writes(tmp_path):
    """arch/arm64/kernel/cpuinfo.c CPUREGS_ATTR_RO(midr_el1, midr):
        sprintf(buf, "0x%016llx\n", info->reg_midr)."""
    write(tmp_path, "r/midr_el1", "0x00000000410fd034\n")
    reader = Reader(str(tmp_path))
    assert reader.hex_register("r/midr_el1") == 0x410FD034
    assert reader.warnings == []


def test_cpu_capacity_is_a_decimal(tmp_path):
    """drivers/base/arch_topology.c cpu_capacity_show(): sysfs_emit(buf, "%lu\n", ...)."""
    write(tmp_path, "c/cpu_capacity", "1024\n")
    assert Reader(str(tmp_path)).integer("c/cpu_capacity") == 1024


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4095), max_size=16))
def test_show_cpus_round_trip(cpus):
    import tempfile
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "related_cpus"), "w") as f:
            f.write("".join("%d " % c for c in sorted(set(cpus))) + "\n")
        assert Reader(root).cpu_numbers("related_cpus") == sorted(set(cpus))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_junk_never_raises_and_warns_with_path(junk):
    import tempfile
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "f"), "wb") as f:
            f.write(junk)
        reader = Reader(root)
        for read in (reader.cpu_numbers, reader.hex_register, reader.integer, reader.cpulist):
            before = len(reader.warnings)
            value = read("f")
            if value is None:
                assert all("/f" in w for w in reader.warnings[before:])
