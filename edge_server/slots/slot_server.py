"""One slot's listener: the daemon's Server, told it serves a slot.

It differs from a whole-board daemon in three places only:
- its topology document carries `slot` (edge_common.slots), which the session
  child resolves thread modes against, and the tracker shows under edge.slot
  (busy/free is the registration's small `edge_state` update, as without slots);
- it speaks to the supervisor instead of systemd: SupervisorLink sends one
  JSON line per event (ready, status, watchdog, stopping) up a pipe;
- its session processes must not inherit that pipe (a session runs client
  code), so the pipe is among the fds every forked child closes.
"""
import json
import logging
import os
from typing import Optional

from edge_server.daemon.server import Server

log = logging.getLogger("edge_server.slots.slot_server")


class SupervisorLink:
    """The Notifier interface of edge_server.daemon.notify, over a pipe to the
    supervisor. Never blocks: a full pipe drops the event (the next status
    line says it all again)."""

    def __init__(self, fd: int, slot_index: int, watchdog_interval: Optional[float]):
        self.fd = fd
        self.slot_index = slot_index
        self._interval = watchdog_interval
        self._pid = os.getpid()
        self.server: Optional["SlotServer"] = None
        self.last_status: Optional[str] = None
        self.enabled = True

    def send(self, event: str, **fields) -> bool:
        if self.fd < 0 or os.getpid() != self._pid:
            return False
        fields.update(ev=event, slot=self.slot_index)
        line = (json.dumps(fields, separators=(",", ":")) + "\n").encode("utf-8")
        try:
            os.write(self.fd, line)
        except BlockingIOError:
            return False
        except OSError as err:
            log.warning("slot %d: telling the supervisor %s failed: %s", self.slot_index, event,
                        err.strerror)
            self.fd = -1
            return False
        return True

    def ready(self) -> bool:
        port = self.server.port if self.server is not None else None
        return self.send("ready", port=port)

    def status(self, text: str) -> bool:
        self.last_status = " ".join(str(text).split())
        busy = self.server.busy if self.server is not None else False
        return self.send("status", text=self.last_status, busy=busy)

    def stopping(self) -> bool:
        return self.send("stopping")

    def reloading(self) -> bool:
        return self.send("reloading")

    def extend_timeout(self, seconds: float) -> bool:
        return self.send("extend", seconds=float(seconds))

    def watchdog_interval(self) -> Optional[float]:
        return self._interval

    def ping_watchdog(self) -> bool:
        return self.send("watchdog")


class SlotServer(Server):
    """Server for one slot (see the module doc for the three differences)."""

    def __init__(self, *args, link: SupervisorLink, **kwargs):
        super().__init__(*args, notifier=link, **kwargs)
        self.link = link
        link.server = self

    @property
    def busy(self) -> bool:
        """A client is in a session on this slot."""
        return self.slot.busy()

    def _inherited(self, keep) -> list:
        """What a forked session process closes: the daemon's fds, and the pipe to
        the supervisor."""
        fds = list(super()._inherited(keep))
        if self.link.fd >= 0:
            fds.append(self.link.fd)
        return fds
