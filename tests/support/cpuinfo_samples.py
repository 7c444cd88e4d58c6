"""/proc/cpuinfo texts as real kernels print them, for the parser and ISA tests.

Written from the boards' published MIDR values and the kernels' c_show()
formats (arch/arm64/kernel/cpuinfo.c, arch/arm/kernel/setup.c,
arch/x86/kernel/cpu/proc.c); serials and revisions are made up.
"""


def arm64_block(cpu, features, implementer, variant, part, revision, extra=""):
    """One processor block as arm64 kernels >= 3.14 print it."""
    return ("processor\t: %d\n"
            "BogoMIPS\t: 48.00\n"
            "Features\t: %s\n"
            "CPU implementer\t: 0x%02x\n"
            "CPU architecture: 8\n"
            "CPU variant\t: 0x%x\n"
            "CPU part\t: 0x%03x\n"
            "CPU revision\t: %d\n%s\n"
            % (cpu, features, implementer, variant, part, revision, extra))


RK3399_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
# RK3399: 4x Cortex-A53 r0p4 (cpu0-3) + 2x Cortex-A72 r0p2 (cpu4-5), mainline arm64 kernel.
RK3399 = ("".join(arm64_block(c, RK3399_FEATURES, 0x41, 0, 0xD03, 4) for c in range(4))
          + "".join(arm64_block(c, RK3399_FEATURES, 0x41, 0, 0xD08, 2) for c in (4, 5)))

# Raspberry Pi 4 under the 32-bit Raspberry Pi OS kernel: Cortex-A72 r0p3.
RPI4_32BIT = "".join(
    "processor\t: %d\n"
    "model name\t: ARMv7 Processor rev 3 (v7l)\n"
    "BogoMIPS\t: 108.00\n"
    "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 "
    "lpae evtstrm crc32 \n"
    "CPU implementer\t: 0x41\n"
    "CPU architecture: 7\n"
    "CPU variant\t: 0x0\n"
    "CPU part\t: 0xd08\n"
    "CPU revision\t: 3\n\n" % c for c in range(4)) + (
    "Hardware\t: BCM2711\n"
    "Revision\t: c03111\n"
    "Serial\t\t: 100000001234abcd\n"
    "Model\t\t: Raspberry Pi 4 Model B Rev 1.1\n")

# Allwinner A20 (2x Cortex-A7 r0p4), linux-sunxi 3.4: one global CPU block.
OLD_ARM32_GLOBAL = (
    "Processor\t: ARMv7 Processor rev 4 (v7l)\n"
    "processor\t: 0\n"
    "BogoMIPS\t: 1819.52\n\n"
    "processor\t: 1\n"
    "BogoMIPS\t: 1819.52\n\n"
    "Features\t: swp half thumb fastmult vfp edsp thumbee neon vfpv3 tls vfpv4 idiva idivt \n"
    "CPU implementer\t: 0x41\n"
    "CPU architecture: 7\n"
    "CPU variant\t: 0x0\n"
    "CPU part\t: 0xc07\n"
    "CPU revision\t: 4\n\n"
    "Hardware\t: sun7i\n"
    "Revision\t: 0000\n"
    "Serial\t\t: 165166c3525448578481\n")

# Snapdragon 615 (MSM8939, 4+4 Cortex-A53) on the early Android arm64 3.10
# kernel: bare processor lines, then the global block with NO blank line.
OLD_ARM64_GLOBAL = (
    "Processor\t: AArch64 Processor rev 4 (aarch64)\n"
    + "".join("processor\t: %d\n" % c for c in range(8))
    + "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32\n"
    "CPU implementer\t: 0x41\n"
    "CPU architecture: AArch64\n"
    "CPU variant\t: 0x0\n"
    "CPU part\t: 0xd03\n"
    "CPU revision\t: 4\n\n"
    "Hardware\t: Qualcomm Technologies, Inc MSM8939\n")

XAVIER_FEATURES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                   "asimdrdm dcpop")
# Jetson AGX Xavier: 8x NVIDIA Carmel (MIDR 0x4e0f0040), L4T kernel adds model name and MTS.
JETSON_XAVIER = "".join(
    arm64_block(c, XAVIER_FEATURES, 0x4E, 0, 0x004, 0,
                extra="MTS version\t: 55637613\n").replace(
        "BogoMIPS", "model name\t: ARMv8 Processor rev 0 (v8l)\nBogoMIPS")
    for c in range(8))

SD855_FEATURES = ("fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
                  "asimdrdm lrcpc dcpop asimddp")
# Snapdragon 855 phone: 4x Kryo 485 Silver (0x517f805e) + 3x Gold + 1x Gold prime
# (0x51df804e), Android 4.14 kernel.
SNAPDRAGON_855 = (
    "".join(arm64_block(c, SD855_FEATURES, 0x51, 0x7, 0x805, 14) for c in range(4))
    + "".join(arm64_block(c, SD855_FEATURES, 0x51, 0xD, 0x804, 14) for c in range(4, 8))
    + "Hardware\t: Qualcomm Technologies, Inc SM8150\n")

ADL_FLAGS = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush "
             "dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc "
             "art arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf "
             "tsc_known_freq pni pclmulqdq dtes64 monitor ds_cpl vmx est tm2 ssse3 sdbg fma cx16 "
             "xtpr pdcm sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c "
             "rdrand lahf_lm abm 3dnowprefetch cpuid_fault epb ssbd ibrs ibpb stibp "
             "ibrs_enhanced tpr_shadow flexpriority ept vpid ept_ad fsgsbase tsc_adjust bmi1 "
             "avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb intel_pt sha_ni "
             "xsaveopt xsavec xgetbv1 xsaves split_lock_detect avx_vnni dtherm ida arat pln pts "
             "hwp hwp_notify hwp_act_window hwp_epp hwp_pkg_req hfi umip pku ospke waitpkg gfni "
             "vaes vpclmulqdq rdpid movdiri movdir64b fsrm md_clear serialize arch_lbr ibt "
             "flush_l1d arch_capabilities")
# Intel Core i7-1260P (Alder Lake): 4 P-cores with SMT (cpu0-7, core id 0,4,8,12)
# + 8 E-cores (cpu8-15, core id 16-23), 16 logical CPUs.
ADL_CORE_IDS = [0, 0, 4, 4, 8, 8, 12, 12] + list(range(16, 24))


def _adl_block(cpu):
    return ("processor\t: %d\n"
            "vendor_id\t: GenuineIntel\n"
            "cpu family\t: 6\n"
            "model\t\t: 154\n"
            "model name\t: 12th Gen Intel(R) Core(TM) i7-1260P\n"
            "stepping\t: 3\n"
            "microcode\t: 0x429\n"
            "cpu MHz\t\t: %s\n"
            "cache size\t: 18432 KB\n"
            "physical id\t: 0\n"
            "siblings\t: 16\n"
            "core id\t\t: %d\n"
            "cpu cores\t: 12\n"
            "apicid\t\t: %d\n"
            "fpu\t\t: yes\n"
            "flags\t\t: %s\n"
            "bogomips\t: 4992.00\n"
            "clflush size\t: 64\n"
            "address sizes\t: 39 bits physical, 48 bits virtual\n"
            "power management:\n\n"
            % (cpu, "400.000" if cpu % 3 else "2500.012", ADL_CORE_IDS[cpu], cpu, ADL_FLAGS))


INTEL_HYBRID = "".join(_adl_block(c) for c in range(16))
