"""Fake boards whose conditions change: cpufreq policies, thermal zones,
cooling devices, Raspberry Pi throttle bits and /proc counters, written the
way the kernel writes them (formats from cpufreq.c, cpufreq_stats.c,
thermal_sysfs.c, fs/proc/stat.c, fs/proc/array.c), plus helpers that rewrite
them while a kernel runs.

`CondBoard(tmp_path).add_policy(...)` builds the tree; `set_cur`, `set_temp`,
... change it in place as a governor, a sensor or another task would.
"""
import os
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Tuple, Union

from edge_server.board.conditions import parse_proc_stat

CPU = "sys/devices/system/cpu"
THERMAL = "sys/class/thermal"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)   # a reader never sees half a value


def format_time_in_state(table: Dict[int, int]) -> str:
    return "".join("%u %u\n" % (f, t) for f, t in sorted(table.items()))


IOWAIT = 3      # every fake CPU waited 3 ticks on I/O (idle time, as the kernel counts it)


def format_proc_stat(busy: Dict[int, int], idle: Union[int, Dict[int, int]] = 1000) -> str:
    """/proc/stat with `busy` non-idle ticks per CPU (at least 2: irq and
    softirq are 1 each) and `idle` idle ticks (one figure for all, or per CPU);
    each CPU's elapsed ticks are busy + idle + IOWAIT."""
    idles = idle if isinstance(idle, dict) else {c: idle for c in busy}
    lines = ["cpu  %d 0 0 %d 0 0 0 0 0 0" % (sum(busy.values()), sum(idles.values()))]
    for cpu, ticks in sorted(busy.items()):
        # user nice system idle iowait irq softirq steal guest guest_nice
        lines.append("cpu%d %d 0 %d %d %d 1 1 0 0 0" % (cpu, ticks - ticks // 3 - 2, ticks // 3,
                                                        idles[cpu], IOWAIT))
    return "\n".join(lines) + "\nintr 0\nctxt 0\nbtime 0\n"


def format_task_stat(tid: int, comm: str, ticks: int, cpu: int) -> str:
    utime, stime = ticks - ticks // 4, ticks // 4
    fields = ["S", "1", "1", "1", "0", "-1", "4194560", "0", "0", "0", "0", str(utime),
              str(stime), "0", "0", "20", "0", "4", "0", "100", "0", "0", "18446744073709551615"]
    fields += ["0"] * (36 - len(fields)) + [str(cpu), "0", "0", "0", "0", "0"]
    return "%d (%s) %s\n" % (tid, comm, " ".join(fields))


class CondBoard:
    """A writable fake board under `root`."""

    def __init__(self, root):
        self.root = Path(root)

    def p(self, rel: str) -> Path:
        return self.root / rel

    # ---- cpufreq -------------------------------------------------------------------
    def add_policy(self, first: int, cpus: Sequence[int], max_khz: int, cur_khz: int,
                   governor: str = "schedutil", freqs: Iterable[int] = (),
                   stats: bool = True) -> "CondBoard":
        pol = "%s/cpufreq/policy%d" % (CPU, first)
        files = {"related_cpus": "".join("%d " % c for c in cpus) + "\n",
                 "affected_cpus": "".join("%d " % c for c in cpus) + "\n",
                 "cpuinfo_max_freq": "%d\n" % max_khz, "cpuinfo_min_freq": "408000\n",
                 "scaling_max_freq": "%d\n" % max_khz, "scaling_min_freq": "408000\n",
                 "scaling_cur_freq": "%d\n" % cur_khz, "scaling_governor": governor + "\n",
                 "scaling_available_governors": "performance schedutil powersave userspace\n",
                 "scaling_setspeed": "<unsupported>\n"}
        if stats:
            table = {f: 0 for f in (list(freqs) or [408000, max_khz])}
            files["stats/time_in_state"] = format_time_in_state(table)
            files["stats/total_trans"] = "0\n"
        for name, text in files.items():
            write(self.p(pol + "/" + name), text)
        for cpu in cpus:
            link = self.p("%s/cpu%d/cpufreq" % (CPU, cpu))
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.exists():
                link.symlink_to("../cpufreq/policy%d" % first)
        return self

    def policy(self, first: int) -> Path:
        return self.p("%s/cpufreq/policy%d" % (CPU, first))

    def set_cur(self, first: int, khz: int) -> None:
        write(self.policy(first) / "scaling_cur_freq", "%d\n" % khz)

    def set_cap(self, first: int, khz: int) -> None:
        write(self.policy(first) / "scaling_max_freq", "%d\n" % khz)

    def add_time(self, first: int, khz: int, units: int, transitions: int = 1) -> None:
        """Account `units` of 10 ms at `khz` in time_in_state, as cpufreq_stats does."""
        pol = self.policy(first)
        table = {}
        for line in (pol / "stats/time_in_state").read_text().splitlines():
            f, t = line.split()
            table[int(f)] = int(t)
        table[khz] = table.get(khz, 0) + units
        write(pol / "stats/time_in_state", format_time_in_state(table))
        total = int((pol / "stats/total_trans").read_text()) + transitions
        write(pol / "stats/total_trans", "%d\n" % total)

    # ---- thermal -------------------------------------------------------------------
    def add_zone(self, n: int, kind: str, temp_mc: int,
                 trips: Sequence = ((80000, "passive"), (95000, "critical"))) -> "CondBoard":
        base = "%s/thermal_zone%d" % (THERMAL, n)
        write(self.p(base + "/type"), kind + "\n")
        write(self.p(base + "/temp"), "%d\n" % temp_mc)
        write(self.p(base + "/mode"), "enabled\n")
        write(self.p(base + "/policy"), "step_wise\n")
        for k, (t, what) in enumerate(trips):
            write(self.p("%s/trip_point_%d_temp" % (base, k)), "%d\n" % t)
            write(self.p("%s/trip_point_%d_type" % (base, k)), what + "\n")
            write(self.p("%s/trip_point_%d_hyst" % (base, k)), "2000\n")
        return self

    def set_temp(self, n: int, temp_mc: int) -> None:
        write(self.p("%s/thermal_zone%d/temp" % (THERMAL, n)), "%d\n" % temp_mc)

    def add_cooling(self, n: int, kind: str, max_state: int, cur: int = 0) -> "CondBoard":
        base = "%s/cooling_device%d" % (THERMAL, n)
        write(self.p(base + "/type"), kind + "\n")
        write(self.p(base + "/max_state"), "%d\n" % max_state)
        write(self.p(base + "/cur_state"), "%d\n" % cur)
        return self

    def set_cooling(self, n: int, cur: int) -> None:
        write(self.p("%s/cooling_device%d/cur_state" % (THERMAL, n)), "%d\n" % cur)

    def set_rpi_throttled(self, bits: int) -> None:
        write(self.p("sys/devices/platform/soc/soc:firmware/get_throttled"), "%x\n" % bits)

    # ---- /proc ---------------------------------------------------------------------
    def set_proc_stat(self, busy: Dict[int, int],
                      idle: Optional[Dict[int, int]] = None) -> None:
        write(self.p("proc/stat"), format_proc_stat(busy, 1000 if idle is None else idle))

    def run_ticks(self, ticks: Dict[int, Tuple[int, int]]) -> None:
        """Let time pass on each CPU as the kernel accounts it: cpu -> (busy, idle)
        ticks added to what /proc/stat says now (a busy co-slot, an idle one)."""
        now = parse_proc_stat(self.p("proc/stat").read_text())
        busy = {c: b for c, (b, _) in now.items()}
        idle = {c: t - b - IOWAIT for c, (b, t) in now.items()}
        for cpu, (more_busy, more_idle) in ticks.items():
            busy[cpu] = busy.get(cpu, 2) + more_busy
            idle[cpu] = idle.get(cpu, 0) + more_idle
        self.set_proc_stat(busy, idle)

    def set_task(self, tid: int, ticks: int, cpu: int, nonvoluntary: int = 0,
                 migrations: Optional[int] = 0, comm: str = "python3") -> None:
        base = "proc/self/task/%d" % tid
        write(self.p(base + "/stat"), format_task_stat(tid, comm, ticks, cpu))
        write(self.p(base + "/status"), "Name:\t%s\nState:\tS (sleeping)\n"
              "voluntary_ctxt_switches:\t5\nnonvoluntary_ctxt_switches:\t%d\n"
              % (comm, nonvoluntary))
        if migrations is not None:
            write(self.p(base + "/sched"), "%s (%d, #threads: 1)\n%s\nse.exec_start    :  1.0\n"
                  "se.nr_migrations                             :                    %d\n"
                  % (comm, tid, "-" * 67, migrations))


def rk3399_conditions(root) -> CondBoard:
    """An RK3399 at rest: A53s (policy0) and A72s (policy4) at full clock
    under schedutil, soc-thermal and gpu-thermal at 45/43 °C with RK3399's
    trip points, CPU cooling devices idle, 2 idle session threads."""
    board = CondBoard(root)
    board.add_policy(0, [0, 1, 2, 3], 1416000, 1416000,
                     freqs=[408000, 600000, 816000, 1008000, 1200000, 1416000])
    board.add_policy(4, [4, 5], 1800000, 1800000,
                     freqs=[408000, 600000, 816000, 1008000, 1200000, 1416000, 1608000, 1800000])
    board.add_zone(0, "soc-thermal", 45000, trips=((70000, "passive"), (85000, "passive"),
                                                   (115000, "critical")))
    board.add_zone(1, "gpu-thermal", 43000, trips=((70000, "passive"), (85000, "passive"),
                                                   (115000, "critical")))
    board.add_cooling(0, "thermal-cpufreq-0", 5)
    board.add_cooling(1, "thermal-cpufreq-1", 7)
    board.set_proc_stat({c: 1000 for c in range(6)})
    board.set_task(100, 50, 4)
    board.set_task(101, 40, 5)
    return board


def this_machine_conditions(root) -> CondBoard:
    """This 2-CPU machine's fixture given the conditions of a board: one
    policy for cpus 0-1 (1416 MHz top, schedutil) and RK3399's thermal zones,
    cooling devices and /proc counters, so kernels built here load on it."""
    board = CondBoard(root)
    board.add_policy(0, [0, 1], 1416000, 1416000,
                     freqs=[408000, 600000, 816000, 1008000, 1200000, 1416000])
    board.add_zone(0, "soc-thermal", 45000, trips=((70000, "passive"), (85000, "passive"),
                                                   (115000, "critical")))
    board.add_zone(1, "gpu-thermal", 43000, trips=((70000, "passive"), (85000, "passive"),
                                                   (115000, "critical")))
    board.add_cooling(0, "thermal-cpufreq-0", 5)
    board.set_proc_stat({0: 1000, 1: 1000})
    board.set_task(100, 50, 0)
    board.set_task(101, 40, 1)
    return board
