"""Conditions snapshots read from fake boards written as the kernel writes them."""
import os

from hypothesis import given
from hypothesis import strategies as st

from edge_server.board.conditions import (ConditionsReader, is_cpu_cooling, parse_field,
                                          parse_hex, parse_proc_stat, parse_task_stat,
                                          parse_time_in_state, summary)
from tests.support.conditions_kit import (CondBoard, format_proc_stat, format_task_stat,
                                          format_time_in_state, rk3399_conditions)

import pytest


def test_rk3399_snapshot_reads_policies_zones_and_proc(tmp_path):
    rk3399_conditions(tmp_path)
    snap = ConditionsReader(str(tmp_path), [4, 5]).snapshot()
    assert [(p.name, p.cpus, p.max_khz, p.cur_khz, p.cap_khz, p.governor)
            for p in snap.policies] == [("policy4", [4, 5], 1800000, 1800000, 1800000,
                                         "schedutil")]
    assert snap.policies[0].time_in_state[1800000] == 0
    assert snap.no_cpufreq == []
    assert [(z.type, z.temp_mc) for z in snap.zones] == [("soc-thermal", 45000),
                                                         ("gpu-thermal", 43000)]
    assert [(t.temp_mc, t.type) for t in snap.zones[0].trips] == [
        (70000, "passive"), (85000, "passive"), (115000, "critical")]
    assert [c.type for c in snap.cooling] == ["thermal-cpufreq-0", "thermal-cpufreq-1"]
    assert snap.cpu_busy_ticks[5] == 1000
    assert snap.tasks[101].processor == 5 and snap.tasks[101].ticks == 40
    assert snap.tasks[100].migrations == 0 and snap.tasks[100].nonvoluntary == 0
    assert snap.rpi_throttled is None
    assert snap.warnings == []
    assert summary(snap)["temps_c"] == {"soc-thermal": 45.0, "gpu-thermal": 43.0}


def test_snapshot_sees_changes_but_static_parts_are_read_once(tmp_path):
    board = rk3399_conditions(tmp_path)
    reader = ConditionsReader(str(tmp_path), [0, 1])
    board.set_cur(0, 816000)
    board.set_temp(0, 71500)
    # A changed trip point is not re-read: trips are static for a session.
    (tmp_path / "sys/class/thermal/thermal_zone0/trip_point_0_temp").write_text("1\n")
    snap = reader.snapshot()
    assert snap.policies[0].cur_khz == 816000
    assert snap.zones[0].temp_mc == 71500
    assert snap.zones[0].trips[0].temp_mc == 70000


def test_old_kernel_cpufreq_directories_group_by_the_first_cpu(tmp_path):
    # Linux 3.10: cpu0/cpufreq is a directory, cpu1-3/cpufreq link to it.
    board = CondBoard(tmp_path)
    base = tmp_path / "sys/devices/system/cpu"
    (base / "cpu0/cpufreq").mkdir(parents=True)
    for name, text in {"cpuinfo_max_freq": "1400000\n", "scaling_cur_freq": "1400000\n",
                       "scaling_max_freq": "1400000\n", "scaling_governor": "ondemand\n"}.items():
        (base / "cpu0/cpufreq" / name).write_text(text)
    for cpu in (1, 2, 3):
        (base / ("cpu%d" % cpu)).mkdir()
        os.symlink("../cpu0/cpufreq", base / ("cpu%d/cpufreq" % cpu))
    snap = ConditionsReader(str(tmp_path), [0, 1, 2, 3]).snapshot()
    assert [(p.name, p.cpus, p.governor) for p in snap.policies] == [("cpu0", [0, 1, 2, 3],
                                                                       "ondemand")]
    assert snap.policies[0].time_in_state is None
    assert board.root == tmp_path


def test_this_machine_shape_no_cpufreq_no_thermal(tmp_path):
    (tmp_path / "sys/devices/system/cpu/cpu0").mkdir(parents=True)
    snap = ConditionsReader(str(tmp_path), [0, 1]).snapshot()
    assert snap.policies == [] and snap.no_cpufreq == [0, 1]
    assert snap.zones == [] and snap.hottest() is None
    assert snap.cpu_busy_ticks is None and snap.tasks is None


def test_real_proc_is_read_on_this_machine():
    snap = ConditionsReader("/", sorted(os.sched_getaffinity(0))).snapshot()
    assert os.getpid() in snap.tasks or any(t for t in snap.tasks)
    assert set(snap.cpus) <= set(snap.cpu_busy_ticks)


def test_garbage_values_are_warnings_quoting_path_and_value(tmp_path):
    board = rk3399_conditions(tmp_path)
    board.set_rpi_throttled(0x50005)
    reader = ConditionsReader(str(tmp_path), [4, 5])
    (board.policy(4) / "scaling_cur_freq").write_text("fast\n")
    (board.policy(4) / "stats/time_in_state").write_text("1800000 x\n")
    (tmp_path / "sys/devices/platform/soc/soc:firmware/get_throttled").write_text("zz\n")
    snap = reader.snapshot()
    assert snap.policies[0].cur_khz is None and snap.policies[0].time_in_state is None
    assert snap.rpi_throttled is None
    text = "\n".join(snap.warnings)
    assert "/sys/devices/system/cpu/cpu4/cpufreq/scaling_cur_freq: 'fast'" in text
    assert "/sys/devices/system/cpu/cpu4/cpufreq/stats/time_in_state" in text
    assert "get_throttled" in text and "'zz'" in text


def test_rpi_throttled_is_hex(tmp_path):
    board = rk3399_conditions(tmp_path)
    board.set_rpi_throttled(0x50005)
    assert ConditionsReader(str(tmp_path), [0]).snapshot().rpi_throttled == 0x50005


def test_cpu_cooling_devices_only():
    assert is_cpu_cooling("thermal-cpufreq-0") and is_cpu_cooling("cpufreq-cpu4")
    assert is_cpu_cooling("Processor")
    assert not is_cpu_cooling("pwm-fan") and not is_cpu_cooling("gpu-devfreq")


@given(st.dictionaries(st.integers(0, 10 ** 7), st.integers(0, 2 ** 40), max_size=20))
def test_time_in_state_round_trip(table):
    assert parse_time_in_state(format_time_in_state(table)) == table


@given(st.dictionaries(st.integers(0, 255), st.tuples(st.integers(10, 2 ** 40),
                                                     st.integers(0, 2 ** 40)), min_size=1))
def test_proc_stat_round_trip(ticks):
    # format_proc_stat writes irq 1 + softirq 1 on top of user+system; iowait 3 is idle.
    text = format_proc_stat({c: b for c, (b, _) in ticks.items()},
                            {c: i for c, (_, i) in ticks.items()})
    assert parse_proc_stat(text) == {c: (b, b + i + 3) for c, (b, i) in ticks.items()}


@given(st.integers(1, 2 ** 22), st.text(min_size=1, max_size=15).filter(lambda s: "\n" not in s),
       st.integers(0, 2 ** 40), st.integers(0, 1023))
def test_task_stat_round_trip_with_any_command_name(tid, comm, ticks, cpu):
    assert parse_task_stat(format_task_stat(tid, comm, ticks, cpu)) == (ticks, cpu)


@given(st.text(max_size=80))
def test_parsers_refuse_junk_with_value_error_only(junk):
    for parse in (parse_time_in_state, parse_proc_stat, parse_task_stat, parse_hex,
                  lambda t: parse_field(t, "nonvoluntary_ctxt_switches")):
        try:
            parse(junk)
        except ValueError:
            pass


def test_parsers_name_what_is_wrong():
    with pytest.raises(ValueError, match="not '<kHz> <time>'"):
        parse_time_in_state("1800000\n")
    with pytest.raises(ValueError, match="not a task stat line"):
        parse_task_stat("12 (x) S 1")
    with pytest.raises(ValueError, match="not a count"):
        parse_field("nonvoluntary_ctxt_switches:\t-3\n", "nonvoluntary_ctxt_switches")
    assert parse_field("Name:\tx\n", "nonvoluntary_ctxt_switches") is None


def test_cpuinfo_cur_freq_when_there_is_no_scaling_cur_freq(tmp_path):
    board = rk3399_conditions(tmp_path)
    (board.policy(4) / "scaling_cur_freq").unlink()
    (board.policy(4) / "cpuinfo_cur_freq").write_text("1608000\n")
    assert ConditionsReader(str(tmp_path), [4]).snapshot().policies[0].cur_khz == 1608000
