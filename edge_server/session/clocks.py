"""--lock-clocks: hold the session's cpufreq policies at one clock, and always give them back.

A governor that ramps (schedutil, ondemand) makes the first repeats of a
measurement slower than the rest; locking the clock removes that. For each
policy of the session's cores, `max` sets the governor to performance with
scaling_max_freq at cpuinfo_max_freq; a frequency in kHz sets the governor
to performance with scaling_min_freq = scaling_max_freq = the highest
frequency the policy offers at or below it.

What was there before is written to a state file per policy
(<state dir>/clock-lock-<policy>.json, with the absolute policy path and
the owning pid) before anything is changed, and removed after it is put
back. The session restores at its end; the daemon restores after it reaps a
session (whatever killed it) and, at its next start, whatever a SIGKILLed
daemon left behind. Writing needs permission for exactly these files
(deploy/tmpfiles.d/edge-server-clocks.conf); without it the daemon refuses
--lock-clocks at start with a line that says which file and what to do.
"""
import json
import logging
import os
from typing import Callable, Dict, List, Optional, Tuple, Union

from edge_server.board.sysfs import Reader

logger = logging.getLogger("edge_server.session.clocks")

POLICY_DIR = "sys/devices/system/cpu/cpufreq"
WRITTEN = ("scaling_governor", "scaling_max_freq", "scaling_min_freq")
STATE_PREFIX = "clock-lock-"
LockHow = Union[str, int]      # "max" or kHz


class ClockLockError(RuntimeError):
    """--lock-clocks cannot be honoured; str() says why and what would work."""


def parse_lock(text: str) -> LockHow:
    """"max" or a frequency in kHz ("1800000"); ValueError says what works."""
    text = text.strip().lower()
    if text == "max":
        return "max"
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ValueError("--lock-clocks %r: use max (performance governor at the top clock) or a "
                     "frequency in kHz such as 1416000" % text)


def policies(root: str) -> List[str]:
    """Relative paths of the board's cpufreq policy directories."""
    return ["%s/%s" % (POLICY_DIR, n) for n in Reader(root).listdir(POLICY_DIR)
            if n.startswith("policy") and n[6:].isdigit()]


def check_permitted(root: str, access: Callable[[str, int], bool] = os.access) -> None:
    """ClockLockError unless every policy's governor and frequency limits are writable."""
    reader = Reader(root)
    found = policies(root)
    if not found:
        raise ClockLockError("--lock-clocks: no cpufreq policies under %s (this kernel has no "
                             "cpufreq driver); there is no clock to lock, drop the flag"
                             % reader.shown_path(POLICY_DIR))
    for pol in found:
        for name in WRITTEN:
            rel = pol + "/" + name
            if not reader.exists(rel):
                raise ClockLockError("--lock-clocks: %s does not exist; this cpufreq driver "
                                     "cannot be locked" % reader.shown_path(rel))
            if not access(reader.path(rel), os.W_OK):
                raise ClockLockError(
                    "--lock-clocks: %s is not writable by uid %d; install "
                    "deploy/tmpfiles.d/edge-server-clocks.conf (grants group edge-clocks write "
                    "to exactly the governor and frequency limits) and add the unit drop-in "
                    "deploy/edge-server.service.d/lock-clocks.conf, or drop the flag"
                    % (reader.shown_path(rel), os.getuid()))


class ClockLock:
    """The clock lock of one session process."""

    def __init__(self, root: str, state_dir: str, how: LockHow):
        self.root, self.state_dir, self.how = root, state_dir, how
        self.locked: Dict[str, int] = {}     # policy name -> the clock it is held at

    def ensure(self, policy_names: List[str]) -> Dict[str, int]:
        """Lock the named policies not locked yet; {policy: kHz} of all held.
        OSError/ClockLockError leave the policy as it was."""
        for name in policy_names:
            if name not in self.locked:
                self.locked[name] = self._lock_one(name)
        return dict(self.locked)

    def _lock_one(self, name: str) -> int:
        rel = "%s/%s" % (POLICY_DIR, name)
        warnings: List[str] = []
        reader = Reader(self.root, warnings)
        saved = {f: reader.text(rel + "/" + f) for f in WRITTEN}
        if any(v is None for v in saved.values()):
            raise ClockLockError("cannot lock %s: %s" % (name, "; ".join(warnings) or
                                                         "its limits are unreadable"))
        khz = self._target(reader, rel, name)
        path = os.path.realpath(reader.path(rel))
        _save_state(self.state_dir, name, {"owner": os.getpid(), "started": _start_time(os.getpid()),
                                           "path": path, "saved": saved})
        low = reader.text(rel + "/cpuinfo_min_freq") or saved["scaling_min_freq"]
        _write(path, "scaling_min_freq", low)
        _write(path, "scaling_max_freq", str(khz))
        if self.how != "max":
            _write(path, "scaling_min_freq", str(khz))
        _write(path, "scaling_governor", "performance")
        logger.info("clocks: locked %s at %d kHz (was %s, %s-%s kHz)", path, khz,
                    saved["scaling_governor"], saved["scaling_min_freq"], saved["scaling_max_freq"])
        return khz

    def _target(self, reader: Reader, rel: str, name: str) -> int:
        top = reader.integer(rel + "/cpuinfo_max_freq")
        if top is None:
            raise ClockLockError("cannot lock %s: no cpuinfo_max_freq" % name)
        if self.how == "max":
            return top
        offered = [int(f) for f in (reader.text(rel + "/scaling_available_frequencies") or "").split()
                   if f.isdigit()]
        low = reader.integer(rel + "/cpuinfo_min_freq") or 0
        fits = [f for f in offered if f <= self.how] if offered else (
            [min(self.how, top)] if self.how >= low else [])
        if not fits:
            raise ClockLockError("--lock-clocks %d: %s offers nothing at or below it (%s kHz)"
                                 % (self.how, name, " ".join(map(str, offered)) or
                                    "%d-%d" % (low, top)))
        return max(fits)

    def restore(self) -> List[str]:
        """Put back every policy this session locked; messages of what failed."""
        errors = []
        for name in list(self.locked):
            errors += restore_file(os.path.join(self.state_dir, STATE_PREFIX + name + ".json"))
            del self.locked[name]
        return errors


def _write(policy_path: str, name: str, value: str) -> None:
    with open(os.path.join(policy_path, name), "w") as f:
        f.write(value + "\n")


def _save_state(state_dir: str, name: str, state: dict) -> None:
    """Write the state file before touching the policy; a file that is
    already there belongs to another lock, whose saved settings are the
    true originals, so it is kept."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = os.path.join(state_dir, STATE_PREFIX + name + ".json")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())


def restore_file(path: str) -> List[str]:
    """Restore one policy from its state file and remove the file; error lines."""
    try:
        with open(path) as f:
            state = json.load(f)
        policy, saved = state["path"], state["saved"]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as err:
        return ["clocks: unreadable state file %s: %s" % (path, err)]
    errors = []
    for name, value in (("scaling_min_freq", _lowest(policy)),
                        ("scaling_max_freq", saved.get("scaling_max_freq")),
                        ("scaling_min_freq", saved.get("scaling_min_freq")),
                        ("scaling_governor", saved.get("scaling_governor"))):
        if value is None:
            continue
        try:
            _write(policy, name, value)
        except OSError as err:
            errors.append("clocks: cannot restore %s/%s to %s: %s"
                          % (policy, name, value, err.strerror))
    if not errors:
        os.unlink(path)
        logger.info("clocks: restored %s to %s, %s-%s kHz", policy, saved.get("scaling_governor"),
                    saved.get("scaling_min_freq"), saved.get("scaling_max_freq"))
    for line in errors:
        logger.error("%s", line)
    return errors


def _lowest(policy: str) -> Optional[str]:
    try:
        with open(os.path.join(policy, "cpuinfo_min_freq")) as f:
            return f.read().strip()
    except OSError:
        return None


def restore_left_behind(state_dir: str, owner: Optional[int] = None) -> List[Tuple[str, List[str]]]:
    """Restore what sessions left locked: those of `owner` (a reaped session),
    or, with owner None (daemon start), those whose owner no longer runs."""
    try:
        names = sorted(n for n in os.listdir(state_dir) if n.startswith(STATE_PREFIX))
    except OSError:
        return []
    done = []
    for name in names:
        path = os.path.join(state_dir, name)
        pid, started = _owner(path)
        if owner is not None and pid != owner:
            continue
        if owner is None and pid is not None and _alive(pid, started):
            continue
        done.append((path, restore_file(path)))
    return done


def _owner(path: str) -> Tuple[Optional[int], Optional[int]]:
    try:
        with open(path) as f:
            state = json.load(f)
        return int(state["owner"]), state.get("started")
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def _start_time(pid: int) -> Optional[int]:
    """Field 22 of /proc/PID/stat (start time in ticks since boot); None for a
    zombie or a process that is gone. With the pid it names one process,
    even after the pid is reused."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    if not fields or fields[0] in ("Z", "X") or len(fields) < 20:
        return None
    return int(fields[19])


def _alive(pid: int, started: Optional[int]) -> bool:
    now = _start_time(pid)
    return now is not None and (started is None or now == started)
