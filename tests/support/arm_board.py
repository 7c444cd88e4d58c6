"""The emulated arm64 board of `make test-arm` (scripts/arm-board.sh): run
commands on it and start its edge-server, registered with a tracker on the host.

The board is a Debian 12 arm64 rootfs run under qemu-user, with the project
pip-installed in /opt/edge-server and no compiler. It shares this machine's
network, PIDs and CPUs, so a tracker on 127.0.0.1 reaches it and its threads'
affinities can be read from this side too. Everything on it is ~30-40x
slower than native: timeouts here are generous, and nothing is timed.
"""
import os
import subprocess
from pathlib import Path

from tests.support import procs
from tests.support.client_kit import SHARED_BOX

SCRIPT = procs.REPO / "scripts" / "arm-board.sh"
BOARD_PREFIX = "/opt/edge-server"
ENABLE = "EDGE_ARM_BOARD"      # make test-arm sets it once the board is installed
START_TIMEOUT = 240.0          # runtime-only import of TVM alone takes seconds emulated


def enabled() -> bool:
    return os.environ.get(ENABLE) == "1"


def run(*argv, timeout=600, cwd=None) -> subprocess.CompletedProcess:
    """Run a command on the board; its output as text."""
    pre = [str(SCRIPT), "run"] + (["-C", cwd] if cwd else [])
    return subprocess.run(pre + [str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout)


def start_edge_server(tmp_path, tracker_port: int, key: str, args=()) -> procs.Proc:
    """edge-server on the board, as the README tells a board user to start it."""
    port = procs.free_port()
    argv = [str(SCRIPT), "run", BOARD_PREFIX + "/bin/edge-server", "--host", procs.HOST,
            "--port", str(port), "--port-end", str(port + 1),
            "--tracker", "%s:%d" % (procs.HOST, tracker_port), "--key", key,
            *SHARED_BOX, *map(str, args)]
    proc = procs.Proc(argv, Path(tmp_path) / ("arm-edge-server-%d.log" % port))
    proc.port, proc.key = port, key
    try:
        procs.wait_free(tracker_port, key, timeout=START_TIMEOUT, proc=proc)
    except BaseException:
        proc.stop()
        raise
    return proc
