"""Verdicts from two snapshots of a fake board that changed in between."""
import pytest

from edge_server.board.conditions import ConditionsReader
from edge_server.session.verdict import (SUSPECT, UNKNOWN, VALID, ThresholdError, Thresholds,
                                         evaluate)
from tests.support.conditions_kit import rk3399_conditions


@pytest.fixture
def board(tmp_path):
    return rk3399_conditions(tmp_path)


def run(board, cpus, change=lambda: None, thresholds=Thresholds(), **kw):
    reader = ConditionsReader(str(board.root), cpus)
    before = reader.snapshot()
    change()
    return evaluate(before, reader.snapshot(), thresholds, **kw)


def test_unchanged_board_is_valid(board):
    v = run(board, [4, 5])
    assert v.status == VALID, v.line()
    assert v.facts["clocks"]["policy4"]["cur_mhz_after"] == 1800
    assert v.facts["temps_c"]["soc-thermal"] == [45.0, 45.0]


def test_governor_drops_the_clock(board):
    v = run(board, [4, 5], lambda: board.set_cur(4, 1416000))
    assert v.status == SUSPECT
    assert v.reasons == ["cpu4-5 ran at 1416 of 1800 MHz under schedutil"]


def test_other_cluster_clock_does_not_matter(board):
    assert run(board, [4, 5], lambda: board.set_cur(0, 408000)).status == VALID


def test_lowered_cap_is_throttling(board):
    v = run(board, [0, 1], lambda: board.set_cap(0, 1008000))
    assert "cpu0-1 was capped at 1008 of 1416 MHz" in v.reasons[0]


def test_time_in_state_below_clock(board):
    def change():
        board.add_time(4, 1800000, 8)
        board.add_time(4, 1008000, 4, transitions=2)
    v = run(board, [4], change)
    assert v.reasons == ["cpu4 spent 40 of 120 ms below 1710 MHz"]
    assert v.facts["clocks"]["policy4"]["transitions"] == 3


def test_zone_reaches_trip(board):
    v = run(board, [4, 5], lambda: board.set_temp(0, 71000))
    assert v.status == SUSPECT
    assert v.reasons == ["soc-thermal rose to 71 °C, trip at 70 °C (passive)"]


def test_zone_rises_fast_below_trip(board):
    v = run(board, [4, 5], lambda: board.set_temp(1, 49500))
    assert v.reasons == ["gpu-thermal rose from 43 to 49.5 °C during the run"]


def test_trip_margin_flag(board):
    board.set_temp(0, 66000)
    assert run(board, [4]).status == VALID
    v = run(board, [4], thresholds=Thresholds(trip_margin_c=5))
    assert v.reasons == ["soc-thermal was at 66 °C, trip at 70 °C (passive)"]


def test_active_cooling_device(board):
    v = run(board, [4, 5], lambda: board.set_cooling(1, 2))
    assert v.reasons == ["thermal-cpufreq-1 was slowing the clock (cooling state 2 of 7)"]


def test_cooling_of_another_policy_is_ignored_when_named_by_cpu(board):
    board.add_cooling(2, "cpufreq-cpu0", 5)
    assert run(board, [4, 5], lambda: board.set_cooling(2, 3)).status == VALID


def test_rpi_bits_now_and_during(board):
    board.set_rpi_throttled(0)
    v = run(board, [4], lambda: board.set_rpi_throttled(0x40000))
    assert v.reasons == ["the Raspberry Pi firmware saw throttled during the run "
                         "(get_throttled 0x40000)"]
    board.set_rpi_throttled(0x50005)
    v = run(board, [4])
    assert v.reasons == ["the Raspberry Pi firmware reports under-voltage (get_throttled 0x50005)",
                         "the Raspberry Pi firmware reports throttled (get_throttled 0x50005)"]


def test_another_task_on_a_measured_core(board):
    def change():
        board.set_task(100, 50 + 10, 4)            # our thread ran 100 ms on cpu4
        board.set_task(101, 40 + 10, 5)            # and 100 ms on cpu5
        board.set_proc_stat({0: 1000, 1: 1000, 2: 1000, 3: 1000, 4: 1010, 5: 1013})
    v = run(board, [4, 5], change)
    assert v.reasons == ["another task took 30 ms on cpu5"]
    assert v.facts["other_ms"] == {4: 0.0, 5: 30.0}


def test_preemptions_and_migrations(board):
    def change():
        board.set_task(100, 50, 4, nonvoluntary=25)
        board.set_task(101, 40, 5, migrations=2)
    v = run(board, [4, 5], change)
    assert v.reasons == ["the session's threads were preempted 25 times",
                         "the session's threads moved between cores 2 times (pinning did not hold)"]


def test_no_cpufreq_no_thermal_is_unknown_never_valid(tmp_path):
    (tmp_path / "sys/devices/system/cpu/cpu0").mkdir(parents=True)
    v = run(type("B", (), {"root": tmp_path})(), [0, 1])
    assert v.status == UNKNOWN
    assert v.unknown == ["no cpufreq for cpu0-1: their clock cannot be checked",
                         "no readable thermal zone: heat cannot be checked"]
    assert v.line().startswith("UNKNOWN: no cpufreq")


def test_this_machine_is_not_valid():
    import os
    cpus = sorted(os.sched_getaffinity(0))
    reader = ConditionsReader("/", cpus)
    v = evaluate(reader.snapshot(), reader.snapshot(),
                 Thresholds(max_other_ms=1e9, max_preemptions=10 ** 9))
    assert v.status == UNKNOWN, v.line()


def test_suspect_wins_over_unknown(board):
    import shutil
    shutil.rmtree(board.root / "sys/class/thermal")
    v = run(board, [4], lambda: board.set_cur(4, 1008000))
    assert v.status == SUSPECT and v.unknown == ["no readable thermal zone: heat cannot be checked"]


def test_locked_fixed_clock_is_the_expectation(board):
    board.set_cur(4, 1200000)
    board.set_cap(4, 1200000)
    assert run(board, [4], expected_khz={"policy4": 1200000}).status == VALID
    assert run(board, [4]).status == SUSPECT


def test_threshold_overrides_are_checked():
    assert Thresholds().with_overrides({"max_rise_c": 2}).max_rise_c == 2.0
    with pytest.raises(ThresholdError, match="unknown threshold 'max_rise'; known: "):
        Thresholds().with_overrides({"max_rise": 2})
    with pytest.raises(ThresholdError, match="must be a number >= 0"):
        Thresholds().with_overrides({"max_rise_c": -1})
    with pytest.raises(ThresholdError, match="between 0 and 1"):
        Thresholds().with_overrides({"min_clock_ratio": 95})
    with pytest.raises(ThresholdError, match="JSON object"):
        Thresholds().with_overrides([1])
