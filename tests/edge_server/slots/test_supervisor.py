"""A slot server keeps itself off other slots' cores (edge_server.slots.supervisor)."""
import logging
import multiprocessing
import os

from edge_server.slots.supervisor import confine, server_cpus


def _confined_affinity(cpus, queue):
    queue.put((confine(cpus), sorted(os.sched_getaffinity(0))))


def run_in_child(cpus):
    """confine() in a child process, so this test process keeps its own affinity."""
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_confined_affinity, args=(cpus, queue))
    proc.start()
    result = queue.get(timeout=30)
    proc.join(30)
    return result


def test_confine_sets_the_slot_cores():
    mine = sorted(os.sched_getaffinity(0))
    ok, now = run_in_child((mine[-1],))
    assert ok and now == [mine[-1]]


def test_cores_this_machine_lacks_are_a_warning_not_a_crash(caplog):
    mine = sorted(os.sched_getaffinity(0))
    with caplog.at_level(logging.WARNING, logger="edge_server.slots.supervisor"):
        assert confine((4095,)) is False
    assert sorted(os.sched_getaffinity(0)) == mine          # nothing changed
    [record] = [r for r in caplog.records if "confining" in r.getMessage()]
    assert "cpus 4095" in record.getMessage() and "sched_setaffinity" in record.getMessage()


def test_a_slot_server_may_use_its_slot_and_the_cores_no_slot_measures_on():
    assert server_cpus((0,), [(0,), (1,)], [0, 1]) == [0]
    assert server_cpus((0,), [(0,)], [0, 1]) == [0, 1]
    assert server_cpus((4, 5), [(0,), (1,), (4, 5)], list(range(6))) == [2, 3, 4, 5]
