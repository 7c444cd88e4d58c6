"""bench/slots' summary: the per-round ratios against both readings of "one slot",
and the ceiling that one slot's busy cores put on the sessions/s ratio."""
import pytest

from bench import slots


def _session(spec, round_, per_s, cores=1.0):
    return {"spec": spec, "round": round_, "per_s": per_s, "bench_cores": cores,
            "sharing_a_core": 0, "overlapping_pairs": 3}


def _data(sessions):
    return {"sessions": sessions, "runner": []}


def test_ratios_are_per_round_against_each_baseline():
    data = _data([_session(slots.ONE, 0, 20.0, cores=1.25),
                  _session(slots.TWO, 0, 36.0, cores=1.9),
                  _session(slots.ONE_OF_TWO, 0, 18.0),
                  _session(slots.ONE, 1, 25.0, cores=1.25),
                  _session(slots.TWO, 1, 40.0, cores=1.95),
                  _session(slots.ONE_OF_TWO, 1, 25.0)])
    slots.summarise(data)
    t = data["target"]
    assert t["sessions_ratio"]["median"] == pytest.approx((36 / 20 + 40 / 25) / 2)
    assert t["sessions_ratio_one_of_two"]["median"] == pytest.approx((2.0 + 1.6) / 2)
    assert t["sessions_met"] is False       # median (1.8 + 1.6) / 2 = 1.7 < 1.8
    assert t["sessions_ceiling"]["median"] == pytest.approx(2 / 1.25)


def test_the_target_is_met_on_the_median_of_rounds():
    data = _data([_session(slots.ONE, 0, 20.0), _session(slots.TWO, 0, 37.0),
                  _session(slots.ONE, 1, 20.0), _session(slots.TWO, 1, 36.0),
                  _session(slots.ONE, 2, 20.0), _session(slots.TWO, 2, 30.0)])
    slots.summarise(data)
    assert data["target"]["sessions_ratio"]["median"] == pytest.approx(1.8)
    assert data["target"]["sessions_met"] is True


def test_a_round_missing_a_row_gives_no_ratio_for_it():
    data = _data([_session(slots.ONE, 0, 20.0), _session(slots.TWO, 1, 40.0)])
    slots.summarise(data)
    assert data["target"]["sessions_ratio"] == {"n": 0}
    assert data["target"]["sessions_met"] is False


@pytest.mark.parametrize("cores, bound", [(1.0, 2.0), (1.2, 2 / 1.2), (1.11, 2 / 1.11)])
def test_ceiling_is_two_cores_over_one_slots_cores(cores, bound):
    assert slots.ceiling([cores])["median"] == pytest.approx(bound)


def test_ceiling_ignores_rounds_without_cpu_figures():
    assert slots.ceiling([0.0]) == {"n": 0}


def test_the_targets_table_carries_both_ratios_and_their_verdicts():
    from bench import run_all
    data = _data([_session(slots.ONE, 0, 20.0, cores=1.25), _session(slots.TWO, 0, 33.0),
                  _session(slots.ONE_OF_TWO, 0, 19.0)])
    data["runner"] = [{"spec": slots.ONE, "round": 0, "per_s": 5.0, "failed": 0,
                       "pinning": [["a:1", [0]]]},
                      {"spec": slots.TWO, "round": 0, "per_s": 9.5, "failed": 0,
                       "pinning": [["a:1", [0]], ["a:2", [1]]]}]
    slots.summarise(data)
    rows = {r[0].strip(): r for r in run_all.slots_rows(data)}
    runner = rows["MetaSchedule runner trials/s, two one-core slots / one"]
    sessions = rows["sessions/s through the tracker, two one-core slots / one"]
    assert (runner[2], runner[3]) == ("1.9x", "met")
    assert (sessions[2], sessions[3]) == ("1.65x", "NOT met")
    assert rows["ceiling here: 2 / (cores one slot's session stream keeps busy)"][2] == "1.6x"
    assert run_all.slots_rows(None) == []
