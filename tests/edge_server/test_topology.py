"""Probe behaviour on broken or unusual trees (the fixture boards are in test_fixtures.py)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_server.topology import ProbeError, probe

BOARDS = Path(__file__).resolve().parent.parent / "fixtures" / "boards"
CPU = "sys/devices/system/cpu"


def board_copy(tmp_path, name="rk3399"):
    root = tmp_path / name
    shutil.copytree(BOARDS / name, root, symlinks=True)
    (root / "expected.json").unlink()
    return root


def write(root, rel, content):
    path = Path(root) / rel
    if path.is_symlink():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


def cpu(doc, cpu_id):
    return next(c for c in doc["cpus"] if c["id"] == cpu_id)


def test_root_that_is_not_a_directory_is_a_probe_error(tmp_path):
    with pytest.raises(ProbeError, match="not a directory"):
        probe(str(tmp_path / "missing"))


def test_tree_without_cpus_is_a_probe_error(tmp_path):
    (tmp_path / "sys" / "devices" / "system" / "cpu").mkdir(parents=True)
    (tmp_path / "proc").mkdir()
    with pytest.raises(ProbeError, match="no CPU found"):
        probe(str(tmp_path))


def test_cpuinfo_without_processors_and_no_sysfs_is_a_probe_error(tmp_path):
    write(tmp_path, "proc/cpuinfo", "Hardware\t: nothing\n")
    with pytest.raises(ProbeError):
        probe(str(tmp_path))


def test_garbage_cpulist_becomes_a_warning_and_the_probe_goes_on(tmp_path):
    root = board_copy(tmp_path)
    write(root, CPU + "/cpu4/topology/cluster_cpus_list", "4-zz\n")
    write(root, CPU + "/cpu4/topology/thread_siblings_list", "\x00\x01garbage")
    doc = probe(str(root))
    assert any("/sys/devices/system/cpu/cpu4/topology/cluster_cpus_list" in w
               and "'4-zz'" in w for w in doc["warnings"])
    assert cpu(doc, 4)["smt_siblings"] is None
    # cpu5's list and cpu4's frequency domain still put 4 and 5 together.
    assert [c["cpus"] for c in doc["clusters"]] == [[0, 1, 2, 3], [4, 5]]
    assert [c["name"] for c in doc["classes"]] == ["big", "little"]


def test_non_numeric_max_freq_is_null_with_a_warning(tmp_path):
    root = board_copy(tmp_path)
    write(root, CPU + "/cpufreq/policy4/cpuinfo_max_freq", "<unknown>\n")
    doc = probe(str(root))
    assert cpu(doc, 4)["max_freq_khz"] is None and cpu(doc, 5)["max_freq_khz"] is None
    assert any("policy4/cpuinfo_max_freq" in w or "cpu4/cpufreq/cpuinfo_max_freq" in w
               for w in doc["warnings"])
    # The A72s are still told apart from the A53s by uarch and capacity.
    big = doc["classes"][0]
    assert (big["cpus"], big["uarch"], big["max_freq_khz"]) == ([4, 5], "cortex-a72", None)


def test_missing_cpuinfo_is_a_warning_and_uarch_unknown(tmp_path):
    root = board_copy(tmp_path)
    (root / "proc" / "cpuinfo").unlink()
    doc = probe(str(root))
    assert "/proc/cpuinfo is missing: uarch, MIDR and ISA features are unknown" in doc["warnings"]
    assert all(c["uarch"] is None and c["midr"] is None for c in doc["cpus"])
    assert doc["arch"] is None and doc["isa"] == []
    # Capacity and max frequency still separate the two kinds of core.
    assert [(c["name"], c["cpus"]) for c in doc["classes"]] == [("big", [4, 5]),
                                                              ("little", [0, 1, 2, 3])]
    assert doc["tvm_target"] == {"kind": "llvm", "num-cores": 6}


def test_empty_cpu_directories_still_list_the_cpus(tmp_path):
    for n in range(3):
        (tmp_path / CPU / ("cpu%d" % n)).mkdir(parents=True)
    doc = probe(str(tmp_path))
    assert [c["id"] for c in doc["cpus"]] == [0, 1, 2]
    assert all(c["online"] is None and c["allowed"] is None for c in doc["cpus"])
    assert any("present is missing" in w for w in doc["warnings"])
    assert any("cannot tell whether CPUs 0-2 are online" in w for w in doc["warnings"])
    # Nothing tells the three apart: one class, one guessed cluster.
    assert [c["cpus"] for c in doc["classes"]] == [[0, 1, 2]]
    assert [c["cpus"] for c in doc["clusters"]] == [[0, 1, 2]]
    assert any("guessed" in w for w in doc["warnings"])
    json.dumps(doc)


def test_cpuinfo_alone_is_enough(tmp_path):
    text = (BOARDS / "rk3399" / "proc" / "cpuinfo").read_text()
    write(tmp_path, "proc/cpuinfo", text)
    doc = probe(str(tmp_path))
    assert [c["id"] for c in doc["cpus"]] == list(range(6))
    assert all(c["online"] is True for c in doc["cpus"])
    assert [(c["name"], c["uarch"], c["cpus"]) for c in doc["classes"]] == [
        ("big", "cortex-a72", [4, 5]), ("little", "cortex-a53", [0, 1, 2, 3])]
    assert doc["tvm_target"]["mcpu"] == "cortex-a72"


def test_garbage_online_list_leaves_online_unknown(tmp_path):
    root = board_copy(tmp_path)
    write(root, CPU + "/online", "all of them\n")
    doc = probe(str(root))
    # /proc/cpuinfo lists only online processors, so that is the fallback.
    assert all(c["online"] is True for c in doc["cpus"])
    assert any("/sys/devices/system/cpu/online" in w and "not a CPU list" in w
               for w in doc["warnings"])


def test_unknown_midr_keeps_uarch_null_but_a_class_of_its_own(tmp_path):
    root = board_copy(tmp_path)
    text = (root / "proc" / "cpuinfo").read_text()
    write(root, "proc/cpuinfo", text.replace("CPU part\t: 0xd08", "CPU part\t: 0xabc"))
    doc = probe(str(root))
    assert cpu(doc, 4)["uarch"] is None and cpu(doc, 4)["midr"] == "0x410fabc2"
    assert any("MIDR 0x410fabc2" in w and "CPUs 4-5" in w for w in doc["warnings"])
    assert doc["classes"][0]["cpus"] == [4, 5] and doc["classes"][0]["uarch"] is None
    assert "mcpu" not in doc["tvm_target"]


def test_cluster_list_that_mixes_kinds_is_split_with_a_warning(tmp_path):
    root = board_copy(tmp_path)
    for n in range(6):
        write(root, CPU + "/cpu%d/topology/cluster_cpus_list" % n, "0-5\n")
    doc = probe(str(root))
    assert [c["cpus"] for c in doc["clusters"]] == [[0, 1, 2, 3], [4, 5]]
    assert ("the kernel groups CPUs 0-5 in one cluster (cluster_cpus_list) but they are 2 "
            "kinds of core; split into 0-3, 4-5") in doc["warnings"]


def test_offline_cpu_with_nothing_known_is_in_no_class(tmp_path):
    root = board_copy(tmp_path, "rk3399-offline")
    os.unlink(root / CPU / "cpu4" / "cpufreq")
    (root / CPU / "cpu4" / "cpu_capacity").unlink()
    # policy4 still names cpu4, so its frequency domain is known...
    doc = probe(str(root))
    assert cpu(doc, 4)["class"] == "big" and cpu(doc, 4)["max_freq_khz"] == 1800000
    # ...without it nothing says whether cpu4 is an A53 or an A72.
    shutil.rmtree(root / CPU / "cpufreq" / "policy4")
    os.unlink(root / CPU / "cpu5" / "cpufreq")
    doc = probe(str(root))
    assert cpu(doc, 4)["class"] is None and cpu(doc, 4)["cluster"] is None
    assert any("CPUs 4: too little is known" in w for w in doc["warnings"])
    assert [c["cpus"] for c in doc["classes"]] == [[5], [0, 1, 2, 3]]


def test_processors_with_different_features_give_the_common_isa(tmp_path):
    root = board_copy(tmp_path)
    text = (root / "proc" / "cpuinfo").read_text()
    blocks = text.split("\n\n")
    blocks[4] = blocks[4].replace("crc32", "crc32 asimddp")
    write(root, "proc/cpuinfo", "\n\n".join(blocks))
    doc = probe(str(root))
    assert "asimddp" not in doc["isa"] and "crc32" in doc["isa"]
    assert any("asimddp not on all" in w for w in doc["warnings"])


def test_intel_hybrid_without_frequencies_still_ranks_p_cores_first(tmp_path):
    root = board_copy(tmp_path, "intel-hybrid")
    shutil.rmtree(root / CPU / "cpufreq")
    doc = probe(str(root))
    assert [(c["name"], c["cpus"]) for c in doc["classes"]] == [
        ("big", list(range(8))), ("little", list(range(8, 16)))]


def test_dmi_placeholders_are_not_board_names(tmp_path):
    root = board_copy(tmp_path, "x86-server-smt")
    write(root, "sys/class/dmi/id/product_name", "To Be Filled By O.E.M.\n")
    assert probe(str(root))["board"] == "Supermicro"


def test_live_probe_uses_this_process_affinity():
    """Run in a child restricted to one CPU: allowed and num-cores follow the affinity."""
    allowed = sorted(os.sched_getaffinity(0))
    code = ("import os, json; os.sched_setaffinity(0, {%d}); "
            "from edge_server.topology import probe; print(json.dumps(probe('/')))" % allowed[0])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    doc = json.loads(out)
    assert [c["id"] for c in doc["cpus"] if c["allowed"]] == [allowed[0]]
    assert doc["tvm_target"]["num-cores"] == 1
