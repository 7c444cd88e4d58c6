"""Session work directories, and the cleanup after a daemon that was SIGKILLed.

Layout under the work root (one root may be shared by several daemons):

    <root>/<daemon pid>.lock    flock()ed by the living daemon for its lifetime
    <root>/<daemon pid>/s<n>/   the work dir of its n-th session

A daemon that dies by SIGKILL (or OOM, or power loss with a persistent root)
leaves its directory behind. On start, every `<pid>/` whose lock file is
missing or no longer locked belongs to a dead daemon and is removed; a lock
is released by the kernel when its holder dies, so this cannot mistake a
living daemon for a dead one, even after pid reuse.
"""
import errno
import fcntl
import logging
import os
import shutil
import stat
import sys
import tempfile
from typing import List, Mapping, Optional

log = logging.getLogger("edge_server.daemon.workroot")


def default_work_root(environ: Optional[Mapping[str, str]] = None) -> str:
    """systemd's RuntimeDirectory=, else its StateDirectory=, else a per-user tmp dir."""
    env = os.environ if environ is None else environ
    for name in ("RUNTIME_DIRECTORY", "STATE_DIRECTORY"):
        value = env.get(name)
        if value:
            return value.split(":")[0]
    return os.path.join(tempfile.gettempdir(), "edge-server-%d" % os.getuid())


class WorkRootError(RuntimeError):
    """The work root cannot be used; the message names the path and the OS error."""


class WorkRoot:
    """This daemon's share of the work root."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.pid = os.getpid()
        self.own_dir = os.path.join(self.root, str(self.pid))
        self._lock_path = os.path.join(self.root, "%d.lock" % self.pid)
        self._lock_fd: Optional[int] = None
        self._seq = 0

    def open(self) -> List[str]:
        """Create and lock our directory; returns the stale directories removed."""
        self._make_root()
        try:
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            raise WorkRootError("cannot lock %s: %s" % (self._lock_path, err.strerror)) from None
        self._lock_fd = fd
        removed = self._remove_stale()
        try:
            os.makedirs(self.own_dir, mode=0o700, exist_ok=True)
        except OSError as err:
            raise WorkRootError("cannot create %s: %s" % (self.own_dir, err.strerror)) from None
        return removed

    def _make_root(self) -> None:
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            st = os.lstat(self.root)
        except OSError as err:
            raise WorkRootError("cannot create work root %s: %s (pass --work-root DIR)"
                                % (self.root, err.strerror)) from None
        if not stat.S_ISDIR(st.st_mode):
            raise WorkRootError("work root %s is not a directory (a symlink?); pass --work-root DIR"
                                % self.root)
        if st.st_uid != os.geteuid():
            raise WorkRootError("work root %s belongs to uid %d, not us (uid %d): another user "
                                "could tamper with sessions; pass --work-root DIR"
                                % (self.root, st.st_uid, os.geteuid()))

    def _remove_stale(self) -> List[str]:
        removed = []
        for name in sorted(os.listdir(self.root)):
            pid_text = name[:-5] if name.endswith(".lock") else name
            if not pid_text.isdigit() or int(pid_text) == self.pid:
                continue
            if self._owner_alive(pid_text):
                continue
            path = os.path.join(self.root, name)
            if os.path.isdir(path) and not os.path.islink(path):
                error = remove_tree(path)
                if error is None:
                    removed.append(path)
            else:
                try:
                    os.unlink(path)
                except OSError as err:
                    log.warning("removing stale lock %s failed: %s", path, err.strerror)
        return removed

    def _owner_alive(self, pid_text: str) -> bool:
        """True while the daemon that made <pid>/ still holds <pid>.lock."""
        lock_path = os.path.join(self.root, pid_text + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError as err:
            log.warning("cannot check %s: %s; leaving it", lock_path, err.strerror)
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
            raise
        finally:
            os.close(fd)
        return False

    def new_session_dir(self, prefix: str = "s") -> str:
        """A fresh, empty directory for the next session (mode 0700); prefix "p"
        for a spare's, renamed to an "s" one when its client comes."""
        self._seq += 1
        path = os.path.join(self.own_dir, "%s%d" % (prefix, self._seq))
        if os.path.lexists(path):
            remove_tree(path)
        os.mkdir(path, 0o700)
        return path

    def close_in_child(self) -> None:
        """A session child must not keep the daemon's lock alive after the daemon dies."""
        if self._lock_fd is not None:
            try:
                os.close(self._lock_fd)
            except OSError:
                pass
            self._lock_fd = None

    def close(self) -> None:
        """Remove our directory and lock (clean shutdown)."""
        remove_tree(self.own_dir)
        if self._lock_fd is not None:
            try:
                os.unlink(self._lock_path)
            except OSError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = None


def remove_tree(path: str) -> Optional[str]:
    """rmtree that makes read-only dirs writable first; returns an error text or None."""
    errors = []

    def _onerror(func, failed, exc_info):
        err = exc_info[1]
        if isinstance(err, PermissionError):
            try:
                os.chmod(os.path.dirname(failed) or failed, 0o700)
                func(failed)
                return
            except OSError:
                pass
        if not isinstance(err, FileNotFoundError):
            errors.append("%s: %s" % (failed, getattr(err, "strerror", err)))

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=lambda func, failed, err: _onerror(func, failed, (None, err)))
    else:
        shutil.rmtree(path, onerror=_onerror)
    if errors:
        log.warning("removing work dir %s failed: %s", path, "; ".join(errors[:3]))
        return errors[0]
    return None
