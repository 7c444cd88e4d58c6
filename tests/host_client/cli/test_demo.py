"""`make demo` end to end (short settings), and that it cleans up after itself."""
import os
import signal
import subprocess
import sys
import time

import psutil

from tests.support import client_kit

REPO = str(client_kit.procs.REPO)


def descendants(pid):
    """The pids below `pid` now (empty once it is gone)."""
    try:
        return {c.pid for c in psutil.Process(pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def still_running(pids):
    """Those of `pids` that run (not zombies). Only this demo's own descendants are
    looked at: another run's demo on the same machine must not fail this test."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_demo_runs_every_step_and_stops_what_it_started(tmp_path):
    out, errs = tmp_path / "stdout", tmp_path / "stderr"   # files: a full pipe would stall it
    with open(out, "w") as o, open(errs, "w") as e:
        proc = subprocess.Popen([sys.executable, "-m", "host_client.demo", "--trials", "8",
                                 "--matmul", "64"], stdout=o, stderr=e, text=True, cwd=REPO)
    seen = set()
    try:
        deadline = time.time() + 600
        while proc.poll() is None and time.time() < deadline:
            seen |= descendants(proc.pid)   # every process the demo started, while it runs
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    text, err = out.read_text(), errs.read_text()
    assert proc.returncode == 0, text + err
    assert len(seen) >= 2, "expected a tracker and an edge-server below the demo: %s" % seen
    assert "$ edge-client list" in text and "demo-board" in text
    assert "$ edge-client bench" in text and "MEAN MS" in text and "1.00x" in text
    assert "modes seen ['big:1']" in text
    assert "tuned kernel vs numpy: correct" in text
    assert still_running(seen) == []


def test_ctrl_c_stops_the_demo_and_its_servers():
    proc = subprocess.Popen([sys.executable, "-m", "host_client.demo", "--trials", "8",
                             "--matmul", "64"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        deadline = time.time() + 120
        started = False
        while time.time() < deadline and not started:
            children = psutil.Process(proc.pid).children(recursive=True)
            started = any("demo-board" in " ".join(c.cmdline()) for c in children)
            time.sleep(0.2)
        assert started, "the demo never started its edge-server"
        pids = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "interrupted" in err
        time.sleep(0.5)
        assert still_running(pids) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
