"""Helpers for the host-client tests. The `stack` fixture (conftest.py) gives,
once for all host-client tests:
a stock tracker, an edge-server on this machine's own topology (pins for
real), an edge-server serving the rk3399 fixture topology (for capabilities,
targets and refusals) and a stock `python -m tvm.exec.rpc_server`.
"""
import re
from typing import Dict, List

from tests.support import procs

LOCAL_KEY = "edge-local"
RK_KEY = "rk3399"
STOCK_KEY = "stock-test"
# This test machine is shared with other test runs (and, for the emulated board,
# with qemu's own threads): their CPU time on the measured cores and the
# preemptions they cause would make trials SUSPECT at random, which is the
# verdict doing its job (tests/edge_server/session/test_timed.py covers the
# intruder check on a fake board). Functional tests relax those two thresholds.
SHARED_BOX = ("--verdict-max-other-ms", "1e9", "--verdict-max-preemptions", "1e9")


class Stack(procs.Stack):
    """procs.Stack with the host-client tests' three boards, and `tracker` as the
    HOST:PORT text the client takes."""

    def __init__(self, tmp):
        super().__init__(tmp)
        self.__enter__()
        try:
            self.local = self.edge_server(LOCAL_KEY, name="edge-local", args=SHARED_BOX)
            self.rk3399 = self.edge_server(RK_KEY, name="edge-rk3399",
                                           args=("--root", procs.FIXTURES / "rk3399"))
            self.stock = self.stock_server(STOCK_KEY)
        except BaseException:
            self.stop()
            raise
        self.tracker = self.address

    def wait_free(self, key: str, timeout: float = 30.0) -> None:
        """Sessions end asynchronously: wait until the board is back on the tracker."""
        procs.wait_free(self.port, key, timeout=timeout)


_MODE_LINE = re.compile(r"session (\S+): thread mode (\S+) on cpus (\S+)")
_LOAD_LINE = re.compile(r"session (\S+): load_module ")


def session_events(log: str) -> Dict[str, List[tuple]]:
    """Per peer, the server's log events in order: ("mode", mode, cpus) / ("load",)."""
    events: Dict[str, List[tuple]] = {}
    for line in log.splitlines():
        match = _MODE_LINE.search(line)
        if match:
            events.setdefault(match.group(1), []).append(("mode", match.group(2),
                                                          match.group(3)))
            continue
        match = _LOAD_LINE.search(line)
        if match:
            events.setdefault(match.group(1), []).append(("load",))
    return events
