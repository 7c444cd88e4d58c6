"""Thread modes resolved once in the daemon, not again in every session process.

Each resolve parses the whole topology document (~0.7 ms); a session process
forked after the daemon resolved its default mode and "all" inherits both.
Counted, not timed: how many times the session code calls modes.resolve.
"""
import copy
import os

import pytest

from edge_common.modes import ModeError
from edge_server.session import child
from tests.support.boards import real_topology


@pytest.fixture
def calls(monkeypatch):
    seen = []
    real = child.resolve

    def counting(topology, mode):
        seen.append(mode)
        return real(topology, mode)
    monkeypatch.setattr(child, "resolve", counting)
    monkeypatch.setattr(child, "_RESOLVED", (None, {}))
    return seen


def ctx_for(topology, default_mode="all"):
    return child.SessionContext(topology=topology, default_mode=default_mode, work_dir="",
                                peer="(test)")


def test_a_forked_session_resolves_nothing_the_daemon_resolved(calls):
    ctx = ctx_for(real_topology(), default_mode="cpus:0")
    child.warm_modes(ctx)                        # the daemon, before it forks
    assert sorted(calls) == ["all", "cpus:0"]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:                                 # what a session process does first
        try:
            modes = child.ThreadModes(ctx)
            default = modes._default()
            res = modes._resolve("all")
            ok = default == ("cpus:0", [0]) and res.mode == "all" and len(calls) == 2
            os.write(write, b"ok" if ok else repr((default, res, calls)).encode())
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 4096)
    os.waitpid(pid, 0)
    assert answer == b"ok"


def test_a_new_topology_object_is_resolved_again(calls):
    topology = real_topology()
    child.resolved_mode(topology, "all")
    child.resolved_mode(topology, "all")
    assert calls == ["all"]
    reprobed = copy.deepcopy(topology)           # SIGHUP: the daemon gets a new document
    child.resolved_mode(reprobed, "all")
    assert calls == ["all", "all"]


def test_refusals_are_not_remembered_and_the_memo_is_bounded(calls):
    topology = real_topology()
    for _ in range(2):
        with pytest.raises(ModeError):
            child.resolved_mode(topology, "cpus:99")
    assert calls == ["cpus:99", "cpus:99"]
    for i in range(child.MAX_REMEMBERED_MODES + 10):   # a client sending endless modes
        child.resolved_mode(topology, "cpus:0" + " " * i)
    assert len(child._RESOLVED[1]) == child.MAX_REMEMBERED_MODES
