import pytest
from hypothesis import given, settings, strategies as st

from tests.support import cpuinfo_samples as samples
from edge_server.board.procinfo import ProcInfo, ProcessorRecord, format_midr, parse


def midrs(info: ProcInfo):
    return {cpu: (format_midr(r.midr()) if r.midr() is not None else None)
            for cpu, r in info.processors.items()}


def test_rk3399_arm64_kernel_gives_per_core_midr():
    info = parse(samples.RK3399)
    assert midrs(info) == {0: "0x410fd034", 1: "0x410fd034", 2: "0x410fd034",
                           3: "0x410fd034", 4: "0x410fd082", 5: "0x410fd082"}
    a72 = info.processors[4]
    assert (a72.implementer, a72.variant, a72.part, a72.revision) == (0x41, 0, 0xD08, 2)
    assert a72.architecture == "8"
    assert a72.features == "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid".split()
    assert a72.flags is None and a72.vendor_id is None and a72.model_name is None
    assert a72.bogomips == 48.0
    assert info.global_fields == {}
    assert info.warnings == []


def test_raspberry_pi_32bit_kernel():
    info = parse(samples.RPI4_32BIT)
    assert sorted(info.processors) == [0, 1, 2, 3]
    assert set(midrs(info).values()) == {"0x410fd083"}
    cpu0 = info.processors[0]
    assert cpu0.architecture == "7"
    assert cpu0.model_name == "ARMv7 Processor rev 3 (v7l)"
    assert "vfpv4" in cpu0.features and "neon" in cpu0.features
    assert info.global_fields["Hardware"] == "BCM2711"
    assert info.global_fields["Model"] == "Raspberry Pi 4 Model B Rev 1.1"
    assert info.global_fields["Serial"] == "100000001234abcd"
    assert info.warnings == []


def test_old_arm32_kernel_global_cpu_block_is_not_per_core():
    info = parse(samples.OLD_ARM32_GLOBAL)
    assert sorted(info.processors) == [0, 1]
    for record in info.processors.values():
        assert record.part is None and record.implementer is None and record.midr() is None
        assert record.features is None
        assert record.bogomips == 1819.52
    assert info.global_fields["Processor"] == "ARMv7 Processor rev 4 (v7l)"
    assert info.global_fields["CPU part"] == "0xc07"
    assert info.global_fields["Hardware"] == "sun7i"
    assert format_midr(info.global_midr()) == "0x410fc074"


def test_old_arm64_kernel_trailing_global_block_without_blank_line():
    info = parse(samples.OLD_ARM64_GLOBAL)
    assert sorted(info.processors) == list(range(8))
    assert all(r.midr() is None and r.features is None for r in info.processors.values())
    assert info.global_fields["CPU part"] == "0xd03"
    assert info.global_fields["CPU architecture"] == "AArch64"
    assert info.global_fields["Features"].startswith("fp asimd")
    assert format_midr(info.global_midr()) == "0x410fd034"
    assert any("not per-core evidence" in w for w in info.warnings)


def test_single_processor_old_format_is_global_too():
    text = ("Processor\t: ARMv7 Processor rev 2 (v7l)\nprocessor\t: 0\n"
            "CPU implementer\t: 0x41\nCPU part\t: 0xc09\n")
    info = parse(text)
    assert info.processors[0].part is None
    assert info.global_fields["CPU part"] == "0xc09"


def test_uniprocessor_kernel_without_processor_lines_has_only_globals():
    text = ("Processor\t: ARMv6-compatible processor rev 7 (v6l)\nBogoMIPS\t: 697.95\n"
            "Features\t: swp half thumb fastmult vfp edsp java tls \nCPU implementer\t: 0x41\n"
            "CPU architecture: 7\nCPU variant\t: 0x0\nCPU part\t: 0xb76\nCPU revision\t: 7\n\n"
            "Hardware\t: BCM2708\n")
    info = parse(text)
    assert info.processors == {}
    assert format_midr(info.global_midr()) == "0x410fb767"


def test_jetson_xavier_carmel():
    info = parse(samples.JETSON_XAVIER)
    assert sorted(info.processors) == list(range(8))
    assert set(midrs(info).values()) == {"0x4e0f0040"}
    assert info.processors[7].fields["MTS version"] == "55637613"
    assert info.processors[7].model_name == "ARMv8 Processor rev 0 (v8l)"
    assert info.warnings == []


def test_snapdragon_855_kryo_485():
    info = parse(samples.SNAPDRAGON_855)
    assert midrs(info) == {**{c: "0x517f805e" for c in range(4)},
                           **{c: "0x51df804e" for c in range(4, 8)}}
    assert info.global_fields == {"Hardware": "Qualcomm Technologies, Inc SM8150"}
    assert info.warnings == []


def test_intel_hybrid_x86_blocks():
    info = parse(samples.INTEL_HYBRID)
    assert sorted(info.processors) == list(range(16))
    p0, e8 = info.processors[0], info.processors[8]
    assert p0.vendor_id == "GenuineIntel"
    assert p0.model_name == "12th Gen Intel(R) Core(TM) i7-1260P"
    assert (p0.physical_id, p0.core_id, p0.siblings, p0.cpu_cores) == (0, 0, 16, 12)
    assert e8.core_id == 16
    assert [info.processors[c].core_id for c in range(16)] == samples.ADL_CORE_IDS
    assert "avx2" in p0.flags and "avx_vnni" in p0.flags
    assert p0.features is None and p0.midr() is None
    assert p0.cpu_mhz == 2500.012 and info.processors[1].cpu_mhz == 400.0
    assert p0.bogomips == 4992.0
    assert p0.fields["power management"] == ""
    assert info.warnings == []


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_crlf_and_cr_line_ends(newline):
    plain = parse(samples.RK3399)
    info = parse(samples.RK3399.replace("\n", newline))
    assert info == plain


def test_spaces_instead_of_tabs_and_extra_blank_lines():
    text = samples.RK3399.replace("\t", "    ").replace("\n\n", "\n\n\n\n")
    assert midrs(parse(text)) == midrs(parse(samples.RK3399))


def test_empty_and_blank_input():
    for text in ("", "\n\n", "   \t\n"):
        info = parse(text)
        assert info.processors == {} and info.global_fields == {} and info.warnings == []


def test_non_text_input_is_a_warning():
    info = parse(b"processor : 0")
    assert info.processors == {}
    assert "not text" in info.warnings[0]


def test_garbage_line_is_quoted_and_skipped():
    text = samples.RK3399.replace("CPU revision\t: 2\n", "CPU revision\t: 2\n\x00garbage here\n", 1)
    info = parse(text)
    assert midrs(info) == midrs(parse(samples.RK3399))
    assert len(info.warnings) == 1
    assert "'\\x00garbage here'" in info.warnings[0]
    assert "not a 'key : value' line" in info.warnings[0]


def test_duplicate_processor_keeps_first_block_and_warns():
    text = (samples.arm64_block(0, "fp", 0x41, 0, 0xD03, 4)
            + samples.arm64_block(0, "fp", 0x41, 0, 0xD08, 2))
    info = parse(text)
    assert list(info.processors) == [0]
    assert info.processors[0].part == 0xD03
    assert len(info.warnings) == 1
    assert "processor 0 appears twice" in info.warnings[0]
    assert "line 10" in info.warnings[0] and "line 1)" in info.warnings[0]


def test_duplicate_key_in_block_keeps_first():
    text = "processor : 0\nCPU part : 0xd03\nCPU part : 0xd08\n"
    info = parse(text)
    assert info.processors[0].part == 0xD03
    assert "printed twice" in info.warnings[0] and "0xd08" in info.warnings[0]


@pytest.mark.parametrize("line,attr", [
    ("CPU implementer : ARM", "implementer"),
    ("CPU implementer : 0x141", "implementer"),
    ("CPU variant : 0x10", "variant"),
    ("CPU part : 0xzz", "part"),
    ("CPU part : 0x1000", "part"),
    ("CPU part : -3", "part"),
    ("CPU revision : four", "revision"),
    ("CPU revision : 16", "revision"),
    ("CPU revision : \u0663", "revision"),
    ("physical id : x", "physical_id"),
    ("core id : 0x2", "core_id"),
    ("siblings : 1.5", "siblings"),
    ("cpu cores : ", "cpu_cores"),
    ("BogoMIPS : lots", "bogomips"),
    ("BogoMIPS : nan", "bogomips"),
    ("cpu MHz : 1_000", "cpu_mhz"),
])
def test_bad_values_become_none_with_a_warning(line, attr):
    info = parse("processor : 0\n%s\n" % line)
    assert getattr(info.processors[0], attr) is None
    assert len(info.warnings) == 1
    assert repr(line) in info.warnings[0]


@pytest.mark.parametrize("line", ["processor : x", "processor : -1", "processor : 0x1",
                                  "processor : ", "processor : 4096",
                                  "processor : 99999999999999999999999"])
def test_bad_processor_number_skips_its_block(line):
    text = line + "\nCPU part : 0xd08\n\n" + samples.arm64_block(1, "fp", 0x41, 0, 0xD03, 4)
    info = parse(text)
    assert list(info.processors) == [1]
    assert info.processors[1].part == 0xD03
    assert len(info.warnings) == 1 and repr(line) in info.warnings[0]
    assert "0xd08" not in info.global_fields.values()


def test_capitalised_processor_line_with_number_is_global():
    info = parse("Processor : 3\n")
    assert info.processors == {} and info.global_fields == {"Processor": "3"}


def test_value_containing_colons_is_kept_whole():
    info = parse("processor : 0\nSerial : 00:11:22\n")
    assert info.processors[0].fields["Serial"] == "00:11:22"


def test_long_garbage_line_is_truncated_in_warning():
    info = parse("x" * 5000)
    assert len(info.warnings) == 1 and len(info.warnings[0]) < 300


def test_midr_needs_implementer_and_part():
    assert ProcessorRecord(id=0, implementer=0x41).midr() is None
    assert ProcessorRecord(id=0, part=0xD08).midr() is None
    assert ProcessorRecord(id=0, implementer=0x41, part=0xD08).midr() == 0x410FD080


def test_format_midr():
    assert format_midr(0x410FD083) == "0x410fd083"
    assert format_midr(0x4E0F0040) == "0x4e0f0040"


midr_fields = st.tuples(st.integers(0, 0xFF), st.integers(0, 0xF), st.integers(0, 0xFFF),
                        st.integers(0, 0xF))


@given(st.lists(midr_fields, min_size=1, max_size=8))
def test_round_trip_midr_fields(cores):
    text = "".join(samples.arm64_block(cpu, "fp asimd", *fields)
                   for cpu, fields in enumerate(cores))
    info = parse(text)
    assert info.warnings == []
    for cpu, (imp, var, part, rev) in enumerate(cores):
        record = info.processors[cpu]
        assert (record.implementer, record.variant, record.part, record.revision) == (
            imp, var, part, rev)
        midr = record.midr()
        assert int(format_midr(midr), 16) == midr
        assert midr == (imp << 24) | (var << 20) | (0xF << 16) | (part << 4) | rev


@settings(max_examples=300)
@given(st.text())
def test_parse_never_raises_on_arbitrary_text(text):
    info = parse(text)
    assert all(isinstance(w, str) for w in info.warnings)
    assert all(r.id == cpu for cpu, r in info.processors.items())


_keys = st.sampled_from(["processor", "Processor", "CPU implementer", "CPU part", "CPU variant",
                         "CPU revision", "CPU architecture", "Features", "flags", "core id",
                         "BogoMIPS", "cpu MHz", "Hardware", "model name", "siblings", ""])
_values = st.one_of(st.integers(-5, 5000).map(str), st.integers(0, 0x1FFF).map(hex),
                    st.text(max_size=12))
_lines = st.one_of(st.tuples(_keys, st.sampled_from([":", "\t:", " : ", ""]), _values)
                   .map("".join), st.just(""), st.text(max_size=20))


@settings(max_examples=300)
@given(st.lists(_lines, max_size=40), st.sampled_from(["\n", "\r\n"]))
def test_parse_never_raises_on_cpuinfo_like_text(lines, newline):
    info = parse(newline.join(lines))
    for record in info.processors.values():
        midr = record.midr()
        assert midr is None or 0 <= midr < 1 << 32
        for value in (record.implementer, record.variant, record.part, record.revision):
            assert value is None or value >= 0


def test_single_processor_modern_kernel_is_per_core():
    info = parse(samples.arm64_block(0, "fp asimd", 0x41, 0, 0xD03, 4))
    assert info.processors[0].part == 0xD03
    assert info.global_fields == {} and info.warnings == []


def test_modern_blocks_with_trailing_hardware_line_stay_per_core():
    text = samples.RK3399.rstrip("\n") + "\nHardware\t: Rockchip RK3399\n"
    info = parse(text)
    assert info.processors[5].part == 0xD08 and info.processors[0].part == 0xD03
    # without a blank line the kernel-global Hardware line lands in the last block
    assert info.processors[5].fields["Hardware"] == "Rockchip RK3399"


def test_arm64_linux_3_10_format_is_one_global_block():
    """arm64 3.10 c_show(): "Processor" line, one "processor : N" per online CPU, one
    BogoMIPS, then the reading CPU's Features/CPU implementer... and Hardware."""
    text = ("Processor\t: AArch64 Processor rev 3 (aarch64)\nprocessor\t: 0\nprocessor\t: 1\n"
            "processor\t: 2\nBogoMIPS\t: 52.00\n\nFeatures\t: fp asimd aes pmull sha1 sha2 crc32\n"
            "CPU implementer\t: 0x41\nCPU architecture: AArch64\nCPU variant\t: 0x0\n"
            "CPU part\t: 0xd03\nCPU revision\t: 3\n\nHardware\t: SAMSUNG Exynos7420\n")
    info = parse(text)
    assert sorted(info.processors) == [0, 1, 2]
    assert all(r.midr() is None for r in info.processors.values())
    assert format_midr(info.global_midr()) == "0x410fd033"
    assert info.global_fields["Hardware"] == "SAMSUNG Exynos7420"
    assert info.global_fields["CPU architecture"] == "AArch64"


def test_arm32_linux_3_8_and_later_print_one_block_per_cpu():
    """arch/arm/kernel/setup.c c_show() since 3.8: for_each_online_cpu prints
    "processor", "model name", BogoMIPS, Features and that CPU's own cpuid fields;
    Hardware/Revision/Serial once at the end. A hot-unplugged CPU has no block."""
    block = ("processor\t: %d\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nBogoMIPS\t: 84.00\n"
             "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt \n"
             "CPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x%x\n"
             "CPU part\t: 0x%03x\nCPU revision\t: %d\n\n")
    text = (block % (0, 0, 0xC07, 3) + block % (1, 0, 0xC07, 3) + block % (4, 2, 0xC0F, 3)
            + "Hardware\t: ODROID-XU3\nRevision\t: 0100\nSerial\t\t: 0000000000000000\n")
    info = parse(text)
    assert sorted(info.processors) == [0, 1, 4]  # cpu2-3, 5-7 were offline
    assert format_midr(info.processors[4].midr()) == "0x412fc0f3"
    assert info.processors[0].model_name == "ARMv7 Processor rev 3 (v7l)"
    assert info.global_midr() is None
    assert info.global_fields["Hardware"] == "ODROID-XU3"
