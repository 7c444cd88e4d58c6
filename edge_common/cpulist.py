"""Linux CPU lists ("0-3,6,8-11"), as sysfs and /proc/*/status write them.

Both sysfs topology files and the `cpus:<list>` thread mode use this format,
so one parser serves both and refuses anything the kernel would not write.
"""
from typing import Iterable, List

# Refuse lists that would expand to absurd sizes (a hostile "0-999999999").
MAX_CPU_ID = 4095


class CpuListError(ValueError):
    """A string that is not a Linux CPU list."""


def parse_cpulist(text: str, repeats: bool = True) -> List[int]:
    """Parse "0-3,6" into [0, 1, 2, 3, 6]: sorted, without duplicates.

    An empty or whitespace-only string is the empty set (sysfs writes an empty
    line for e.g. `isolated` with nothing isolated). repeats=False refuses a
    CPU named twice ("1,1", "0-3,2"): the kernel never writes one, and in a
    thread mode it is a mistake (one thread per CPU), not a request.
    """
    if not isinstance(text, str):
        raise CpuListError("CPU list must be a string, got %r" % (text,))
    body = text.strip()
    if not body:
        return []
    cpus = set()
    for part in body.split(","):
        part = part.strip()
        if not part:
            raise CpuListError("empty item in CPU list %r" % text)
        lo_s, dash, hi_s = part.partition("-")
        lo = _cpu_id(lo_s, text)
        hi = _cpu_id(hi_s, text) if dash else lo
        if hi < lo:
            raise CpuListError("range %r runs backwards in CPU list %r; write '%d-%d'"
                               % (part, text, hi, lo))
        for cpu in range(lo, hi + 1):
            if cpu in cpus and not repeats:
                raise CpuListError("CPU list %r names CPU %d twice; list each CPU once"
                                   % (text, cpu))
            cpus.add(cpu)
    return sorted(cpus)


def _cpu_id(token: str, whole: str) -> int:
    token = token.strip()
    if not token.isascii() or not token.isdigit():
        raise CpuListError("%r is not a CPU number in CPU list %r" % (token, whole))
    value = int(token)
    if value > MAX_CPU_ID:
        raise CpuListError("CPU %d is beyond the largest CPU id %d in %r"
                           % (value, MAX_CPU_ID, whole))
    return value


def format_cpulist(cpus: Iterable[int]) -> str:
    """Format CPU ids as the kernel does: "0-3,6" (ranges of 2 stay "4-5")."""
    ids = sorted(set(int(c) for c in cpus))
    if not ids:
        return ""
    parts = []
    start = prev = ids[0]
    for cpu in ids[1:] + [None]:
        if cpu is not None and cpu == prev + 1:
            prev = cpu
            continue
        parts.append(str(start) if start == prev else "%d-%d" % (start, prev))
        if cpu is not None:
            start = prev = cpu
    return ",".join(parts)
