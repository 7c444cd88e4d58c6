"""--lock-clocks with real edge-server processes on a fake board, the session
sandbox ON (--sandbox auto: Landlock on this kernel): the daemon locks before
the session, the verdict compares against the held clock, and the policies
come back at the session's end, after a SIGKILLed session, after a SIGKILLed
daemon (at its next start), at SIGTERM; two slots share one policy."""
import gc
import json
import os
import shutil
import signal
import subprocess

import pytest
from tvm import rpc

from tests.support import daemon_kit as kit
from tests.support import procs
from tests.support.conditions_kit import rk3399_conditions

ORIGINAL = {"scaling_governor": "schedutil", "scaling_min_freq": "408000",
            "scaling_max_freq": "1416000"}
LOCKED = {"scaling_governor": "performance", "scaling_min_freq": "408000",
          "scaling_max_freq": "1416000"}


def settings(board, first):
    pol = board.policy(first)
    return {n: (pol / n).read_text().strip()
            for n in ("scaling_governor", "scaling_min_freq", "scaling_max_freq")}


def fixture_board(tmp_path):
    root = tmp_path / "rk3399"
    shutil.copytree(procs.FIXTURES / "rk3399", root, symlinks=True)
    return rk3399_conditions(root)


def start(tmp_path, board, how="max", *extra):
    return procs.start_edge_server(tmp_path, None, key="lock-key", args=[
        "--root", board.root, "--lock-clocks", how, "--clock-state", tmp_path / "state",
        "--work-root", tmp_path / "work", *extra])


def connect(server):
    return rpc.connect(procs.HOST, server.port, "lock-key")


def measure(remote):
    """A timed run's verdict (the run itself does not matter here)."""
    remote.get_function("edge.measure_begin")("")
    return json.loads(remote.get_function("edge.measure_end")())


def session_pid(remote):
    return json.loads(remote.get_function("edge.thread_state")())["pid"]


def wait_settings(board, first, want, timeout=15):
    kit.wait_for(lambda: settings(board, first) == want, timeout,
                 "policy%d back to %s (now %s)" % (first, want, settings(board, first)))


def state_file(tmp_path, name="policy0"):
    return tmp_path / "state" / "clock-locks" / ("clock-lock-%s.json" % name)


def test_locked_for_the_session_under_landlock_and_restored_at_its_end(tmp_path):
    board = fixture_board(tmp_path)
    assert settings(board, 0) == ORIGINAL
    server = start(tmp_path, board)
    try:
        remote = connect(server)
        state = json.loads(remote.get_function("edge.thread_state")())
        assert state["sandbox"]["landlock_abi"] >= 1        # the session is confined
        # every online core of the board may be used: both policies are held
        assert settings(board, 0) == LOCKED
        assert settings(board, 4)["scaling_governor"] == "performance"
        verdict = measure(remote)      # the session runs on this machine's cpus 0-1: policy0
        assert verdict["facts"]["clocks"]["policy0"]["want_mhz"] == 1416
        assert not [u for u in verdict["unknown"] if "clock lock" in u]
        del remote
        gc.collect()
        wait_settings(board, 0, ORIGINAL)
        wait_settings(board, 4, dict(ORIGINAL, scaling_max_freq="1800000"))
        assert not state_file(tmp_path).exists()
    finally:
        assert server.stop() == 0


def test_a_fixed_clock_is_what_the_verdict_expects(tmp_path):
    board = fixture_board(tmp_path)
    (board.policy(0) / "scaling_available_frequencies").write_text(
        "408000 600000 816000 1008000 1200000 1416000 \n")
    server = start(tmp_path, board, "1100000")
    try:
        remote = connect(server)
        assert settings(board, 0) == {"scaling_governor": "performance",
                                      "scaling_min_freq": "1008000",
                                      "scaling_max_freq": "1008000"}
        board.set_cur(0, 1008000)      # what the driver does under that lock
        verdict = measure(remote)
        assert verdict["facts"]["clocks"]["policy0"]["want_mhz"] == 1008
        assert not [r for r in verdict["reasons"] if "cpu0-3" in r]   # 1008 of 1008: fine
        del remote
        gc.collect()
        wait_settings(board, 0, ORIGINAL)
    finally:
        assert server.stop() == 0


def test_a_killed_session_is_restored_by_the_daemon(tmp_path):
    board = fixture_board(tmp_path)
    server = start(tmp_path, board)
    try:
        remote = connect(server)
        os.kill(session_pid(remote), signal.SIGKILL)
        wait_settings(board, 0, ORIGINAL)
        assert "clocks: restored" in server.log()
        del remote
    finally:
        assert server.stop() == 0


def test_sigkilled_daemon_is_restored_at_the_next_start(tmp_path):
    board = fixture_board(tmp_path)
    server = start(tmp_path, board)
    remote = connect(server)
    pid = session_pid(remote)
    server.signal(signal.SIGKILL)
    server.wait(10)
    os.kill(pid, signal.SIGKILL)            # the whole unit goes, as under systemd
    del remote
    gc.collect()
    assert settings(board, 0) == LOCKED
    assert state_file(tmp_path).exists()
    again = start(tmp_path, board)
    try:
        assert settings(board, 0) == ORIGINAL
        assert not state_file(tmp_path).exists()
        assert "restored clocks a previous daemon left locked" in again.log()
    finally:
        assert again.stop() == 0


def test_daemon_stop_restores_a_session_still_locked(tmp_path):
    board = fixture_board(tmp_path)
    server = start(tmp_path, board, "max", "--grace", "1")
    remote = connect(server)
    assert settings(board, 0) == LOCKED
    server.signal(signal.SIGTERM)            # the client stays: the grace runs out
    assert server.wait(30) == 0
    assert settings(board, 0) == ORIGINAL
    assert settings(board, 4)["scaling_governor"] == "schedutil"
    assert not state_file(tmp_path).exists() and not state_file(tmp_path, "policy4").exists()
    del remote


def read_only(path):
    """Writing `path` fails from now on (EROFS), as a driver may refuse a write."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a read-only bind mount")
def test_a_lock_the_board_refuses_leaves_the_session_running_and_says_why(tmp_path):
    board = fixture_board(tmp_path)
    server = start(tmp_path, board)
    gov = board.policy(0) / "scaling_governor"
    try:
        read_only(gov)           # after the start check: the lock itself fails
        remote = connect(server)
        verdict = measure(remote)
        why = "clock lock failed: %s: Read-only file system (EROFS)" % os.path.realpath(gov)
        assert why in verdict["unknown"] and verdict["status"] != "VALID"
        assert why in server.log()
        assert settings(board, 0) == ORIGINAL                     # left as it was
        assert not state_file(tmp_path).exists()
        assert settings(board, 4)["scaling_governor"] == "performance"   # the other one held
        assert session_pid(remote) > 0                          # the session still serves
        del remote
        gc.collect()
        wait_settings(board, 4, dict(ORIGINAL, scaling_max_freq="1800000"))
        assert server.alive()
    finally:
        subprocess.run(["umount", str(gov)])
        assert server.stop() == 0


def test_lock_clocks_refused_on_this_machine(tmp_path):
    port = procs.free_port()
    out = subprocess.run(procs.edge_server_argv("--lock-clocks", "max", "--port", port,
                                                "--port-end", port + 1,
                                                "--work-root", tmp_path / "work"),
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(procs.REPO)))
    assert out.returncode == 2
    assert "--lock-clocks: no cpufreq policies under /sys/devices/system/cpu/cpufreq" \
        in out.stderr


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs for two slots")
def test_two_slots_share_one_policy(tmp_path, shared_tracker):
    """cpus 0 and 1 are two slots, both in policy0 of the fake board: it stays
    locked while either session runs and comes back when the last one ends."""
    board = fixture_board(tmp_path)
    port = procs.free_port()
    argv = ["--host", procs.HOST, "--port", port, "--port-end", port + 20, "--key", "lock-slots",
            "--tracker", "%s:%d" % (procs.HOST, shared_tracker.port), "--slots", "cpus:0;cpus:1",
            "--root", board.root, "--lock-clocks", "max", "--clock-state", tmp_path / "state",
            "--work-root", tmp_path / "work", "--grace", "3"]
    proc = procs.Proc(procs.edge_server_argv(*argv), tmp_path / "slots.log")
    try:
        procs.wait_free(shared_tracker.port, "lock-slots", count=2, proc=proc)
        tracker = rpc.connect_tracker(procs.HOST, shared_tracker.port)
        first = tracker.request("lock-slots", session_timeout=60)
        second = tracker.request("lock-slots", session_timeout=60)
        slots = sorted(json.loads(r.get_function("edge.topology")())["slot"]["cpus"][0]
                       for r in (first, second))
        assert slots == [0, 1]
        holders = json.loads(state_file(tmp_path).read_text())["holders"]
        assert len({h["pid"] for h in holders}) == 2             # one per slot server
        assert settings(board, 0) == LOCKED
        assert settings(board, 4) == dict(ORIGINAL, scaling_max_freq="1800000")  # no slot there
        assert measure(second)["facts"]["clocks"]["policy0"]["want_mhz"] == 1416
        del first
        gc.collect()
        kit.wait_for(lambda: len(json.loads(state_file(tmp_path).read_text())["holders"]) == 1,
                     15, "one holder left")
        assert settings(board, 0) == LOCKED
        del second
        gc.collect()
        wait_settings(board, 0, ORIGINAL)
        assert not state_file(tmp_path).exists()
    finally:
        assert proc.stop() == 0
