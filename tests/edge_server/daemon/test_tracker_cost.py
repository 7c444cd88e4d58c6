"""What a session costs the tracker, counted on the wire between a real
edge-server and the real stock tracker (tests/support/tracker_tap.py).

The stock tracker is one Python process every server and client of a key
talks to; with several slots on a small board its CPU, and the board's CPU
for building the messages, is spent per session. A server says what it is
(the topology document, a few KB) once when it registers; per session it
puts its matchkey back (PUT, as the stock server does) and says busy/free
in a few bytes, never the whole document again.
"""
import gc
import os

import pytest

import host_client
from tests.support import procs
from tests.support.tracker_tap import TrackerTap

SESSIONS = 4
SMALL = 200      # bytes: an UPDATE_INFO with only addr and edge_state is ~60


@pytest.fixture
def tap(shared_tracker):
    t = TrackerTap(shared_tracker.port)
    yield t
    t.close()


def run_sessions(tracker_address, key, count):
    for _ in range(count):
        session = host_client.connect(tracker_address, key, thread_mode="all", wait=30)
        assert session.thread_state["cpus"]
        session.release()
        del session
        gc.collect()


def start(tmp_path, tap, key, *extra):
    port = procs.free_port()
    argv = ["--host", procs.HOST, "--port", port, "--port-end", port + 20, "--key", key,
            "--tracker", tap.address, "--work-root", tmp_path / ("work-" + key), *extra]
    proc = procs.Proc(procs.edge_server_argv(*argv), tmp_path / ("%s.log" % key))
    return proc


def per_session_messages(tap, shared_tracker, tmp_path, key, slots: int, *extra):
    proc = start(tmp_path, tap, key, *extra)
    try:
        procs.wait_free(shared_tracker.port, key, count=slots, proc=proc)
        registration = tap.messages()
        tap.clear()
        run_sessions("%s:%d" % (procs.HOST, shared_tracker.port), key, SESSIONS)
        procs.wait_free(shared_tracker.port, key, count=slots, proc=proc)
        return registration, tap.messages()
    finally:
        assert proc.stop() == 0, proc.log()[-3000:]


@pytest.mark.parametrize("slots, extra", [(1, ()), (2, ("--slots", "cpus:0;cpus:1"))],
                         ids=["whole-board", "two-slots"])
def test_per_session_a_put_and_two_small_state_updates(tmp_path, tap, shared_tracker,
                                                       slots, extra):
    if slots > 1 and len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs for two one-core slots")
    key = "tracker-cost-%d" % slots
    registration, during = per_session_messages(tap, shared_tracker, tmp_path, key, slots,
                                                *extra)
    # registering says everything once per server: the topology document
    big = [size for name, size in registration if name == "UPDATE_INFO" and size > SMALL]
    assert len(big) == slots, registration
    names = [name for name, _ in during]
    assert names.count("PUT") == SESSIONS, during
    # busy when a client comes, free when it leaves: nothing else, and never the document
    updates = [size for name, size in during if name == "UPDATE_INFO"]
    assert len(updates) == 2 * SESSIONS and max(updates) < SMALL, during
    assert set(names) <= {"PUT", "UPDATE_INFO", "GET_PENDING_MATCHKEYS"}, during
