import pytest

from edge_server.board import uarch
from edge_server.board.procinfo import parse
from tests.support import cpuinfo_samples as samples

# Every table entry, written as the full MIDR value a board reports
# (variant/revision as found on real parts where known, r0p0 otherwise).
MIDR_NAMES = [
    # Arm ARM11 and ARMv7-A
    (0x410FB022, "arm11mpcore"),
    (0x410FB362, "arm1136"),
    (0x410FB560, "arm1156"),
    (0x410FB767, "arm1176"),      # Raspberry Pi 1 / Zero
    (0x410FC051, "cortex-a5"),
    (0x410FC075, "cortex-a7"),    # Raspberry Pi 2
    (0x413FC082, "cortex-a8"),
    (0x413FC090, "cortex-a9"),
    (0x410FC0D1, "cortex-a12"),
    (0x410FC0E1, "cortex-a17"),
    (0x412FC0F3, "cortex-a15"),
    # Arm ARMv8/v9-A
    (0x410FD010, "cortex-a32"),
    (0x410FD020, "cortex-a34"),
    (0x410FD034, "cortex-a53"),   # RK3399 little
    (0x410FD042, "cortex-a35"),
    (0x412FD050, "cortex-a55"),   # RK3588 little
    (0x410FD060, "cortex-a65"),
    (0x411FD071, "cortex-a57"),
    (0x410FD083, "cortex-a72"),   # Raspberry Pi 4
    (0x410FD092, "cortex-a73"),
    (0x412FD0A1, "cortex-a75"),
    (0x414FD0B0, "cortex-a76"),   # RK3588 big, Raspberry Pi 5
    (0x413FD0C1, "neoverse-n1"),  # AWS Graviton2, Ampere Altra
    (0x411FD0D0, "cortex-a77"),
    (0x410FD0E0, "cortex-a76ae"),
    (0x411FD401, "neoverse-v1"),  # AWS Graviton3
    (0x411FD410, "cortex-a78"),
    (0x410FD420, "cortex-a78ae"), # Jetson Orin
    (0x410FD430, "cortex-a65ae"),
    (0x411FD440, "cortex-x1"),
    (0x410FD460, "cortex-a510"),
    (0x412FD470, "cortex-a710"),
    (0x412FD480, "cortex-x2"),
    (0x410FD490, "neoverse-n2"),
    (0x410FD4A0, "neoverse-e1"),
    (0x410FD4B0, "cortex-a78c"),
    (0x410FD4C0, "cortex-x1c"),
    (0x411FD4D0, "cortex-a715"),
    (0x411FD4E0, "cortex-x3"),
    (0x410FD4F0, "neoverse-v2"),  # NVIDIA Grace, Graviton4
    (0x410FD801, "cortex-a520"),
    (0x410FD811, "cortex-a720"),
    (0x410FD821, "cortex-x4"),
    (0x410FD840, "neoverse-v3"),
    (0x410FD850, "cortex-x925"),
    (0x410FD870, "cortex-a725"),
    (0x410FD8E0, "neoverse-n3"),
    # Broadcom / Cavium
    (0x420F5160, "thunderx2"),
    (0x430F0A10, "thunderx"),
    (0x430F0A20, "thunderx-81xx"),
    (0x430F0A30, "thunderx-83xx"),
    (0x431F0AF1, "thunderx2"),
    # Fujitsu, HiSilicon, APM, Ampere
    (0x461F0010, "a64fx"),
    (0x481FD010, "tsv110"),       # Kunpeng 920
    (0x500F0000, "x-gene"),
    (0xC00FAC30, "ampere-1"),
    (0xC00FAC40, "ampere-1a"),
    # NVIDIA
    (0x4E0F0000, "denver"),       # Tegra K1
    (0x4E0F0030, "denver-2"),     # Tegra X2
    (0x4E0F0040, "carmel"),       # Xavier
    # Qualcomm custom
    (0x510F00F0, "scorpion"),
    (0x510F02D0, "scorpion"),
    (0x510F04D0, "krait"),
    (0x512F06F0, "krait"),
    (0x511F0010, "oryon"),
    (0x512F2011, "kryo"),
    (0x512F2051, "kryo"),
    (0x512F2111, "kryo"),
    (0x510FC000, "falkor"),
    (0x510FC010, "saphira"),
    # Qualcomm Kryo 2xx+ Gold/Silver = Arm cores
    (0x51AF8001, "cortex-a73"),   # Kryo 280 Gold (Snapdragon 835)
    (0x51AF8014, "cortex-a53"),   # Kryo 280 Silver
    (0x517F802D, "cortex-a75"),   # Kryo 385 Gold (Snapdragon 845)
    (0x517F803C, "cortex-a55"),   # Kryo 385 Silver
    (0x51DF804E, "cortex-a76"),   # Kryo 485 Gold (Snapdragon 855)
    (0x517F805E, "cortex-a55"),   # Kryo 485 Silver
    # Samsung
    (0x531F0011, "exynos-m1"),    # Exynos 8890
    (0x534F0010, "exynos-m2"),    # Exynos 8895
    (0x531F0020, "exynos-m3"),    # Exynos 9810
    (0x531F0030, "exynos-m4"),    # Exynos 9820
    (0x531F0040, "exynos-m5"),    # Exynos 990
    # Apple
    (0x611F0221, "apple-icestorm"),
    (0x611F0231, "apple-firestorm"),
    (0x611F0240, "apple-icestorm"),
    (0x611F0250, "apple-firestorm"),
    (0x611F0280, "apple-icestorm"),
    (0x611F0290, "apple-firestorm"),
    (0x611F0320, "apple-blizzard"),
    (0x611F0330, "apple-avalanche"),
    (0x611F0340, "apple-blizzard"),
    (0x611F0350, "apple-avalanche"),
    (0x611F0380, "apple-blizzard"),
    (0x611F0390, "apple-avalanche"),
]


@pytest.mark.parametrize("midr,name", MIDR_NAMES, ids=["0x%08x" % m for m, _ in MIDR_NAMES])
def test_decode_full_midr(midr, name):
    assert uarch.decode_midr(midr) == name
    assert uarch.decode((midr >> 24) & 0xFF, (midr >> 4) & 0xFFF, (midr >> 20) & 0xF) == name


def test_every_decodable_name_is_spot_checked():
    assert set(uarch.known_uarchs()) == {name for _, name in MIDR_NAMES}


def test_every_table_entry_is_spot_checked():
    parts = {((m >> 24) & 0xFF, (m >> 4) & 0xFFF) for m, _ in MIDR_NAMES}
    assert parts == set(uarch._PARTS)


@pytest.mark.parametrize("implementer,part", [
    (0x41, 0xD00),   # Foundation model: not a core
    (0x41, 0xFFF),
    (0x51, 0x806),
    (0x42, 0xD08),   # Arm part number under another implementer
    (0x00, 0x000),
    (0xFF, 0xD08),
])
def test_unknown_parts_are_none(implementer, part):
    assert uarch.decode(implementer, part) is None


def test_samsung_m1_vs_m2_by_variant():
    assert uarch.decode(0x53, 0x001, variant=1) == "exynos-m1"
    assert uarch.decode(0x53, 0x001, variant=4) == "exynos-m2"
    assert uarch.decode(0x53, 0x001) == "exynos-m1"
    # variant never changes other decodes
    assert uarch.decode(0x41, 0xD08, variant=4) == "cortex-a72"


def test_names_are_lowercase_hyphenated():
    for name in uarch.known_uarchs():
        assert name == name.lower() and " " not in name and "_" not in name


@pytest.mark.parametrize("sample,names", [
    (samples.RK3399, {0: "cortex-a53", 4: "cortex-a72"}),
    (samples.RPI4_32BIT, {0: "cortex-a72", 3: "cortex-a72"}),
    (samples.JETSON_XAVIER, {0: "carmel"}),
    (samples.SNAPDRAGON_855, {0: "cortex-a55", 3: "cortex-a55", 4: "cortex-a76", 7: "cortex-a76"}),
])
def test_decode_parsed_boards(sample, names):
    records = parse(sample).processors
    for cpu, name in names.items():
        r = records[cpu]
        assert uarch.decode(r.implementer, r.part, r.variant) == name


# --- LLVM CPU names, checked against the LLVM inside the pinned TVM wheel ---

TRIPLES = {"a64": "aarch64-linux-gnu", "a32": "armv7l-linux-gnueabihf"}
NO_LLVM_CPU = {"denver", "denver-2", "scorpion", "x-gene", "exynos-m1", "exynos-m2"}


@pytest.fixture(scope="module")
def llvm():
    from tvm.target import codegen
    return codegen


def test_pinned_llvm_version_matches_installed_tvm(llvm):
    assert llvm.llvm_version_major() == uarch.PINNED_TVM_LLVM_MAJOR


@pytest.mark.parametrize("name", sorted(set(uarch.known_uarchs()) - NO_LLVM_CPU))
def test_llvm_cpu_is_accepted_by_llvm(llvm, name):
    cpu = uarch.llvm_cpu(name)
    assert cpu is not None
    backends = uarch._LLVM[name][3]
    assert any(llvm.llvm_is_valid_cpu(cpu, TRIPLES[b]) for b in backends)
    for backend, arch in (("a64", "aarch64"), ("a32", "armv7l")):
        own = llvm.llvm_is_valid_cpu(cpu, TRIPLES[backend])
        assert own == (backend in backends), (cpu, backend)
        for_arch = uarch.llvm_cpu(name, arch=arch)
        if own:
            assert for_arch == cpu
        elif for_arch is not None:  # an older core of the family that backend has
            assert llvm.llvm_is_valid_cpu(for_arch, TRIPLES[backend]), (for_arch, backend)


@pytest.mark.parametrize("major", [17, 18, 19, 20])
def test_llvm_cpu_for_older_llvm_is_still_accepted_here(llvm, major):
    for name in uarch.known_uarchs():
        cpu = uarch.llvm_cpu(name, llvm_major=major, arch="aarch64")
        if cpu is not None:
            assert llvm.llvm_is_valid_cpu(cpu, "aarch64-linux-gnu"), (name, cpu)


@pytest.mark.parametrize("name", sorted(NO_LLVM_CPU))
def test_cores_llvm_does_not_know_give_none(llvm, name):
    assert uarch.llvm_cpu(name) is None
    assert not llvm.llvm_is_valid_cpu(name, "aarch64-linux-gnu")


@pytest.mark.parametrize("name,major,cpu", [
    ("cortex-a72", 17, "cortex-a72"),
    ("cortex-x1", 17, "cortex-x1"),
    ("neoverse-n1", 17, "neoverse-n1"),
    ("carmel", 17, "carmel"),
    ("exynos-m3", 17, "exynos-m3"),
    ("kryo", 17, "kryo"),
    ("apple-firestorm", 17, "apple-m1"),
    ("apple-blizzard", 17, "apple-m2"),
    ("cortex-x4", 17, "cortex-x3"),
    ("cortex-x4", 18, "cortex-x4"),
    ("cortex-x925", 17, "cortex-x3"),
    ("cortex-x925", 18, "cortex-x4"),
    ("cortex-x925", 19, "cortex-x925"),
    ("cortex-a725", 17, "cortex-a715"),
    ("cortex-a520", 17, "cortex-a510"),
    ("neoverse-v3", 17, "neoverse-v2"),
    ("cortex-a78ae", 17, "cortex-a78"),
    ("oryon", 17, None),
    ("oryon", 19, "oryon-1"),
    ("ampere-1a", 16, "ampere1"),
    ("thunderx2", 17, "thunderx2t99"),
])
def test_llvm_cpu_fallback_by_llvm_version(name, major, cpu):
    assert uarch.llvm_cpu(name, llvm_major=major) == cpu


@pytest.mark.parametrize("name,arch,cpu", [
    ("cortex-a7", "armv7l", "cortex-a7"),
    ("cortex-a7", "aarch64", None),
    ("cortex-a72", "armv7l", "cortex-a72"),
    ("cortex-a72", "aarch64", "cortex-a72"),
    ("krait", "armv7l", "krait"),
    ("krait", "aarch64", None),
    ("cortex-x2", "armv7l", None),
    ("arm1176", "armv6l", "arm1176jz-s"),
    ("cortex-a53", "x86_64", None),
])
def test_llvm_cpu_by_arch(name, arch, cpu):
    assert uarch.llvm_cpu(name, arch=arch) == cpu


def test_llvm_cpu_unknown_name():
    assert uarch.llvm_cpu("pentium-m") is None
    assert uarch.llvm_cpu("") is None


# --- performance tiers ---

def test_every_known_uarch_has_a_rank():
    assert all(uarch.perf_rank(n) is not None for n in uarch.known_uarchs())
    assert uarch.perf_rank(None) is None and uarch.perf_rank("pentium-m") is None


@pytest.mark.parametrize("slower,faster", [
    ("cortex-a53", "cortex-a72"),    # RK3399
    ("cortex-a55", "cortex-a76"),    # RK3588
    ("cortex-a7", "cortex-a15"),     # Exynos 5422
    ("cortex-a55", "cortex-a78"),
    ("cortex-a78", "cortex-x1"),     # Snapdragon 888
    ("cortex-a510", "cortex-a710"),
    ("cortex-a710", "cortex-x2"),    # Dimensity 9000
    ("cortex-a715", "cortex-x3"),
    ("cortex-a520", "cortex-a720"),
    ("cortex-a720", "cortex-x4"),
    ("apple-icestorm", "apple-firestorm"),
    ("apple-blizzard", "apple-avalanche"),
    ("cortex-a53", "cortex-a73"),    # Snapdragon 835 Kryo 280 Silver/Gold
    ("exynos-m3", "exynos-m4"),
    ("cortex-a57", "denver-2"),     # Jetson TX2
])
def test_perf_rank_orders_cores_found_together(slower, faster):
    assert uarch.perf_rank(slower) < uarch.perf_rank(faster)


@pytest.mark.parametrize("a,b", [("cortex-a53", "cortex-a55"), ("cortex-a76", "cortex-a77")])
def test_perf_rank_is_coarse(a, b):
    assert uarch.perf_rank(a) == uarch.perf_rank(b)
