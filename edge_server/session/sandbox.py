"""The per-session sandbox: what uploaded code may touch, enforced by the kernel.

A session runs the client's library: remote code execution by design. Before
any of it runs, the session process narrows itself, in this order:

1. no_new_privs: nothing it execs gains privileges;
2. Landlock: read-write only its work dir; read and execute the Python and
   TVM installs and the system's programs and libraries (a stock client's
   `.tar` is linked by g++ on the board); read the CPU sysfs files and
   /proc/self; nothing else. No TCP bind or connect (ABI >= 4), no signals
   or abstract sockets out of the session (ABI >= 6);
3. resource limits (address space, open files, processes, file size) and,
   for a daemon run as root, an empty capability set;
4. seccomp: no new sockets at all, no ptrace, mount, kexec, bpf, modules,
   namespaces, perf_event_open (unless --allow-perf), signals to the daemon.

Landlock covers the thread that enforces it and the threads it creates
later, not threads that already exist, so the sandbox goes on while the
session process is still single-threaded: right after fork, before TVM's
pool exists. The daemon therefore gives a spare session process its work
dir when it forks it, not when the client arrives.

The daemon decides the plan once (`make_plan`: which parts this kernel and
machine support, the seccomp program, the paths); each session process only
applies it (`apply`), so per-session cost is a few system calls.
What a session got is `Applied.description`: "landlock v7 + seccomp",
"seccomp only (kernel lacks landlock)", "off (--sandbox off)", ...
"""
import importlib.util
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from edge_server.session import landlock, limits as limits_mod, seccomp
from edge_server.session.limits import Limits
from edge_server.session.pinning import _tids

MODES = ("auto", "required", "off")

# Trees the session reads and executes from: programs and libraries (g++ and
# its helpers, the dynamic loader, libc, libstdc++).
SYSTEM_TREES = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
# Single files and trees read only.
SYSTEM_READ = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime",
               "/sys/devices/system/cpu", "/dev/urandom", "/dev/random", "/dev/zero")
SYSTEM_READ_WRITE = ("/dev/null",)
# Top-level packages whose sys.path entry the session must be able to read.
PACKAGES = ("edge_server", "edge_common", "tvm", "tvm_ffi", "numpy", "cloudpickle")

RW_FILE = landlock.FS_READ_FILE | landlock.FS_WRITE_FILE | landlock.FS_TRUNCATE
READ = landlock.FS_READ_FILE | landlock.FS_READ_DIR


class SandboxError(RuntimeError):
    """The sandbox cannot be set up as required; str() says what is missing."""


class WorkDirMoved(SandboxError):
    """The work dir was gone before anything was applied: the daemon renamed a
    spare's dir for its client meanwhile (set up again with the new name)."""


@dataclass(frozen=True)
class Plan:
    """What every session of this daemon applies; made once by the daemon."""
    mode: str                               # auto | required | off
    landlock_abi: int = 0                   # 0: none
    seccomp_filter: Optional[seccomp.Filter] = None
    limits: Limits = Limits()
    read_exec: Tuple[str, ...] = ()
    read_only: Tuple[str, ...] = ()
    read_write: Tuple[str, ...] = ()
    lacking: Tuple[str, ...] = ()           # why a part is missing, one phrase each

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def describe(self) -> str:
        if not self.enabled:
            return "off (--sandbox off)"
        return _describe(self.landlock_abi, self.seccomp_filter is not None, self.lacking)

    def info(self) -> dict:
        """What the tracker shows under edge.sandbox."""
        out = {"mode": self.mode, "applied": self.describe()}
        if self.enabled:
            flt = self.seccomp_filter
            out.update(landlock_abi=self.landlock_abi, seccomp=flt is not None,
                       perf_event_open=bool(flt is None or flt.perf_allowed),
                       limits=self.limits.info())
        return out


def _describe(abi: int, has_seccomp: bool, lacking=()) -> str:
    parts = (["landlock v%d" % abi] if abi else []) + (["seccomp"] if has_seccomp else [])
    why = "; ".join(lacking)
    if abi and has_seccomp:
        return " + ".join(parts)
    if parts:
        return "%s only (%s)" % (parts[0], why)
    return "none: %s" % why


def make_plan(mode: str, session_limits: Limits, daemon_pid: int, allow_perf: bool = False,
              load_library: Tuple[str, ...] = (), landlock_abi: Optional[int] = None) -> Plan:
    """Find out what this machine supports and build what sessions apply.
    `--sandbox required` without Landlock and seccomp is a SandboxError."""
    if mode not in MODES:
        raise SandboxError("--sandbox %r: use auto, required or off" % mode)
    if mode == "off":
        return Plan(mode)
    lacking: List[str] = []
    abi, why = landlock.probe() if landlock_abi is None else (landlock_abi, "")
    if abi == 0:
        lacking.append(why or "kernel lacks landlock")
    flt = None
    try:
        flt = seccomp.build(daemon_pid, allow_perf)
    except seccomp.SeccompError as err:
        lacking.append("seccomp unavailable: %s" % err.strerror)
    if mode == "required" and lacking:
        raise SandboxError("--sandbox required, but %s (%s, kernel %s); run with --sandbox "
                           "auto to take what the kernel has, or off"
                           % ("; ".join(lacking), _describe(abi, flt is not None, lacking),
                              os.uname().release))
    read_exec = SYSTEM_TREES + python_trees() + tuple(load_library)
    return Plan(mode, abi, flt, session_limits, _existing(read_exec), _existing(SYSTEM_READ),
                _existing(SYSTEM_READ_WRITE), tuple(lacking))


def python_trees() -> Tuple[str, ...]:
    """The Python install and the sys.path entries holding our packages and
    TVM. Only those: sys.path[0] is the daemon's working directory under
    `python -m`, which may be a home directory."""
    trees = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    for name in PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        path = spec.origin if spec is not None else None
        if path and os.path.isabs(path):
            trees.add(os.path.dirname(os.path.dirname(os.path.abspath(path))))
    return tuple(sorted(t for t in trees if t and os.path.realpath(t) != "/"))


def _existing(paths) -> Tuple[str, ...]:
    seen, out = set(), []
    for path in paths:
        real = os.path.realpath(path)
        if real not in seen and os.path.exists(real):
            seen.add(real)
            out.append(path)
    return tuple(out)


@dataclass
class Applied:
    """What one session got: its description and each part's cost (ms)."""
    description: str
    landlock_abi: int = 0
    seccomp: bool = False
    capabilities_dropped: bool = False
    limits: Dict[str, int] = field(default_factory=dict)
    cost_ms: Dict[str, float] = field(default_factory=dict)
    errors: List[str] = field(default_factory=list)
    threads_at_apply: int = 1
    work_dir_id: Optional[Tuple[int, int]] = None   # (st_dev, st_ino): renames keep the grant

    def grants(self, work_dir: str) -> bool:
        """Whether `work_dir` is the directory this sandbox lets the session write
        (the daemon renames a spare's dir to the session's name: same inode)."""
        if self.work_dir_id is None:
            return True
        try:
            st = os.stat(work_dir)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == self.work_dir_id

    def state(self) -> dict:
        """For edge.thread_state()["sandbox"]."""
        return {"applied": self.description, "landlock_abi": self.landlock_abi,
                "seccomp": self.seccomp, "capabilities_dropped": self.capabilities_dropped,
                "limits": self.limits, "cost_ms": self.cost_ms, "errors": self.errors,
                "nproc_enforced": bool(self.limits.get("processes")) and os.getuid() != 0}


OFF = Applied("off (--sandbox off)")

# capset() changes the calling thread only. With another thread already there
# (qemu-user's own, under emulation) a drop would leave that thread with more
# permitted capabilities than ours, and the kernel's cap_safe_nice() then
# refuses to pin it (EPERM): every thread mode would fail. Keep them, and say so.
_KEPT_CAPABILITIES = ("capabilities: kept; %d threads already ran and capset() drops only "
                      "the calling one, after which pinning the others fails")


def apply(plan: Optional[Plan], work_dir: str) -> Applied:
    """Narrow this process for good. In auto mode a part that fails is left
    out and said so in the description; in required mode it is a
    SandboxError and the session must not serve."""
    if plan is None or not plan.enabled:
        return OFF
    if not work_dir:
        raise SandboxError("the sandbox needs the session's work dir before it starts")
    try:
        dir_fd = os.open(work_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise WorkDirMoved("work dir %s is gone; nothing applied" % work_dir) from None
    try:
        return _apply(plan, work_dir, dir_fd)
    finally:
        os.close(dir_fd)


def _apply(plan: Plan, work_dir: str, dir_fd: int) -> Applied:
    st = os.fstat(dir_fd)
    out = Applied("", threads_at_apply=_thread_count(), work_dir_id=(st.st_dev, st.st_ino))
    _timed(out, "no_new_privs", seccomp.set_no_new_privs)
    if plan.landlock_abi:
        if out.threads_at_apply > 1:
            out.errors.append("landlock: %d threads already ran; it would miss all but one"
                              % out.threads_at_apply)
        elif _timed(out, "landlock", _landlock, plan, work_dir, dir_fd):
            out.landlock_abi = plan.landlock_abi
    out.limits = _timed(out, "rlimits", limits_mod.apply, plan.limits) or {}
    if plan.limits.address_space:
        space = _timed(out, "address_space", limits_mod.limit_address_space,
                       plan.limits.address_space)
        if space:
            out.limits["address_space"] = space
    if os.geteuid() == 0:
        if out.threads_at_apply > 1:
            out.errors.append(_KEPT_CAPABILITIES % out.threads_at_apply)
        else:
            out.capabilities_dropped = bool(_timed(out, "capabilities",
                                                   limits_mod.drop_capabilities))
    if plan.seccomp_filter is not None and _timed(out, "seccomp", seccomp.load,
                                                         plan.seccomp_filter) is not None:
        out.seccomp = True
    enter(work_dir)
    lacking = list(plan.lacking) + out.errors
    out.description = _describe(out.landlock_abi, out.seccomp, lacking)
    if plan.mode == "required" and (out.errors or not (out.landlock_abi and out.seccomp)):
        raise SandboxError("--sandbox required, but this session got %s" % out.description)
    return out


def _timed(out: Applied, part: str, func, *args):
    """Run one part; record its cost, or its error (the result is then None)."""
    start = time.perf_counter()
    try:
        result = func(*args)
    except OSError as err:
        out.errors.append("%s: %s" % (part, err))
        return None
    finally:
        out.cost_ms[part] = round((time.perf_counter() - start) * 1000, 3)
    return True if result is None else result


def _landlock(plan: Plan, work_dir: str, dir_fd: int) -> None:
    rules = landlock.Ruleset(plan.landlock_abi)
    try:
        rules.allow_fd(dir_fd, rules.fs, work_dir)
        rules.allow_all(plan.read_exec, landlock.READ_EXEC)
        rules.allow_all(plan.read_only, READ)
        rules.allow_all(plan.read_write, RW_FILE)
        rules.allow("/proc/self", READ)      # this process's /proc/<pid>: its threads
    except BaseException:
        rules.close()
        raise
    rules.restrict_self()


def enter(work_dir: str) -> None:
    """Temporary files (Python's and g++'s) go to the work dir, the only
    place the session may write; again at serve time, under the name the
    daemon gave the spare's dir."""
    os.environ["TMPDIR"] = work_dir
    tempfile.tempdir = work_dir


def _thread_count() -> int:
    try:
        return len(_tids())
    except OSError:
        return 1
