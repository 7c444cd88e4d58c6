"""edge.verdict_evaluator and friends in a real session serving a real TVM
client, on a fake board whose files a helper thread rewrites while the
kernel runs; and on this machine, which has no cpufreq and no thermal zones."""
import os
import threading

import numpy as np
import pytest

from host_client import verdicts
from tests.support.conditions_kit import rk3399_conditions
from tests.support.session_kit import Session

HOST_CPUS = sorted(os.sched_getaffinity(0))
pytestmark = pytest.mark.skipif(HOST_CPUS != [0, 1], reason="written for the 2-CPU test machine")
QUIET = {"max_other_ms": 1e9, "max_preemptions": 10 ** 9}   # this box is shared: no intruder check


@pytest.fixture(scope="module")
def kernel_so(tmp_path_factory):
    from tests.support.pinning_kit import build_kernel
    path = tmp_path_factory.mktemp("kernel") / "matmul.so"
    build_kernel(path)
    return path


@pytest.fixture
def board(tmp_path):
    return rk3399_conditions(tmp_path / "board")


@pytest.fixture
def session(tmp_path, board):
    s = Session(tmp_path, board_root=str(board.root), state_dir=str(tmp_path / "state"))
    yield s
    if s.remote is not None:
        s.close()


def timer(s, kernel_so, number=3, thresholds=None):
    """run(change=None) -> (result, verdict): the stock evaluator between
    edge.measure_begin and edge.measure_end; `change` rewrites the board on
    another thread 50 ms into the kernel, and has happened before the end."""
    import tvm
    s.remote.upload(str(kernel_so), "k.so")
    mod = s.remote.load_module("k.so")
    dev = s.remote.cpu()
    args = [tvm.runtime.tensor(np.ones((512, 512), "float32"), dev) for _ in range(3)]
    feval = mod.time_evaluator("main", dev, number=number, repeat=2)

    def kernel_while(change):
        th = threading.Timer(0.05, change) if change else None
        if th:
            th.start()
        try:
            return feval(*args)
        finally:
            if th:
                th.join()
    timed = verdicts.measured(s.remote, kernel_while, thresholds)
    return lambda change=None: timed(change)


def test_unchanged_board_is_valid(session, kernel_so):
    result, v = timer(session, kernel_so)()
    assert len(result.results) == 2 and all(r > 0 for r in result.results)
    assert v.status == "VALID", v.line()
    assert v.facts["clocks"]["policy0"]["cur_mhz_after"] == 1416


def test_clock_drops_while_the_kernel_runs(session, kernel_so, board):
    _, v = timer(session, kernel_so, number=2)(lambda: board.set_cur(0, 816000))
    assert v.status == "SUSPECT"
    assert v.reasons == ["cpu0-1 ran at 816 of 1416 MHz under schedutil"]


def test_zone_heats_past_its_trip_while_the_kernel_runs(session, kernel_so, board):
    _, v = timer(session, kernel_so, number=2)(lambda: board.set_temp(0, 71000))
    assert v.reasons == ["soc-thermal rose to 71 °C, trip at 70 °C (passive)"]
    # The last verdict and the conditions are in thread_state.
    state = session.state()
    assert state["last_verdict"]["status"] == "SUSPECT"
    assert state["conditions"]["temps_c"]["soc-thermal"] == 71.0
    assert state["mode"] and state["cpus"] == HOST_CPUS


def test_another_task_on_a_measured_core(session, kernel_so, board):
    # The share threshold is off: this shared box makes the run's length vary.
    _, v = timer(session, kernel_so, number=2, thresholds={"max_other_share": 0})(
        lambda: board.set_proc_stat({0: 1000, 1: 1030, 2: 1000, 3: 1000, 4: 1000, 5: 1000}))
    assert v.reasons == ["another task took 300 ms on cpu1"], v.facts


def test_bad_thresholds_are_refused_and_the_session_survives(session, kernel_so):
    with pytest.raises(Exception, match="unknown threshold 'max_rise'"):
        timer(session, kernel_so, thresholds={"max_rise": 1})()
    _, v = timer(session, kernel_so)()
    assert v.status == "VALID"
    with pytest.raises(Exception, match="without edge.measure_begin"):
        session.func("edge.measure_end")()


def test_cooldown_waits_until_near_idle(session, board):
    board.set_temp(0, 60000)          # idle was 45 °C when the session started
    th = threading.Timer(0.6, lambda: board.set_temp(0, 46000))
    th.start()
    out = verdicts.cooldown(session.remote, margin_c=3, max_wait_s=20)
    th.join()
    assert out["reached"] is True and out["zone"] == "soc-thermal"
    assert out["idle_c"] == 45.0 and out["target_c"] == 48.0
    assert 0.4 <= out["waited_s"] < 20


def test_cooldown_is_bounded(session, board):
    board.set_temp(0, 60000)
    out = verdicts.cooldown(session.remote, margin_c=3, max_wait_s=0.5)
    assert out["reached"] is False and out["temp_c"] == 60.0 and out["waited_s"] >= 0.5


def test_this_machine_is_unknown_never_valid(tmp_path, kernel_so):
    s = Session(tmp_path)
    try:
        _, v = timer(s, kernel_so, thresholds=QUIET)()
        assert v.status == "UNKNOWN", v.line()
        assert "no cpufreq for cpu0-1" in v.unknown[0]
        assert "no readable thermal zone" in v.unknown[1]
        cond = verdicts.conditions(s.remote)
        assert cond["summary"]["governors"] == {} and cond["last_verdict"]["status"] == "UNKNOWN"
        assert verdicts.cooldown(s.remote, 3, 1)["reached"] is None
    finally:
        s.close()
