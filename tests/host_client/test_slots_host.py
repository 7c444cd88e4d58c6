"""The host side of slots, against real `edge-server --slots` processes on a
real tracker: edge-client list shows each slot and whether it is busy,
edge_runner(parallel=True) gets one worker per slot and refuses modes that
some slots cannot meet or would meet on different cores, and edge-client
bench --parallel measures modes at once in different slots."""
import gc
import json
import re
import os
import subprocess
import sys

import pytest

import host_client
from host_client.errors import ThreadModeRefused
from tests.support import procs

PAIR, RK = "host-slots-pair", "host-slots-rk"
pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")


def start(tmp, tracker, key, spec, count, *extra):
    port = procs.free_port()
    argv = ["--host", procs.HOST, "--port", port, "--port-end", port + 20, "--key", key,
            "--tracker", "%s:%d" % (procs.HOST, tracker.port), "--slots", spec,
            "--work-root", tmp / ("work-" + key), *extra]
    proc = procs.Proc(procs.edge_server_argv(*argv), tmp / ("%s.log" % key))
    procs.wait_free(tracker.port, key, count=count, proc=proc)
    return proc


@pytest.fixture(scope="module")
def boards(tmp_path_factory, shared_tracker):
    tmp = tmp_path_factory.mktemp("host-slots")
    started = [start(tmp, shared_tracker, PAIR, "cpus:0;cpus:1", 2),
               start(tmp, shared_tracker, RK, "big;little:1x2", 3, "--root",
                     procs.FIXTURES / "rk3399")]
    yield "%s:%d" % (procs.HOST, shared_tracker.port)
    for proc in started:
        assert proc.stop() == 0


def edge_client(*args):
    return subprocess.run([sys.executable, "-m", "host_client.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=600,
                          cwd=str(procs.REPO))


def test_list_shows_every_slot_and_whether_it_is_busy(boards):
    out = edge_client("list", "--tracker", boards)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if " %s " % PAIR in line]
    assert "SLOT" in out.stdout.splitlines()[0].split()
    slots = sorted(re.search(r" (\d/\d) cpus (\S+) (free|busy) ", r).groups() for r in rows)
    assert slots == [("0/2", "0", "free"), ("1/2", "1", "free")]
    session = host_client.connect(boards, PAIR, thread_mode="all")
    try:
        listed = json.loads(edge_client("list", "--tracker", boards, "--json").stdout)
        busy = {b["slot"]["cpus"][0]: b["busy"] for b in listed if b["key"] == PAIR}
        ours = session.thread_state["cpus"][0]
        assert busy == {ours: True, 1 - ours: False}
    finally:
        session.release()
        del session
        gc.collect()


def test_parallel_runner_gets_one_worker_per_slot(boards):
    runner = host_client.edge_runner(boards, PAIR, thread_mode="all", parallel=True,
                                     preload=False)
    assert runner.max_workers == 2
    from host_client.target import target_dict_for
    assert target_dict_for(runner)["num-cores"] == 1      # `all` = the slot's one core
    assert host_client.edge_runner(boards, PAIR, parallel=True, max_workers=1,
                                   preload=False).max_workers == 1


def test_runner_refuses_a_mode_some_slots_cannot_meet(boards):
    with pytest.raises(ThreadModeRefused, match=r"1 of the 3 slots of key 'host-slots-rk' "
                       r"would refuse thread mode 'little:1'.*'all' is each slot's own cores"):
        host_client.edge_runner(boards, RK, thread_mode="little:1", preload=False)


def test_runner_refuses_a_mode_that_means_different_cores_per_slot(boards):
    with pytest.raises(ThreadModeRefused, match=r"different cores \(1 slot\(s\) on 2 big core.*2 slot\(s\) on 1 little core"):
        host_client.edge_runner(boards, RK, thread_mode="all", preload=False)


def test_bench_measures_modes_at_once_in_different_slots(boards):
    out = edge_client("bench", "--tracker", boards, "--key", PAIR, "--matmul", "64",
                      "--modes", "all,all", "--parallel", "slots", "--repeat", "2",
                      "--min-repeat-ms", "5", "--json", "--quiet")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["parallel"] == 2
    assert sorted(r["cpus"] for r in doc["results"]) == [[0], [1]]
    assert len({r["board"] for r in doc["results"]}) == 2
    bad = edge_client("bench", "--tracker", boards, "--key", PAIR, "--parallel", "3")
    assert bad.returncode == 2 and "has 2 server(s)/slot(s)" in bad.stderr
