"""Which uarch each CPU gets and from which evidence (naming.name_cores)."""
from edge_server.board import naming
from edge_server.board.procinfo import parse
from edge_server.board.soc import Soc
from edge_server.board.topology import _Cpu

OLD_ARM_HEAD = "Processor\t: ARMv7 Processor rev 3 (v7l)\n"


def global_block(part, implementer=0x41, ncpus=8):
    """Old ARM c_show(): bare processor lines, then one CPU block for the reading CPU."""
    return (OLD_ARM_HEAD + "".join("processor\t: %d\nBogoMIPS\t: 38.40\n\n" % c
                                   for c in range(ncpus))
            + "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4\n"
            "CPU implementer\t: 0x%02x\nCPU architecture: 7\nCPU variant\t: 0x0\n"
            "CPU part\t: 0x%03x\nCPU revision\t: 3\n\nHardware\t: Unknown board\n"
            % (implementer, part))


def per_core_board(freqs, arch, part, revision, blocks):
    """A board whose cpuinfo has per-core blocks for the first `blocks` CPUs only
    (the others were unplugged when it was read); records attached as the probe does."""
    text = "".join("processor\t: %d\nCPU implementer\t: 0x41\nCPU architecture: %d\n"
                   "CPU variant\t: 0x0\nCPU part\t: 0x%03x\nCPU revision\t: %d\n\n"
                   % (c, arch, part, revision) for c in range(blocks))
    board = cpus(freqs)
    info = parse(text)
    for cpu in board[:blocks]:
        cpu.record = info.processors[cpu.id]
    return board, info


def cpus(freqs, caps=None, related=None):
    out = []
    for i, freq in enumerate(freqs):
        cpu = _Cpu(i, online=True, max_freq=freq, capacity=caps[i] if caps else None)
        cpu.related = related[i] if related else None
        out.append(cpu)
    return out


def names(cpu_list):
    return [(c.uarch, c.uarch_source) for c in cpu_list]


def test_global_block_names_every_core_when_they_are_alike():
    board = cpus([1400000] * 4)
    warnings = []
    naming.name_cores(board, parse(global_block(0xC09, ncpus=4)), None, warnings)
    assert names(board) == [("cortex-a9", "cpuinfo-global")] * 4
    assert warnings == []


def test_global_block_of_differing_cores_is_tied_by_speed_and_the_rest_guessed():
    board = cpus([1400000] * 4 + [2000000] * 4)
    warnings = []
    naming.name_cores(board, parse(global_block(0xC07)), None, warnings)
    assert names(board) == [("cortex-a7", "cpuinfo-global")] * 4 + [("cortex-a15", "guess")] * 4
    assert "tied to the slowest CPUs 0-3" in warnings[0] and "CPUs 4-7 are guessed" in warnings[0]


def test_a_big_core_global_block_is_tied_to_the_fast_cluster():
    board = cpus([1500000] * 4 + [2100000] * 4)
    naming.name_cores(board, parse(global_block(0xD07)), None, [])
    assert names(board) == [("cortex-a53", "guess")] * 4 + [("cortex-a57", "cpuinfo-global")] * 4


def test_capacity_per_mhz_tells_same_core_at_another_clock():
    # Octa-A53 (e.g. 4 @2.0 GHz + 4 @1.1 GHz): capacity scales with the clock only.
    board = cpus([1100000] * 4 + [2000000] * 4, caps=[563] * 4 + [1024] * 4)
    naming.name_cores(board, parse(global_block(0xD03)), None, [])
    assert [c.uarch for c in board] == ["cortex-a53"] * 8
    # A53 + a core with twice the DMIPS/MHz: another core, and nothing says which.
    board = cpus([1500000] * 4 + [2100000] * 4, caps=[365] * 4 + [1024] * 4)
    naming.name_cores(board, parse(global_block(0xD03)), None, [])
    assert [c.uarch for c in board] == ["cortex-a53"] * 4 + [None] * 4


def test_the_soc_table_places_the_other_cluster_and_agrees_with_the_global_block():
    board = cpus([1500000] * 4 + [2100000] * 4)
    exynos = Soc("Exynos 7420", "/proc/cpuinfo Hardware", "SAMSUNG Exynos7420")
    warnings = []
    naming.name_cores(board, parse(global_block(0xD03)), exynos, warnings)
    assert names(board) == ([("cortex-a53", "cpuinfo-global")] * 4
                            + [("cortex-a57", "soc-table")] * 4)
    assert "of Exynos 7420 (/proc/cpuinfo Hardware 'SAMSUNG Exynos7420')" in warnings[0]


def test_soc_layout_follows_speed_when_the_kernel_numbers_big_cores_first():
    board = cpus([2000000] * 4 + [1400000] * 4)
    naming.name_cores(board, None, Soc("Exynos 5420", "t", "exynos5420"), [])
    assert [c.uarch for c in board] == ["cortex-a15"] * 4 + ["cortex-a7"] * 4


def test_soc_layout_follows_cpu_order_without_speeds():
    board = cpus([None] * 6)
    naming.name_cores(board, None, Soc("RK3399", "t", "rk3399"), [])
    assert [c.uarch for c in board] == ["cortex-a53"] * 4 + ["cortex-a72"] * 2


def test_soc_table_never_overrides_per_core_evidence():
    board, info = per_core_board([1400000] * 4 + [1800000] * 2, 8, 0xD03, 4, blocks=4)
    naming.name_cores(board, info, Soc("RK3399", "t", "rk3399"), [])
    # cpu4-5 printed no block (offline when read): only they come from the table.
    assert names(board) == [("cortex-a53", "cpuinfo")] * 4 + [("cortex-a72", "soc-table")] * 2


def test_midr_el1_wins_over_cpuinfo():
    text = ("processor\t: 0\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
            "CPU part\t: 0xd03\nCPU revision\t: 4\n\n")
    board = cpus([1400000])
    board[0].midr = 0x410FD082  # what cpu0's own register says
    board[0].record = parse(text).processors[0]
    naming.name_cores(board, parse(text), None, [])
    assert names(board) == [("cortex-a72", "midr_el1")]


def test_offline_cpu_gets_the_uarch_of_its_frequency_domain():
    text = ("processor\t: 1\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n"
            "CPU part\t: 0xd08\nCPU revision\t: 2\n\n")
    board = cpus([None, 1800000], related=[[0, 1], [0, 1]])
    board[0].online = False
    board[1].record = parse(text).processors[1]
    naming.name_cores(board, parse(text), None, [])
    assert names(board) == [("cortex-a72", "frequency"), ("cortex-a72", "cpuinfo")]


def test_unknown_global_midr_is_a_warning_not_a_name():
    board = cpus([1000000] * 2)
    warnings = []
    naming.name_cores(board, parse(global_block(0xABC, ncpus=2)), None, warnings)
    assert [c.uarch for c in board] == [None, None]
    assert any("0x410fabc3" in w and "not a core this probe knows" in w for w in warnings)


def test_global_block_covers_two_packages_at_one_clock():
    board = cpus([1200000] * 8)
    for cpu in board:
        cpu.package = 0 if cpu.id < 4 else 1
    warnings = []
    naming.name_cores(board, parse(global_block(0xD03)), None, warnings)
    assert names(board) == [("cortex-a53", "cpuinfo-global")] * 8
    assert "several packages but run at one clock" in warnings[0]


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge_server.board import soc as soc_mod  # noqa: E402

_PARTS = [0xC07, 0xC09, 0xC0F, 0xD03, 0xD05, 0xD07, 0xD08, 0xD0B, 0xABC]
_SOCS = [None] + soc_mod.names()


@settings(max_examples=400, deadline=None)
@given(freqs=st.lists(st.sampled_from([None, 1000000, 1400000, 2000000]), min_size=1,
                      max_size=10),
       caps=st.one_of(st.none(), st.lists(st.sampled_from([None, 400, 512, 1024]),
                                          min_size=10, max_size=10)),
       packages=st.lists(st.sampled_from([None, 0, 1]), min_size=10, max_size=10),
       online=st.lists(st.booleans(), min_size=10, max_size=10),
       part=st.one_of(st.none(), st.sampled_from(_PARTS)),
       soc_name=st.sampled_from(_SOCS))
def test_any_board_gets_consistent_names(freqs, caps, packages, online, part, soc_name):
    board = cpus(freqs, caps=caps)
    for cpu in board:
        cpu.package, cpu.online = packages[cpu.id], online[cpu.id]
    info = parse(global_block(part, ncpus=len(board))) if part is not None else None
    soc = soc_mod.Soc(soc_name, "test", soc_name) if soc_name else None
    warnings = []
    naming.name_cores(board, info, soc, warnings)
    known = set(naming.PARTNER) | set(naming.PARTNER.values())
    from edge_server.board import uarch
    known |= set(uarch.known_uarchs())
    for cpu in board:
        assert cpu.uarch is None or cpu.uarch in known
        assert cpu.uarch_source in (None, "cpuinfo-global", "soc-table", "frequency", "guess")
        if cpu.uarch_source == "soc-table":
            assert cpu.uarch in soc.uarchs()
    assert all(isinstance(w, str) for w in warnings)


def test_online_cpus_missing_from_cpuinfo_get_the_partner_guess():
    # cpuinfo was read while cpu4-7 were unplugged; sysfs shows them online now.
    board, info = per_core_board([1300000] * 4 + [1900000] * 4, 7, 0xC07, 3, blocks=4)
    warnings = []
    naming.name_cores(board, info, None, warnings)
    assert names(board) == [("cortex-a7", "cpuinfo")] * 4 + [("cortex-a15", "guess")] * 4
    assert "CPUs 4-7 are online but no evidence names their core" in warnings[0]


def test_global_block_names_the_alike_online_cpus_and_the_table_the_offline_rest():
    """Exynos 5420 numbered A15-first (the SoC boots on the A15 cluster), the A7 cluster
    hot-unplugged: the reading CPU was one of the four alike online CPUs, so the block
    names them; the offline CPUs get what the layout has left (A7), not CPU-order slots."""
    board = cpus([1900000] * 4 + [None] * 4)
    for cpu in board[4:]:
        cpu.online = False
    for cpu in board[:4]:
        cpu.core_siblings = [0, 1, 2, 3]
    warnings = []
    naming.name_cores(board, parse(global_block(0xC0F, ncpus=4)),
                      Soc("Exynos 5420", "/proc/cpuinfo Hardware", "UNIVERSAL5420"), warnings)
    assert names(board) == ([("cortex-a15", "cpuinfo-global")] * 4
                            + [("cortex-a7", "soc-table")] * 4)
    assert "the online CPUs 0-3 run at one clock in one cluster" in warnings[0]


def test_online_cpus_split_by_a_topology_list_are_not_alike():
    """One clock is not enough: two online packages may be two core types."""
    board = cpus([1500000] * 4)
    for cpu in board:
        cpu.core_siblings = [0, 1] if cpu.id < 2 else [2, 3]
    assert not naming._online_alike(board)
    for cpu in board:
        cpu.core_siblings = [0, 1, 2, 3]
    assert naming._online_alike(board)
    board[3].max_freq = None  # nothing at all known about one online CPU
    assert not naming._online_alike(board)
