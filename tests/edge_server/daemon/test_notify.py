import logging
import os
import socket
import subprocess
import sys

import pytest

from edge_server.daemon import notify as sdnotify
from edge_server.daemon.logs import FIELDS, setup_logging, under_journald
from edge_server.daemon.notify import Notifier

needs_systemd = pytest.mark.skipif(sdnotify._sd_daemon is None,
                                   reason="systemd-python not installed")


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = str(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", path)  # sd_notify(3) reads it from the environment
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def test_no_socket_means_silent_no_ops():
    n = Notifier.from_env({})
    assert not n.enabled
    assert n.ready() is False
    assert n.watchdog_interval() is None


@needs_systemd
def test_messages_reach_the_socket(notify_socket):
    path, sock = notify_socket
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n.ready()
    assert sock.recv(4096) == b"READY=1"
    n.status("waiting for tracker\n 127.0.0.1:9190 (retry 3)")
    assert sock.recv(4096) == b"STATUS=waiting for tracker 127.0.0.1:9190 (retry 3)"
    n.ping_watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


@needs_systemd
def test_extend_timeout_sends_microseconds(notify_socket):
    path, sock = notify_socket
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n.extend_timeout(65)
    assert sock.recv(4096) == b"EXTEND_TIMEOUT_USEC=65000000"
    assert n.extend_timeout(2.5)
    assert sock.recv(4096) == b"EXTEND_TIMEOUT_USEC=2500000"


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf"), "65", None])
def test_extend_timeout_refuses_nonsense(seconds):
    with pytest.raises(ValueError, match="positive finite number of seconds"):
        Notifier.from_env({}).extend_timeout(seconds)


def test_extend_timeout_is_a_no_op_outside_systemd():
    assert Notifier.from_env({}).extend_timeout(10) is False


@needs_systemd
def test_forked_child_never_notifies(notify_socket):
    path, sock = notify_socket
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    pid = os.fork()
    if pid == 0:
        os._exit(0 if n.ready() is False else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    sock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        sock.recv(4096)


@pytest.mark.parametrize("env,interval", [
    ({"WATCHDOG_USEC": "400000"}, 0.2),
    ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": str(os.getpid())}, 0.2),
    ({"WATCHDOG_USEC": "400000", "WATCHDOG_PID": "1"}, None),
    ({"WATCHDOG_USEC": "garbage"}, None),
    ({"WATCHDOG_USEC": "0"}, None),
])
def test_watchdog_interval_is_half_of_usec_for_our_pid(env, interval):
    assert Notifier.from_env(env).watchdog_interval() == interval


def test_missing_systemd_python_warns_once(tmp_path):
    """Without systemd-python the daemon still runs and says why it cannot notify."""
    code = ("import sys; sys.modules['systemd'] = None\n"
            "import logging; logging.basicConfig()\n"
            "from edge_server.daemon.notify import Notifier\n"
            "n = Notifier.from_env({'NOTIFY_SOCKET': '/run/x.sock'})\n"
            "print(n.enabled, n.ready())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False False"
    assert out.stderr.count("systemd-python is not installed") == 1


def test_stderr_lines_carry_structured_fields(capsys):
    setup_logging()
    logging.getLogger("edge_server.test").info("session ended", extra={"PEER": "1.2.3.4:5",
                                                                       "EXIT_STATUS": -11})
    err = capsys.readouterr().err
    assert "session ended [peer=1.2.3.4:5 exit_status=-11]" in err
    assert "PEER" in FIELDS


def test_journal_stream_must_name_our_stderr():
    assert not under_journald({})
    assert not under_journald({"JOURNAL_STREAM": "1:2"})
    assert not under_journald({"JOURNAL_STREAM": "garbage"})
    st = os.fstat(sys.stderr.fileno())
    assert under_journald({"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)})
