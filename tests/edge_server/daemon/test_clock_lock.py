"""The daemon's clock lock on a fake board (writes go to the fake tree): hold and
release, true originals kept, holders shared between slot servers, dead holders
and other boots, a write the board refuses, refusals at start."""
import json
import os
import subprocess
import sys

import pytest

from edge_server.daemon.clock_lock import (ClockKeeper, ClockLockError, check_permitted,
                                           covering, parse_lock, session_cpus, sweep)
from tests.support.conditions_kit import rk3399_conditions

ORIGINAL = {"scaling_governor": "schedutil", "scaling_min_freq": "408000",
            "scaling_max_freq": "1416000"}
A72 = "408000 600000 816000 1008000 1200000 1416000 1608000 1800000 \n"


def settings(board, first):
    pol = board.policy(first)
    return {n: (pol / n).read_text().strip()
            for n in ("scaling_governor", "scaling_min_freq", "scaling_max_freq")}


def state(tmp_path, name):
    return json.loads((tmp_path / "state" / ("clock-lock-%s.json" % name)).read_text())


@pytest.fixture
def board(tmp_path):
    return rk3399_conditions(tmp_path / "board")


def keeper(board, tmp_path, how="max"):
    return ClockKeeper(str(board.root), str(tmp_path / "state"), how)


def test_hold_max_then_release_restores_the_originals(board, tmp_path):
    board.set_cap(4, 1608000)            # the user had lowered it: it comes back lowered
    k = keeper(board, tmp_path)
    held = k.hold("s1", [4, 5])
    assert (held.khz, held.failed) == ({"policy4": 1800000}, {})
    assert settings(board, 4) == {"scaling_governor": "performance",
                                  "scaling_min_freq": "408000", "scaling_max_freq": "1800000"}
    assert settings(board, 0) == ORIGINAL                      # not a core of the session
    saved = state(tmp_path, "policy4")
    assert saved["saved"]["scaling_max_freq"] == "1608000"
    assert [(h["pid"], h["key"]) for h in saved["holders"]] == [(os.getpid(), "s1")]
    assert k.release("s1") == []
    assert settings(board, 4) == {"scaling_governor": "schedutil", "scaling_min_freq": "408000",
                                  "scaling_max_freq": "1608000"}
    assert not (tmp_path / "state/clock-lock-policy4.json").exists()


def test_fixed_frequency_picks_what_the_policy_offers(board, tmp_path):
    (board.policy(4) / "scaling_available_frequencies").write_text(A72)
    held = keeper(board, tmp_path, 1500000).hold("s1", [5])
    assert held.khz == {"policy4": 1416000}
    assert settings(board, 4) == {"scaling_governor": "performance",
                                  "scaling_min_freq": "1416000", "scaling_max_freq": "1416000"}


def test_a_frequency_nothing_offers_leaves_the_policy_alone(board, tmp_path):
    (board.policy(4) / "scaling_available_frequencies").write_text(A72)
    held = keeper(board, tmp_path, 100000).hold("s1", [4])
    assert held.khz == {}
    assert held.failed["policy4"].startswith("clock lock failed: --lock-clocks 100000: policy4 "
                                             "offers nothing at or below it (408000 600000")
    assert settings(board, 4)["scaling_governor"] == "schedutil"
    assert not (tmp_path / "state/clock-lock-policy4.json").exists()


def test_an_unreadable_policy_is_not_locked_and_said(board, tmp_path, caplog):
    gov = board.policy(0) / "scaling_governor"
    gov.unlink()
    gov.mkdir()                       # reading it fails: nothing to restore later, so no lock
    held = keeper(board, tmp_path).hold("s1", [0, 4])
    assert held.khz == {"policy4": 1800000}
    assert held.failed == {"policy0": "clock lock failed: cannot read /sys/devices/system/cpu/cpufreq/"
                                       "policy0/scaling_governor: Is a directory (EISDIR)"}
    assert "clocks: clock lock failed: cannot read /sys/devices/system/cpu/cpufreq/policy0/" \
        in caplog.text
    assert (board.policy(0) / "scaling_min_freq").read_text() == "408000\n"
    assert not (tmp_path / "state/clock-lock-policy0.json").exists()


def test_a_max_freq_write_failing_restores_what_was_written(board, tmp_path):
    cap = board.policy(0) / "scaling_max_freq"
    k = keeper(board, tmp_path)
    # The state is saved, then scaling_min_freq is written, then scaling_max_freq fails.
    original_write, busy = open, [1]

    def fail_max(path, mode="r", *a, **kw):
        if str(path) == str(cap) and "w" in mode and busy:
            busy.pop()          # once: the restore right after succeeds
            raise OSError(16, "Device or resource busy", str(path))
        return original_write(path, mode, *a, **kw)
    import builtins
    builtins.open, saved = fail_max, builtins.open
    try:
        held = k.hold("s1", [0])
    finally:
        builtins.open = saved
    assert held.failed == {"policy0": "clock lock failed: %s: Device or resource busy (EBUSY)"
                           % cap}
    assert settings(board, 0) == ORIGINAL
    assert not (tmp_path / "state/clock-lock-policy0.json").exists()


def test_two_holders_share_a_policy_and_the_last_restores(board, tmp_path):
    slot0, slot1 = keeper(board, tmp_path), keeper(board, tmp_path, 1008000)
    assert slot0.hold("a", [0]).khz == {"policy0": 1416000}
    assert slot1.hold("b", [1]).khz == {"policy0": 1416000}   # joins: the clock already held
    assert len(state(tmp_path, "policy0")["holders"]) == 2
    slot0.release("a")
    assert settings(board, 0)["scaling_governor"] == "performance"
    slot1.release("b")
    assert settings(board, 0) == ORIGINAL                       # the true originals


def test_holders_in_two_processes(board, tmp_path):
    """A second process (another slot server) holds policy0 while this one releases."""
    k = keeper(board, tmp_path)
    k.hold("a", [0])
    code = ("import sys; from edge_server.daemon.clock_lock import ClockKeeper; "
            "k = ClockKeeper(%r, %r, 'max'); print(k.hold('b', [1]).khz); sys.stdout.flush(); "
            "sys.stdin.readline(); print(k.release('b'))" % (str(board.root),
                                                            str(tmp_path / "state")))
    other = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "{'policy0': 1416000}"
        k.release("a")
        assert settings(board, 0)["scaling_governor"] == "performance"   # it still holds
        other.stdin.write("\n")
        other.stdin.flush()
        assert other.stdout.readline().strip() == "[]"
    finally:
        other.wait(30)
    assert settings(board, 0) == ORIGINAL


def test_a_dead_holder_is_dropped(board, tmp_path):
    k = keeper(board, tmp_path)
    k.hold("a", [0, 4])
    path = tmp_path / "state/clock-lock-policy4.json"
    st = json.loads(path.read_text())
    st["holders"] = [dict(st["holders"][0], pid=2 ** 22 + 7)]     # a daemon that is gone
    path.write_text(json.dumps(st))
    done = sweep(str(tmp_path / "state"))
    assert [(os.path.basename(p), e) for p, e in done] == [("clock-lock-policy4.json", [])]
    assert settings(board, 4)["scaling_governor"] == "schedutil"
    assert settings(board, 0)["scaling_governor"] == "performance"   # its holder lives


def test_a_reused_pid_is_not_a_holder(board, tmp_path):
    keeper(board, tmp_path).hold("a", [0])
    path = tmp_path / "state/clock-lock-policy0.json"
    st = json.loads(path.read_text())
    st["holders"][0]["started"] -= 1          # same pid, another process
    path.write_text(json.dumps(st))
    sweep(str(tmp_path / "state"))
    assert settings(board, 0) == ORIGINAL


def test_a_state_from_another_boot_is_dropped_unrestored(board, tmp_path):
    keeper(board, tmp_path).hold("a", [0])
    path = tmp_path / "state/clock-lock-policy0.json"
    path.write_text(json.dumps(dict(json.loads(path.read_text()), boot="another-boot")))
    sweep(str(tmp_path / "state"))
    assert not path.exists()
    assert settings(board, 0)["scaling_governor"] == "performance"   # this boot's, not ours


def test_a_garbled_state_file_is_removed_and_logged(board, tmp_path, caplog):
    (tmp_path / "state").mkdir()
    (tmp_path / "state/clock-lock-policy0.json").write_text("{not json")
    sweep(str(tmp_path / "state"))
    assert "unreadable state file" in caplog.text
    assert not (tmp_path / "state/clock-lock-policy0.json").exists()


def test_an_unwritable_state_dir_is_a_failed_lock_not_a_crash(board, tmp_path):
    (tmp_path / "state").write_text("a file, not a directory")
    held = keeper(board, tmp_path).hold("a", [0])
    assert held.khz == {} and held.failed["policy0"].startswith(
        "clock lock failed: %s: File exists (EEXIST)" % (tmp_path / "state"))
    assert settings(board, 0) == ORIGINAL


def test_which_policies_and_cores(board):
    root = str(board.root)
    assert covering(root, [1]) == ["policy0"] and covering(root, [3, 5]) == ["policy0", "policy4"]
    assert covering(root, [9]) == []
    topo = {"cpus": [{"id": 0, "online": True}, {"id": 1, "online": False}, {"id": 2}],
            "classes": []}
    assert session_cpus(topo) == [0, 2]
    assert session_cpus(dict(topo, slot={"cpus": [1]})) == [1]


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
