"""Cooldown by temperature: wait, bounded, until the board is back near idle.

A fixed sleep between measurements (TVM's cooldown_interval_ms) is too long
on a cool board and too short on a hot one. Here the session waits until
the hottest thermal zone is within a margin of that zone's idle level, and
reports how long it waited and whether it got there.

The idle level of a zone is the lowest of its recent readings taken when a
session starts (a client has just arrived at a board that was idle), kept in
a small JSON file in the daemon's state directory so it outlives sessions;
only the last KEEP readings count, so a warmer room ages old ones out.
Without that file (tests, no state dir) the session's own first reading is
the idle level.
"""
import json
import logging
import os
import time
from typing import Callable, Dict, List, Optional

from edge_server.board.conditions import Snapshot

logger = logging.getLogger("edge_server.session.cooldown")

IDLE_FILE = "idle-temps.json"
KEEP = 32
POLL_S = 0.2


class IdleTemps:
    """Recent start-of-session temperatures per zone type (m°C)."""

    def __init__(self, path: Optional[str]):
        self.path = path
        self.readings: Dict[str, List[int]] = self._load()

    def _load(self) -> Dict[str, List[int]]:
        if not self.path:
            return {}
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            if os.path.exists(self.path) and os.path.getsize(self.path) == 0:
                return {}                   # created empty by the daemon
            logger.warning("cooldown: ignoring idle temperatures in %s: %s", self.path, err)
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): [int(t) for t in v if isinstance(t, int)][-KEEP:]
                for k, v in data.items() if isinstance(v, list)}

    def record(self, snap: Snapshot) -> None:
        """Add this session's start readings; a board without thermal zones
        writes nothing (and leaves no file in the state dir)."""
        read = [z for z in snap.zones if z.temp_mc is not None]
        for zone in read:
            self.readings.setdefault(zone.type, []).append(zone.temp_mc)
            self.readings[zone.type] = self.readings[zone.type][-KEEP:]
        if self.path and read:
            self._save()

    def _save(self) -> None:
        """Rewrite the file in place, in one write: under the session sandbox the
        daemon has created it and a session may write it but not create files."""
        data = json.dumps(self.readings).encode()
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.ftruncate(fd, 0)
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as err:
            logger.warning("cooldown: cannot write %s: %s", self.path, err.strerror)

    def idle_mc(self, zone_type: str) -> Optional[int]:
        seen = self.readings.get(zone_type)
        return min(seen) if seen else None


def wait_until_cool(read: Callable[[], Snapshot], idle: IdleTemps, margin_c: float,
                    max_wait_s: float, sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic) -> dict:
    """Poll until every zone is within margin_c of its idle level, at most
    max_wait_s; returns what happened, for the client and the log."""
    start = clock()
    while True:
        snap = read()
        over = _over(snap, idle, margin_c)
        waited = clock() - start
        if over is None:
            return {"waited_s": round(waited, 3), "reached": None,
                    "why": "no readable thermal zone with an idle level: nothing to wait for"}
        zone, temp, target = over
        done = temp <= target
        if done or waited >= max_wait_s:
            return {"waited_s": round(waited, 3), "reached": done, "zone": zone,
                    "temp_c": round(temp / 1000, 1), "target_c": round(target / 1000, 1),
                    "idle_c": round((target - margin_c * 1000) / 1000, 1)}
        sleep(min(POLL_S, max(0.0, max_wait_s - waited)))


def _over(snap: Snapshot, idle: IdleTemps, margin_c: float):
    """(zone type, temp, target) of the zone furthest above its target; None if none is known."""
    worst = None
    for zone in snap.zones:
        base = idle.idle_mc(zone.type)
        if zone.temp_mc is None or base is None:
            continue
        target = base + margin_c * 1000
        if worst is None or zone.temp_mc - target > worst[1] - worst[2]:
            worst = (zone.type, zone.temp_mc, target)
    return worst
