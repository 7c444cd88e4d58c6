"""Fixtures of the emulated-board tests: one tracker on the host and one
edge-server on the emulated arm64 board for the whole module."""
import pytest

from tests.support import arm_board, procs

KEY = "arm64-emulated"


def pytest_collection_modifyitems(config, items):
    if arm_board.enabled():
        return
    skip = pytest.mark.skip(reason="needs the emulated arm64 board: run `make test-arm`")
    for item in items:
        if "tests/arm/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)


class Board:
    def __init__(self, tracker, server):
        self.tracker_proc, self.server = tracker, server
        self.tracker = "%s:%d" % (procs.HOST, tracker.port)
        self.key = KEY

    def wait_free(self, timeout=120.0):
        procs.wait_free(self.tracker_proc.port, KEY, timeout=timeout, proc=self.server)


@pytest.fixture(scope="session")
def board(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("arm")
    tracker = procs.start_tracker(tmp)
    try:
        server = arm_board.start_edge_server(tmp, tracker.port, KEY)
    except BaseException:
        tracker.stop()
        raise
    yield Board(tracker, server)
    server.stop(timeout=30)
    tracker.stop()
