"""Conditions of a session's cores right now: clocks, heat, throttling, intruders.

A measurement is only as good as the conditions it ran under. This module
takes a snapshot of what the kernel says about the cores a session is pinned
to, so edge_server.session.verdict can compare one taken just before a timed
run with one taken just after. Everything is read through board.sysfs.Reader
under the daemon's root (a fixture tree in tests), as the kernel writes it:

- cpufreq, per policy (cores of a policy share one clock):
  scaling_cur_freq, cpuinfo_max_freq, scaling_max_freq (a cap below
  cpuinfo_max_freq is throttling), scaling_governor, stats/time_in_state
  ("<kHz> <10 ms units>" lines, cpufreq_stats.c) and stats/total_trans;
- every /sys/class/thermal/thermal_zoneN: type, temp (m°C), trip points
  (trip_point_K_temp, trip_point_K_type), and every cooling_deviceN's
  cur_state/max_state (a CPU cooling device above 0 is a clock cap, which
  is how Jetson's and many vendor kernels throttle);
- the Raspberry Pi firmware's get_throttled bits ("%x\\n");
- /proc/stat per-CPU busy and elapsed ticks, of every CPU (the session's
  own cores for intruders, a slot's co-slots for interference), and the
  session's own threads (/proc/self/task/T/{stat,status,sched}): CPU ticks,
  last CPU, involuntary context switches and migrations.

The parts that cannot change during a session (which policy a core belongs
to, cpuinfo_max_freq, zone types, trip points, cooling device types) are
read once by ConditionsReader; a snapshot reads only what moves, so one
costs a few dozen small reads.
"""
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

from edge_server.board.sysfs import Reader

CPU_DIR = "sys/devices/system/cpu"
THERMAL_DIR = "sys/class/thermal"
RPI_THROTTLED = "sys/devices/platform/soc/soc:firmware/get_throttled"
# Trip types at which the kernel starts to slow the chip down; "active"
# trips switch fans on and say nothing about the clock.
SLOWING_TRIPS = ("passive", "hot", "critical")
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Policy:
    """One cpufreq policy as seen in a snapshot (kHz, 10 ms units for time_in_state)."""
    name: str
    cpus: List[int]
    max_khz: Optional[int]                  # cpuinfo_max_freq: what the silicon can do
    cur_khz: Optional[int] = None           # scaling_cur_freq
    cap_khz: Optional[int] = None           # scaling_max_freq: what it is allowed now
    governor: Optional[str] = None
    time_in_state: Optional[Dict[int, int]] = None
    total_trans: Optional[int] = None


@dataclass
class Trip:
    temp_mc: int
    type: str


@dataclass
class Zone:
    name: str                               # thermal_zoneN
    type: str                               # e.g. soc-thermal, cpu-thermal
    temp_mc: Optional[int] = None
    trips: List[Trip] = field(default_factory=list)


@dataclass
class Cooling:
    name: str                               # cooling_deviceN
    type: str                               # e.g. thermal-cpufreq-0, cpufreq-cpu4, Processor
    cur_state: Optional[int] = None
    max_state: Optional[int] = None


@dataclass
class Task:
    """One thread of the session process."""
    ticks: int                              # utime + stime, clock ticks
    processor: Optional[int]                # CPU it last ran on
    nonvoluntary: Optional[int]             # involuntary context switches
    migrations: Optional[int]               # se.nr_migrations (CONFIG_SCHED_DEBUG)


@dataclass
class Snapshot:
    """What the kernel said about a session's cores at one instant."""
    monotonic: float
    cpus: List[int]
    policies: List[Policy]
    no_cpufreq: List[int]                   # session cores without a cpufreq policy
    zones: List[Zone]
    cooling: List[Cooling]
    rpi_throttled: Optional[int]
    cpu_busy_ticks: Optional[Dict[int, int]]  # /proc/stat per CPU: all but idle and iowait
    tasks: Optional[Dict[int, Task]]
    warnings: List[str] = field(default_factory=list)
    cpu_ticks: Optional[Dict[int, int]] = None  # /proc/stat per CPU: every column (elapsed)

    def to_dict(self) -> dict:
        """JSON-ready form (dict keys become strings in JSON; consumers know)."""
        return asdict(self)

    def hottest(self) -> Optional[Zone]:
        zones = [z for z in self.zones if z.temp_mc is not None]
        return max(zones, key=lambda z: z.temp_mc) if zones else None


class ConditionsReader:
    """Snapshots of the conditions of `cpus`, read below `root`.

    Construct once per session (it reads the static parts); call snapshot()
    around every measurement."""

    def __init__(self, root: str, cpus: List[int]):
        self.root = root
        self.cpus = sorted(cpus)
        self.static_warnings: List[str] = []
        reader = Reader(root, self.static_warnings)
        self._policies, self.no_cpufreq = _find_policies(reader, self.cpus)
        self._zones = _find_zones(reader)
        self._cooling = _find_cooling(reader)
        self._has_rpi = reader.exists(RPI_THROTTLED)

    def policy_names(self) -> List[str]:
        return [p.name for _, p in self._policies]

    def snapshot(self) -> Snapshot:
        warnings: List[str] = []
        reader = Reader(self.root, warnings)
        now = time.monotonic()
        busy, elapsed = _read_proc_stat(reader)
        return Snapshot(
            monotonic=now, cpus=list(self.cpus),
            policies=[_read_policy(reader, base, p) for base, p in self._policies],
            no_cpufreq=list(self.no_cpufreq),
            zones=[_read_zone(reader, z) for z in self._zones],
            cooling=[_read_cooling(reader, c) for c in self._cooling],
            rpi_throttled=parse_throttled(reader, RPI_THROTTLED) if self._has_rpi else None,
            cpu_busy_ticks=busy, cpu_ticks=elapsed,
            tasks=_read_tasks(reader),
            warnings=warnings)


# ---- static discovery ---------------------------------------------------------------

def _find_policies(reader: Reader, cpus: List[int]) -> Tuple[list, List[int]]:
    """[(relpath of the policy dir, Policy with static fields)], cores without cpufreq.

    A core's cpufreq dir is a link to cpufreq/policyM on kernels >= 4.6 and a
    directory (or a link to the first core's) on older ones: cores whose dirs
    resolve to the same place share a policy."""
    by_real: Dict[str, Tuple[str, Policy]] = {}
    missing = []
    for cpu in cpus:
        rel = "%s/cpu%d/cpufreq" % (CPU_DIR, cpu)
        if not reader.exists(rel + "/scaling_cur_freq") and not reader.exists(
                rel + "/cpuinfo_max_freq"):
            missing.append(cpu)
            continue
        real = os.path.realpath(reader.path(rel))
        if real in by_real:
            by_real[real][1].cpus.append(cpu)
            continue
        name = os.path.basename(real) if os.path.basename(real).startswith("policy") \
            else "cpu%d" % cpu
        by_real[real] = (rel, Policy(name=name, cpus=[cpu],
                                     max_khz=reader.integer(rel + "/cpuinfo_max_freq")))
    return list(by_real.values()), missing


def _numbered(reader: Reader, prefix: str) -> List[str]:
    names = [n for n in reader.listdir(THERMAL_DIR)
             if n.startswith(prefix) and n[len(prefix):].isdigit()]
    return sorted(names, key=lambda n: int(n[len(prefix):]))


def _find_zones(reader: Reader) -> List[Zone]:
    zones = []
    for name in _numbered(reader, "thermal_zone"):
        base = "%s/%s" % (THERMAL_DIR, name)
        trips = []
        k = 0
        while True:
            temp = reader.integer("%s/trip_point_%d_temp" % (base, k))
            kind = reader.text("%s/trip_point_%d_type" % (base, k))
            if temp is None and kind is None:
                break
            if temp is not None and kind is not None:
                trips.append(Trip(temp, kind))
            k += 1
        zones.append(Zone(name=name, type=reader.text(base + "/type") or name, trips=trips))
    return zones


def _find_cooling(reader: Reader) -> List[Cooling]:
    out = []
    for name in _numbered(reader, "cooling_device"):
        base = "%s/%s" % (THERMAL_DIR, name)
        kind = reader.text(base + "/type") or name
        if is_cpu_cooling(kind):
            out.append(Cooling(name=name, type=kind,
                               max_state=reader.integer(base + "/max_state")))
    return out


def is_cpu_cooling(kind: str) -> bool:
    """Cooling devices that slow the CPU clock: the kernel's cpufreq cooling
    ("thermal-cpufreq-N" before 5.10, "cpufreq-cpuN" after) and ACPI's
    "Processor"; fans and GPU devfreq coolers do not touch the measured cores."""
    low = kind.lower()
    return "cpufreq" in low or low == "processor"


# ---- what moves ---------------------------------------------------------------------

def _read_policy(reader: Reader, base: str, static: Policy) -> Policy:
    return Policy(name=static.name, cpus=static.cpus, max_khz=static.max_khz,
                  cur_khz=_first(reader, base, ("scaling_cur_freq", "cpuinfo_cur_freq")),
                  cap_khz=reader.integer(base + "/scaling_max_freq"),
                  governor=reader.text(base + "/scaling_governor"),
                  time_in_state=_parsed(reader, base + "/stats/time_in_state",
                                        parse_time_in_state),
                  total_trans=reader.integer(base + "/stats/total_trans"))


def _first(reader: Reader, base: str, names) -> Optional[int]:
    """The first of `names` that exists: scaling_cur_freq (what the governor
    set, readable by anyone), else cpuinfo_cur_freq (read from the hardware,
    often root-only; drivers without scaling_cur_freq still have it)."""
    for name in names:
        if reader.exists(base + "/" + name):
            return reader.integer(base + "/" + name)
    return None


def _read_zone(reader: Reader, static: Zone) -> Zone:
    return Zone(name=static.name, type=static.type, trips=static.trips,
                temp_mc=reader.integer("%s/%s/temp" % (THERMAL_DIR, static.name)))


def _read_cooling(reader: Reader, static: Cooling) -> Cooling:
    return Cooling(name=static.name, type=static.type, max_state=static.max_state,
                   cur_state=reader.integer("%s/%s/cur_state" % (THERMAL_DIR, static.name)))


def _parsed(reader: Reader, rel: str, parse):
    """Read `rel` and parse it; garbage -> None plus a warning quoting path and value."""
    text = reader.text(rel, strip=False)
    if text is None:
        return None
    try:
        return parse(text)
    except ValueError as err:
        reader.warnings.append("%s: %s; ignored" % (reader.shown_path(rel), err))
        return None


def parse_throttled(reader: Reader, rel: str) -> Optional[int]:
    """The Raspberry Pi firmware's get_throttled, written "%x\\n" (e.g. "50005")."""
    return _parsed(reader, rel, parse_hex)


def parse_hex(text: str) -> int:
    body = text.strip()
    try:
        return int(body, 16)
    except ValueError:
        raise ValueError("%r is not a hexadecimal number" % body[:40]) from None


def parse_time_in_state(text: str) -> Dict[int, int]:
    """cpufreq_stats' time_in_state: one "<freq kHz> <time in 10 ms>" line per frequency."""
    out = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError("line %r is not '<kHz> <time>'" % line[:40])
        out[int(parts[0])] = int(parts[1])
    return out


def parse_proc_stat(text: str) -> Dict[int, Tuple[int, int]]:
    """Per-CPU (busy, elapsed) clock ticks from /proc/stat. Elapsed is the sum
    of the first eight columns (user nice system idle iowait irq softirq
    steal; guest time is already inside user, so it is left out); busy is
    that minus idle (4th) and iowait (5th). Busy minus the session's own is
    another task on a measured core; busy over elapsed is how busy a co-slot's
    core was."""
    out = {}
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        parts = line.split()
        cpu = parts[0][3:]
        nums = parts[1:9]
        if not cpu.isdigit() or len(nums) < 4 or not all(n.isdigit() for n in nums):
            raise ValueError("line %r is not 'cpuN user nice system idle ...'" % line[:60])
        values = [int(n) for n in nums]
        total = sum(values)
        out[int(cpu)] = (total - values[3] - (values[4] if len(values) > 4 else 0), total)
    return out


def _read_proc_stat(reader: Reader) -> Tuple[Optional[Dict[int, int]], Optional[Dict[int, int]]]:
    """(busy ticks, elapsed ticks) per CPU, both None when /proc/stat cannot be read."""
    ticks = _parsed(reader, "proc/stat", parse_proc_stat)
    if ticks is None:
        return None, None
    return {c: b for c, (b, _) in ticks.items()}, {c: t for c, (_, t) in ticks.items()}


def parse_task_stat(text: str) -> Tuple[int, Optional[int]]:
    """(utime + stime ticks, last CPU) from /proc/PID/task/TID/stat; the
    command name may hold spaces and parentheses, so fields count from the
    last ')'."""
    head, sep, rest = text.rpartition(")")
    fields = rest.split()
    if not sep or len(fields) < 13 or not fields[11].isdigit() or not fields[12].isdigit():
        raise ValueError("%r is not a task stat line" % text[:60])
    cpu = fields[36] if len(fields) > 36 and fields[36].lstrip("-").isdigit() else None
    return int(fields[11]) + int(fields[12]), int(cpu) if cpu is not None else None


def parse_field(text: str, name: str) -> Optional[int]:
    """An integer "name: value" line of /proc status or sched files; None when absent."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            value = value.strip()
            if not value.isdigit():
                raise ValueError("%s is %r, not a count" % (name, value[:20]))
            return int(value)
    return None


def _read_tasks(reader: Reader) -> Optional[Dict[int, Task]]:
    tids = [t for t in reader.listdir("proc/self/task") if t.isdigit()]
    if not tids:
        return None
    tasks = {}
    for tid in tids:
        base = "proc/self/task/" + tid
        stat = _parsed(reader, base + "/stat", parse_task_stat)
        if stat is None:        # the thread ended between listdir and read
            continue
        status = _parsed(reader, base + "/status",
                         lambda t: parse_field(t, "nonvoluntary_ctxt_switches"))
        sched = _parsed(reader, base + "/sched", lambda t: parse_field(t, "se.nr_migrations"))
        tasks[int(tid)] = Task(ticks=stat[0], processor=stat[1], nonvoluntary=status,
                               migrations=sched)
    return tasks


def summary(snap: Snapshot) -> dict:
    """The short form for the tracker, edge-client probe and logs: governor
    and current clock per policy, temperature per zone, throttle bits."""
    return {
        "governors": {p.name: p.governor for p in snap.policies},
        "cur_mhz": {p.name: _mhz(p.cur_khz) for p in snap.policies},
        "max_mhz": {p.name: _mhz(p.max_khz) for p in snap.policies},
        "temps_c": {z.type: _celsius(z.temp_mc) for z in snap.zones},
        "rpi_throttled": None if snap.rpi_throttled is None else "0x%x" % snap.rpi_throttled,
    }


def _mhz(khz: Optional[int]) -> Optional[int]:
    return None if khz is None else int(round(khz / 1000))


def _celsius(mc: Optional[int]) -> Optional[float]:
    return None if mc is None else round(mc / 1000, 1)
