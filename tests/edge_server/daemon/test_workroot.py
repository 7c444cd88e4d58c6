"""Work root: stale dirs of dead daemons go, a living daemon's dirs stay."""
import os
import subprocess
import sys

import pytest

from edge_server.daemon.workroot import WorkRoot, WorkRootError, default_work_root


def hold_lock(path):
    """Another living daemon: a process holding flock on its lock file."""
    code = ("import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_open_removes_only_dead_daemons_dirs(tmp_path):
    root = tmp_path / "work"
    for pid in (424242, 424243, 424244):
        (root / str(pid) / "s1").mkdir(parents=True)
        (root / str(pid) / "s1" / "model.so").write_bytes(b"x")
    (root / "424243.lock").write_text("")        # dead daemon: lock file, nobody holds it
    living = hold_lock(root / "424242.lock")
    try:
        work = WorkRoot(str(root))
        removed = work.open()
        assert sorted(removed) == [str(root / "424243"), str(root / "424244")]
        assert (root / "424242" / "s1" / "model.so").exists()
        assert (root / "424242.lock").exists()
        assert not (root / "424243.lock").exists()
        first, second = work.new_session_dir(), work.new_session_dir()
        assert first != second and os.path.isdir(first) and os.listdir(first) == []
        assert oct(os.stat(first).st_mode & 0o777) == "0o700"
        assert sorted(os.listdir(work.own_dir)) == ["s1", "s2"]
        work.close()
        assert not os.path.exists(work.own_dir)
        assert sorted(os.listdir(root)) == ["424242", "424242.lock"]
    finally:
        living.kill()
        living.wait()


def test_a_symlinked_root_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    with pytest.raises(WorkRootError, match="not a directory"):
        WorkRoot(str(tmp_path / "link")).open()


def test_default_root_prefers_systemd_directories():
    assert default_work_root({"RUNTIME_DIRECTORY": "/run/a:/run/b"}) == "/run/a"
    assert default_work_root({"STATE_DIRECTORY": "/var/lib/e"}) == "/var/lib/e"
    assert default_work_root({}).endswith("edge-server-%d" % os.getuid())
