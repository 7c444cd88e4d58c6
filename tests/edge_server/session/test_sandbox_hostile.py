"""Hostile kernels against a real edge-server: each tries to escape its session
through RPC (read a secret of the daemon's user, write outside the work dir,
follow a symlink out, connect to a listener, fork a bomb, allocate beyond the
limit, exec a shell, ptrace or signal the daemon). Each attempt must fail inside
the session, the daemon must go on serving, and the test checks from outside
that nothing escaped. Where this machine's kernel lacks a part, the test checks
that the session says so instead of asserting what it cannot enforce.
"""
import gc
import json
import secrets
import socket

import pytest

from tests.support import daemon_kit as kit
from tests.support import hostile_kit as hostile
from tests.support import procs

EACCES, EPERM, ENOMEM = 13, 1, 12


class World:
    """A secret, a place outside, a TCP listener, the hostile libraries, a board."""


@pytest.fixture(scope="module")
def world(tmp_path_factory, shared_tracker):
    w = World()
    tmp = tmp_path_factory.mktemp("hostile")
    home = tmp / "daemon-home"
    home.mkdir()
    w.secret_text = "TOPSECRET-" + secrets.token_hex(8)
    w.secret = home / "secret"
    w.secret.write_text(w.secret_text + "\n")
    w.outside = tmp / "outside-written"
    w.listener = socket.socket()
    w.listener.bind((procs.HOST, 0))
    w.listener.listen(8)
    w.listener.setblocking(False)
    libs = tmp / "libs"
    libs.mkdir()
    w.libs = {kind: hostile.build(libs, kind, w.secret, w.outside,
                                  port=w.listener.getsockname()[1])
              for kind in hostile.KINDS}
    w.kernel = kit.build_kernel(libs)
    w.tracker = shared_tracker
    w.board = procs.start_edge_server(tmp, shared_tracker.port, key="hostile-board", args=[
        "--work-root", tmp / "work", "--session-max-memory", "256M"])
    w.board.work_root = tmp / "work"
    yield w
    w.listener.close()
    assert w.board.stop() == 0


def hostile_session(w, kind: str, board=None):
    """Run one hostile library in a fresh session; (thread state, its report)."""
    board = board or w.board
    procs.wait_free(w.tracker.port, board.key, proc=board)
    from tvm import rpc
    client = rpc.connect_tracker(procs.HOST, w.tracker.port)
    try:
        remote = client.request(board.key)
        try:
            state = json.loads(remote.get_function("edge.thread_state")())
            report = hostile.fields(hostile.attempt(remote, w.libs[kind]))
        finally:
            del remote
    finally:
        client.close()
        gc.collect()
    assert board.alive(), board.log()
    return state, report


def fs_enforced(state) -> bool:
    """Landlock ran in this session; if not, the session must say why."""
    box = state["sandbox"]
    if box["landlock_abi"]:
        return True
    assert "landlock" in box["applied"] and ("lacks" in box["applied"] or box["errors"]), box
    return False


def seccomp_enforced(state) -> bool:
    box = state["sandbox"]
    if box["seccomp"]:
        return True
    assert "seccomp" in box["applied"] and ("unavailable" in box["applied"] or box["errors"])
    return False


def test_the_session_says_what_it_got_and_the_tracker_shows_the_plan(world):
    state, _ = hostile_session(world, "read_secret")
    box = state["sandbox"]
    expected = "landlock v%d + seccomp" % box["landlock_abi"]
    if box["landlock_abi"] and box["seccomp"]:
        assert box["applied"] == expected
    assert box["limits"]["address_space"] > 256 << 20
    summary = procs.tracker_summary(world.tracker.port)
    infos = [s for s in summary["server_info"] if s.get("key", "").endswith("hostile-board")]
    assert infos and infos[0]["edge"]["sandbox"]["applied"] == box["applied"]
    assert infos[0]["edge"]["sandbox"]["mode"] == "auto"


def test_reading_a_secret_of_the_daemons_user_fails(world):
    state, report = hostile_session(world, "read_secret")
    assert world.secret_text not in " ".join(report.values())
    if fs_enforced(state):
        assert report["rc"] == str(-EACCES), report


def test_writing_outside_the_work_dir_fails(world):
    state, report = hostile_session(world, "write_outside")
    if fs_enforced(state):
        assert report["rc"] == str(-EACCES), report
        assert not world.outside.exists()


def test_a_symlink_out_of_the_work_dir_leads_nowhere(world):
    state, report = hostile_session(world, "symlink_out")
    assert report["symlink"] == "0", report       # making it is allowed, in the work dir
    if fs_enforced(state):
        assert (report["rc"], report["plant"]) == (str(-EACCES), str(-EACCES)), report
        assert not (world.secret.parent / "planted").exists()
        assert world.secret_text not in report["data"]


def test_no_tcp_connection_leaves_the_session(world):
    state, report = hostile_session(world, "tcp_connect")
    if seccomp_enforced(state) or state["sandbox"]["landlock_abi"] >= 4:
        assert report["rc"] in (str(-EACCES), str(-EPERM)), report
        with pytest.raises(BlockingIOError):
            world.listener.accept()       # the listener saw no connection


def test_a_fork_bomb_stays_in_the_session_and_dies_with_it(world):
    state, report = hostile_session(world, "fork_bomb")
    if seccomp_enforced(state):
        assert report["escaped"] == "0", report    # setsid denied: no child left the group
    if state["sandbox"]["nproc_enforced"]:
        assert int(report["forked"]) < 24 and report["errno"] == "11", report
    kit.wait_for(lambda: not hostile.processes_in_group(state["pid"]), 15,
                 "the bomb's processes killed with the session")
    kit.wait_for(lambda: not kit.session_dirs(world.board.work_root), 10, "work dir removed")


def test_allocating_beyond_the_limit_fails_in_the_session(world):
    state, report = hostile_session(world, "alloc")
    assert state["sandbox"]["limits"]["address_space"] > 0
    assert report["rc"] == str(-ENOMEM), report


def test_a_shell_runs_inside_the_same_sandbox(world):
    state, report = hostile_session(world, "exec_shell")
    if fs_enforced(state):
        assert report["leaked"] == "0", report
        assert not world.outside.exists()


def test_the_daemon_cannot_be_traced_signalled_or_read(world):
    state, report = hostile_session(world, "ptrace_daemon")
    if seccomp_enforced(state):
        assert (report["ptrace"], report["kill"]) == (str(-EPERM), str(-EPERM)), report
        assert report["everyone"] == str(-EPERM), report      # kill(-1) would reach the daemon
        assert report["group"] in (str(-EPERM), str(-3)), report   # ESRCH: not a group leader
    if fs_enforced(state):
        assert report["environ"] == str(-EACCES), report
    assert kit.proc_state(world.board.pid) not in (None, "T", "t")


def test_the_daemon_serves_a_real_kernel_after_every_attempt(world):
    for kind in hostile.KINDS:
        hostile_session(world, kind)
    state = kit.tracker_session(world.tracker.port, world.board.key, world.kernel,
                                proc=world.board)
    assert state["mode"] == "all" and state["sandbox"]["errors"] == []
    assert not world.outside.exists()


def test_with_the_sandbox_off_the_same_kernel_reads_the_secret(world, tmp_path):
    """The control: the attempts above fail because of the sandbox, not by accident."""
    board = procs.start_edge_server(tmp_path, world.tracker.port, key="open-board",
                                    args=["--work-root", tmp_path / "work", "--sandbox", "off"])
    try:
        state, report = hostile_session(world, "read_secret", board=board)
        assert state["sandbox"]["applied"] == "off (--sandbox off)"
        assert report["rc"] == "0" and report["data"] == world.secret_text, report
    finally:
        assert board.stop() == 0


def test_required_serves_only_with_the_full_set(world, tmp_path):
    """--sandbox required: on a kernel with Landlock and seccomp every session gets
    both; on one without, the daemon refuses to start and says what is missing."""
    from edge_server.session import landlock
    abi, why = landlock.probe()
    if abi == 0:
        proc = procs.start_edge_server(tmp_path, world.tracker.port, key="strict-board",
                                       args=["--sandbox", "required"], wait=False)
        assert proc.wait(60) == 1
        assert "--sandbox required, but %s" % why in proc.log()
        return
    board = procs.start_edge_server(tmp_path, world.tracker.port, key="strict-board",
                                    args=["--work-root", tmp_path / "work", "--sandbox",
                                          "required"])
    try:
        state, report = hostile_session(world, "read_secret", board=board)
        assert state["sandbox"]["applied"] == "landlock v%d + seccomp" % abi
        assert report["rc"] == str(-EACCES)
    finally:
        assert board.stop() == 0


def test_required_refuses_to_start_where_a_filter_blocks_landlock(world, tmp_path):
    """The same daemon under a syscall filter like systemd 252's @system-service:
    --sandbox required exits 1 and names what blocked it; auto serves and says so."""
    port = procs.free_port()
    argv = procs.edge_server_argv("--host", procs.HOST, "--port", port, "--port-end", port + 1,
                                  "--key", "blocked-board", "--sandbox", "required")
    proc = procs.Proc(hostile.filtered_argv(*argv), tmp_path / "required.log")
    assert proc.wait(60) == 1, proc.log()
    assert "--sandbox required, but landlock blocked by a syscall filter" in proc.log()
    argv = procs.edge_server_argv("--host", procs.HOST, "--port", port, "--port-end", port + 1,
                                  "--key", "blocked-board", "--tracker",
                                  "%s:%d" % (procs.HOST, world.tracker.port),
                                  "--work-root", tmp_path / "work")
    board = procs.Proc(hostile.filtered_argv(*argv), tmp_path / "auto.log")
    board.key = "blocked-board"
    try:
        state, report = hostile_session(world, "tcp_connect", board=board)
        assert state["sandbox"]["applied"].startswith("seccomp only (landlock blocked"), state
        assert report["rc"] == str(-EACCES), report
    finally:
        assert board.stop() == 0
