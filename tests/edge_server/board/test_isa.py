import pytest
from hypothesis import given, strategies as st

from tests.support import cpuinfo_samples as samples
from edge_server.board.isa import common_features, isa_features, mattr
from edge_server.board.procinfo import ProcessorRecord, parse


def cpu(sample, n):
    return parse(sample).processors[n]


def test_isa_features_of_arm64_record():
    assert isa_features(cpu(samples.RK3399, 4)) == sorted(samples.RK3399_FEATURES.split())


def test_isa_features_of_x86_record():
    feats = isa_features(cpu(samples.INTEL_HYBRID, 0))
    assert "avx2" in feats and "avx_vnni" in feats and "avx512f" not in feats
    assert feats == sorted(set(feats))


def test_isa_features_normalises_case_and_duplicates():
    record = ProcessorRecord(id=0, features=["ASIMD", "fp", "asimd", ""])
    assert isa_features(record) == ["asimd", "fp"]
    assert isa_features(ProcessorRecord(id=0)) == []
    assert isa_features(None) == []


def test_common_features_is_the_intersection():
    a = ProcessorRecord(id=0, features=["fp", "asimd", "asimddp"])
    b = ProcessorRecord(id=1, features=["fp", "asimd"])
    assert common_features([a, b]) == ["asimd", "fp"]
    assert common_features([]) == []


@pytest.mark.parametrize("sample,n,arch,expected", [
    (samples.RK3399, 0, "aarch64", ["+fp-armv8", "+neon", "+crc", "+aes", "+sha2"]),
    (samples.JETSON_XAVIER, 0, "aarch64",
     ["+fp-armv8", "+neon", "+fullfp16", "+rdm", "+crc", "+lse", "+aes", "+sha2"]),
    (samples.SNAPDRAGON_855, 4, "aarch64",
     ["+fp-armv8", "+neon", "+fullfp16", "+dotprod", "+rdm", "+crc", "+lse", "+rcpc", "+aes",
      "+sha2"]),
    (samples.RPI4_32BIT, 0, "armv7l", ["+neon", "+vfp4", "+hwdiv-arm", "+hwdiv", "+crc"]),
    (samples.INTEL_HYBRID, 0, "x86_64", []),
])
def test_mattr_for_boards(sample, n, arch, expected):
    assert mattr(isa_features(cpu(sample, n)), arch) == expected


def test_mattr_sve_i8mm_bf16_graviton3():
    feats = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
             "jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc "
             "flagm ssbs paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng").split()
    attrs = mattr(feats, "aarch64")
    for want in ("+neon", "+dotprod", "+i8mm", "+sve", "+bf16", "+fullfp16", "+fp16fml", "+sha3"):
        assert want in attrs
    assert "+sve2" not in attrs


def test_fullfp16_needs_both_halves():
    assert "+fullfp16" not in mattr(["fp", "asimd", "fphp"], "aarch64")
    assert "+fullfp16" in mattr(["fphp", "asimdhp"], "aarch64")


@pytest.mark.parametrize("features,vfp", [
    ("half thumb vfp edsp neon vfpv3 tls vfpv4 vfpd32", "+vfp4"),
    ("half thumb vfp edsp vfpv3 vfpv4 tls", "+vfp4d16"),
    ("swp half thumb fastmult vfp edsp vfpv3 vfpv3d16", "+vfp3d16"),
    ("swp half thumb fastmult vfp edsp neon vfpv3", "+vfp3"),
    ("swp half thumb fastmult vfp edsp java tls", "+vfp2"),
    ("swp half thumb fastmult edsp", None),
])
def test_arm32_vfp_level(features, vfp):
    attrs = mattr(features.split(), "armv7l")
    vfps = [a for a in attrs if a.startswith("+vfp")]
    assert vfps == ([vfp] if vfp else [])


@pytest.mark.parametrize("arch", [None, "", "riscv64", "x86_64", "i686"])
def test_mattr_other_arches_are_empty(arch):
    assert mattr(["asimd", "neon", "avx2"], arch) == []


ALL_ARM64 = ("fp asimd fphp asimdhp asimdfhm asimddp i8mm bf16 asimdrdm crc32 atomics lrcpc aes "
             "pmull sha2 sha3 sha512 sve sve2 sme").split()
ALL_ARM32 = ("neon vfpv4 vfpd32 fphp asimdhp asimddp i8mm idiva idivt crc32 aes pmull "
             "sha2").split()


@pytest.mark.parametrize("arch,triple,mcpu,features", [
    ("aarch64", "aarch64-linux-gnu", "generic", ALL_ARM64),
    ("armv7l", "armv7l-linux-gnueabihf", "generic", ALL_ARM32),
    ("armv7l", "armv7l-linux-gnueabihf", "generic", ["vfp", "vfpv3", "vfpv3d16"]),
    ("armv7l", "armv7l-linux-gnueabihf", "generic", ["vfp", "vfpv4"]),
    ("armv7l", "armv7l-linux-gnueabihf", "generic", ["vfp"]),
])
def test_every_mattr_is_a_feature_llvm_knows(arch, triple, mcpu, features):
    import tvm
    from tvm.target import codegen
    attrs = mattr(features, arch)
    assert attrs
    target = tvm.target.Target({"kind": "llvm", "mtriple": triple, "mcpu": mcpu,
                                "mattr": attrs})
    enabled = set(codegen.llvm_get_cpu_features(target))
    assert {a[1:] for a in attrs} <= enabled

_KNOWN = set(mattr(ALL_ARM64, "aarch64")) | set(mattr(ALL_ARM32, "armv7l")) | {
    "+vfp4d16", "+vfp3", "+vfp3d16", "+vfp2"}


@given(st.lists(st.text(max_size=10) | st.sampled_from(ALL_ARM64 + ALL_ARM32 + ["vfp", "vfpv3"])),
       st.sampled_from(["aarch64", "armv7l", "armv6l", "x86_64", None]))
def test_mattr_only_emits_known_attrs(words, arch):
    attrs = mattr(words, arch)
    assert set(attrs) <= _KNOWN
    assert len(attrs) == len(set(attrs))
