"""The `stack` fixture: real tracker and servers shared by all host_client tests."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import client_kit  # noqa: E402


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    stack = client_kit.start_stack(tmp_path_factory.mktemp("stack"))
    try:
        yield stack
    finally:
        stack.stop()
