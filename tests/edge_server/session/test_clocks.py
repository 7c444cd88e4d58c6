"""--lock-clocks on a fake board: lock, restore at session end, after a killed
session, after a SIGKILLed daemon (at its next start); refusals."""
import gc
import json
import os
import shutil
import signal

import pytest

from edge_server.session.clocks import (ClockLock, ClockLockError, check_permitted, parse_lock,
                                        restore_left_behind)
from tests.support import procs
from tests.support.conditions_kit import rk3399_conditions


def settings(board, first):
    pol = board.policy(first)
    return {n: (pol / n).read_text().strip()
            for n in ("scaling_governor", "scaling_min_freq", "scaling_max_freq")}


@pytest.fixture
def board(tmp_path):
    return rk3399_conditions(tmp_path / "board")


ORIGINAL = {"scaling_governor": "schedutil", "scaling_min_freq": "408000",
            "scaling_max_freq": "1800000"}


def test_lock_max_then_restore(board, tmp_path):
    lock = ClockLock(str(board.root), str(tmp_path / "state"), "max")
    board.set_cap(4, 1608000)            # the user had lowered it: it comes back lowered
    assert lock.ensure(["policy4"]) == {"policy4": 1800000}
    assert settings(board, 4) == {"scaling_governor": "performance",
                                  "scaling_min_freq": "408000", "scaling_max_freq": "1800000"}
    saved = json.loads((tmp_path / "state/clock-lock-policy4.json").read_text())
    assert saved["owner"] == os.getpid() and saved["saved"]["scaling_max_freq"] == "1608000"
    assert lock.restore() == []
    assert settings(board, 4) == dict(ORIGINAL, scaling_max_freq="1608000")
    assert not (tmp_path / "state/clock-lock-policy4.json").exists()


def test_lock_fixed_frequency_picks_what_the_policy_offers(board, tmp_path):
    (board.policy(4) / "scaling_available_frequencies").write_text(
        "408000 600000 816000 1008000 1200000 1416000 1608000 1800000 \n")
    lock = ClockLock(str(board.root), str(tmp_path / "state"), 1500000)
    assert lock.ensure(["policy4"]) == {"policy4": 1416000}
    assert settings(board, 4) == {"scaling_governor": "performance",
                                  "scaling_min_freq": "1416000", "scaling_max_freq": "1416000"}
    lock.restore()
    assert settings(board, 4) == ORIGINAL
    with pytest.raises(ClockLockError, match="offers nothing at or below it"):
        ClockLock(str(board.root), str(tmp_path / "state"), 100000).ensure(["policy4"])
    assert settings(board, 4) == ORIGINAL


def test_a_second_lock_keeps_the_true_originals(board, tmp_path):
    state = str(tmp_path / "state")
    ClockLock(str(board.root), state, "max").ensure(["policy0"])
    ClockLock(str(board.root), state, 1008000).ensure(["policy0"])   # sees "performance"
    restore_left_behind(state, owner=os.getpid())
    assert settings(board, 0) == dict(ORIGINAL, scaling_max_freq="1416000")


def test_left_behind_by_a_dead_owner_only(board, tmp_path):
    state = tmp_path / "state"
    ClockLock(str(board.root), str(state), "max").ensure(["policy0", "policy4"])
    mine = json.loads((state / "clock-lock-policy4.json").read_text())
    (state / "clock-lock-policy4.json").write_text(json.dumps(dict(mine, owner=2 ** 22 + 7)))
    done = restore_left_behind(str(state))          # as at daemon start: policy0's owner lives
    assert [os.path.basename(p) for p, _ in done] == ["clock-lock-policy4.json"]
    assert settings(board, 4)["scaling_governor"] == "schedutil"
    assert settings(board, 0)["scaling_governor"] == "performance"


def test_permission_and_driver_refusals(board, tmp_path):
    check_permitted(str(board.root))
    denied = lambda path, mode: not path.endswith("scaling_governor")  # noqa: E731
    with pytest.raises(ClockLockError, match=r"/sys/devices/system/cpu/cpufreq/policy0/"
                       r"scaling_governor is not writable by uid \d+; install deploy/tmpfiles.d"):
        check_permitted(str(board.root), access=denied)
    (tmp_path / "bare/sys/devices/system/cpu").mkdir(parents=True)
    with pytest.raises(ClockLockError, match="no cpufreq policies .* no cpufreq driver"):
        check_permitted(str(tmp_path / "bare"))
    with pytest.raises(ValueError, match="use max .* or a frequency in kHz"):
        parse_lock("fast")
    assert parse_lock(" MAX ") == "max" and parse_lock("1416000") == 1416000


# ------------------------------------------------------------ the daemon

def fixture_board(tmp_path):
    root = tmp_path / "rk3399"
    shutil.copytree(procs.FIXTURES / "rk3399", root, symlinks=True)
    return rk3399_conditions(root)


def start(tmp_path, board, *extra):
    return procs.start_edge_server(tmp_path, None, key="lock-key", args=[
        "--root", board.root, "--lock-clocks", "max", "--clock-state", tmp_path / "state",
        "--work-root", tmp_path / "work", "--sandbox", "off", *extra])


def begin(remote):
    remote.get_function("edge.measure_begin")("")
    return json.loads(remote.get_function("edge.thread_state")())["pid"]


def wait_restored(board, what="schedutil", timeout=15):
    from tests.support import daemon_kit as kit
    kit.wait_for(lambda: settings(board, 0)["scaling_governor"] == what, timeout,
                 "policy0 governor %s" % what)


def test_daemon_locks_per_session_and_restores_at_its_end(tmp_path):
    from tvm import rpc
    board = fixture_board(tmp_path)
    server = start(tmp_path, board)
    try:
        remote = rpc.connect(procs.HOST, server.port, "lock-key")
        begin(remote)
        # The session runs on this machine's cpus 0-1: policy0 of the fixture.
        assert settings(board, 0)["scaling_governor"] == "performance"
        assert settings(board, 4)["scaling_governor"] == "schedutil"
        verdict = json.loads(remote.get_function("edge.measure_end")())
        assert verdict["facts"]["clocks"]["policy0"]["want_mhz"] == 1416
        del remote
        gc.collect()
        wait_restored(board)
    finally:
        assert server.stop() == 0


def test_a_killed_session_is_restored_by_the_daemon(tmp_path):
    from tvm import rpc
    board = fixture_board(tmp_path)
    server = start(tmp_path, board)
    try:
        remote = rpc.connect(procs.HOST, server.port, "lock-key")
        pid = begin(remote)
        os.kill(pid, signal.SIGKILL)
        wait_restored(board)
        assert "left locked" in server.log()
        del remote
    finally:
        assert server.stop() == 0


def test_sigkilled_daemon_is_restored_at_the_next_start(tmp_path):
    from tvm import rpc
    board = fixture_board(tmp_path)
    server = start(tmp_path, board)
    remote = rpc.connect(procs.HOST, server.port, "lock-key")
    pid = begin(remote)
    server.signal(signal.SIGKILL)
    server.wait(10)
    os.kill(pid, signal.SIGKILL)            # the whole unit goes, as under systemd
    del remote
    gc.collect()
    assert settings(board, 0)["scaling_governor"] == "performance"
    assert (tmp_path / "state/clock-locks/clock-lock-policy0.json").exists()
    again = start(tmp_path, board)
    try:
        assert settings(board, 0) == dict(ORIGINAL, scaling_max_freq="1416000")
        assert not (tmp_path / "state/clock-locks/clock-lock-policy0.json").exists()
        assert "restored clocks a previous daemon left locked" in again.log()
    finally:
        assert again.stop() == 0


def test_lock_clocks_refused_on_this_machine(tmp_path):
    import subprocess
    port = procs.free_port()
    out = subprocess.run(procs.edge_server_argv("--lock-clocks", "max", "--port", port,
                                                "--port-end", port + 1),
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(procs.REPO)))
    assert out.returncode == 2
    assert "--lock-clocks: no cpufreq policies under /sys/devices/system/cpu/cpufreq" \
        in out.stderr


def test_daemon_stop_restores_a_session_still_locked(tmp_path):
    from tvm import rpc
    board = fixture_board(tmp_path)
    server = start(tmp_path, board, "--grace", "1")
    remote = rpc.connect(procs.HOST, server.port, "lock-key")
    begin(remote)
    assert settings(board, 0)["scaling_governor"] == "performance"
    server.signal(signal.SIGTERM)            # the client stays: the grace runs out
    assert server.wait(30) == 0
    assert settings(board, 0) == dict(ORIGINAL, scaling_max_freq="1416000")
    assert not (tmp_path / "state/clock-locks/clock-lock-policy0.json").exists()
    del remote


def test_lock_clocks_refused_under_landlock(tmp_path):
    import subprocess
    from edge_server.session import landlock
    if not landlock.probe()[0]:
        pytest.skip("this kernel has no Landlock")
    board = fixture_board(tmp_path)
    port = procs.free_port()
    out = subprocess.run(procs.edge_server_argv("--root", board.root, "--lock-clocks", "max",
                                                "--port", port, "--port-end", port + 1,
                                                "--work-root", tmp_path / "work"),
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(procs.REPO)))
    assert out.returncode == 2
    assert "--lock-clocks needs --sandbox off for now" in out.stderr
