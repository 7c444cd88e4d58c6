import os

from edge_server.board.sysfs import Reader, read_cpulist, read_int, read_text


def write(root, rel, content, mode="w"):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode) as f:
        f.write(content)
    return path


def test_missing_file_is_none_without_a_warning(tmp_path):
    warnings = []
    assert read_text(str(tmp_path), "sys/devices/system/cpu/online", warnings) is None
    assert read_int(str(tmp_path), "sys/x/cpu_capacity", warnings) is None
    assert read_cpulist(str(tmp_path), "sys/x/related_cpus", warnings) is None
    assert warnings == []


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
    warnings = []
    assert read_int(str(tmp_path), "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",
                    warnings) is None
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


def test_garbage_cpulist_is_none_and_a_warning(tmp_path):
    write(tmp_path, "sys/devices/system/cpu/online", "0-3,zz\n")
    reader = Reader(str(tmp_path))
    assert reader.cpulist("sys/devices/system/cpu/online") is None
    assert "/sys/devices/system/cpu/online" in reader.warnings[0]
    assert "'0-3,zz'" in reader.warnings[0]
    assert "not a CPU list" in reader.warnings[0]


def test_unreadable_file_is_none_and_a_warning_with_the_os_error(tmp_path):
    # A directory where a file should be: open() fails with an OS error even as root.
    (tmp_path / "sys" / "online").mkdir(parents=True)
    reader = Reader(str(tmp_path))
    assert reader.text("sys/online") is None
    assert reader.warnings == ["cannot read /sys/online: Is a directory (EISDIR)"]


def test_unlistable_directory_is_empty_and_a_warning(tmp_path):
    write(tmp_path, "sys/devices/system/cpu", "not a directory")
    reader = Reader(str(tmp_path))
    assert reader.listdir("sys/devices/system/cpu") == []
    assert reader.warnings == ["cannot list /sys/devices/system/cpu: Not a directory (ENOTDIR)"]
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
