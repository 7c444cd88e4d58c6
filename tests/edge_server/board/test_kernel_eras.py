"""Old-kernel boards of known SoCs in every hot-plug state: the probe's clusters and
core types on the online CPUs must be the SoC's documented ones.

Each board is written the way its kernel era writes it (make_trees helpers):
32-bit 3.0/3.4 and arm64 3.10 kernels print one global CPU block for the CPU
that ran the read; 3.18+ kernels one block per online CPU. Topology is per
cluster (MPIDR or cpu-map), all-in-one, or absent; offline CPUs lose their
topology and cpufreq links and their cpuinfo line; old kernels may keep them
in the online CPUs' masks. The answer comes from the generator's layout (the
vendor's documented clusters), never from the probe.
"""
import importlib.util
import os
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_server.board.topology import probe

_SPEC = importlib.util.spec_from_file_location(
    "make_trees", Path(__file__).resolve().parents[2] / "fixtures" / "boards" / "make_trees.py")
mt = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(mt)

# (implementer, variant, part, revision, uarch)
A7, A9, A15 = (0x41, 0, 0xC07, 3, "cortex-a7"), (0x41, 3, 0xC09, 0, "cortex-a9"), \
    (0x41, 2, 0xC0F, 3, "cortex-a15")
A17, A53, A57 = (0x41, 0, 0xC0E, 1, "cortex-a17"), (0x41, 0, 0xD03, 4, "cortex-a53"), \
    (0x41, 1, 0xD07, 1, "cortex-a57")
A72, KRAIT = (0x41, 0, 0xD08, 2, "cortex-a72"), (0x51, 2, 0x06F, 0, "krait")
# Hardware line, clusters in the kernel's CPU order as (count, core, max kHz), the
# cpufreq layout ("cluster", "one" policy for all, "core" per CPU), 32/64-bit kernel.
SOCS = [
    ("SAMSUNG Exynos7420", [(4, A53, 1500000), (4, A57, 2100000)], "cluster", 64),
    ("UNIVERSAL5420", [(4, A15, 1900000), (4, A7, 1300000)], "cluster", 32),  # boots on A15
    ("UNIVERSAL5422", [(4, A7, 1300000), (4, A15, 1900000)], "cluster", 32),
    ("Qualcomm Technologies, Inc MSM8994", [(4, A53, 1555200), (4, A57, 1958400)], "cluster", 64),
    ("Qualcomm Technologies, Inc MSM8992", [(4, A53, 1440000), (2, A57, 1824000)], "cluster", 64),
    ("MT6595", [(4, A7, 1700000), (4, A17, 2200000)], "cluster", 32),
    ("hi3630", [(4, A7, 1300000), (4, A15, 1800000)], "cluster", 32),
    ("Qualcomm Technologies, Inc MSM8939", [(4, A53, 1497600), (4, A53, 1209600)], "cluster", 64),
    ("MT6752", [(4, A53, 1690000), (4, A53, 1690000)], "one", 64),
    ("MT6592", [(4, A7, 1700000), (4, A7, 1700000)], "one", 32),
    ("SMDK4x12", [(4, A9, 1400000)], "cluster", 32),
    ("MT6797", [(4, A53, 1391000), (4, A53, 1846000), (2, A72, 2314000)], "cluster", 64),
    ("sun9i", [(4, A7, 1300000), (4, A15, 1900000)], "cluster", 32),
    ("Qualcomm MSM 8974 (Flattened Device Tree)", [(4, KRAIT, 2265600)], "core", 32),
]


def write_board(root, soc, online, reader, era, topo, keep_masks):
    hardware, layout, cpufreq, bits = soc
    cpus = [(ci, core, khz) for ci, (n, core, khz) in enumerate(layout) for _ in range(n)]
    t = mt.Tree(root)
    t.cpusets(range(len(cpus)), online)
    for cpu in online:
        if topo != "none":
            mates = [c for c, (ci, _, _) in enumerate(cpus)
                     if (topo == "all" or ci == cpus[cpu][0]) and (keep_masks or c in online)]
            t.topology(cpu, core_id=cpu, package=0 if topo == "all" else cpus[cpu][0],
                       thread=[cpu], core_siblings=mates)
        if cpufreq == "core":
            t.old_cpufreq(cpu, [cpu], cpus[cpu][2])
    if cpufreq == "one":
        t.old_cpufreq(online[0], range(len(cpus)), cpus[0][2], online=online)
    for ci, (_, _, khz) in enumerate(layout if cpufreq == "cluster" else []):
        members = [c for c, (cj, _, _) in enumerate(cpus) if cj == ci]
        up = [c for c in members if c in online]
        if up:
            t.old_cpufreq(up[0], members, khz, online=up)
    core = cpus[reader][1]
    if era == "per-core":
        text = "".join(mt.arm64_block(c, "fp asimd", *cpus[c][1][:4]) for c in online)
        text += "Hardware\t: %s\n" % hardware
    elif bits == 32:
        text = mt.old_arm_cpuinfo(online, core[3], "38.40", mt.ARMV7_FEATURES, *core[:4],
                                  hardware, "0000")
    else:
        text = ("Processor\t: AArch64 Processor rev %d (aarch64)\n" % core[3]
                + "".join("processor\t: %d\n" % c for c in online)
                + "Features\t: fp asimd aes pmull sha1 sha2 crc32\nCPU implementer\t: 0x%02x\n"
                  "CPU architecture: AArch64\nCPU variant\t: 0x%x\nCPU part\t: 0x%03x\n"
                  "CPU revision\t: %d\n\nHardware\t: %s\n" % (core[:4] + (hardware,)))
    t.write("proc/cpuinfo", text)
    return cpus


@st.composite
def boards(draw):
    soc = draw(st.sampled_from(SOCS))
    count = sum(n for n, _, _ in soc[1])
    online = [0] + [c for c in range(1, count) if draw(st.booleans())]
    return (soc, online, draw(st.sampled_from(online)),
            draw(st.sampled_from(["global", "per-core"] if soc[3] == 64 else ["global"] * 2
                                 + ["per-core"])),
            draw(st.sampled_from(["cluster", "all", "none"])), draw(st.booleans()))


@settings(max_examples=int(os.environ.get("PROBE_FUZZ_EXAMPLES", "80")), deadline=None)
@given(boards())
def test_old_kernels_in_any_hotplug_state_give_the_documented_clusters(board):
    soc, online, reader, era, topo, keep_masks = board
    with tempfile.TemporaryDirectory() as root:
        cpus = write_board(root, soc, online, reader, era, topo, keep_masks)
        doc = probe(root)
    up = set(online)
    got = sorted(sorted(set(cl["cpus"]) & up) for cl in doc["clusters"] if set(cl["cpus"]) & up)
    want = {}
    for cpu in online:  # one policy over like cores is one cluster
        want.setdefault(0 if soc[2] == "one" else cpus[cpu][0], []).append(cpu)
    assert got == sorted(want.values()), doc["warnings"]
    names = {c["id"]: c["uarch"] for c in doc["cpus"]}
    assert {cpu: names[cpu] for cpu in online} == {cpu: cpus[cpu][1][4] for cpu in online}, \
        doc["warnings"]
