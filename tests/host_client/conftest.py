"""The `stack` fixture: real tracker and servers shared by all host_client tests."""

import pytest


from tests.support import client_kit


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    stack = client_kit.Stack(tmp_path_factory.mktemp("stack"))
    try:
        yield stack
    finally:
        stack.stop()
