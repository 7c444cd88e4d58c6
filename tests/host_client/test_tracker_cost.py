"""What connect() costs the tracker, counted on the wire (tests/support/tracker_tap.py),
and that what it leaves out still fails clearly.

The summary (every server's entry, topology documents and all) is asked once
per key and process, not per session; a key that vanished after that still
ends in KeyUnknown, and a busy key in BoardBusy.
"""
import gc

import pytest

import host_client
from host_client.errors import BoardBusy, KeyUnknown
from tests.support import procs
from tests.support.tracker_tap import TrackerTap


@pytest.fixture
def tap(shared_tracker):
    t = TrackerTap(shared_tracker.port)
    yield t
    t.close()


@pytest.fixture
def board(tmp_path, shared_tracker):
    started = []

    def start(key):
        proc = procs.start_edge_server(tmp_path, shared_tracker.port, key=key)
        started.append(proc)
        return proc
    yield start
    for proc in started:
        proc.stop()


def one_session(tracker, key, **kwargs):
    session = host_client.connect(tracker, key, thread_mode="all", **kwargs)
    cpus = session.thread_state["cpus"]
    session.release()
    del session
    gc.collect()
    return cpus


def test_one_summary_per_key_and_process_not_per_session(tap, board, shared_tracker):
    key = "cost-summary"
    board(key)
    for _ in range(4):
        assert one_session(tap.address, key, wait=30)
        procs.wait_free(shared_tracker.port, key)
    names = [name for name, _ in tap.messages()]
    assert names.count("SUMMARY") == 1, names
    assert names.count("REQUEST") == 4, names


def test_a_key_that_vanished_after_it_was_seen_is_still_unknown(tap, board):
    key = "cost-vanish"
    proc = board(key)
    assert one_session(tap.address, key, wait=30)
    proc.stop()
    tap.clear()
    with pytest.raises(KeyUnknown, match=key):
        one_session(tap.address, key, wait=30)      # without the recheck: BoardBusy at 30 s
    assert [n for n, _ in tap.messages()].count("SUMMARY") == 1


def test_a_seen_key_that_stays_busy_is_busy_not_unknown(tap, board):
    key = "cost-busy"
    board(key)
    held = host_client.connect(tap.address, key, thread_mode="all", wait=30)
    try:
        with pytest.raises(BoardBusy, match="stayed busy for 2s"):
            one_session(tap.address, key, wait=2)   # rechecked after 1 s: still registered
        names = [n for n, _ in tap.messages()]
        assert names.count("SUMMARY") == 2, names   # the first connect, and the recheck
    finally:
        held.release()
        del held
        gc.collect()
