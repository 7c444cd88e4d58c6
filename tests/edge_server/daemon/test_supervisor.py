"""The session lifecycle in-process: a fake clock and fake children, no fork.

The supervisor's hands on processes (fork, SIGKILL of a group, blocking
wait) are replaced by FakeProcesses; everything else is real: the client's
socket is one end of a socketpair, a child's mode pipe is a real pipe the
test writes to as the child would, a spare's hand-off channel is a real
SOCK_SEQPACKET pair the test reads as the spare would, work dirs are real.
A child "exits" when the test hands the supervisor a waitpid status, as the
server's reaper does.
"""
import dataclasses
import errno
import logging
import os
import signal
import socket
from typing import Optional

import pytest
from hypothesis import given, settings, strategies as st

from edge_server.daemon.children import BadTransition, Child, State
from edge_server.daemon.config import Config
from edge_server.daemon.handshake import SessionRequest
from edge_server.daemon.spare import FIRST_DELAY
from edge_server.daemon.supervisor import VANISH_GRACE, SlotEvents, Supervisor
from edge_server.daemon.workroot import WorkRoot
from edge_server.session.ipc import PREPARE, parse_handoff

KILLED = signal.SIGKILL                 # waitpid status of a SIGKILLed child
SEGV = signal.SIGSEGV


def exited(code: int) -> int:
    return code << 8                     # waitpid status of exit(code)


@dataclasses.dataclass(frozen=True)
class Ctx:
    """The fields of SessionContext the supervisor reads or replaces."""
    default_mode: str
    work_dir: str
    peer: str
    mode_report_fd: Optional[int] = None
    topology: dict = dataclasses.field(
        default_factory=lambda: {"cpus": [{"id": 0}, {"id": 1}], "classes": []})
    clocks: Optional[object] = None


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


class FakeProcesses:
    """fork() without forking: a pid, and the child's ends kept for the test to use."""

    def __init__(self):
        self.next_pid = 4000
        self.killed = []
        self.report_w = {}     # pid -> write end of its mode pipe
        self.channel = {}      # pid -> a spare's end of its hand-off channel
        self.fail = None       # an OSError the next fork raises

    def fork(self, body, keep, report_fd, close=()):
        if self.fail is not None:
            err, self.fail = self.fail, None
            raise err
        self.next_pid += 1
        self.report_w[self.next_pid] = os.dup(report_fd)
        if keep.type == socket.SOCK_SEQPACKET:
            self.channel[self.next_pid] = keep.dup()
        return self.next_pid

    def killpg(self, pid):
        self.killed.append(pid)

    def wait(self, pid):
        return KILLED

    def say(self, pid, text: bytes) -> None:
        """Write as the child would; like its ModeReporter, a closed pipe is no error."""
        try:
            os.write(self.report_w[pid], text)
        except BrokenPipeError:
            pass

    def close(self):
        for fd in self.report_w.values():
            os.close(fd)
        for sock in self.channel.values():
            sock.close()


class Events(SlotEvents):
    def __init__(self):
        self.calls = []

    def client_left(self, slot):
        self.calls.append("client_left")

    def slot_freed(self, slot):
        self.calls.append("slot_freed")

    def session_started(self, slot):
        self.calls.append("session_started")

    def changed(self, slot):
        self.calls.append("changed")

    def count(self, name):
        return self.calls.count(name)


class Rig:
    def __init__(self, tmp_path, **config):
        self.clock = Clock()
        self.procs = FakeProcesses()
        self.events = Events()
        self.work = WorkRoot(str(tmp_path / "work"))
        self.work.open()
        self.mode = "all"
        self.config = Config(work_root=str(tmp_path / "work"), **config)
        self.sup = Supervisor(self.config, self.work, self.context, self.procs, self.events,
                              self.clock)
        self.clients = []

    def context(self, work_dir, peer):
        return Ctx(self.mode, work_dir, peer)

    def start(self, timeout=None, peer="10.0.0.9:5000") -> Child:
        server_end, client_end = socket.socketpair()
        self.clients.append(client_end)
        assert self.sup.start(server_end, peer, SessionRequest(timeout, [])) is None
        return self.sup.session

    def tick(self, seconds=0.0):
        """One turn of the server's loop after `seconds`."""
        now = self.clock.advance(seconds)
        self.sup.check_deadlines(now)
        self.sup.ensure_spare(now)

    def close(self):
        self.procs.close()
        for sock in self.clients:
            sock.close()
        self.work.close()


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path, grace=2.0)
    yield r
    r.close()


def test_a_session_serves_its_client_says_its_last_word_and_frees_the_slot_once(rig, caplog):
    caplog.set_level(logging.INFO)
    s = rig.start()
    assert s.state is State.SERVING and rig.sup.busy()
    assert os.path.isdir(s.work_dir)
    assert rig.events.calls[:1] == ["session_started"]
    rig.procs.say(s.pid, b"mode big:2\n")
    rig.sup.read_reports(s)
    assert s.mode == "big:2" and s.modes_used == ["big:2"]
    rig.sup.client_gone(s)
    assert s.state is State.CLIENT_GONE and rig.events.count("client_left") == 1
    rig.procs.say(s.pid, b"end 0\n")
    rig.sup.read_reports(s)
    assert s.state is State.ENDING and s.pid in rig.procs.killed
    assert not rig.sup.busy() and rig.events.count("slot_freed") == 1
    assert rig.sup.child_exited(s.pid, KILLED)        # SIGKILLed on its way out
    assert s.state is State.REAPED and s.pid not in rig.sup.children
    assert (rig.sup.ok, rig.sup.failed) == (1, 0)
    assert rig.events.count("slot_freed") == 1
    assert not os.path.exists(s.work_dir)
    [line] = [r.getMessage() for r in caplog.records if "ended" in r.getMessage()]
    assert "ended, exit 0 after" in line and "in mode big:2" in line


def test_a_client_that_leaves_a_busy_child_gets_it_killed_after_the_vanish_grace(rig):
    s = rig.start()
    rig.sup.client_gone(s)
    rig.tick(VANISH_GRACE / 2)
    assert s.state is State.CLIENT_GONE and s.pid not in rig.procs.killed
    assert rig.sup.busy()                      # two sessions never run at once
    rig.tick(VANISH_GRACE / 2)
    assert s.state is State.KILLED and s.kill_reason == "client went away"
    assert s.pid in rig.procs.killed and rig.sup.busy()
    rig.sup.child_exited(s.pid, KILLED)
    assert (rig.sup.ok, rig.sup.failed) == (0, 1)
    assert not rig.sup.busy() and rig.events.count("slot_freed") == 1


def test_a_session_timeout_kills_the_child_and_tells_the_client_as_stock_does(rig):
    s = rig.start(timeout=5)
    assert rig.sup.deadlines(rig.clock.now) == [rig.clock.now + 5]
    rig.tick(4.9)
    assert s.state is State.SERVING
    rig.tick(0.1)
    assert s.state is State.KILLED and s.kill_reason == "session timeout (5s) expired"
    client = rig.clients[-1]
    rig.sup.child_exited(s.pid, KILLED)
    client.settimeout(5)
    assert b"RPCSessionTimeoutError" in client.recv(4096)
    assert rig.sup.failed == 1 and rig.events.count("slot_freed") == 1


def test_a_crashing_child_is_accounted_once_and_frees_the_slot(rig, caplog):
    s = rig.start()
    rig.sup.child_exited(s.pid, SEGV)
    assert (rig.sup.ok, rig.sup.failed) == (0, 1)
    assert not rig.sup.busy() and rig.events.count("slot_freed") == 1
    assert any("ended, killed by SIGSEGV" in r.getMessage() for r in caplog.records)
    assert not rig.sup.child_exited(s.pid, SEGV)      # reaped once; not ours any more


def test_a_last_word_then_a_nonzero_exit_code_counts_as_failed(rig, caplog):
    s = rig.start()
    rig.procs.say(s.pid, b"end 3\n")
    rig.sup.read_reports(s)
    rig.sup.child_exited(s.pid, KILLED)
    assert (rig.sup.ok, rig.sup.failed) == (0, 1)
    assert any("ended, exit 3" in r.getMessage() for r in caplog.records)


def test_stop_lets_the_session_run_out_its_grace_then_kills_it(rig):
    rig.tick()
    spare = rig.sup.spare
    s = rig.start()
    rig.tick()
    new_spare = rig.sup.spare
    assert new_spare is not None and new_spare is not spare
    rig.sup.begin_stop(rig.clock.now + 2.0)
    assert new_spare.state is State.RETIRED and new_spare.pid in rig.procs.killed
    assert rig.sup.spare is None
    rig.tick(1.9)
    assert s.state is State.SERVING and rig.sup.spare is None   # no spare while stopping
    rig.tick(0.1)
    assert s.state is State.KILLED and s.kill_reason == "daemon stopping, grace of 2s over"
    rig.sup.shutdown()
    assert rig.sup.children == {} and rig.sup.failed == 1
    assert rig.events.count("slot_freed") == 1


def test_shutdown_kills_and_waits_for_every_child(rig):
    rig.tick()
    s = rig.start()
    rig.tick()
    assert len(rig.sup.children) == 2
    rig.sup.shutdown()
    assert s.kill_reason == "daemon stopping" and rig.sup.children == {}
    assert set(rig.procs.killed) >= {s.pid}
    assert rig.sup.failed == 1 and not rig.sup.busy()


def test_sighup_retires_the_spare_and_the_next_one_has_the_new_settings(rig):
    rig.tick()
    old = rig.sup.spare
    assert rig.procs.channel[old.pid].recv(100) == PREPARE     # idle: it may set up
    rig.mode = "little"
    rig.sup.retire_spare()
    assert old.state is State.RETIRED and old.pid in rig.procs.killed
    assert rig.procs.channel[old.pid].recv(100) == b""         # its channel is closed
    rig.tick()
    new = rig.sup.spare
    assert new is not None and new.pid != old.pid
    rig.sup.child_exited(old.pid, KILLED)
    assert (rig.sup.ok, rig.sup.failed, rig.sup.backoff.failures) == (0, 0, 0)
    s = rig.start()
    assert s is new and s.mode == "little"


def test_a_spare_that_dies_unused_is_replaced_after_a_growing_backoff(rig, caplog):
    rig.tick()
    first = rig.sup.spare
    rig.sup.child_exited(first.pid, exited(70))
    assert rig.sup.spare is None
    delay = FIRST_DELAY * 2
    assert rig.sup.deadlines(rig.clock.now) == [rig.clock.now + delay]
    rig.tick(delay / 2)
    assert rig.sup.spare is None
    rig.tick(delay / 2)
    second = rig.sup.spare
    assert second is not None and second.pid != first.pid
    rig.sup.child_exited(second.pid, SEGV)
    assert rig.sup.deadlines(rig.clock.now) == [rig.clock.now + 2 * delay]
    assert (rig.sup.ok, rig.sup.failed) == (0, 0)       # no session was lost
    assert sum("died before serving (exit 70)" in r.getMessage() for r in caplog.records) == 1
    rig.tick(2 * delay)
    rig.start()                                         # served: the backoff starts over
    assert rig.sup.backoff.failures == 0


def test_the_spare_is_forked_during_a_session_but_prepares_only_after_it(rig):
    s = rig.start()
    rig.tick()
    spare = rig.sup.spare
    assert spare.state is State.SPARE
    channel = rig.procs.channel[spare.pid]
    channel.setblocking(False)
    with pytest.raises(BlockingIOError):
        channel.recv(100)                               # nothing while a client measures
    rig.sup.client_gone(s)
    assert spare.state is State.PREPARING and channel.recv(100) == PREPARE


def test_the_next_client_is_handed_to_the_spare_with_its_work_dir_and_peer(rig, caplog):
    caplog.set_level(logging.INFO)
    rig.tick()
    spare = rig.sup.spare
    channel = rig.procs.channel[spare.pid]
    assert channel.recv(100) == PREPARE
    s = rig.start(peer="10.0.0.7:4242")
    assert s is spare and s.state is State.SERVING and s.channel is None
    msg, fds, _, _ = socket.recv_fds(channel, 65536, 1)
    assert parse_handoff(msg) == (s.work_dir, "10.0.0.7:4242", None) and len(fds) == 1
    os.close(fds[0])
    assert any("pid %d prepared in advance" % s.pid in r.getMessage() for r in caplog.records)


def test_a_broken_spare_is_retired_and_the_session_forked_instead(rig):
    rig.tick()
    spare = rig.sup.spare
    rig.procs.channel.pop(spare.pid).close()            # the spare died, not reaped yet
    rig.procs.say(spare.pid, b"")
    s = rig.start()
    assert s is not spare and spare.state is State.RETIRED and s.state is State.SERVING


def test_a_failed_fork_refuses_the_client_and_leaves_no_work_dir(rig):
    rig.procs.fail = OSError(errno.EAGAIN, "Resource temporarily unavailable")
    server_end, client_end = socket.socketpair()
    rig.clients += [server_end, client_end]
    why = rig.sup.start(server_end, "10.0.0.9:1", SessionRequest(None, []))
    assert why == "fork failed: Resource temporarily unavailable"
    assert not rig.sup.busy() and rig.sup.failed == 1
    assert os.listdir(rig.work.own_dir) == []


def test_garbage_on_the_mode_pipe_is_counted_and_named_in_the_end_line(rig, caplog):
    caplog.set_level(logging.INFO)
    s = rig.start()
    rig.procs.say(s.pid, b"mode all\nhello there\nmode cpus:0\n")
    rig.sup.read_reports(s)
    assert s.modes_used == ["all", "cpus:0"] and s.bad_reports == 1
    rig.sup.child_exited(s.pid, exited(0))
    [line] = [r.getMessage() for r in caplog.records if "ended" in r.getMessage()]
    assert "in modes all, cpus:0" in line and "(ignored 1 bad mode reports)" in line


def test_a_transition_the_diagram_does_not_have_is_refused():
    child = Child(1, State.SPARE, 0.0)
    child.move(State.PREPARING)
    with pytest.raises(BadTransition, match="PREPARING -> CLIENT_GONE"):
        child.move(State.CLIENT_GONE)
    for state in (State.SERVING, State.ENDING, State.REAPED):
        child.move(state)
    with pytest.raises(BadTransition):
        child.move(State.SERVING)


STEPS = ["client_gone", "end0", "end1", "wait", "crash", "exit0", "sigkill", "stop", "hup"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(STEPS), max_size=12), st.integers(1, 3))
def test_any_sequence_of_events_frees_each_slot_once_and_accounts_each_session_once(
        tmp_path_factory, steps, sessions):
    rig = Rig(tmp_path_factory.mktemp("seq"), grace=1.0)
    started = []
    try:
        for _ in range(sessions):
            if rig.sup.busy() or rig.sup.stopping:
                break
            s = rig.start(timeout=3)
            started.append(s)
            for step in steps:
                _apply(rig, s, step)
            if s.state is not State.REAPED:
                rig.sup.child_exited(s.pid, KILLED)
        rig.sup.shutdown()
        assert all(s.state is State.REAPED for s in started)
        assert rig.events.count("slot_freed") == len(started)
        assert rig.sup.ok + rig.sup.failed == len(started)
        assert rig.sup.children == {} and not rig.sup.busy()
        assert os.listdir(rig.work.own_dir) == []
    finally:
        rig.close()


def _apply(rig: Rig, s: Child, step: str) -> None:
    if s.state is State.REAPED:
        return
    if step == "client_gone":
        rig.sup.client_gone(s)
    elif step in ("end0", "end1"):
        rig.procs.say(s.pid, b"end %s\n" % step[-1].encode())
        rig.sup.read_reports(s)
    elif step == "wait":
        rig.tick(1.0)
    elif step == "crash":
        rig.sup.child_exited(s.pid, SEGV)
    elif step == "exit0":
        rig.sup.child_exited(s.pid, exited(0))
    elif step == "sigkill":
        rig.sup.child_exited(s.pid, KILLED)
    elif step == "stop" and not rig.sup.stopping:
        rig.sup.begin_stop(rig.clock.now + 1.0)
    elif step == "hup":
        rig.sup.retire_spare()
        rig.tick()


class FakeKeeper:
    """The ClockKeeper's interface (--lock-clocks): what was held and released, in order."""

    def __init__(self):
        self.calls = []

    def hold(self, key, cpus):
        from edge_server.session.clocks import HeldClocks
        self.calls.append(("hold", key, list(cpus)))
        return HeldClocks({"policy0": 1416000}, {})

    def release(self, key):
        self.calls.append(("release", key))
        return []


def test_clocks_are_held_before_the_hand_off_and_released_when_reaped(rig):
    keeper = FakeKeeper()
    rig.sup = Supervisor(rig.config, rig.work, rig.context, rig.procs, rig.events, rig.clock,
                         clocks=keeper)
    rig.tick()
    channel = rig.procs.channel[rig.sup.spare.pid]
    assert channel.recv(100) == PREPARE
    first = rig.start()
    msg, fds, _, _ = socket.recv_fds(channel, 65536, 1)
    os.close(fds[0])
    assert parse_handoff(msg).clocks.khz == {"policy0": 1416000}     # told in the hand-off
    assert keeper.calls == [("hold", first.work_dir, [0, 1])]        # every core it may use
    rig.sup.client_gone(first)
    rig.procs.say(first.pid, b"end 0\n")
    rig.sup.read_reports(first)                   # the slot is free before it is reaped...
    second = rig.start()                          # ...so the next session holds first
    assert keeper.calls[-1] == ("hold", second.work_dir, [0, 1])
    rig.sup.child_exited(first.pid, KILLED)
    assert keeper.calls[-1] == ("release", first.work_dir)   # only the reaped one's key
    rig.sup.client_gone(second)
    rig.tick(VANISH_GRACE)
    rig.sup.child_exited(second.pid, KILLED)
    assert keeper.calls[-1] == ("release", second.work_dir)
    assert [c[0] for c in keeper.calls] == ["hold", "hold", "release", "release"]


def test_a_failed_fork_releases_the_clocks_it_held(rig):
    keeper = FakeKeeper()
    rig.sup = Supervisor(rig.config, rig.work, rig.context, rig.procs, rig.events, rig.clock,
                         clocks=keeper)
    rig.procs.fail = OSError(11, "Resource temporarily unavailable")
    server_end, client_end = socket.socketpair()
    rig.clients += [server_end, client_end]
    assert rig.sup.start(server_end, "10.0.0.9:5000", SessionRequest(None, [])).startswith(
        "fork failed")
    [(_, key, _)] = keeper.calls[:1]
    assert keeper.calls == [("hold", key, [0, 1]), ("release", key)]
