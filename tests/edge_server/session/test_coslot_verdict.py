"""The verdict on a measurement taken next to a busy co-slot (--slots).

Pure verdicts on before/after snapshots whose /proc/stat ticks differ, and a
real session (a real TVM client and kernel) in slot 0 of `cpus:0;cpus:1` on a
fake board whose /proc/stat a helper rewrites while the kernel runs, as the
kernel would account a co-slot busy with another measurement.
"""
import os
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_common.slots import CoSlots, resolve_slots, slot_topology
from edge_server.board.conditions import Snapshot, Zone
from edge_server.session.verdict import (SUSPECT, UNKNOWN, VALID, Thresholds, busy_share,
                                         evaluate)
from tests.support.boards import real_topology
from tests.support.conditions_kit import this_machine_conditions

SLOT0 = CoSlots(index=0, cpus=(0,), others=((1, (1,)),), slowdown=0.41,
                probes={"memory": 0.41, "compute": 0.02}, threshold=0.03)


def snap(t, ticks, zones=True):
    """A snapshot at monotonic `t` whose /proc/stat says cpu -> (busy, elapsed) ticks;
    one readable thermal zone so that nothing else makes the verdict UNKNOWN."""
    return Snapshot(monotonic=t, cpus=[0], policies=[], no_cpufreq=[],
                    zones=[Zone("thermal_zone0", "soc-thermal", 45000)] if zones else [],
                    cooling=[], rpi_throttled=None,
                    cpu_busy_ticks=None if ticks is None else {c: b for c, (b, _) in ticks.items()},
                    cpu_ticks=None if ticks is None else {c: e for c, (_, e) in ticks.items()},
                    tasks=None)


def run(co_busy, co_idle, slots=SLOT0, thresholds=Thresholds()):
    """A 1 s run on cpu0 while cpu1 was busy `co_busy` and idle `co_idle` ticks."""
    before = snap(10.0, {0: (500, 1000), 1: (700, 1000)})
    after = snap(11.0, {0: (500, 1100), 1: (700 + co_busy, 1000 + co_busy + co_idle)})
    return evaluate(before, after, thresholds, coslots=slots)


def test_busy_coslot_over_the_calibrated_threshold_is_suspect():
    v = run(92, 8)
    assert v.status == SUSPECT
    assert v.reasons == ["slot 1 (cpu1) was busy 92% of the run; calibrated slowdown next to "
                         "it is 41% (over 3%)"]
    assert v.facts["co_slots"] == [{"index": 1, "cpus": [1], "busy_share": 0.92}]
    assert v.facts["slot"] == {"index": 0, "slowdown": 0.41, "threshold": 0.03,
                               "slowdown_by_probe": {"memory": 0.41, "compute": 0.02}}


def test_idle_coslot_is_valid_and_its_share_is_a_fact():
    v = run(3, 97)
    assert v.status == VALID, v.line()
    assert v.facts["co_slots"][0]["busy_share"] == 0.03


def test_busy_coslot_without_calibration_is_unknown_never_valid():
    v = run(92, 8, slots=CoSlots(0, (0,), ((1, (1,)),), None, None))
    assert v.status == UNKNOWN
    assert v.unknown == ["slot 1 (cpu1) was busy 92% of the run; interference not calibrated "
                         "on this boot (edge-server calibrate)"]


def test_busy_coslot_with_a_small_calibrated_slowdown_is_valid():
    v = run(100, 0, slots=CoSlots(0, (0,), ((1, (1,)),), 0.01, {"memory": 0.01}, 0.03))
    assert v.status == VALID, v.line()
    assert v.facts["co_slots"][0]["busy_share"] == 1.0
    assert v.facts["slot"]["slowdown"] == 0.01


def test_threshold_is_overridable_per_measurement_and_one_means_never():
    assert run(60, 40).status == SUSPECT
    relaxed = Thresholds().with_overrides({"max_coslot_busy": 0.7})
    assert run(60, 40, thresholds=relaxed).status == VALID
    assert run(100, 0, thresholds=Thresholds(max_coslot_busy=1)).status == VALID


def test_the_slot_threshold_comes_with_the_slot():
    loose = CoSlots(0, (0,), ((1, (1,)),), 0.41, None, threshold=0.5)
    assert run(92, 8, slots=loose).status == VALID


def test_not_a_slot_server_judges_nothing():
    before = snap(10.0, {0: (500, 1000), 1: (700, 1000)})
    after = snap(11.0, {0: (500, 1100), 1: (800, 1100)})
    v = evaluate(before, after)
    assert v.status == VALID and "co_slots" not in v.facts and "slot" not in v.facts


def test_busiest_core_of_a_multi_core_coslot_counts():
    slots = CoSlots(0, (0,), ((1, (1, 2)),), 0.2, None)
    before = snap(10.0, {0: (0, 0), 1: (0, 0), 2: (0, 0)})
    after = snap(11.0, {0: (0, 100), 1: (10, 100), 2: (95, 100)})
    v = evaluate(before, after, coslots=slots)
    assert v.reasons == ["slot 1 (cpu1-2) was busy 95% of the run; calibrated slowdown next to "
                         "it is 20% (over 3%)"]


def test_unreadable_proc_stat_or_a_sub_tick_run_is_unknown_when_it_matters():
    v = evaluate(snap(10.0, None), snap(11.0, None), coslots=SLOT0)
    assert v.status == UNKNOWN
    assert v.unknown == ["whether slot 1 (cpu1) was busy cannot be told (/proc/stat unreadable, "
                         "or the run was shorter than a clock tick)"]
    same = {0: (5, 10), 1: (5, 10)}
    assert evaluate(snap(10.0, same), snap(10.004, same), coslots=SLOT0).status == UNKNOWN
    fine = CoSlots(0, (0,), ((1, (1,)),), 0.01, None)
    assert evaluate(snap(10.0, None), snap(11.0, None), coslots=fine).status == VALID


def test_several_coslots_each_named():
    slots = CoSlots(1, (1,), ((0, (0,)), (2, (2,))), 0.3, None)
    before = snap(0.0, {0: (0, 0), 1: (0, 0), 2: (0, 0)})
    after = snap(1.0, {0: (80, 100), 1: (0, 100), 2: (20, 100)})
    v = evaluate(before, after, coslots=slots)
    assert [r.split(";")[0] for r in v.reasons] == ["slot 0 (cpu0) was busy 80% of the run"]
    assert [c["busy_share"] for c in v.facts["co_slots"]] == [0.8, 0.2]


@given(busy=st.integers(0, 10 ** 6), idle=st.integers(0, 10 ** 6),
       slowdown=st.one_of(st.none(), st.floats(-0.5, 3.0)),
       threshold=st.floats(0, 1), limit=st.floats(0, 1.2))
def test_rule(busy, idle, slowdown, threshold, limit):
    slots = CoSlots(0, (0,), ((1, (1,)),), slowdown, None, threshold)
    v = run(busy, idle, slots, Thresholds(max_coslot_busy=limit))
    share = busy / (busy + idle) if busy + idle else None
    mine = [r for r in v.reasons + v.unknown if "slot 1" in r]
    if share is None:
        assert v.facts["co_slots"][0]["busy_share"] is None
        assert bool(mine) == (slowdown is None or slowdown > threshold)
    elif share <= limit or (slowdown is not None and slowdown <= threshold):
        assert not mine and v.status == VALID
    elif slowdown is None:
        assert v.status == UNKNOWN and "not calibrated" in mine[0]
    else:
        assert v.status == SUSPECT and "calibrated slowdown next to it" in mine[0]
    if share is not None:
        assert v.facts["co_slots"][0]["busy_share"] == round(share, 3)


@given(st.dictionaries(st.integers(0, 63), st.tuples(st.integers(0, 10 ** 6),
                                                     st.integers(0, 10 ** 6)), min_size=1))
def test_busy_share_is_the_busiest_core_between_0_and_1(deltas):
    before = snap(0.0, {c: (0, 0) for c in deltas})
    after = snap(1.0, {c: (b, b + i) for c, (b, i) in deltas.items()})
    share = busy_share(before, after, sorted(deltas))
    shares = [b / (b + i) for b, i in deltas.values() if b + i]
    assert share == (max(shares) if shares else None)


# ---------------------------------------------------------------- in a real session

HOST_CPUS = sorted(os.sched_getaffinity(0))


def slot0_topology(slowdown):
    """This machine's topology as slot 0 of `cpus:0;cpus:1` sees it."""
    board = real_topology()
    slots = resolve_slots(board, "cpus:0;cpus:1")
    probes = None if slowdown is None else {"memory": slowdown, "compute": slowdown / 2}
    return slot_topology(board, slots[0], 2, "cpus:0;cpus:1", slowdown, probes=probes,
                         threshold=0.03, co_slots=slots)


@pytest.fixture(scope="module")
def kernel_so(tmp_path_factory):
    from tests.support.pinning_kit import build_kernel
    path = tmp_path_factory.mktemp("kernel") / "matmul.so"
    build_kernel(path)
    return path


def measure_while(tmp_path, kernel_so, slowdown, change):
    """A session in slot 0 on a fake board (this machine's shape with clocks and
    zones); `change` rewrites the board 50 ms into the timed kernel. Returns the
    verdict and the session's conditions after it."""
    import tvm

    from host_client import verdicts
    from tests.support.session_kit import Session
    board = this_machine_conditions(tmp_path / "board")
    s = Session(tmp_path, topology=slot0_topology(slowdown), board_root=str(board.root),
                state_dir=str(tmp_path / "state"))

    def measure():          # every remote object dies with this frame, before close()
        assert s.set_mode("all")["cpus"] == [0]
        s.remote.upload(str(kernel_so), "k.so")
        mod = s.remote.load_module("k.so")
        dev = s.remote.cpu()
        args = [tvm.runtime.tensor(np.ones((512, 512), "float32"), dev) for _ in range(3)]
        feval = mod.time_evaluator("main", dev, number=2, repeat=1)

        def kernel_while(_):
            th = threading.Timer(0.05, change, args=(board,))
            th.start()
            try:
                return feval(*args)
            finally:
                th.join()
        verdict = verdicts.measured(s.remote, kernel_while)(None)[1]
        return verdict, verdicts.conditions(s.remote)
    try:
        return measure()
    finally:
        s.close()


@pytest.mark.skipif(HOST_CPUS != [0, 1], reason="written for the 2-CPU test machine")
def test_session_next_to_a_busy_coslot_is_suspect(tmp_path, kernel_so):
    v, conditions = measure_while(tmp_path, kernel_so, 0.41,
                                  lambda b: b.run_ticks({1: (45, 5)}))
    assert v.status == "SUSPECT", v.line()
    assert v.reasons == ["slot 1 (cpu1) was busy 90% of the run; calibrated slowdown next to it "
                         "is 41% (over 3%)"]
    assert v.facts["co_slots"] == [{"index": 1, "cpus": [1], "busy_share": 0.9}]
    # the slot's calibration is in the session's conditions too
    assert conditions["slot"] == {"index": 0, "slowdown": 0.41, "threshold": 0.03,
                                  "slowdown_by_probe": {"memory": 0.41, "compute": 0.205}}


@pytest.mark.skipif(HOST_CPUS != [0, 1], reason="written for the 2-CPU test machine")
def test_session_next_to_an_idle_coslot_is_valid(tmp_path, kernel_so):
    v, _ = measure_while(tmp_path, kernel_so, 0.41, lambda b: b.run_ticks({0: (0, 20),
                                                                           1: (2, 48)}))
    assert v.status == "VALID", v.line()
    assert v.facts["co_slots"][0]["busy_share"] == 0.04


@pytest.mark.skipif(HOST_CPUS != [0, 1], reason="written for the 2-CPU test machine")
def test_session_next_to_a_busy_uncalibrated_coslot_is_unknown(tmp_path, kernel_so):
    v, _ = measure_while(tmp_path, kernel_so, None, lambda b: b.run_ticks({1: (50, 0)}))
    assert v.status == "UNKNOWN"
    assert v.unknown == ["slot 1 (cpu1) was busy 100% of the run; interference not calibrated "
                         "on this boot (edge-server calibrate)"]


def test_coslots_from_the_slot_document():
    doc = slot0_topology(0.41)
    slots = CoSlots.from_topology(doc)
    assert slots == CoSlots(0, (0,), ((1, (1,)),), 0.41, {"memory": 0.41, "compute": 0.205},
                            0.03)
    assert CoSlots.from_topology(real_topology()) is None        # a whole-board server
    one = resolve_slots(real_topology(), "all")
    assert CoSlots.from_topology(slot_topology(real_topology(), one[0], 1, "all",
                                               co_slots=one)) is None   # no neighbour
