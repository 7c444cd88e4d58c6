"""Known SoCs -> cluster layout, for boards whose kernel does not name each core.

Old ARM kernels print one global "CPU part" (the CPU that ran the read), and
offline or hot-unplugged cores are in no /proc/cpuinfo block at all. The SoC
itself is still named somewhere: the device-tree compatible and model, the
cpuinfo "Hardware:" line, Android's /system/build.prop, the Raspberry Pi
"Revision" code. This module reads those names and maps them to the layout
the vendor documents (clusters in CPU-number order, uarch per cluster). The
probe uses a layout only for cores no per-core evidence names, never over it.

Layouts are written from the vendors' product pages and SoC datasheets
(counts and core types per cluster), in the CPU numbering their kernels use
(little cluster first on almost all of them). Where a vendor platform name
covers chips with different cores (Qualcomm "lahaina" = 888 and 778G, "lito",
"holi", MSM8952 = 615-class), only the unambiguous names are listed.
"""
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from edge_server.board.sysfs import Reader

# Android property files, most specific key first.
BUILD_PROP_FILES = ("system/build.prop", "vendor/build.prop")
BUILD_PROP_KEYS = ("ro.soc.model", "ro.chipname", "ro.hardware.chipname",
                   "ro.mediatek.platform", "ro.board.platform", "ro.product.board",
                   "ro.hardware")
# ro.board.platform values Qualcomm reuses for chips with other cores (msm8952:
# 617 and 650/652; sdm660: 630/636/660; msm8953: 625 and 632): not evidence.
AMBIGUOUS_PLATFORMS = {"msm8952", "sdm660", "msm8953"}
# Raspberry Pi new-style revision codes: bit 23 set, SoC in bits 12-15.
_RPI_NEW_STYLE = 1 << 23
_RPI_SOCS = {0: "bcm2835", 1: "bcm2836", 2: "bcm2837", 3: "bcm2711", 4: "bcm2712"}

A5, A7, A8, A9, A15, A17 = ("cortex-a5", "cortex-a7", "cortex-a8", "cortex-a9",
                            "cortex-a15", "cortex-a17")
A35, A53, A55, A57, A72, A73, A75, A76, A77, A78 = (
    "cortex-a35", "cortex-a53", "cortex-a55", "cortex-a57", "cortex-a72", "cortex-a73",
    "cortex-a75", "cortex-a76", "cortex-a77", "cortex-a78")
A510, A710, A715, X1, X2, X3 = ("cortex-a510", "cortex-a710", "cortex-a715", "cortex-x1",
                                "cortex-x2", "cortex-x3")

# (SoC name, regex on the normalised identity text, clusters in CPU order as
# (count, uarch)). Normalised text: lowercase, runs of other characters -> " ".
_TABLE: List[Tuple[str, str, Tuple[Tuple[int, str], ...]]] = [
    # --- Broadcom (Raspberry Pi)
    ("BCM2712", r"bcm ?2712", ((4, A76),)),
    ("BCM2711", r"bcm ?2711|raspberrypi 4 model|raspberry pi 4|raspberry pi 400|"
                r"raspberry pi compute module 4", ((4, A72),)),
    ("BCM2837", r"bcm ?2837|bcm ?2710|raspberry pi 3|raspberrypi 3", ((4, A53),)),
    ("BCM2836", r"bcm ?2836|raspberry pi 2", ((4, A7),)),
    ("BCM2835", r"bcm ?2835|bcm ?2708|raspberry pi model|raspberry pi zero(?! 2)",
     ((1, "arm1176"),)),
    # --- Rockchip
    ("RK3066", r"rk ?3066", ((2, A9),)),
    ("RK3188", r"rk ?3188|\brk30 ?board\b", ((4, A9),)),  # RK30board: RK3066 too, A9s
    ("RK3128", r"rk ?31[12]6|rk ?3128", ((4, A7),)),
    ("RK3229", r"rk ?322[89]", ((4, A7),)),
    ("RK3288", r"rk ?3288", ((4, "cortex-a12"),)),  # sold as A17, reports part 0xc0d
    ("RK3326", r"rk ?3326|px30", ((4, A35),)),
    ("RK3328", r"rk ?3328", ((4, A53),)),
    ("RK3368", r"rk ?3368", ((4, A53), (4, A53))),
    ("RK3399", r"rk ?3399", ((4, A53), (2, A72))),
    ("RK3566", r"rk ?3566", ((4, A55),)),
    ("RK3568", r"rk ?3568", ((4, A55),)),
    ("RK3588", r"rk ?3588", ((4, A55), (2, A76), (2, A76))),
    # --- NVIDIA Tegra (and the Android board names of Tegra devices)
    ("Tegra 2", r"tegra ?20(?!\d)|tegra ?2(?!\d)|\bventana\b", ((2, A9),)),
    ("Tegra 3", r"tegra ?30(?!\d)|tegra ?3(?!\d)|\bt30l?\b|\bgrouper\b|\btilapia\b|"
                r"\bcardhu\b", ((4, A9),)),
    ("Tegra 4", r"tegra ?114|tegra ?4(?!\d)|\bt114\b|\bmacallan\b|\broth\b|\bdalmore\b",
     ((4, A15),)),
    ("Tegra K1", r"tegra ?124|tegra k1\b|\bt124\b|\bardbeg\b|\bmocha\b|\bjetson tk1\b|\bshield tablet\b",
     ((4, A15),)),
    ("Tegra K1 64", r"tegra ?132|\bt132\b|\bflounder\b|nexus 9", ((2, "denver"),)),
    ("Tegra X1", r"tegra ?210|\bt210\b|\bdragon\b|\bfoster\b|\bdarcy\b|\bjetson nano\b|"
                 r"tegra x1|jetson tx1|pixel c", ((4, A57),)),
    ("Tegra X2", r"tegra ?186|\bt186\b|jetson tx2|tegra x2\b|\bquill\b", ()),  # see _EXPLICIT
    ("Tegra Xavier", r"tegra ?194|\bt194\b|jetson xavier|jetson agx|galen|jakku",
     ((2, "carmel"),) * 4),
    ("Tegra Orin", r"tegra ?234|\bt234\b|jetson orin|concord|p3701|p3767", ()),
    # --- Qualcomm Snapdragon / MSM
    ("QSD8x50", r"\bqsd ?8[26]50", ((1, "scorpion"),)),
    ("MSM7x30", r"\bmsm ?[78][26]55|\bmsm ?7[26]30|\bapq ?8055", ((1, "scorpion"),)),
    ("MSM8x60", r"\b(?:msm|apq) ?8[026]60(?!a)(?!\d)", ((2, "scorpion"),)),
    ("MSM7x27A", r"\bmsm ?7[26]2[57]a|\bmsm ?[78][26]25(?!q)(?!\d)", ((2, A5),)),
    ("MSM8x25Q", r"\bmsm ?8[26]25q", ((4, A5),)),
    ("MSM8960", r"\b(?:msm|apq) ?8[026]60a|\b(?:msm|apq) ?89[36]0|\bmsm ?8[26]30|"
                r"\bmsm ?8[26]27", ((2, "krait"),)),
    ("APQ8064", r"\bapq ?8064|\bmpq ?8064", ((4, "krait"),)),
    ("MSM8974", r"\b(?:msm|apq) ?8[2-9]74|\bapq ?8084|\bmsm ?8084", ((4, "krait"),)),
    ("MSM8226", r"\bmsm ?8[2-9]2[68]|\bapq ?8026", ((4, A7),)),
    ("MSM8610", r"\bmsm ?8[26]1[02]", ((4, A7),)),
    ("MSM8909", r"\bmsm ?8[29]0[89]|\bapq ?8009", ((4, A7),)),
    ("MSM8916", r"\bmsm ?8[2-9]16|\bapq ?8016|\bmsm ?8[29]17|\bmsm ?89[24]0|\bmsm ?8937|"
                r"\bsdm ?4[23]9|\bsdm ?450|\bmsm ?8953|\bsdm ?62[56]|\bapq ?8053",
     ((4, A53), (4, A53))),
    ("MSM8939", r"\bmsm ?8[29]39|\bmsm ?8929|\bmsm ?8952|\bmsm ?8936",
     ((4, A53), (4, A53))),
    ("MSM8992", r"\bmsm ?8992|\bapq ?8092", ((4, A53), (2, A57))),
    ("MSM8994", r"\bmsm ?8994|\bapq ?8094", ((4, A53), (4, A57))),
    ("MSM8956", r"\bmsm ?8956|\bsdm ?650", ((4, A53), (2, A72))),
    ("MSM8976", r"\bmsm ?8976|\bsdm ?65[23]", ((4, A53), (4, A72))),
    ("MSM8996", r"\b(?:msm|apq) ?8996", ((2, "kryo"), (2, "kryo"))),
    ("MSM8998", r"\b(?:msm|apq) ?8998", ((4, A53), (4, A73))),
    ("SDM630", r"\bsdm ?630", ((4, A53), (4, A53))),
    ("SDM660", r"\bsdm ?63[26]|\bsdm ?660", ((4, A53), (4, A73))),
    ("SDM670", r"\bsdm ?67[0]|\bsdm ?71[02]", ((6, A55), (2, A75))),
    ("SDM845", r"\bsdm ?8[45]5|\bsdm ?850", ((4, A55), (4, A75))),
    ("SM6125", r"\bsm ?6125|\btrinket\b|\bsm ?6115|\bsm ?4250|\bbengal\b",
     ((4, A53), (4, A73))),
    ("SM6150", r"\bsm ?6150|\bsm ?7150|\bsdmmagpie\b|\bsm ?7125|\batoll\b|\bsm ?6250|"
               r"\bsm ?4350", ((6, A55), (2, A76))),
    ("SM6350", r"\bsm ?6350|\bsm ?7225", ((6, A55), (2, A77))),
    ("SM6375", r"\bsm ?6375", ((6, A55), (2, A78))),
    ("SM7250", r"\bsm ?7250", ((6, A55), (1, A76), (1, A76))),
    ("SM7325", r"\bsm ?7325", ((4, A55), (3, A78), (1, A78))),
    ("SM8150", r"\bsm ?815[05]|\bmsmnile\b", ((4, A55), (3, A76), (1, A76))),
    ("SM8250", r"\bsm ?8250|\bkona\b", ((4, A55), (3, A77), (1, A77))),
    ("SM8350", r"\bsm ?8350", ((4, A55), (3, A78), (1, X1))),
    ("SM8450", r"\bsm ?84[57]5|\bsm ?8450|\btaro\b|\bcape\b", ((4, A510), (3, A710), (1, X2))),
    ("SM8550", r"\bsm ?8550|\bkalama\b", ((3, A510), (2, A715), (2, A710), (1, X3))),
    # --- Samsung Exynos (and the "universal"/"smdk" board names of its kernels)
    ("Exynos 3110", r"s5pc110|s5pv210|\bherring\b|\baries\b|exynos ?3110", ((1, A8),)),
    ("Exynos 4210", r"(?:exynos|smdk|universal) ?42[01]0", ((2, A9),)),
    ("Exynos 4412", r"(?:exynos|smdk|universal) ?44[01]2|(?:exynos|smdk) ?4415|"
                    r"\bsmdk4x12\b|odroid ?x2|odroid ?u[23]", ((4, A9),)),
    ("Exynos 5250", r"(?:exynos|smdk|universal) ?5250|\bmanta\b", ((2, A15),)),
    ("Exynos 5260", r"(?:exynos|smdk|universal) ?5260", ((4, A7), (2, A15))),
    ("Exynos 5410", r"(?:exynos|smdk|universal) ?5410", ((4, A7), (4, A15))),
    ("Exynos 5420", r"(?:exynos|smdk|universal) ?5420|exynos ?5800|exynos ?5422|"
                    r"universal ?5422|smdk ?5422|odroid ?xu[34]", ((4, A7), (4, A15))),
    ("Exynos 5430", r"(?:exynos|smdk|universal) ?5430", ((4, A7), (4, A15))),
    ("Exynos 5433", r"(?:exynos|smdk|universal) ?5433", ((4, A53), (4, A57))),
    ("Exynos 3475", r"(?:exynos|smdk|universal) ?347[05]", ((4, A7),)),
    ("Exynos 7570", r"(?:exynos|smdk|universal) ?75[67]0|(?:exynos|smdk|universal) ?7578",
     ((4, A53),)),
    ("Exynos 7580", r"(?:exynos|smdk|universal) ?758[03]|(?:exynos|smdk|universal) ?78[78]0",
     ((4, A53), (4, A53))),
    ("Exynos 7420", r"(?:exynos|smdk|universal) ?7420", ((4, A53), (4, A57))),
    ("Exynos 7885", r"(?:exynos|smdk|universal) ?788[45]|(?:exynos|smdk|universal) ?790[24]",
     ((6, A53), (2, A73))),
    ("Exynos 9610", r"(?:exynos|smdk|universal) ?961[01]", ((4, A53), (4, A73))),
    ("Exynos 8890", r"(?:exynos|smdk|universal) ?8890", ((4, A53), (4, "exynos-m1"))),
    ("Exynos 8895", r"(?:exynos|smdk|universal) ?8895", ((4, A53), (4, "exynos-m2"))),
    ("Exynos 9810", r"(?:exynos|smdk|universal) ?9810", ((4, A55), (4, "exynos-m3"))),
    ("Exynos 9820", r"(?:exynos|smdk|universal) ?982[05]",
     ((4, A55), (2, A75), (2, "exynos-m4"))),
    ("Exynos 980", r"(?:exynos|smdk|universal) ?980(?!\d)|s5e9630", ((6, A55), (2, A77))),
    ("Exynos 990", r"(?:exynos|smdk|universal) ?990(?!\d)|s5e9830",
     ((4, A55), (2, A76), (2, "exynos-m5"))),
    ("Exynos 850", r"(?:exynos|smdk|universal) ?850(?!\d)|s5e3830", ((4, A55), (4, A55))),
    ("Exynos 1280", r"(?:exynos|smdk|universal) ?1280|s5e8825", ((6, A55), (2, A78))),
    ("Exynos 2100", r"(?:exynos|smdk|universal) ?2100|s5e9840", ((4, A55), (3, A78), (1, X1))),
    ("Exynos 2200", r"(?:exynos|smdk|universal) ?2200|s5e9925",
     ((4, A510), (3, A710), (1, X2))),
    # --- MediaTek (Helio, Dimensity)
    ("MT6577", r"\bmt ?657[357]", ((2, A9),)),
    ("MT6589", r"\bmt ?658[029]|\bmt ?8125|\bmt ?8389|\bmt ?8127|\bmt ?8321", ((4, A7),)),
    ("MT6572", r"\bmt ?657[12]", ((2, A7),)),
    ("MT6592", r"\bmt ?659[12]", ((4, A7), (4, A7))),
    ("MT6595", r"\bmt ?6595", ((4, A7), (4, A17))),
    ("MT6735", r"\bmt ?67(?:32|35|37|38|39)|\bmt ?8163|\bmt ?8735", ((4, A53),)),
    ("MT6752", r"\bmt ?675[02358]|\bmt ?6757|\bmt ?6795|\bmt ?676[235]|\bmt ?6739",
     ((4, A53), (4, A53))),
    ("MT6797", r"\bmt ?6797", ((4, A53), (4, A53), (2, A72))),
    ("MT6799", r"\bmt ?6799", ((4, A35), (4, A53), (2, A73))),
    ("MT6771", r"\bmt ?677[01]|\bmt ?8183", ((4, A53), (4, A73))),
    ("MT8173", r"\bmt ?817[36]", ((2, A53), (2, A72))),
    ("MT6768", r"\bmt ?676[89]|\bmt ?6779", ((6, A55), (2, A75))),
    ("MT6785", r"\bmt ?678[159]|\bmt ?685[3]|\bmt ?6833", ((6, A55), (2, A76))),
    ("MT6873", r"\bmt ?687[35]", ((4, A55), (4, A76))),
    ("MT6877", r"\bmt ?6877", ((6, A55), (2, A78))),
    ("MT6885", r"\bmt ?688[3589]", ((4, A55), (4, A77))),
    ("MT6893", r"\bmt ?689[13]", ((4, A55), (3, A78), (1, A78))),
    ("MT6895", r"\bmt ?689[56]", ((4, A55), (4, A78))),
    ("MT6983", r"\bmt ?698[3]", ((4, A510), (3, A710), (1, X2))),
    # --- HiSilicon Kirin
    ("K3V2", r"\bk3v2", ((4, A9),)),
    ("Kirin 910", r"\bhi ?6620|kirin ?910", ((4, A9),)),
    ("Kirin 920", r"\bhi ?3630|kirin ?92[058]", ((4, A7), (4, A15))),
    ("Kirin 620", r"\bhi ?6210|kirin ?620", ((4, A53), (4, A53))),
    ("Kirin 930", r"\bhi ?3635|kirin ?93[05]", ((4, A53), (4, A53))),
    ("Kirin 650", r"\bhi ?6250|kirin ?65[0589]", ((4, A53), (4, A53))),
    ("Kirin 950", r"\bhi ?3650|kirin ?95[05]", ((4, A53), (4, A72))),
    ("Kirin 960", r"\bhi ?3660|kirin ?960", ((4, A53), (4, A73))),
    ("Kirin 970", r"\bhi ?3670|kirin ?970", ((4, A53), (4, A73))),
    ("Kirin 710", r"\bhi ?6260|kirin ?710", ((4, A53), (4, A73))),
    ("Kirin 980", r"\bhi ?3680|kirin ?98[05]", ((4, A55), (2, A76), (2, A76))),
    ("Kirin 990", r"\bhi ?3690|kirin ?990", ((4, A55), (2, A76), (2, A76))),
    ("Kirin 810", r"\bhi ?6280|kirin ?8[12]0", ((6, A55), (2, A76))),
    ("Kirin 9000", r"\bhi ?36a0|kirin ?9000(?![a-z])", ((4, A55), (3, A77), (1, A77))),
    # --- Allwinner (mainline sunXi compatibles and Android sunNiwM names)
    ("A10", r"\bsun4i|\bsun5i|allwinner a1[03]\b", ((1, A8),)),
    ("A20", r"\bsun7i", ((2, A7),)),
    ("A31", r"\bsun6i", ((4, A7),)),
    ("A83T", r"\bsun8i a83t|\bsun8iw6", ((4, A7), (4, A7))),
    ("A80", r"\bsun9i", ((4, A7), (4, A15))),
    ("A33", r"\bsun8i\b|\bsun8i a33|\bsun8iw5|\bsun8i h3|\bsun8iw7|\bsun8i r40|\bsun8iw11",
     ((4, A7),)),
    ("A64", r"\bsun50i\b|\bsun50i a64|\bsun50iw1|\bsun50i h5|\bsun50iw2|\bsun50i h61[68]|\bsun50i h6|"
            r"\bsun50iw6|\bsun50iw9", ((4, A53),)),
    # --- Amlogic
    ("S805", r"meson ?8b|\bs805\b", ((4, A5),)),
    ("S802", r"meson ?8(?![bm])|\bs80[12]\b", ((4, A9),)),
    ("S905", r"meson gx(?:bb|l)|\bgxbb\b|\bgxl\b|\bs905(?:[xdwl]|\b)(?!2|3)", ((4, A53),)),
    ("S912", r"meson gxm|\bgxm\b|\bs912\b", ((4, A53), (4, A53))),
    ("S905X2", r"\bg12a\b|\bsm1\b|\bs905[xyd][23]\b", ((4, A55),)),
    ("S922X", r"\bg12b\b|\bs922x?\b|\ba311d\b", ((2, A53), (4, A73))),
    # --- NXP/Freescale i.MX
    ("i.MX5", r"\bimx ?5[0-9]|\bi mx ?5[0-9]|\bi mx5", ((1, A8),)),
    ("i.MX6", r"\bimx ?6(?:q|dl|d|s|solo|quad|dual)|\bi mx ?6(?:q|dl|d|s|solo|quad|dual)?\b|"
              r"\bimx6\b|freescale i mx 6", ((4, A9),)),
    # --- TI OMAP, Marvell PXA, Spreadtrum/Unisoc
    ("OMAP3", r"\bomap ?3[0-9]{3}", ((1, A8),)),
    ("OMAP4", r"\bomap ?44[0-9]{2}|\bomap4\b|\btuna\b|\bpanda(?:board)?\b", ((2, A9),)),
    ("OMAP5", r"\bomap ?5[0-9]{3}", ((2, A15),)),
    ("PXA986", r"\bpxa ?98[68]", ((2, A9),)),
    ("PXA1088", r"\bpxa ?1088", ((4, A7),)),
    ("PXA1908", r"\bpxa ?19[02]8", ((4, A53),)),
    ("SC8830", r"\bsc ?88[13]0|\bs[cp] ?983[02]|\bsc ?773[01]|\bsc ?7715", ((4, A7),)),
    ("BCM21664", r"\bbcm ?21[56][56]4|\bbcm ?2815[05]|\bbcm ?28145|\bhawaii\b|\bcapri\b",
     ((2, A9),)),
    ("BCM23550", r"\bbcm ?23550", ((4, A7),)),
    ("U8500", r"\bu ?8[45]00|\bdb ?8500|novathor", ((2, A9),)),
    ("SC9863A", r"\bsc ?9863", ((4, A55), (4, A55))),
    ("T618", r"\bums ?512|\bt61[08]\b", ((6, A55), (2, A75))),
]

# Layouts whose clusters are not runs of consecutive CPU numbers, as
# {SoC name: ((cpu ids, uarch), ...)}.
_EXPLICIT: Dict[str, Tuple[Tuple[Tuple[int, ...], str], ...]] = {
    # Jetson TX2: cpu0 and cpu3-5 are the A57 cluster, cpu1-2 the Denver 2 pair.
    "Tegra X2": (((0, 3, 4, 5), A57), ((1, 2), "denver-2")),
}
# Layouts of uniform cluster size whose count varies by module (Orin AGX 12
# cores, Orin NX 8, Orin Nano 6): clusters of 4 Cortex-A78AE.
_UNIFORM: Dict[str, Tuple[int, str]] = {"Tegra Orin": (4, "cortex-a78ae")}

_COMPILED = [(name, re.compile(pattern), layout) for name, pattern, layout in _TABLE]


@dataclass(frozen=True)
class Soc:
    """A known SoC: its clusters as CPU-id lists in CPU order, each with its uarch."""

    name: str
    source: str  # where the name was read, e.g. "/proc/cpuinfo Hardware"
    text: str    # the identity string that matched

    def clusters(self, cpu_count: int) -> Optional[List[Tuple[List[int], str]]]:
        """(cpu ids, uarch) per cluster for a board with cpu_count present CPUs.

        None when the table's layout does not have that many CPUs (a
        different chip of the family, or a kernel that hides some cores),
        except for single-uarch layouts, which fit any count.
        """
        if self.name in _EXPLICIT:
            layout = [(list(ids), uarch) for ids, uarch in _EXPLICIT[self.name]]
            return layout if cpu_count == sum(len(ids) for ids, _ in layout) else None
        if self.name in _UNIFORM:
            size, uarch = _UNIFORM[self.name]
            return [(list(range(i, min(i + size, cpu_count))), uarch)
                    for i in range(0, cpu_count, size)]
        counts = layout_of(self.name)
        if len({u for _, u in counts}) == 1 and sum(n for n, _ in counts) != cpu_count:
            return [(list(range(cpu_count)), counts[0][1])]
        if sum(n for n, _ in counts) != cpu_count:
            return None
        result, start = [], 0
        for count, uarch in counts:
            result.append((list(range(start, start + count)), uarch))
            start += count
        return result

    def uarchs(self) -> List[str]:
        if self.name in _EXPLICIT:
            return sorted({u for _, u in _EXPLICIT[self.name]})
        if self.name in _UNIFORM:
            return [_UNIFORM[self.name][1]]
        return sorted({u for _, u in layout_of(self.name)})


def layout_of(name: str) -> Tuple[Tuple[int, str], ...]:
    return next(layout for n, _, layout in _TABLE if n == name)


def names() -> List[str]:
    return [name for name, _, _ in _TABLE]


def normalise(text: str) -> str:
    """Lowercase, every run of non-alphanumerics one space: "SAMSUNG Exynos-7420" -> "samsung exynos 7420"."""
    return " ".join(re.split(r"[^a-z0-9]+", text.lower())).strip()


def match(text: str) -> Optional[str]:
    """The table's SoC name for an identity string, None when none matches."""
    norm = normalise(text)
    for name, regex, _ in _COMPILED:
        for found in regex.finditer(norm):
            # "msm8974" must not match inside "msm89740": a part number ends at a non-digit.
            if not norm[found.end():found.end() + 1].isdigit():
                return name
    return None


def identify(reader: Reader, hardware: Optional[str], revision: Optional[str]) -> Optional[Soc]:
    """The first known SoC named by the board's identity strings, most specific first."""
    for source, text in identity_strings(reader, hardware, revision):
        name = match(text)
        if name is not None:
            return Soc(name, source, text)
    return None


def identity_strings(reader: Reader, hardware: Optional[str],
                     revision: Optional[str]) -> List[Tuple[str, str]]:
    """(where, text) of every SoC-naming string the board has, most specific first."""
    found: List[Tuple[str, str]] = []
    compatible = reader.text("proc/device-tree/compatible")
    if compatible:
        for item in compatible.split("\0"):
            if item.strip():
                found.append(("/proc/device-tree/compatible", item.strip()))
    rpi = rpi_soc(revision)
    if rpi:
        found.append(("/proc/cpuinfo Revision", rpi))
    if hardware:
        found.append(("/proc/cpuinfo Hardware", hardware))
    props = read_build_props(reader)
    for key in BUILD_PROP_KEYS:
        value = props.get(key)
        if value and not (key == "ro.board.platform"
                          and value.strip().lower() in AMBIGUOUS_PLATFORMS):
            found.append(("build.prop " + key, value))
    model = reader.text("proc/device-tree/model")
    if model:
        found.append(("/proc/device-tree/model", model))
    return found


def rpi_soc(revision: Optional[str]) -> Optional[str]:
    """The SoC a Raspberry Pi new-style revision code names ("c03112" -> "bcm2711")."""
    if not revision:
        return None
    try:
        code = int(revision.strip(), 16)
    except ValueError:
        return None
    if not code & _RPI_NEW_STYLE:
        return None
    return _RPI_SOCS.get((code >> 12) & 0xF)


def read_build_props(reader: Reader) -> Dict[str, str]:
    """key=value lines of Android's build.prop files; the first file that sets a key wins."""
    props: Dict[str, str] = {}
    for relpath in BUILD_PROP_FILES:
        text = reader.text(relpath)
        for line in (text or "").splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            props.setdefault(key.strip(), value.strip())
    return props
