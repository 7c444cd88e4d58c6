"""The one-line STATUS systemd shows: what the daemon does, its tracker, its counts.

`systemctl status edge-server` is the first thing an operator reads, so the
line says whether a client is being served and in which thread mode, whether
the tracker knows us (and the last error if not), and how sessions ended.
It is sent only when it changes.
"""
from typing import Callable, Optional


def status_line(*, stopping: bool, serving: Optional[str], mode: Optional[str],
                port: Optional[int], key: str, registration, ok: int, failed: int,
                sandbox: Optional[str] = None) -> str:
    """`serving`/`mode`: the peer in a session and its effective mode, or None;
    `registration`: the TrackerRegistration, or None for direct connections."""
    parts = []
    if stopping:
        parts.append("stopping" + (", waiting for the session of %s" % serving if serving else ""))
    elif serving is not None:
        parts.append("serving %s in mode %s" % (serving, mode))
    else:
        parts.append("idle on port %s" % port)
    reg = registration
    if reg is not None and not stopping:
        if reg.registered or (reg.connected and serving is not None):
            parts.append("registered as key %s at tracker %s" % (key, reg.name))
        elif reg.connected:
            parts.append("registering as key %s at tracker %s" % (key, reg.name))
        elif reg.attempts:
            parts.append("waiting for tracker %s (attempt %d, last error: %s)"
                         % (reg.name, reg.attempts, reg.last_error))
        else:
            parts.append("connecting to tracker %s" % reg.name)
    elif reg is None:
        parts.append("direct connections with key %s" % (key or "''"))
    parts.append("sessions: %d ok, %d failed" % (ok, failed))
    if sandbox:
        parts.append("sandbox: " + sandbox)
    return "; ".join(parts)


class StatusBoard:
    """Sends a status text to systemd only when it differs from the last one."""

    def __init__(self, send: Callable[[str], None]):
        self._send = send
        self.text: Optional[str] = None

    def show(self, text: str) -> None:
        if text != self.text:
            self.text = text
            self._send(text)
