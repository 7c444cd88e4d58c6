"""deploy/ansible/site.yml run by ansible-playbook against a board that is a
container with a real systemd (systemd-nspawn on an overlay of this machine's
root, sharing its network), reached through tests/support's nsenter connection
instead of ssh. The first run installs from a wheelhouse, a second one changes
nothing, and an upgrade to another version drains the board while a client
holds a session: the session finishes, then the new version registers. On a
second board with a fake cpufreq tree, edge_lock_clocks=max added to the
inventory of an installed board installs the clock rules and the flag, and a
session locks the clocks."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import host_client
from edge_common.version import version
from tests.support import procs
from tests.support.deploy_kit import (CLOCKS, REPO, clock_settings, fake_cpufreq, mount_cpufreq,
                                      rebuilt_with_version)
from tests.support.nspawn import MINIMAL_TARGET, Container, overlay_root, prerequisites

PLAYBOOK = REPO / "deploy" / "ansible" / "site.yml"
PLUGINS = REPO / "tests" / "support" / "ansible_plugins" / "connection"
KEY = "ansible-board"


def ansible_playbook():
    """From the PATH, this Python's environment, or the one scripts/setup.sh makes."""
    for candidate in (shutil.which("ansible-playbook"),
                      str(Path(sys.executable).parent / "ansible-playbook"),
                      str(Path.home() / ".cache/tvm-edge-rpc/ansible-venv/bin/ansible-playbook")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


missing = prerequisites() + ([] if ansible_playbook() else
                             ["ansible-playbook (pip install ansible-core)"])
pytestmark = pytest.mark.skipif(bool(missing), reason="needs %s" % ", ".join(missing))


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    proc = procs.start_tracker(tmp_path_factory.mktemp("tracker"))
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def board():
    with overlay_root() as (base, root):
        (root / "etc/systemd/system/edge-test.target").write_text(MINIMAL_TARGET)
        for stale in ("etc/default/edge-server", "etc/systemd/system/edge-server.service"):
            if (root / stale).exists():
                (root / stale).unlink()
        shutil.rmtree(root / "opt/edge-server", ignore_errors=True)
        ct = Container(base, root)
        try:
            ct.boot(private_network=False)
            yield ct
        finally:
            ct.shutdown()


def write_inventory(path, board, tracker, house, port, key=KEY, more=""):
    client = "%s -m host_client.cli.main" % sys.executable
    path.write_text(
        "[boards]\n"
        "ct ansible_connection=nsenter nsenter_leader=%d ansible_python_interpreter=/usr/bin/python3\n"
        "[boards:vars]\n"
        "edge_tracker=127.0.0.1:%d\nedge_key=%s\nedge_wheelhouse=%s\nedge_become=false\n"
        "edge_extra_args='--port %d --port-end %d --grace 2'\nedge_client='%s'\n"
        "edge_register_timeout=120\nedge_drain_timeout=120\n%s"
        % (board.leader, tracker.port, key, house, port, port + 1, client, more))
    return path


def playbook(inventory, tmp_path, background=False):
    argv = [ansible_playbook(), "-i", str(inventory), str(PLAYBOOK)]
    env = dict(os.environ, ANSIBLE_CONNECTION_PLUGINS=str(PLUGINS), ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), PYTHONPATH=str(REPO),
               ANSIBLE_HOST_KEY_CHECKING="False")
    if background:
        return procs.Proc(argv, tmp_path / ("playbook-%d.log" % time.time_ns()), env=env)
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1800, env=env)


def recap(output: str) -> dict:
    line = [l for l in output.splitlines() if l.startswith("ct ")][-1]
    return {k: int(v) for k, v in (f.split("=") for f in line.split(":", 1)[1].split())}


def listed(tracker, key=KEY):
    return [b for b in host_client.list_boards("127.0.0.1:%d" % tracker.port) if b.key == key]


def test_install_rerun_and_rolling_upgrade_with_drain(board, tracker, x86_wheelhouse, tmp_path):
    port = procs.free_port()
    inventory = write_inventory(tmp_path / "inventory.ini", board, tracker, x86_wheelhouse, port)
    first = playbook(inventory, tmp_path)
    assert first.returncode == 0, first.stdout[-6000:]
    assert recap(first.stdout)["failed"] == 0
    [b] = listed(tracker)
    hostname = board.run("hostname").strip()
    assert (b.version, b.hostname, b.state, b.address) == (version(), hostname, "free",
                                                           "127.0.0.1:%d" % port)
    assert board.show("edge-server", "ActiveState") == "active"
    assert board.show("edge-server", "UnitFileState") == "enabled"

    again = playbook(inventory, tmp_path)
    assert again.returncode == 0, again.stdout[-6000:]
    assert recap(again.stdout)["changed"] == 0, again.stdout[-6000:]

    newer = rebuilt_with_version(x86_wheelhouse, tmp_path / "house-newer", "9.9.9")
    write_inventory(inventory, board, tracker, newer, port)
    session = host_client.connect("127.0.0.1:%d" % tracker.port, KEY, thread_mode="all")
    try:
        upgrade = playbook(inventory, tmp_path, background=True)
        deadline = time.time() + 600
        while listed(tracker) and time.time() < deadline:   # drained: off the tracker
            assert upgrade.alive(), upgrade.log()[-6000:]
            time.sleep(0.5)
        assert not listed(tracker), upgrade.log()[-6000:]
        time.sleep(3)                                        # longer than --grace 2
        state = session.read_thread_state()                  # the session still answers
        assert state["mode"] == "all" and upgrade.alive()
    finally:
        session.release()
        del session
    assert upgrade.wait(900) == 0, upgrade.log()[-6000:]
    [b] = listed(tracker)
    assert (b.version, b.hostname, b.state) == ("9.9.9", hostname, "free")
    journal = board.journal("-o", "cat")
    assert "SIGUSR1 (drain): stopping" in journal
    assert "grace of 2s over" not in journal


CLOCK_KEY = "ansible-clocks"
DROPIN = "/etc/systemd/system/edge-server.service.d/lock-clocks.conf"


@pytest.fixture
def clock_board():
    """A second board whose cpufreq is a fake tree (tests/support/deploy_kit.py):
    (container, tree)."""
    tree = fake_cpufreq()
    try:
        with overlay_root() as (base, root):
            (root / "etc/systemd/system/edge-test.target").write_text(MINIMAL_TARGET)
            for stale in ("etc/default/edge-server", "etc/systemd/system/edge-server.service",
                          DROPIN.lstrip("/")):
                if (root / stale).exists():
                    (root / stale).unlink()
            shutil.rmtree(root / "opt/edge-server", ignore_errors=True)
            ct = Container(base, root)
            try:
                ct.boot(private_network=False, binds=["%s:/run/fake-cpufreq" % tree])
                mount_cpufreq(ct)
                yield ct, tree
            finally:
                ct.shutdown()
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def test_lock_clocks_added_to_the_inventory_of_an_installed_board(clock_board, tracker,
                                                                     x86_wheelhouse, tmp_path):
    ct, tree = clock_board
    port = procs.free_port()
    inventory = tmp_path / "inventory.ini"
    write_inventory(inventory, ct, tracker, x86_wheelhouse, port, key=CLOCK_KEY)
    first = playbook(inventory, tmp_path)
    assert first.returncode == 0, first.stdout[-6000:]
    assert not listed_rules(ct)

    # same version, so only the rules make the play install again
    write_inventory(inventory, ct, tracker, x86_wheelhouse, port, key=CLOCK_KEY,
                    more="edge_lock_clocks=max\n")
    second = playbook(inventory, tmp_path)
    assert second.returncode == 0, second.stdout[-6000:]
    assert listed_rules(ct) == [DROPIN]
    settings = ct.run("cat", "/etc/default/edge-server")
    assert ('EXTRA_ARGS="--port %d --port-end %d --grace 2 --lock-clocks=max"' % (port, port + 1)
            in settings), settings
    assert "--lock-clocks=max" in ct.run("ps", "-o", "args=", "-p",
                                         ct.show("edge-server", "MainPID"))
    [b] = listed(tracker, CLOCK_KEY)
    assert b.state == "free" and clock_settings(tree) == CLOCKS        # idle: nothing held

    session = host_client.connect("127.0.0.1:%d" % tracker.port, CLOCK_KEY, thread_mode="all")
    try:
        assert clock_settings(tree) == dict(CLOCKS, scaling_governor="performance")
    finally:
        session.release()
        del session
    procs.wait_for(lambda: clock_settings(tree) == CLOCKS, 30, "clocks restored after the session")


def listed_rules(ct) -> list:
    """The clock-lock drop-in, if the board has it."""
    return [DROPIN] if ct.run("ls", DROPIN, check=False).strip() == DROPIN else []


def test_a_lock_clocks_value_that_is_no_clock_stops_the_play_before_the_board(
        board, tracker, x86_wheelhouse, tmp_path):
    inventory = write_inventory(tmp_path / "inventory.ini", board, tracker, x86_wheelhouse,
                                procs.free_port(), more="edge_lock_clocks=fast\n")
    run = playbook(inventory, tmp_path)
    assert run.returncode != 0
    assert "edge_lock_clocks=fast" in run.stdout and "use max" in run.stdout, run.stdout[-3000:]
    assert recap(run.stdout)["changed"] == 0
