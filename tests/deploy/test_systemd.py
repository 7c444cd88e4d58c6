"""The installed units under a real systemd (252), with every sandboxing option
in force: a container booted with systemd-nspawn on a copy-on-write overlay of
this machine's root, the staged install (test_install's real pip path) copied
in, booted into a target that starts tvm-tracker and edge-server.

The container has its own network namespace (loopback only); the test's TVM
client joins it with nsenter. Needs root, overlayfs and systemd-nspawn
(apt package systemd-container).
"""
import json
import os
import re
import subprocess
import time

import pytest

from tests.support.nspawn import Container, overlay_root, prerequisites

KEY = "ct-board"
TRACKER_PORT = 9190
GRACE = 3
BOOT_TARGET = """[Unit]
Description=edge-server test boot: the tracker and the board only
Requires=basic.target
After=basic.target
Wants=tvm-tracker.service edge-server.service
AllowIsolate=yes
"""


pytestmark = pytest.mark.skipif(bool(prerequisites()), reason="needs %s" % prerequisites())


def install_into(root, staged):
    """Copy the staged tree onto the container's root, as a board image would have it."""
    subprocess.run(["cp", "-a", "%s/." % staged, str(root)], check=True)
    settings = root / "etc/default/edge-server"
    text = settings.read_text()
    text = re.sub(r"(?m)^TRACKER=.*$", "TRACKER=127.0.0.1:%d" % TRACKER_PORT, text)
    text = re.sub(r"(?m)^KEY=.*$", "KEY=%s" % KEY, text)
    text = re.sub(r'(?m)^EXTRA_ARGS="(.*)"$', r'EXTRA_ARGS="\1 --grace %d"' % GRACE, text)
    settings.write_text(text)
    (root / "etc/systemd/system/edge-test.target").write_text(BOOT_TARGET)


def wait_registered(ct):
    return ct.wait_status(r"registered as key %s at tracker 127\.0\.0\.1:%d"
                          % (KEY, TRACKER_PORT))


@pytest.fixture(scope="module")
def container(full_install):
    staged, _ = full_install
    with overlay_root() as (base, root):
        ct = Container(base, root)
        try:
            install_into(root, staged)
            ct.boot()
            wait_registered(ct)
            yield ct
        finally:
            ct.shutdown()


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """B = 2 * A exported as a .tar: the board links it with g++ at load_module."""
    import tvm
    from tvm import te
    a = te.placeholder((4096,), name="A", dtype="float32")
    b = te.compute((4096,), lambda i: a[i] * 2.0, name="B")
    path = tmp_path_factory.mktemp("artifact") / "vmul.tar"
    tvm.compile(te.create_prim_func([a, b]), target="llvm").export_library(str(path))
    os.chmod(path.parent, 0o755)
    return path


def test_service_is_ready_sandboxed_and_registered(container):
    assert container.show("edge-server", "ActiveState") == "active"
    assert container.show("edge-server", "Type") == "notify"
    status = wait_registered(container)
    assert status.startswith("idle on port 9090; ")
    pid = container.show("edge-server", "MainPID")
    proc_status = container.run("cat", "/proc/%s/status" % pid)
    fields = dict(line.split(":", 1) for line in proc_status.splitlines() if ":" in line)
    assert fields["Seccomp"].strip() == "2"           # SystemCallFilter= in force
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["CapEff"].strip() == "0000000000000000"
    assert fields["Uid"].split()[0] != "0"            # DynamicUser=
    assert container.show("tvm-tracker", "ActiveState") == "active"


def test_online_security_rating_matches_offline(container):
    out = container.run("systemd-analyze", "security", "edge-server.service", check=False)
    score = float(re.search(r"Overall exposure level for edge-server.service: ([0-9.]+)",
                            out).group(1))
    assert score <= 2.0, out


def test_a_session_links_and_runs_an_uploaded_tar_in_the_sandbox(container, artifact):
    result = container.client("session", TRACKER_PORT, KEY, artifact)
    assert result.returncode == 0, result.stdout
    state = json.loads(result.stdout.strip().splitlines()[-1])
    assert state["mode"] == "all" and state["nthreads"] == len(os.sched_getaffinity(0))
    assert {t["tid"] for t in state["threads"]} and all(
        len(t["cpus"]) == 1 for t in state["threads"])   # pinned inside the sandbox
    container.wait_status(r"sessions: [1-9]\d* ok, 0 failed")
    journal = container.journal("-o", "json")
    entries = [json.loads(line) for line in journal.splitlines() if line.startswith("{")]
    ended = [e for e in entries if e.get("EXIT_STATUS") == "exit 0" and "PEER" in e]
    assert ended, "no session end with EXIT_STATUS in the journal"
    peer = ended[-1]["PEER"]
    by_peer = container.journal("PEER=%s" % peer, "-o", "cat")
    assert "load_module" in by_peer and ".tar" in by_peer, by_peer


def test_reload_reprobes_and_stays_active(container):
    wait_registered(container)
    container.run("systemctl", "reload", "edge-server")
    # RELOADING=1 holds the unit in "reloading" until the daemon's READY=1
    deadline = time.time() + 30
    while container.show("edge-server", "ActiveState") == "reloading" and time.time() < deadline:
        time.sleep(0.2)
    assert container.show("edge-server", "ActiveState") == "active"
    assert "SIGHUP: re-probed the topology" in container.journal("-o", "cat")
    wait_registered(container)


def test_stop_gives_a_running_session_its_grace_then_ends_it(container):
    wait_registered(container)
    holder = container.client("hold", TRACKER_PORT, KEY, 120, background=True)
    try:
        deadline = time.time() + 60
        while "open" not in holder.log() and time.time() < deadline:
            assert holder.alive(), holder.log()
            time.sleep(0.2)
        container.wait_status(r"^serving 127\.0\.0\.1:\d+ in mode all")
        container.run("systemctl", "stop", "edge-server", timeout=60)
        assert container.show("edge-server", "Result") == "success"     # not 'timeout'
        assert container.show("edge-server", "ExecMainStatus") == "0"
        assert "grace of %ds over" % GRACE in container.journal("-o", "cat")
    finally:
        holder.stop()
        container.run("systemctl", "start", "edge-server")
    wait_registered(container)


def test_a_wedged_daemon_is_restarted_by_the_watchdog(container):
    wait_registered(container)
    dropin = container.root / "etc/systemd/system/edge-server.service.d"
    dropin.mkdir(exist_ok=True)
    (dropin / "watchdog.conf").write_text("[Service]\nWatchdogSec=3s\n")
    container.run("systemctl", "daemon-reload")
    container.run("systemctl", "restart", "edge-server")
    wait_registered(container)
    restarts = int(container.show("edge-server", "NRestarts"))
    wedged = container.show("edge-server", "MainPID")
    container.run("kill", "-STOP", wedged)
    deadline = time.time() + 60
    while time.time() < deadline:
        if int(container.show("edge-server", "NRestarts")) > restarts:
            break
        time.sleep(0.5)
    assert int(container.show("edge-server", "NRestarts")) == restarts + 1
    journal = container.run("journalctl", "--no-pager", "-u", "edge-server", "-o", "cat")
    assert "Watchdog timeout (limit 3s)!" in journal
    wait_registered(container)
    assert container.show("edge-server", "MainPID") != wedged


def test_bad_settings_fail_once_with_a_clear_error(container):
    """Exit status 2 (bad flags) is in RestartPreventExitStatus=: no restart loop,
    and the journal says what is wrong."""
    settings = container.root / "etc/default/edge-server"
    good = settings.read_text()
    try:
        settings.write_text(re.sub(r"(?m)^KEY=.*$", 'KEY="rk3399 big"', good))
        container.run("systemctl", "restart", "edge-server", check=False)  # counter back to 0
        deadline = time.time() + 30
        while container.show("edge-server", "ActiveState") != "failed" and time.time() < deadline:
            time.sleep(0.3)
        assert container.show("edge-server", "ActiveState") == "failed"
        assert container.show("edge-server", "ExecMainStatus") == "2"
        time.sleep(6)                                  # longer than RestartSec=5s
        assert container.show("edge-server", "ActiveState") == "failed"
        assert container.show("edge-server", "NRestarts") == "0"
        journal = container.journal("-o", "cat", "-n", "20")
        assert "edge-server: error:" in journal and "'rk3399 big'" in journal, journal
    finally:
        settings.write_text(good)
        container.run("systemctl", "reset-failed", "edge-server", check=False)
        container.run("systemctl", "start", "edge-server")
    wait_registered(container)
