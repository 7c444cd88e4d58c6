"""Landlock, the kernel's unprivileged file system and network sandbox, through
its three system calls (Linux 5.13+; Documentation/userspace-api/landlock.rst).

Why ctypes and not a PyPI binding: the `landlock` package is a dev release
that knows neither the network rules (ABI 4) nor the scopes (ABI 6), and the
calls are three. The syscall numbers come from the kernel's unified table
(include/uapi/asm-generic/unistd.h and arch/x86/entry/syscalls), the same on
every architecture the board may be; `SYSCALLS` still lists them per machine
so an unknown machine says so instead of calling a wrong number, and a test
checks each row against libseccomp's own per-architecture tables.

What this module does not decide: which paths a session gets (see sandbox.py).
"""
import ctypes
import errno
import os
import platform
import stat
from typing import Iterable, Optional, Tuple

# (landlock_create_ruleset, landlock_add_rule, landlock_restrict_self) per machine.
SYSCALLS = {
    "x86_64": (444, 445, 446),
    "aarch64": (444, 445, 446),
    "arm64": (444, 445, 446),
    "armv7l": (444, 445, 446),
    "armv8l": (444, 445, 446),
    "riscv64": (444, 445, 446),
}

CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1
RULE_NET_PORT = 2

# include/uapi/linux/landlock.h, access rights by the ABI that brought them.
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13        # ABI 2
FS_TRUNCATE = 1 << 14     # ABI 3
FS_IOCTL_DEV = 1 << 15    # ABI 5
NET_BIND_TCP = 1 << 0     # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1                # ABI 6

# Rights that apply to a regular file (a rule on a file may hold only these).
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
READ_EXEC = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR


class LandlockError(OSError):
    """A Landlock call failed; str() names the call and the OS error."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64),
                ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1   # __attribute__((packed)) in the uapi header: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def syscall_numbers(machine: Optional[str] = None) -> Optional[Tuple[int, int, int]]:
    """This machine's three numbers, or None where we do not know them."""
    return SYSCALLS.get(machine or platform.machine())


def _call(nr: int, *args) -> int:
    ret = _libc.syscall(ctypes.c_long(nr), *args)
    if ret < 0:
        err = ctypes.get_errno()
        raise LandlockError(err, os.strerror(err))
    return ret


def probe() -> Tuple[int, str]:
    """(the Landlock ABI this process may use, why not when 0). 0 when the
    kernel has none (too old, built without it, or not in the `lsm=` list), or
    when a seccomp filter above us refuses the call (systemd 252's
    @system-service does not list the landlock calls)."""
    numbers = syscall_numbers()
    if numbers is None:
        return 0, "no landlock syscall numbers known for %s" % platform.machine()
    try:
        return _call(numbers[0], None, ctypes.c_size_t(0),
                     ctypes.c_uint32(CREATE_RULESET_VERSION)), ""
    except LandlockError as err:
        if err.errno in (errno.ENOSYS, errno.EOPNOTSUPP):
            return 0, "kernel lacks landlock"
        if err.errno == errno.EPERM:
            return 0, ("landlock blocked by a syscall filter (EPERM; under systemd allow "
                       "landlock_create_ruleset landlock_add_rule landlock_restrict_self)")
        raise


def abi_version() -> int:
    """The ABI from probe(): 0, 1, 2, ..."""
    return probe()[0]


def handled_fs(abi: int) -> int:
    """Every file system right the given ABI knows: all of them are denied
    unless a rule grants them."""
    rights = (FS_MAKE_SYM << 1) - 1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def handled_net(abi: int) -> int:
    return NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0


def scopes(abi: int) -> int:
    return SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0


def _attr_size(abi: int) -> int:
    """Older kernels reject fields they do not know: pass only the ABI's part."""
    if abi >= 6:
        return 24
    return 16 if abi >= 4 else 8


class Ruleset:
    """A ruleset being built: grant paths, then `restrict_self`. With no rule
    for the network, TCP bind and connect are denied (ABI >= 4)."""

    def __init__(self, abi: int):
        numbers = syscall_numbers()
        if numbers is None or abi < 1:
            raise LandlockError(errno.ENOSYS, "Landlock is not available on %s"
                                % platform.machine())
        self.abi = abi
        self._nr = numbers
        self.fs = handled_fs(abi)
        attr = _RulesetAttr(self.fs, handled_net(abi), scopes(abi))
        try:
            self.fd = _call(self._nr[0], ctypes.byref(attr), ctypes.c_size_t(_attr_size(abi)),
                            ctypes.c_uint32(0))
        except LandlockError as err:
            raise LandlockError(err.errno, "landlock_create_ruleset (ABI %d): %s"
                                % (abi, err.strerror)) from None

    def allow(self, path: str, access: int) -> bool:
        """Grant `access` beneath `path` (or on the file). False when the path
        does not exist (nothing to grant); LandlockError for anything else."""
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError as err:
            raise LandlockError(err.errno, "open %s for a Landlock rule: %s"
                                % (path, err.strerror)) from None
        try:
            self.allow_fd(fd, access, path)
        finally:
            os.close(fd)
        return True

    def allow_fd(self, fd: int, access: int, name: str) -> None:
        """Grant `access` beneath the file or directory open as `fd` (the
        inode, whatever its path becomes later)."""
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= FILE_RIGHTS
        attr = _PathBeneathAttr(access & self.fs, fd)
        try:
            _call(self._nr[1], self.fd, ctypes.c_int(RULE_PATH_BENEATH), ctypes.byref(attr),
                  ctypes.c_uint32(0))
        except LandlockError as err:
            raise LandlockError(err.errno, "landlock_add_rule %s: %s"
                                % (name, err.strerror)) from None

    def allow_all(self, paths: Iterable[str], access: int) -> int:
        return sum(1 for p in paths if self.allow(p, access))

    def restrict_self(self) -> None:
        """Enforce on this thread and every thread it creates from now on
        (threads that already exist are not covered: call while single-threaded)."""
        try:
            _call(self._nr[2], self.fd, ctypes.c_uint32(0))
        except LandlockError as err:
            raise LandlockError(err.errno, "landlock_restrict_self: %s" % err.strerror) from None
        finally:
            self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
