"""Verdicts on the host: the MetaSchedule plugin re-measures SUSPECT trials
after a cooldown and reports a trial that stays SUSPECT as a runner error
with the board's reasons; conditions and verdicts through host_client.

A real edge-server serves a fake board whose sysfs this test rewrites."""
import json
import re
import shutil
import threading
import time

import pytest

import host_client
from host_client import verdicts
from tests.host_client.test_metaschedule import artifact
from tests.support import client_kit, procs
from tests.support.conditions_kit import this_machine_conditions

KEY = "hot-board"


@pytest.fixture
def hot(stack, tmp_path):
    # This machine's topology (kernels built here must load), a board's conditions.
    root = tmp_path / "board"
    shutil.copytree(procs.FIXTURES / "this-machine", root, symlinks=True)
    board = this_machine_conditions(root)
    server = procs.start_edge_server(tmp_path, stack.tracker_proc.port, key=KEY, name="edge-hot",
                                     args=("--root", root, "--clock-state", tmp_path / "state",
                                           "--cooldown-max-wait", "30") + client_kit.SHARED_BOX)
    board.server = server
    # A first session while the board is cool: the daemon notes its idle temperatures.
    s = host_client.connect(stack.tracker, KEY, thread_mode="cpus:0-1")
    assert verdicts.conditions(s)["summary"]["temps_c"]["soc-thermal"] == 45.0
    s.release()
    del s
    stack.wait_free(KEY)
    yield board
    server.stop()


def records(path):
    try:
        return [json.loads(line) for line in open(path)]
    except FileNotFoundError:
        return []


def test_a_trial_that_stays_suspect_is_a_runner_error_with_the_reasons(stack, hot, tmp_path):
    hot.set_cur(0, 816000)                    # the A53 cluster is stuck low
    record = tmp_path / "verdicts.jsonl"
    runner = host_client.edge_runner(stack.tracker, KEY, thread_mode="cpus:0-1", preload=False,
                                     remeasure=2, verdict_record=str(record))
    result = runner.run([artifact(tmp_path)])[0].result()
    assert result.run_secs is None
    assert "measured 3 times, SUSPECT every time: cpu0-1 ran at 816 of 1416 MHz under " \
           "schedutil" in result.error_msg
    assert [r["status"] for r in records(record)] == ["SUSPECT"] * 3


def test_a_suspect_trial_is_measured_again_after_the_board_cooled(stack, hot, tmp_path):
    hot.set_temp(0, 75000)                    # above soc-thermal's 70 °C passive trip
    record = tmp_path / "verdicts.jsonl"

    def cool_after_first_verdict():
        deadline = time.time() + 120
        while not records(record) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)                       # the plugin is now in edge.cooldown
        hot.set_temp(0, 46000)
    helper = threading.Thread(target=cool_after_first_verdict)
    helper.start()
    runner = host_client.edge_runner(stack.tracker, KEY, thread_mode="cpus:0-1", preload=False,
                                     remeasure=2, verdict_record=str(record))
    result = runner.run([artifact(tmp_path)])[0].result()
    helper.join()
    assert result.error_msg is None, result.error_msg
    got = records(record)
    assert [r["status"] for r in got] == ["SUSPECT", "VALID"]
    assert got[0]["reasons"] == ["soc-thermal was at 75 °C, trip at 70 °C (passive)"]
    assert re.search(r"cooldown \{\"waited_s\": [0-9.]+, \"reached\": true", hot.server.log())


def test_this_machine_measures_unknown_and_keeps_the_time(stack, tmp_path):
    stack.wait_free(client_kit.LOCAL_KEY)
    record = tmp_path / "verdicts.jsonl"
    runner = host_client.edge_runner(stack.tracker, client_kit.LOCAL_KEY, thread_mode="cpus:1",
                                     preload=False, verdict_record=str(record))
    result = runner.run([artifact(tmp_path)])[0].result()
    assert result.error_msg is None, result.error_msg
    assert [r["status"] for r in records(record)] == ["UNKNOWN"]
    assert "no cpufreq for cpu1" in records(record)[0]["unknown"][0]


def test_stock_board_is_measured_without_verdicts(stack, tmp_path):
    from tvm import rpc
    stack.wait_free(client_kit.STOCK_KEY)
    remote = rpc.connect_tracker(procs.HOST, stack.tracker_proc.port).request(
        client_kit.STOCK_KEY)
    with pytest.raises(verdicts.NoVerdicts, match="run edge-server there"):
        verdicts.conditions(remote)


def test_tracker_shows_governors_and_temperatures(stack, hot):
    board = [b for b in host_client.list_boards(stack.tracker) if b.key == KEY][0]
    assert board.conditions["temps_c"] == {"soc-thermal": 45.0, "gpu-thermal": 43.0}
    assert board.conditions["governors"] == {"policy0": "schedutil"}


def test_bench_shows_the_verdict_column_and_reasons(stack, hot, tmp_path):
    from host_client.kernels import build_matmul
    from tests.host_client.cli.test_main import edge_client
    hot.set_cur(0, 1008000)
    # The fixture board says aarch64; the kernel is built for the machine that runs it.
    kernel = build_matmul(32, {"kind": "llvm"}, str(tmp_path))
    proc = edge_client("bench", kernel.path, "--tracker", stack.tracker, "--key", KEY,
                       "--arg", "32x32", "--arg", "32x32", "--arg", "32x32", "--func", "matmul",
                       "--modes", "cpus:0-1", "--repeat", 2, "--sessions", 2, "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].split()[-1] == "VERDICT"
    assert lines[3].split()[0] == "cpus:0-1" and lines[3].split()[-2:] == ["SUSPECT", "2/2"]
    assert "cpus:0-1: SUSPECT: cpu0-1 ran at 1008 of 1416 MHz under schedutil" in lines[4:]
    assert proc.stdout.count("ran at 1008") == 1       # once per mode, not per session


def test_probe_shows_the_cores_now(stack, hot):
    from tests.host_client.cli.test_main import edge_client
    hot.set_temp(1, 52000)
    proc = edge_client("probe", "--tracker", stack.tracker, "--key", KEY, "--mode", "cpus:0-1")
    assert proc.returncode == 0, proc.stderr
    now = next(line for line in proc.stdout.splitlines() if line.startswith("now: "))
    assert now.split(None, 1)[1] == ("policy0 schedutil 1416/1416 MHz, soc-thermal 45.0 °C, "
                                     "gpu-thermal 52.0 °C")
