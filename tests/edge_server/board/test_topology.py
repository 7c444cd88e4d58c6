"""Probe behaviour on broken or unusual trees (the fixture boards are in test_fixtures.py)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_server.board.topology import ProbeError, probe

BOARDS = Path(__file__).resolve().parents[2] / "fixtures" / "boards"
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


def test_missing_cpuinfo_leaves_midr_el1_then_the_soc_table_then_nothing(tmp_path):
    root = board_copy(tmp_path)
    (root / "proc" / "cpuinfo").unlink()
    doc = probe(str(root))
    assert "/proc/cpuinfo is missing: uarch, MIDR and ISA features are unknown" in doc["warnings"]
    assert [(c["uarch"], c["uarch_source"], c["midr"]) for c in doc["cpus"]][3:5] == [
        ("cortex-a53", "midr_el1", "0x410fd034"), ("cortex-a72", "midr_el1", "0x410fd082")]
    for n in range(6):
        shutil.rmtree(root / CPU / ("cpu%d" % n) / "regs")
    doc = probe(str(root))
    assert [(c["uarch"], c["uarch_source"], c["midr"]) for c in doc["cpus"]][3:5] == [
        ("cortex-a53", "soc-table", None), ("cortex-a72", "soc-table", None)]
    (root / "proc" / "device-tree" / "compatible").unlink()
    doc = probe(str(root))
    assert all(c["uarch"] is None and c["midr"] is None and c["uarch_source"] is None
               for c in doc["cpus"])
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
    assert any("clusters follow one cluster per core class" in w for w in doc["warnings"])
    assert doc["clusters"][0]["source"] == "core-kind"
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
    for n in (4, 5):
        write(root, CPU + "/cpu%d/regs/identification/midr_el1" % n, "0x00000000410fabc2\n")
    doc = probe(str(root))
    # An undecodable MIDR is still per-core evidence: the SoC table does not override it.
    assert cpu(doc, 4)["uarch_source"] is None
    assert cpu(doc, 4)["uarch"] is None and cpu(doc, 4)["midr"] == "0x410fabc2"
    assert any("MIDR 0x410fabc2" in w and "CPUs 4-5" in w for w in doc["warnings"])
    assert doc["classes"][0]["cpus"] == [4, 5] and doc["classes"][0]["uarch"] is None
    assert "mcpu" not in doc["tvm_target"]


def test_cluster_list_that_mixes_kinds_is_split_with_a_warning(tmp_path):
    root = board_copy(tmp_path, "rk3399-nocpufreq")  # no frequency domains to refine it
    for n in range(6):
        write(root, CPU + "/cpu%d/topology/cluster_cpus_list" % n, "0-5\n")
        write(root, CPU + "/cpu%d/topology/core_siblings_list" % n, "0-5\n")
    doc = probe(str(root))
    assert [c["cpus"] for c in doc["clusters"]] == [[0, 1, 2, 3], [4, 5]]
    assert [c["source"] for c in doc["clusters"]] == ["cluster_cpus_list+core-kind"] * 2
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
    # ...except the SoC the device tree names (rockchip,rk3399: cpu4-5 are A72s)...
    assert (cpu(doc, 4)["uarch"], cpu(doc, 4)["uarch_source"]) == ("cortex-a72", "soc-table")
    assert cpu(doc, 4)["class"] == "big"
    (root / "proc" / "device-tree" / "compatible").unlink()
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
            "from edge_server.board.topology import probe; print(json.dumps(probe('/')))" % allowed[0])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    doc = json.loads(out)
    assert [c["id"] for c in doc["cpus"] if c["allowed"]] == [allowed[0]]
    assert doc["tvm_target"]["num-cores"] == 1


def test_isolated_cpus_are_named_in_a_warning_and_keep_their_class(tmp_path):
    root = board_copy(tmp_path)
    write(root, CPU + "/isolated", "4-5\n")
    doc = probe(str(root))
    assert any(w.startswith("CPUs 4-5 are isolated") for w in doc["warnings"])
    assert doc["classes"][0]["cpus"] == [4, 5]


# ------------------------------------------------------------ fuzzing

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_VALUES = st.one_of(
    st.sampled_from(["", "\n", "0", "1", "-1", "1024", "1800000", "0-3", "0-1,3", "4-5",
                     "0-4095", "3-1", "x", "0x10", " 7 ", "\x00", "0-99999999"]),
    st.text(max_size=12))
_PER_CPU = ["cpu_capacity", "online", "topology/core_id", "topology/physical_package_id",
            "topology/thread_siblings_list", "topology/core_siblings_list",
            "topology/cluster_cpus_list", "cpufreq/cpuinfo_max_freq", "cpufreq/related_cpus",
            "regs/identification/midr_el1"]
_GLOBAL = ["present", "online", "isolated", "cpufreq/policy0/related_cpus",
           "cpufreq/policy0/cpuinfo_max_freq"]
_SOC_FILES = st.dictionaries(
    st.sampled_from(["proc/device-tree/compatible", "proc/device-tree/model",
                     "system/build.prop"]),
    st.one_of(st.sampled_from(["rockchip,rk3399\0", "ro.board.platform=msm8974\n",
                               "qcom,sm8150\0qcom\0", "ro.chipname=exynos7420\n", "=\n"]),
              st.text(max_size=20)), max_size=3)
_CPUINFO_LINES = st.sampled_from([
    "processor\t: 0", "processor\t: 1", "processor\t: 7", "processor\t: x", "",
    "CPU implementer\t: 0x41", "CPU part\t: 0xd08", "CPU part\t: 0xzzz", "CPU variant\t: 0x0",
    "CPU revision\t: 3", "CPU architecture: 8", "CPU architecture: 7", "Features\t: fp asimd",
    "flags\t\t: fpu lm avx2", "Processor\t: ARMv7 Processor rev 3 (v7l)", "garbage", ":",
    "Hardware\t: Qualcomm MSM 8974 HAMMERHEAD", "Hardware\t: MT6797", "Revision\t: c03112",
    "Hardware\t: SAMSUNG EXYNOS5422", "CPU part\t: 0x06f", "CPU implementer\t: 0x51"])


@settings(max_examples=int(os.environ.get("PROBE_FUZZ_EXAMPLES", "80")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(ncpus=st.integers(0, 4),
       per_cpu=st.dictionaries(st.tuples(st.integers(0, 4), st.sampled_from(_PER_CPU)),
                               _VALUES, max_size=25),
       global_files=st.dictionaries(st.sampled_from(_GLOBAL), _VALUES, max_size=5),
       cpuinfo=st.one_of(st.none(), st.lists(_CPUINFO_LINES, max_size=20)),
       soc_files=_SOC_FILES)
def test_any_tree_gives_a_document_or_a_probe_error(ncpus, per_cpu, global_files, cpuinfo,
                                                    soc_files):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for n in range(ncpus):
            (Path(tmp) / CPU / ("cpu%d" % n)).mkdir(parents=True)
        for (n, rel), value in per_cpu.items():
            write(tmp, "%s/cpu%d/%s" % (CPU, n, rel), value)
        for rel, value in global_files.items():
            write(tmp, "%s/%s" % (CPU, rel), value)
        if cpuinfo is not None:
            write(tmp, "proc/cpuinfo", "\n".join(cpuinfo))
        for rel, value in soc_files.items():
            write(tmp, rel, value)
        try:
            doc = probe(tmp)
        except ProbeError:
            return
    json.dumps(doc)
    ids = [c["id"] for c in doc["cpus"]]
    assert ids == sorted(set(ids)) and ids
    by_id = {c["id"]: c for c in doc["cpus"]}
    names = [c["name"] for c in doc["classes"]]
    assert len(set(names)) == len(names)
    for cls in doc["classes"]:
        assert all(by_id[i]["class"] == cls["name"] for i in cls["cpus"])
    for cluster in doc["clusters"]:
        assert {by_id[i]["class"] for i in cluster["cpus"]} == {cluster["class"]}
        assert all(by_id[i]["cluster"] == cluster["id"] for i in cluster["cpus"])
    assert doc["tvm_target"]["num-cores"] >= 1
    for c in doc["cpus"]:
        assert (c["uarch"] is None) == (c["uarch_source"] is None)
        assert c["uarch_source"] in (None, "midr_el1", "cpuinfo", "cpuinfo-global",
                                     "soc-table", "frequency", "guess")
    assert all(c["source"] for c in doc["clusters"])


# ------------------------------------------------------------ arch


def test_live_arch_is_this_interpreter_elf_not_cpuinfo():
    from edge_server.board import arch as arch_mod

    doc = probe("/")
    own = arch_mod.read(sys.executable)
    assert doc["arch"] == own.arch
    assert doc["tvm_target"]["mtriple"] == own.mtriple()


def test_fixture_arch_comes_from_the_cpuinfo_reader(tmp_path):
    # A 32-bit reader on an arm64 kernel: "CPU architecture: 8", (v8l), 32-bit hwcaps.
    block = ("processor\t: %d\nmodel name\t: ARMv8 Processor rev 4 (v8l)\nBogoMIPS\t: 38.40\n"
             "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt lpae "
             "evtstrm aes pmull sha1 sha2 crc32\nCPU implementer\t: 0x41\nCPU architecture: 8\n"
             "CPU variant\t: 0x0\nCPU part\t: 0xd03\nCPU revision\t: 4\n\n")
    write(tmp_path, "proc/cpuinfo", "".join(block % c for c in range(4)))
    doc = probe(str(tmp_path))
    assert doc["arch"] == "armv7l"
    assert doc["tvm_target"]["mtriple"] == "armv7l-linux-gnueabihf"
    assert doc["tvm_target"]["mcpu"] == "cortex-a53"
    # The same cores read by a 64-bit process.
    write(tmp_path, "proc/cpuinfo", (BOARDS / "rk3399" / "proc" / "cpuinfo").read_text())
    assert probe(str(tmp_path))["arch"] == "aarch64"


def test_one_policy_of_like_cores_is_one_cluster_whatever_the_datasheet_says(tmp_path):
    """MT6752-style: no topology files, one cpufreq policy for all 8 A53s (MediaTek's
    hotplug DVFS), one global CPU block. The datasheet draws two clusters of 4, but
    like cores on one clock are one cluster to a thread pool (and to the scorer)."""
    write(tmp_path, CPU + "/present", "0-7\n")
    write(tmp_path, CPU + "/online", "0-7\n")
    write(tmp_path, CPU + "/cpu0/cpufreq/related_cpus", "0 1 2 3 4 5 6 7 \n")
    write(tmp_path, CPU + "/cpu0/cpufreq/cpuinfo_max_freq", "1690000\n")
    for n in range(1, 8):
        os.makedirs(tmp_path / CPU / ("cpu%d" % n))
        os.symlink("../cpu0/cpufreq", tmp_path / CPU / ("cpu%d" % n) / "cpufreq")
    write(tmp_path, "proc/cpuinfo",
          "Processor\t: AArch64 Processor rev 3 (aarch64)\n"
          + "".join("processor\t: %d\n" % n for n in range(8))
          + "Features\t: fp asimd aes pmull sha1 sha2 crc32\nCPU implementer\t: 0x41\n"
            "CPU architecture: AArch64\nCPU variant\t: 0x0\nCPU part\t: 0xd03\n"
            "CPU revision\t: 3\n\nHardware\t: MT6752\n")
    doc = probe(str(tmp_path))
    assert [(c["cpus"], c["source"]) for c in doc["clusters"]] == [
        (list(range(8)), "related_cpus")]
    assert all((c["uarch"], c["uarch_source"]) == ("cortex-a53", "cpuinfo-global")
               for c in doc["cpus"])
    assert not any("documented clusters" in w for w in doc["warnings"])


def test_one_policy_split_by_the_topology_files_is_one_cluster_only_for_like_cores(tmp_path):
    """A policy wider than the cpu-map clusters merges them only when every CPU in it
    is one core type; big.LITTLE cores on one policy keep the topology split."""
    write(tmp_path, CPU + "/present", "0-7\n")
    write(tmp_path, CPU + "/online", "0-7\n")
    write(tmp_path, CPU + "/cpu0/cpufreq/related_cpus", "0 1 2 3 4 5 6 7 \n")
    write(tmp_path, CPU + "/cpu0/cpufreq/cpuinfo_max_freq", "1800000\n")
    for n in range(8):
        write(tmp_path, CPU + "/cpu%d/topology/core_siblings_list" % n,
              "0-3\n" if n < 4 else "4-7\n")
        write(tmp_path, CPU + "/cpu%d/topology/thread_siblings_list" % n, "%d\n" % n)
        if n:
            os.symlink("../cpu0/cpufreq", tmp_path / CPU / ("cpu%d" % n) / "cpufreq")
    block = ("processor\t: %d\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\n"
             "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: %s\nCPU revision\t: 4\n\n")
    write(tmp_path, "proc/cpuinfo", "".join(block % (n, "0xd03") for n in range(8)))
    doc = probe(str(tmp_path))
    assert [(c["cpus"], c["source"]) for c in doc["clusters"]] == [(list(range(8)), "related_cpus")]
    assert any("from one policy, though the topology files split them" in w
               for w in doc["warnings"])
    write(tmp_path, "proc/cpuinfo", "".join(block % (n, "0xd03" if n < 4 else "0xd08")
                                            for n in range(8)))
    doc = probe(str(tmp_path))
    assert [c["cpus"] for c in doc["clusters"]] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert not any("from one policy" in w for w in doc["warnings"])


def test_an_empty_online_file_is_a_failed_capture_not_all_cpus_offline(tmp_path):
    """cpu0 is always online, so an empty online file says nothing: cpuinfo decides."""
    write(tmp_path, CPU + "/present", "0-3\n")
    write(tmp_path, CPU + "/online", "")
    write(tmp_path, "proc/cpuinfo", "".join(
        "processor\t: %d\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
        "CPU part\t: 0xd03\nCPU revision\t: 4\n\n" % n for n in range(2)))
    doc = probe(str(tmp_path))
    assert [c["online"] for c in doc["cpus"]] == [True, True, None, None]
    assert any("online is empty" in w for w in doc["warnings"])
