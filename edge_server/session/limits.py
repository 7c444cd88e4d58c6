"""Resource limits of a session process, and dropping root's capabilities.

Limits are set soft = hard, so uploaded code cannot raise them again (the
seccomp filter also denies setrlimit/prlimit with a new limit, which root
could otherwise use). RLIMIT_NPROC counts every process and thread of the
daemon's user, and the kernel never applies it to uid 0: under systemd the
daemon runs as its own DynamicUser, where it bounds a fork bomb; as root it
is set but the report says it is not enforced.
"""
import ctypes
import os
import resource
import signal
from dataclasses import dataclass
from typing import Dict

_CAP_VERSION_3 = 0x20080522


@dataclass(frozen=True)
class Limits:
    """The limits every session gets (0 = leave that one as the daemon has it)."""
    address_space: int = 0    # bytes of virtual memory the session may add beyond its start
    open_files: int = 0
    processes: int = 0
    file_size: int = 0        # bytes, largest file the session may write

    def info(self) -> Dict[str, int]:
        return {"address_space_extra_bytes": self.address_space, "open_files": self.open_files,
                "processes": self.processes, "file_size_bytes": self.file_size}


def default_address_space() -> int:
    """Three quarters of the board's RAM: a kernel that allocates more gets
    MemoryError (ENOMEM) in its session before the OOM killer picks a victim."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 3 // 4
    except (ValueError, OSError):
        return 4 << 30


STATM = "/proc/self/statm"


def mapped_bytes() -> int:
    """This process's mapped virtual memory now (VmSize), from /proc/self/statm;
    OSError quoting the path and what it held when it cannot be read."""
    with open(STATM, "rb") as f:
        text = f.read()
    try:
        return int(text.split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, IndexError):
        raise OSError("%s holds %r, not a page count; no address space limit set"
                      % (STATM, text[:80])) from None


def apply(limits: Limits) -> Dict[str, int]:
    """Set the limits on this process but the address space (see
    limit_address_space); what was set, by name."""
    done = {}
    if limits.open_files:
        done["open_files"] = _set(resource.RLIMIT_NOFILE, limits.open_files)
    if limits.processes:
        done["processes"] = _set(resource.RLIMIT_NPROC, limits.processes)
    if limits.file_size:
        # Writing past the limit raises SIGXFSZ, which would kill the session;
        # ignored, the write fails with EFBIG and the client sees an error.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        done["file_size"] = _set(resource.RLIMIT_FSIZE, limits.file_size)
    return done


def limit_address_space(extra: int) -> int:
    """RLIMIT_AS = what is mapped now + `extra`: a TVM process already maps
    hundreds of MB of libraries and thread stacks. The limit set."""
    return _set(resource.RLIMIT_AS, mapped_bytes() + extra)


def _set(which: int, value: int) -> int:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))
    return value


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_libc = ctypes.CDLL(None, use_errno=True)


def drop_capabilities() -> bool:
    """Empty this process's capability sets (a daemon run as root would give
    its sessions every capability); with no_new_privs, nothing it execs gets
    them back. True if it had any."""
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "capget: %s" % os.strerror(err))
    had = any(d.effective or d.permitted or d.inheritable for d in data)
    if not had:
        return False
    empty = (_CapData * 2)()
    if _libc.capset(ctypes.byref(header), empty) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "capset (drop all): %s" % os.strerror(err))
    return True
