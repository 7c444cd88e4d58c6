"""Fork hygiene on real forked children: own process group, PDEATHSIG armed, the
daemon's fds closed, the last word on the mode pipe, and a reaper that takes
the whole group down with its leader."""
import ctypes
import json
import os
import signal
import socket
import time

from edge_server.daemon.forking import (CHILD_FAILED, describe_status, fork_child, reap,
                                        wait_for)
from edge_server.session.ipc import ModeReportReader

PR_GET_PDEATHSIG = 2


def _facts(out_fd: int, inherited_fd: int) -> int:
    """In the child: what the test checks, as one JSON line on out_fd."""
    libc = ctypes.CDLL(None, use_errno=True)
    sig = ctypes.c_int(0)
    libc.prctl(PR_GET_PDEATHSIG, ctypes.byref(sig), 0, 0, 0)
    try:
        os.fstat(inherited_fd)
        closed = False
    except OSError:
        closed = True
    facts = {"pgid": os.getpgid(0), "pid": os.getpid(), "pdeathsig": sig.value,
             "inherited_closed": closed,
             "sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL}
    os.write(out_fd, json.dumps(facts).encode())
    return 3


def _run(body, inherited):
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        pid = fork_child(body, inherited, report_fd=write_end)
    finally:
        os.close(write_end)
    return pid, ModeReportReader(read_end)


def _wait_reaped(pid, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for reaped, status in reap([pid], adopted=False):   # pytest has other children
            if reaped == pid:
                return status
        time.sleep(0.01)
    raise AssertionError("child %d not reaped within %gs" % (pid, timeout))


def test_a_child_lives_in_its_own_group_dies_with_the_daemon_and_holds_none_of_its_fds():
    daemon_sock, other = socket.socketpair()
    out_r, out_w = os.pipe()
    old = signal.signal(signal.SIGTERM, lambda *a: None)
    try:
        inherited_fd = daemon_sock.fileno()
        pid, reports = _run(lambda: _facts(out_w, inherited_fd),
                            lambda: (signal.signal(signal.SIGTERM, signal.SIG_DFL),
                                     [daemon_sock])[1])
        os.close(out_w)
        status = _wait_reaped(pid)
        facts = json.loads(os.read(out_r, 4096))
        assert describe_status(status) == "exit 3"
        assert facts["pgid"] == facts["pid"] == pid
        assert facts["pdeathsig"] == signal.SIGKILL
        assert facts["inherited_closed"] and facts["sigterm_default"]
        reports.read()
        assert reports.end_code == 3
        daemon_sock.sendall(b"x")                 # the daemon's copy is untouched
        assert other.recv(1) == b"x"
    finally:
        signal.signal(signal.SIGTERM, old)
        os.close(out_r)
        daemon_sock.close()
        other.close()


def test_a_body_that_raises_exits_with_the_failure_code_and_says_so():
    def body():
        raise RuntimeError("setup failed")
    pid, reports = _run(body, lambda: [])
    status = _wait_reaped(pid)
    assert describe_status(status) == "exit %d" % CHILD_FAILED
    reports.read()
    assert reports.end_code == CHILD_FAILED
    reports.close()


def test_reaping_a_leader_kills_what_it_left_running_in_its_group():
    out_r, out_w = os.pipe()

    def body():
        grandchild = os.fork()
        if grandchild == 0:
            time.sleep(60)
            os._exit(0)
        os.write(out_w, b"%d" % grandchild)
        return 0
    pid, reports = _run(body, lambda: [])
    os.close(out_w)
    status = _wait_reaped(pid)
    grandchild = int(os.read(out_r, 64))
    os.close(out_r)
    assert describe_status(status) == "exit 0"
    end = time.monotonic() + 30
    while time.monotonic() < end:       # SIGKILLed; reparented to whoever reaps it
        try:
            with open("/proc/%d/stat" % grandchild) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.01)
    else:
        raise AssertionError("grandchild %d still running after its leader was reaped"
                             % grandchild)
    assert wait_for(pid) is None                  # reaped once, not ours any more
    reports.close()


def test_describe_status_names_signals_and_exit_codes():
    assert describe_status(0) == "exit 0"
    assert describe_status(70 << 8) == "exit 70"
    assert describe_status(signal.SIGSEGV) == "killed by SIGSEGV"
    assert describe_status(signal.SIGABRT | 0x80) == "killed by SIGABRT (core dumped)"
