import pytest

from tests.support import procs


@pytest.fixture
def tracker(tmp_path):
    """A stock TVM tracker on 127.0.0.1; `.port` is its port."""
    proc = procs.start_tracker(tmp_path)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def shared_tracker(tmp_path_factory):
    """One stock tracker per test module, for tests that do not restart it;
    each test uses its own key (a tracker takes seconds to start)."""
    proc = procs.start_tracker(tmp_path_factory.mktemp("tracker"))
    yield proc
    proc.stop()
