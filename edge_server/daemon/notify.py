"""Telling systemd the truth about the daemon's state (sd_notify protocol).

Under `Type=notify` systemd waits for READY=1, shows our STATUS= line in
`systemctl status`, and restarts us when WATCHDOG=1 stops arriving. Outside
systemd (NOTIFY_SOCKET unset) every call is a no-op, so the server calls these
unconditionally. Only the main process may notify (NotifyAccess=main): forked
session children must never call them, so the notifier remembers its pid.
"""
import logging
import os
from typing import Optional

log = logging.getLogger("edge_server.daemon.notify")

try:  # optional extra: tvm-edge-rpc[systemd]
    from systemd import daemon as _sd_daemon
except ImportError:  # pragma: no cover - depends on the install
    _sd_daemon = None


class Notifier:
    """sd_notify messages from the daemon's main process."""

    def __init__(self, socket_path: Optional[str], watchdog_usec: Optional[int]):
        self._socket_path = socket_path
        self._watchdog_usec = watchdog_usec
        self._pid = os.getpid()
        self._enabled = bool(socket_path) and _sd_daemon is not None
        self.last_status = None  # what systemctl status shows now, for logs/tests
        if socket_path and _sd_daemon is None:
            log.warning("NOTIFY_SOCKET=%s is set but systemd-python is not installed: "
                        "cannot send READY/STATUS/WATCHDOG to systemd; install "
                        "'tvm-edge-rpc[systemd]' (needs apt libsystemd-dev pkg-config)",
                        socket_path)

    @classmethod
    def from_env(cls, environ=None) -> "Notifier":
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET") or None, _watchdog_usec(env))

    @property
    def enabled(self) -> bool:
        return self._enabled

    def _send(self, message: str) -> bool:
        if not self._enabled or os.getpid() != self._pid:
            return False
        try:
            return bool(_sd_daemon.notify(message))
        except OSError as err:
            log.warning("sd_notify %r to %s failed: %s", message, self._socket_path, err)
            return False

    def ready(self) -> bool:
        return self._send("READY=1")

    def status(self, text: str) -> bool:
        text = " ".join(str(text).split())  # one line: systemd shows STATUS verbatim
        self.last_status = text
        return self._send("STATUS=" + text)

    def stopping(self) -> bool:
        return self._send("STOPPING=1")

    def reloading(self) -> bool:
        return self._send("RELOADING=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask systemd for `seconds` more from now before it gives up on the
        current start/stop (EXTEND_TIMEOUT_USEC): a --grace longer than the
        unit's TimeoutStopSec is honoured instead of cut short by SIGKILL."""
        if not (isinstance(seconds, (int, float)) and 0 < seconds < float("inf")):
            raise ValueError("extend_timeout needs a positive finite number of seconds, "
                             "got %r" % (seconds,))
        return self._send("EXTEND_TIMEOUT_USEC=%d" % int(round(seconds * 1e6)))

    def watchdog_interval(self) -> Optional[float]:
        """Seconds between pings: half of WATCHDOG_USEC, as sd_watchdog_enabled(3) advises."""
        if not self._watchdog_usec:
            return None
        return self._watchdog_usec / 2e6

    def ping_watchdog(self) -> bool:
        return self._send("WATCHDOG=1")


def _watchdog_usec(env) -> Optional[int]:
    """WATCHDOG_USEC applies to us only when WATCHDOG_PID is unset or ours."""
    raw = env.get("WATCHDOG_USEC")
    if not raw:
        return None
    wd_pid = env.get("WATCHDOG_PID")
    if wd_pid and wd_pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer number of microseconds", raw)
        return None
    return usec if usec > 0 else None
