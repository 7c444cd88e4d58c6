"""A seccomp filter that denies a session the system calls a kernel never
needs, built with libseccomp and loaded with one system call.

Why libseccomp through ctypes: libseccomp is the maintained source of every
architecture's syscall numbers and writes the BPF program (with the check
that the caller's architecture is the native one, so 32-bit entry points
cannot bypass it); Debian ships it on every board (apt depends on it), while
its Python bindings (python3-seccomp, pyseccomp) are not installable from
PyPI for every board. The daemon builds the program once (`build`), and each
session process only loads the bytes (`load`): no per-session compile.

Denied calls fail with an errno (EPERM, EACCES for socket, ENOSYS for
clone3 so glibc falls back to clone, whose flags a filter can read); they do
not kill the session, so a kernel that tries one gets an error it can report.
"""
import ctypes
import ctypes.util
import errno
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

ACT_ALLOW = 0x7FFF0000
CMP_NE, CMP_MASKED_EQ = 1, 7
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2

# What a measured kernel (and the compiler a stock client's .tar needs) never
# calls; each group says why it is here.
DENIED = (
    # reading or steering other processes, the daemon first
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    # the file system tree and namespaces (Landlock's rules must hold)
    "mount", "umount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount",
    "fspick", "move_mount", "open_tree", "mount_setattr", "setns", "unshare",
    "open_by_handle_at", "name_to_handle_at",
    # the kernel itself
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
    "reboot", "swapon", "swapoff", "acct", "syslog", "quotactl", "quotactl_fd", "vhangup",
    "iopl", "ioperm", "uselib", "lookup_dcookie", "fanotify_init", "userfaultfd",
    "keyctl", "add_key", "request_key", "sethostname", "setdomainname",
    # the machine's clock
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    # leaving the session's process group (the daemon kills the group at the end)
    "setsid", "setpgid",
    # raising the session's limits again (root could)
    "setrlimit",
    # io_uring can open sockets and files without the calls filtered here
    "io_uring_setup", "io_uring_enter", "io_uring_register",
)
PERF = "perf_event_open"
CLONE_NEW_FLAGS = (0x00020000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000,
                   0x02000000)   # NEWNS NEWUTS NEWIPC NEWUSER NEWPID NEWNET NEWCGROUP


class SeccompError(OSError):
    """libseccomp is missing, or building or loading the filter failed."""


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _act_errno(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


def _lib():
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as err:
        raise SeccompError(errno.ENOENT, "libseccomp is not installed (%s); install "
                           "libseccomp2" % err) from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def resolve(name: str, arch: Optional[str] = None) -> Optional[int]:
    """The syscall number of `name` natively or on `arch` (libseccomp's names:
    "x86_64", "aarch64", "arm", ...); None where it does not exist."""
    lib = _lib()
    if arch is None:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
    else:
        token = lib.seccomp_arch_resolve_name(arch.encode())
        if token == 0:
            raise SeccompError(errno.EINVAL, "libseccomp does not know architecture %r" % arch)
        nr = lib.seccomp_syscall_resolve_name_arch(token, name.encode())
    return nr if nr >= 0 else None


@dataclass(frozen=True)
class Filter:
    """A built filter: the BPF program, the native `seccomp` syscall number to
    load it with, and what it covers."""
    program: bytes
    seccomp_nr: int
    denied: Tuple[str, ...]     # the names it denies that exist on this machine
    perf_allowed: bool


def build(daemon_pid: int, allow_perf: bool = False) -> Filter:
    """Build the session filter once, in the daemon. `daemon_pid`: signals to
    it are denied (a session shares the daemon's user)."""
    lib = _lib()
    ctx = lib.seccomp_init(ACT_ALLOW)
    if not ctx:
        raise SeccompError(errno.ENOMEM, "seccomp_init failed")
    try:
        denied = _deny_all(lib, ctx, DENIED + (() if allow_perf else (PERF,)))
        _rule(lib, ctx, _act_errno(errno.EACCES), "socket")   # no new sockets at all
        _rule(lib, ctx, _act_errno(errno.ENOSYS), "clone3")   # flags unreadable: use clone
        for flag in CLONE_NEW_FLAGS:                           # no new namespaces via clone
            _rule(lib, ctx, _act_errno(errno.EPERM), "clone", [(0, CMP_MASKED_EQ, flag, flag)])
        _rule(lib, ctx, _act_errno(errno.EPERM), "prlimit64", [(2, CMP_NE, 0, 0)])
        _deny_signals(lib, ctx, daemon_pid)
        program = _export(lib, ctx)
        nr = lib.seccomp_syscall_resolve_name(b"seccomp")
        if nr < 0:
            raise SeccompError(errno.ENOSYS, "libseccomp has no seccomp syscall on this machine")
        return Filter(program, nr, tuple(denied) + ("socket", "clone3"), allow_perf)
    finally:
        lib.seccomp_release(ctx)


def _deny_signals(lib, ctx, daemon_pid: int) -> None:
    """No signal to the daemon, its process group, or every process the user
    may signal (kill(-1)): a session runs as the daemon's user. The pid is an
    int, compared on its low 32 bits so sign extension does not matter."""
    low = 0xFFFFFFFF
    for target in (daemon_pid, -daemon_pid, -1):
        _rule(lib, ctx, _act_errno(errno.EPERM), "kill",
              [(0, CMP_MASKED_EQ, low, target & low)])
    for name in ("tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open"):
        _rule(lib, ctx, _act_errno(errno.EPERM), name,
              [(0, CMP_MASKED_EQ, low, daemon_pid & low)])


def _deny_all(lib, ctx, names: Sequence[str]) -> List[str]:
    done = []
    for name in names:
        if _rule(lib, ctx, _act_errno(errno.EPERM), name):
            done.append(name)
    return done


def _rule(lib, ctx, action: int, name: str, args=()) -> bool:
    """Add one rule; False when the call does not exist on this machine."""
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr < 0:
        return False
    cmps = (_ArgCmp * max(1, len(args)))(*[_ArgCmp(*a) for a in args])
    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(args), cmps)
    if rc == -errno.EDOM or rc == -errno.EOPNOTSUPP:
        return False     # a pseudo-syscall of another ABI (e.g. fork on aarch64)
    if rc < 0:
        raise SeccompError(-rc, "seccomp_rule_add %s: %s" % (name, os.strerror(-rc)))
    return nr >= 0


def _export(lib, ctx) -> bytes:
    """The BPF program libseccomp wrote, through a pipe (a few hundred bytes)."""
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader:
        try:
            rc = lib.seccomp_export_bpf(ctx, write_end)
        finally:
            os.close(write_end)
        if rc < 0:
            raise SeccompError(-rc, "seccomp_export_bpf: %s" % os.strerror(-rc))
        return reader.read()


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                        ctypes.c_ulong]


def set_no_new_privs() -> None:
    """No execve may gain privileges from now on (setuid bits, file
    capabilities); Landlock and seccomp need it from an unprivileged process."""
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise SeccompError(err, "prctl(PR_SET_NO_NEW_PRIVS): %s" % os.strerror(err))


def load(flt: Filter) -> None:
    """Install the filter on every thread of this process (TSYNC); where the
    seccomp() call itself is filtered (systemd 252's @system-service lacks it)
    or missing, with prctl() on this thread, which is then the only one."""
    if len(flt.program) % 8:
        raise SeccompError(errno.EINVAL, "seccomp program of %d bytes is not whole "
                           "instructions" % len(flt.program))
    buf = ctypes.create_string_buffer(flt.program, len(flt.program))
    prog = _SockFprog(len(flt.program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    ret = _libc.syscall(ctypes.c_long(flt.seccomp_nr), ctypes.c_uint(SECCOMP_SET_MODE_FILTER),
                        ctypes.c_uint(SECCOMP_FILTER_FLAG_TSYNC), ctypes.byref(prog))
    if ret != 0 and ctypes.get_errno() in (errno.EPERM, errno.ENOSYS):
        ret = _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0)
    if ret != 0:
        err = ctypes.get_errno()
        raise SeccompError(err, "seccomp(SET_MODE_FILTER, TSYNC): %s%s"
                           % (os.strerror(err), " (thread %d could not sync)" % ret
                              if ret > 0 else ""))
