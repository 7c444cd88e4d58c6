"""The known-SoC table: identity strings as boards print them -> the documented layout."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_server.board import soc, uarch
from edge_server.board.sysfs import Reader


@pytest.mark.parametrize("text,name", [
    # /proc/cpuinfo Hardware lines as Android kernels print them
    ("Qualcomm MSM 8974 HAMMERHEAD (Flattened Device Tree)", "MSM8974"),
    ("Qualcomm Technologies, Inc MSM8996pro", "MSM8996"),
    ("Qualcomm Technologies, Inc MSM8956", "MSM8956"),
    ("Qualcomm Technologies, Inc SDM845", "SDM845"),
    ("QRD MSM8625Q SKUD", "MSM8x25Q"),
    ("QCT APQ8064 FLO", "APQ8064"),
    ("SAMSUNG Exynos7420", "Exynos 7420"),
    ("SMDK4x12", "Exynos 4412"),
    ("UNIVERSAL5410", "Exynos 5410"),
    ("sun9i", "A80"), ("allwinner,sun9i-a80", "A80"), ("MT6789V/CD", "MT6785"), ("MT6781", "MT6785"),
    ("MT6758", "MT6752"), ("Freescale i.MX 6Quad/DualLite (Device Tree)", "i.MX6"),
    ("fsl,imx6q", "i.MX6"), ("fsl,imx53", "i.MX5"),
    ("samsungexynos8890", "Exynos 8890"),
    ("MT6797T", "MT6797"),
    ("MT6755", "MT6752"),
    ("Hisilicon Kirin970", "Kirin 970"),
    ("Hisilicon Kirin 925", "Kirin 920"),
    ("hi6210sft", "Kirin 620"),
    ("grouper", "Tegra 3"),
    ("BCM2835", "BCM2835"), ("BCM2710", "BCM2837"), ("BCM2708", "BCM2835"),
    ("RK30board", "RK3188"), ("sun8i", "A33"), ("sun50iw1p1", "A64"), ("manta", "Exynos 5250"),
    ("Qualcomm APQ 8084 (Flattened Device Tree)", "MSM8974"), ("SMDK4210", "Exynos 4210"),
    # device-tree compatible items
    ("rockchip,rk3399", "RK3399"), ("rockchip,rk3588s", "RK3588"), ("brcm,bcm2711", "BCM2711"),
    ("nvidia,tegra210", "Tegra X1"), ("nvidia,tegra186", "Tegra X2"),
    ("nvidia,tegra234", "Tegra Orin"), ("qcom,sm8150", "SM8150"), ("qcom,msm8998-mtp", "MSM8998"),
    ("allwinner,sun50i-h6", "A64"), ("allwinner,sun50i-h616", "A64"), ("allwinner,sun7i-a20", "A20"),
    ("amlogic,g12b", "S922X"), ("amlogic,s922x", "S922X"), ("amlogic,meson-gxm", "S912"),
    ("amlogic,meson-gxbb", "S905"), ("amlogic,sm1", "S905X2"), ("samsung,exynos5800", "Exynos 5420"),
    # build.prop values
    ("msmnile", "SM8150"), ("kona", "SM8250"), ("taro", "SM8450"), ("kalama", "SM8550"),
    ("exynos990", "Exynos 990"), ("universal9810", "Exynos 9810"), ("hi3660", "Kirin 960"),
    ("kirin980", "Kirin 980"), ("mt6893", "MT6893"), ("SM8350", "SM8350"),
])
def test_identity_strings_name_their_soc(text, name):
    assert soc.match(text) == name


@pytest.mark.parametrize("text", [
    "Qualcomm Snapdragon", "msm89740", "Galaxy A20", "Generic DT based system", "qcom",
    "Raspberry Pi Zero 2 W", "sm81500", "unknown", "", "fsl,imx6ul", "fsl,imx6ull",
])
def test_other_strings_name_no_soc(text):
    assert soc.match(text) is None


def test_every_layout_names_cores_the_uarch_table_knows():
    known = set(uarch.known_uarchs())
    for name in soc.names():
        assert set(soc.Soc(name, "t", name).uarchs()) <= known, name


@pytest.mark.parametrize("revision,name", [
    ("c03112", "bcm2711"), ("d04170", "bcm2712"), ("a02082", "bcm2837"), ("a01041", "bcm2836"),
    ("900093", "bcm2835"), ("000e", None), ("000b", None), ("zz", None), (None, None),
])
def test_raspberry_pi_revision_codes(revision, name):
    """New-style codes (bit 23 set) keep the SoC in bits 12-15 (Raspberry Pi documentation)."""
    assert soc.rpi_soc(revision) == name


def test_layout_in_cpu_order_and_count_checks():
    rk3399 = soc.Soc("RK3399", "t", "rk3399")
    assert rk3399.clusters(6) == [([0, 1, 2, 3], "cortex-a53"), ([4, 5], "cortex-a72")]
    assert rk3399.clusters(4) is None  # not the chip the table describes
    krait = soc.Soc("MSM8974", "t", "msm8974")
    assert krait.clusters(2) == [([0, 1], "krait")]  # one kind of core fits any count
    tx2 = soc.Soc("Tegra X2", "t", "tegra186")
    assert tx2.clusters(6) == [([0, 3, 4, 5], "cortex-a57"), ([1, 2], "denver-2")]
    orin = soc.Soc("Tegra Orin", "t", "tegra234")
    assert orin.clusters(6) == [([0, 1, 2, 3], "cortex-a78ae"), ([4, 5], "cortex-a78ae")]


def write(root, rel, data):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def test_identify_prefers_the_device_tree_then_cpuinfo_then_build_prop(tmp_path):
    write(tmp_path, "system/build.prop", "# comment\nro.board.platform=msm8974\nbroken line\n")
    reader = Reader(str(tmp_path))
    found = soc.identify(reader, None, None)
    assert (found.name, found.source, found.text) == ("MSM8974", "build.prop ro.board.platform",
                                                     "msm8974")
    assert soc.identify(reader, "Qualcomm Technologies, Inc MSM8996", None).name == "MSM8996"
    write(tmp_path, "proc/device-tree/compatible", "google,foo\0qcom,sdm845\0")
    found = soc.identify(reader, "Qualcomm Technologies, Inc MSM8996", None)
    assert (found.name, found.source) == ("SDM845", "/proc/device-tree/compatible")
    assert reader.warnings == []


def test_android_property_files_first_value_wins(tmp_path):
    write(tmp_path, "system/build.prop", "ro.chipname=exynos7420\n")
    write(tmp_path, "vendor/build.prop", "ro.chipname=exynos9810\nro.soc.model=SM8450\n")
    props = soc.read_build_props(Reader(str(tmp_path)))
    assert props == {"ro.chipname": "exynos7420", "ro.soc.model": "SM8450"}
    assert soc.identify(Reader(str(tmp_path)), None, None).name == "SM8450"


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_match_never_raises(text):
    name = soc.match(text)
    assert name is None or name in soc.names()


def test_shared_qualcomm_platform_names_are_not_evidence(tmp_path):
    # ro.board.platform=msm8952 is on Snapdragon 617 (8x A53) and 650/652 (A72) phones.
    write(tmp_path, "system/build.prop", "ro.board.platform=msm8952\n")
    assert soc.identify(Reader(str(tmp_path)), None, None) is None
    # The Hardware line names the chip itself.
    found = soc.identify(Reader(str(tmp_path)), "Qualcomm Technologies, Inc MSM8956", None)
    assert found.name == "MSM8956"
