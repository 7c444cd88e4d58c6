"""--lock-clocks: the daemon holds its sessions' cpufreq policies at one clock, and gives them back.

A governor that ramps (schedutil, ondemand) makes the first repeats of a
measurement slower than the rest; locking the clock removes that. `max` sets
the governor to performance with scaling_max_freq at cpuinfo_max_freq; a
frequency in kHz sets the governor to performance with scaling_min_freq =
scaling_max_freq = the highest frequency the policy offers at or below it.

Why the daemon and not the session: the daemon is never sandboxed, so the
session's Landlock rules keep cpufreq read-only, and the state that lets a
later daemon restore after a SIGKILL is written by the process that outlives
the session. Before it hands a client to a session, the daemon locks every
policy covering a core the session may use (its slot's cores under --slots,
else every online core), so a mode change inside the session never meets an
unlocked policy; it tells the session the held clocks (session/clocks.py);
it releases them when it reaps the session, whatever ended it.

Slots share policies (two 1-core slots in one cluster), and slot servers are
separate processes, so a policy has holders: one state file per policy
(<state dir>/clock-lock-<policy>.json) records the ORIGINAL settings, the
held clock and the holders (daemon pid + its start time + the session's key),
read and rewritten under an fcntl.flock of <state dir>/.lock. The first
holder saves the originals before any write; the last one to go restores
them. A holder whose daemon is gone (pid dead or reused: the start time
differs) is dropped by whoever looks next, by `sweep` at every daemon start
and stop, and the policy is restored once no live holder remains. A state
file from another boot is dropped unrestored: the kernel reset the policy.

The state is written without fsync: it must survive the daemon's death,
which the page cache does; a power loss resets cpufreq anyway.

Writing needs permission for exactly these files
(deploy/tmpfiles.d/edge-server-clocks.conf); without it the daemon refuses
--lock-clocks at start with a line that says which file and what to do. A
lock that fails later (EACCES, EBUSY, a value the driver rejects) leaves
that policy as it was, is logged with the path and the error, and the
session runs unlocked there; its verdicts say why.
"""
import contextlib
import fcntl
import json
import logging
import os
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from edge_common.oserror import describe
from edge_common.slots import slot_cpus
from edge_common.topology import as_topology
from edge_server.board.sysfs import Reader
from edge_server.session.clocks import HeldClocks
from edge_server.slots.calibrate import boot_id

log = logging.getLogger("edge_server.daemon.clock_lock")

POLICY_DIR = "sys/devices/system/cpu/cpufreq"
WRITTEN = ("scaling_governor", "scaling_max_freq", "scaling_min_freq")
STATE_PREFIX = "clock-lock-"
LOCK_FILE = ".lock"
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
    """Names of the board's cpufreq policies (policy0, policy4, ...)."""
    return [n for n in Reader(root).listdir(POLICY_DIR)
            if n.startswith("policy") and n[6:].isdigit()]


def covering(root: str, cpus: Sequence[int]) -> List[str]:
    """The policies whose related_cpus include one of `cpus`."""
    reader, wanted = Reader(root), set(cpus)
    return [n for n in policies(root)
            if wanted & set(reader.cpu_numbers("%s/%s/related_cpus" % (POLICY_DIR, n)) or ())]


def session_cpus(topology: dict) -> List[int]:
    """Every core a session may use: its slot's, else every usable core."""
    return slot_cpus(topology) or as_topology(topology).usable_cpus()


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
            rel = "%s/%s/%s" % (POLICY_DIR, pol, name)
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


class ClockKeeper:
    """The clock lock of one daemon (or one slot server): holds policies per session key."""

    def __init__(self, root: str, state_dir: str, how: LockHow):
        self.root, self.state_dir, self.how = root, state_dir, how
        self._held: Dict[str, List[str]] = {}      # session key -> policies it holds

    def hold(self, key: str, cpus: Sequence[int]) -> HeldClocks:
        """Lock every policy covering `cpus` for the session `key`; what is held
        and, per policy that could not be locked, why (logged here). Never raises:
        a session runs unlocked rather than not at all."""
        khz: Dict[str, int] = {}
        failed: Dict[str, str] = {}
        names = covering(self.root, cpus)
        try:
            with _flocked(self.state_dir):
                for name in names:
                    try:
                        khz[name] = self._hold_one(name, key)
                    except ClockLockError as err:
                        failed[name] = "clock lock failed: %s" % err
                    except OSError as err:      # the state file
                        failed[name] = "clock lock failed: %s" % _os_error(err)
        except OSError as err:                  # the state dir or its flock
            for name in names:
                if name not in khz:
                    failed[name] = "clock lock failed: %s" % _os_error(err)
        for line in sorted(set(failed.values())):
            log.error("clocks: %s; the session runs unlocked there", line)
        self._held[key] = sorted(khz)
        return HeldClocks(khz, failed)

    def _hold_one(self, name: str, key: str) -> int:
        state_path = _state_path(self.state_dir, name)
        state = _live_state(state_path)
        me = _holder(key)
        if state is not None and state["holders"]:      # another session holds it: join
            state["holders"].append(me)
            _write_state(state_path, state)
            return int(state["khz"])
        rel = "%s/%s" % (POLICY_DIR, name)
        reader = Reader(self.root)
        # a dead holder's state keeps the true originals: the policy is still locked
        saved = state["saved"] if state is not None else _read_saved(reader, rel, name)
        khz = self._target(reader, rel, name)
        path = os.path.realpath(reader.path(rel))
        _write_state(state_path, {"path": path, "saved": saved, "khz": khz,
                                  "boot": boot_id(), "holders": [me]})
        try:
            _apply(path, khz, self.how == "max", reader.text(rel + "/cpuinfo_min_freq")
                   or saved["scaling_min_freq"])
        except ClockLockError:
            # no holder: if putting it back fails too, the next sweep tries again
            _write_state(state_path, {"path": path, "saved": saved, "khz": khz,
                                      "boot": boot_id(), "holders": []})
            _restore(state_path, path, saved)
            raise
        log.info("clocks: locked %s at %d kHz (was %s, %s-%s kHz)", path, khz,
                 saved["scaling_governor"], saved["scaling_min_freq"], saved["scaling_max_freq"])
        return khz

    def _target(self, reader: Reader, rel: str, name: str) -> int:
        top = reader.integer(rel + "/cpuinfo_max_freq")
        if top is None:
            raise ClockLockError("%s: no cpuinfo_max_freq" % reader.shown_path(rel))
        if self.how == "max":
            return top
        listed = reader.text(rel + "/scaling_available_frequencies") or ""
        offered = [int(f) for f in listed.split() if f.isdigit()]
        low = reader.integer(rel + "/cpuinfo_min_freq") or 0
        fits = [f for f in offered if f <= self.how] if offered else (
            [min(self.how, top)] if self.how >= low else [])
        if not fits:
            raise ClockLockError("--lock-clocks %d: %s offers nothing at or below it (%s kHz)"
                                 % (self.how, name, " ".join(map(str, offered)) or
                                    "%d-%d" % (low, top)))
        return max(fits)

    def release(self, key: str) -> List[str]:
        """The session `key` is gone: drop it as a holder, restore each policy it
        was the last live holder of; error lines (logged)."""
        names = self._held.pop(key, [])
        if not names:
            return []
        errors: List[str] = []
        try:
            with _flocked(self.state_dir):
                for name in names:
                    errors += _drop_holders(_state_path(self.state_dir, name),
                                            lambda h: h.get("pid") == os.getpid()
                                            and h.get("key") == key)
        except OSError as err:
            errors.append("clocks: cannot release %s: %s" % (", ".join(names), _os_error(err)))
            log.error("%s", errors[-1])
        return errors

    def release_all(self) -> List[str]:
        """The daemon stops: release whatever its sessions still hold."""
        errors: List[str] = []
        for key in list(self._held):
            errors += self.release(key)
        return errors


def sweep(state_dir: str) -> List[Tuple[str, List[str]]]:
    """Drop every holder whose daemon is gone and restore each policy left with
    none (daemon start and stop); [(state file, error lines)] of those restored."""
    done = []
    names = sorted(n for n in _listdir(state_dir)
                   if n.startswith(STATE_PREFIX) and n.endswith(".json"))
    if not names:
        return done
    try:
        with _flocked(state_dir):
            for name in names:
                path = os.path.join(state_dir, name)
                if os.path.exists(path):
                    errors = _drop_holders(path, lambda h: False)
                    if errors or not os.path.exists(path):
                        done.append((path, errors))
    except OSError as err:
        done.append((state_dir, ["clocks: cannot sweep %s" % _os_error(err)]))
        log.error("%s", done[-1][1][0])
    return done


def _os_error(err: OSError) -> str:
    """"<file>: <OS error>" for a log line or a verdict."""
    return "%s: %s" % (err.filename, describe(err)) if err.filename else describe(err)


# ---- the state files ------------------------------------------------------------------

def _state_path(state_dir: str, name: str) -> str:
    return os.path.join(state_dir, STATE_PREFIX + name + ".json")


@contextlib.contextmanager
def _flocked(state_dir: str) -> Iterator[None]:
    """Exclusive use of the state files, across the slot servers of one board."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(state_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)     # closing the only descriptor releases the flock


def _write_state(path: str, state: dict) -> None:
    """Atomically: a reader (or a daemon killed mid-write) never sees half of it."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


def _load(path: str) -> Optional[dict]:
    """The state file, or None if it is missing; unreadable ones are removed (logged)."""
    try:
        with open(path) as f:
            state = json.load(f)
        if not (isinstance(state, dict) and isinstance(state.get("path"), str)
                and isinstance(state.get("saved"), dict)
                and isinstance(state.get("holders"), list)):
            raise ValueError("not a clock-lock state (path, saved, holders)")
        return state
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        log.error("clocks: unreadable state file %s: %s; removed, the policy it names is "
                  "not restored", path, describe(err))
        _unlink(path)
        return None


def _live_state(path: str) -> Optional[dict]:
    """The state with dead holders dropped; None if missing or from another boot."""
    state = _load(path)
    if state is None:
        return None
    if state.get("boot") != boot_id():
        log.info("clocks: %s is from another boot; dropped (the kernel reset %s)", path,
                 state["path"])
        _unlink(path)
        return None
    state["holders"] = [h for h in state["holders"] if isinstance(h, dict) and _alive(h)]
    return state


def _drop_holders(path: str, gone: Callable[[dict], bool]) -> List[str]:
    """Remove the holders `gone` names and the dead ones; restore when none is left."""
    state = _live_state(path)
    if state is None:
        return []
    state["holders"] = [h for h in state["holders"] if not gone(h)]
    if state["holders"]:
        _write_state(path, state)
        return []
    return _restore(path, state["path"], state["saved"])


def _holder(key: str) -> dict:
    return {"pid": os.getpid(), "started": _start_time(os.getpid()), "key": key}


def _alive(holder: dict) -> bool:
    pid, started = holder.get("pid"), holder.get("started")
    if type(pid) is not int or pid <= 0:
        return False
    now = _start_time(pid)
    return now is not None and (started is None or now == started)


def _start_time(pid: int) -> Optional[int]:
    """Field 22 of /proc/PID/stat (start time in ticks since boot); None for a
    zombie or a process that is gone. With the pid it names one process,
    even after the pid is reused."""
    text = Reader("/").text("proc/%d/stat" % pid)
    fields = text.rpartition(")")[2].split() if text else []
    if len(fields) < 20 or fields[0] in ("Z", "X") or not fields[19].isdigit():
        return None
    return int(fields[19])


# ---- the policy files -------------------------------------------------------------------

def _read_saved(reader: Reader, rel: str, name: str) -> Dict[str, str]:
    warnings: List[str] = []
    reader = Reader(reader.root, warnings)
    saved = {f: reader.text(rel + "/" + f) for f in WRITTEN}
    missing = [f for f, v in saved.items() if v is None]
    if missing:
        raise ClockLockError("; ".join(warnings) or "%s: missing"
                             % reader.shown_path(rel + "/" + missing[0]))
    return saved


def _apply(policy: str, khz: int, top: bool, lowest: str) -> None:
    """Performance governor held at `khz` (only capped there with top=True)."""
    _write(policy, "scaling_min_freq", lowest)
    _write(policy, "scaling_max_freq", str(khz))
    if not top:
        _write(policy, "scaling_min_freq", str(khz))
    _write(policy, "scaling_governor", "performance")


def _write(policy: str, name: str, value: str) -> None:
    path = os.path.join(policy, name)
    try:
        with open(path, "w") as f:
            f.write(value + "\n")
    except OSError as err:
        raise ClockLockError("%s: %s" % (path, describe(err))) from None


def _restore(state_path: str, policy: str, saved: dict) -> List[str]:
    """Put the saved settings back, then remove the state; error lines (logged).
    Only what differs is written (a file the lock could not change is not
    touched); the state stays where a write failed, so the next sweep tries again."""
    errors = []
    for name, value in _restore_writes(policy, saved):
        try:
            _write(policy, name, value)
        except ClockLockError as err:
            errors.append("clocks: cannot restore %s to %s: %s" % (name, value, err))
    if not errors:
        _unlink(state_path)
        log.info("clocks: restored %s to %s, %s-%s kHz", policy, saved.get("scaling_governor"),
                 saved.get("scaling_min_freq"), saved.get("scaling_max_freq"))
    for line in errors:
        log.error("%s", line)
    return errors


def _restore_writes(policy: str, saved: dict) -> List[Tuple[str, str]]:
    """(file, value) to write, in order: the limits through the lowest clock (so
    a max below the current min is accepted), then the governor."""
    reader = Reader("/")
    now = {n: reader.text(os.path.join(policy, n)) for n in WRITTEN}
    writes = []
    if any(saved.get(n) is not None and now[n] != saved[n]
           for n in ("scaling_min_freq", "scaling_max_freq")):
        lowest = reader.text(os.path.join(policy, "cpuinfo_min_freq"))
        writes += [("scaling_min_freq", lowest),
                   ("scaling_max_freq", saved.get("scaling_max_freq")),
                   ("scaling_min_freq", saved.get("scaling_min_freq"))]
    if saved.get("scaling_governor") is not None and \
            now["scaling_governor"] != saved["scaling_governor"]:
        writes.append(("scaling_governor", saved["scaling_governor"]))
    return [(n, v) for n, v in writes if v is not None]


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _listdir(path: str) -> List[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
