"""The daemon's flags for measurement verdicts, cooldown and --lock-clocks.

Thresholds come from one table (verdict.Thresholds' fields): each gets a
--verdict-* flag with the dataclass default, so the flags, the defaults and
what a client may override per call never disagree. The daemon also owns the
clock lock (edge_server.daemon.clock_lock): it refuses --lock-clocks at start
where the clocks cannot be written, restores what a SIGKILLed daemon left
locked, locks before each session and restores after it reaps it.
"""
import argparse
import dataclasses
import logging
import math
import os
from typing import Mapping, Optional

from edge_common.topology import as_topology
from edge_server.board.sysfs import Reader
from edge_server.daemon.clock_lock import (ClockKeeper, ClockLockError, check_permitted,
                                           parse_lock, sweep)
from edge_server.session.timed import MeasureSettings
from edge_server.session.verdict import Thresholds

log = logging.getLogger("edge_server.daemon.measure_config")

HELP = {
    "min_clock_ratio": "SUSPECT when a measured core ran below this share of its top (or "
                       "locked) clock",
    "max_slow_share": "SUSPECT when the run spent more than this share of its time_in_state "
                      "below that clock",
    "trip_margin_c": "SUSPECT when a thermal zone came within this many °C of a passive, hot "
                     "or critical trip point",
    "max_rise_c": "SUSPECT when a thermal zone warmed more than this many °C during the run",
    "max_other_ms": "SUSPECT when other tasks took more than this many ms on a measured core...",
    "max_other_share": "...or more than this share of the run, whichever is larger",
    "max_preemptions": "SUSPECT when the session's threads were preempted more often",
    "max_coslot_busy": "with --slots: a co-slot's core busy more than this share of the run "
                       "makes it SUSPECT when this slot's calibrated slowdown is over "
                       "--slot-threshold (UNKNOWN when not calibrated; 1 = never)",
}


class MeasureConfigError(ValueError):
    """A bad verdict/cooldown/clock flag; str() is one line."""


def _flag(name: str) -> str:
    return "--verdict-" + name.replace("_", "-")


def add_flags(parser) -> None:
    group = parser.add_argument_group("measurement verdicts, cooldown, clock lock")
    for f in dataclasses.fields(Thresholds):
        group.add_argument(_flag(f.name), type=float, default=f.default, metavar="N",
                           help="%s (default %s)" % (HELP[f.name], f.default))
    group.add_argument("--cooldown-margin", type=float, default=3.0, metavar="C",
                       help="edge.cooldown waits until the hottest zone is within this many "
                            "°C of its idle level (default 3)")
    group.add_argument("--cooldown-max-wait", type=float, default=60.0, metavar="SECONDS",
                       help="longest edge.cooldown waits (default 60)")
    group.add_argument("--lock-clocks", metavar="max|KHZ",
                       help="hold each session's cpufreq policies at the top clock (max) or at "
                            "a frequency in kHz, restored when the session ends (default: off)")
    group.add_argument("--clock-state", metavar="DIR",
                       help="where clock-lock state and idle temperatures are kept (default "
                            "$STATE_DIRECTORY, else the work root); must survive a restart")


def settings(args: dict, root: Optional[str],
             environ: Optional[Mapping[str, str]] = None) -> MeasureSettings:
    """Parsed args (vars() of the namespace) -> MeasureSettings, or
    MeasureConfigError saying what works."""
    env = os.environ if environ is None else environ
    args = argparse.Namespace(**args)
    values = {}
    for f in dataclasses.fields(Thresholds):
        value = getattr(args, "verdict_" + f.name)
        if math.isnan(value) or value < 0 or (f.name == "min_clock_ratio" and value > 1):
            raise MeasureConfigError("%s %r must be a number >= 0%s" % (
                _flag(f.name), value, " and <= 1 (e.g. 0.95)" if f.name == "min_clock_ratio"
                else ""))
        values[f.name] = int(value) if f.name == "max_preemptions" else value
    for flag, value in (("--cooldown-margin", args.cooldown_margin),
                        ("--cooldown-max-wait", args.cooldown_max_wait)):
        if math.isnan(value) or math.isinf(value) or value < 0:
            raise MeasureConfigError("%s %r must be a number >= 0" % (flag, value))
    lock = None
    if args.lock_clocks is not None:
        try:
            lock = parse_lock(args.lock_clocks)
        except ValueError as err:
            raise MeasureConfigError(str(err)) from None
    state_dir = args.clock_state or env.get("STATE_DIRECTORY", "").split(":")[0] or None
    return MeasureSettings(root=root or "/", thresholds=Thresholds(**values),
                           cooldown_margin_c=args.cooldown_margin,
                           cooldown_max_wait_s=args.cooldown_max_wait, lock_clocks=lock,
                           state_dir=os.path.abspath(state_dir) if state_dir else None)


def resolved(config) -> MeasureSettings:
    """The daemon's MeasureSettings with the state dir settled: --clock-state,
    else $STATE_DIRECTORY, else the work root."""
    measure = config.measure
    return measure if measure.state_dir else dataclasses.replace(
        measure, state_dir=config.work_root)


def at_start(config) -> None:
    """Before the daemon serves: put back what a killed daemon left locked, then
    refuse --lock-clocks (MeasureConfigError) where it cannot work."""
    restore_left_behind(config)
    measure = resolved(config)
    if measure.lock_clocks is not None:
        try:
            check_permitted(measure.root)
        except ClockLockError as err:
            raise MeasureConfigError(str(err)) from None


def restore_left_behind(config) -> None:
    """Restore the clocks a daemon (or slot server) that is gone left locked."""
    _sweep(resolved(config), "a previous daemon left locked")


def clock_keeper(config) -> Optional[ClockKeeper]:
    """The daemon's clock lock under --lock-clocks, else None."""
    measure = resolved(config)
    if measure.lock_clocks is None:
        return None
    return ClockKeeper(measure.root, measure.clock_dir(), measure.lock_clocks)


def at_stop(config, keeper: Optional[ClockKeeper]) -> None:
    """The daemon stops (its sessions reaped): release what it still holds, and
    restore whatever a daemon that is gone left locked."""
    if keeper is not None:
        keeper.release_all()
        _sweep(resolved(config), "were left locked at stop")


def _sweep(measure: MeasureSettings, what: str) -> None:
    for path, errors in sweep(measure.clock_dir()):
        if not errors:
            log.warning("restored clocks %s (%s)", what, path)


def board_conditions(root: str, topology: dict) -> dict:
    """Governors, clocks and temperatures of the whole board now, for the
    tracker's edge info (so `edge-client list` shows a hot or ramping board)."""
    from edge_server.board.conditions import ConditionsReader, summary
    cpus = as_topology(topology).usable_cpus()
    try:
        return summary(ConditionsReader(root, cpus).snapshot())
    except OSError as err:      # the registration must not fail for a sensor
        log.warning("reading board conditions under %s: %s", root, err.strerror)
        return {}


# What a session reads for its conditions, beyond the CPU sysfs and /proc/self
# its sandbox already allows (edge_server.session.sandbox).
_CONDITION_READS = ("/sys/class/thermal", "/sys/devices/platform/soc/soc:firmware", "/proc/stat")


def sandbox_for_verdicts(plan, config):
    """The session sandbox plan, widened to what the verdict reads: thermal
    zones and cooling devices (where their /sys/class/thermal links lead), the
    Raspberry Pi firmware's throttle bits, /proc/stat, a --root fixture tree;
    and read-write the idle temperatures file, created here so the session
    only rewrites it (Landlock lets a session write files, not create them)."""
    if not plan.enabled:
        return plan
    reads = list(_CONDITION_READS)
    thermal = "/sys/class/thermal"
    try:
        reads += [os.path.realpath(os.path.join(thermal, n)) for n in os.listdir(thermal)]
    except OSError:
        pass
    if config.root:
        reads.append(config.root)
    writes = []
    measure = resolved(config)
    zones = [n for n in Reader(measure.root).listdir("sys/class/thermal")
             if n.startswith("thermal_zone")]
    idle = _idle_file(measure) if zones else None   # no zones: nothing to record
    if idle:
        writes.append(idle)
    reads = tuple(p for p in reads if os.path.exists(p) and p not in plan.read_only)
    return dataclasses.replace(plan, read_only=plan.read_only + reads,
                               read_write=plan.read_write + tuple(writes))


def _idle_file(measure: MeasureSettings) -> Optional[str]:
    from edge_server.session.cooldown import IDLE_FILE
    path = os.path.join(measure.state_dir, IDLE_FILE)
    try:
        os.makedirs(measure.state_dir, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    except OSError as err:
        log.warning("cannot create %s for the idle temperatures: %s; cooldown will use "
                    "each session's own readings", path, err.strerror)
        return None
    return path

