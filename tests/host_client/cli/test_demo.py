"""`make demo` end to end (short settings), and that it cleans up after itself."""
import os
import signal
import subprocess
import sys
import time

import psutil

from tests.support import client_kit

REPO = str(client_kit.procs.REPO)


def edge_servers_of_a_demo():
    return [p for p in psutil.process_iter(["cmdline"])
            if "demo-board" in " ".join(p.info["cmdline"] or [])]


def test_demo_runs_every_step_and_stops_what_it_started():
    out = subprocess.run([sys.executable, "-m", "host_client.demo", "--trials", "8",
                          "--matmul", "64"], capture_output=True, text=True, timeout=600,
                         cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "$ edge-client list" in text and "demo-board" in text
    assert "$ edge-client bench" in text and "MEAN MS" in text and "1.00x" in text
    assert "modes seen ['big:1']" in text
    assert "tuned kernel vs numpy: correct" in text
    assert edge_servers_of_a_demo() == []


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
        assert [p for p in pids if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
