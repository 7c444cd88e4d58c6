"""Where the daemon's log lines go: journald under systemd, stderr otherwise.

Under systemd, structured fields (PEER, THREAD_MODE, EXIT_STATUS, passed as
`extra=`) become journal fields, so `journalctl -u edge-server PEER=...`
finds one host's sessions. On stderr they are appended as key=value.
"""
import logging
import os
import sys

FIELDS = ("PEER", "THREAD_MODE", "EXIT_STATUS", "SESSION_PID", "TRACKER", "KEY",
          "VERDICT", "VERDICT_REASONS", "GOVERNOR", "TEMPS_C")

try:  # optional extra: tvm-edge-rpc[systemd]
    from systemd.journal import JournalHandler as _JournalHandler
except ImportError:  # pragma: no cover - depends on the install
    _JournalHandler = None


class _FieldsFormatter(logging.Formatter):
    """Stderr lines: time, level, logger, message, then the structured fields."""

    def format(self, record):
        line = super().format(record)
        extras = ["%s=%s" % (k.lower(), getattr(record, k)) for k in FIELDS if hasattr(record, k)]
        return line + (" [" + " ".join(extras) + "]" if extras else "")


def under_journald(environ=None) -> bool:
    """True when stderr is connected to journald (JOURNAL_STREAM names our stderr)."""
    env = os.environ if environ is None else environ
    stream = env.get("JOURNAL_STREAM")
    if not stream:
        return False
    try:
        dev, ino = (int(x) for x in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(silent: bool = False, verbose: bool = False) -> logging.Handler:
    """Configure the root logger once; returns the handler it installed."""
    level = logging.DEBUG if verbose else (logging.WARNING if silent else logging.INFO)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    if _JournalHandler is not None and under_journald():
        handler = _JournalHandler(SYSLOG_IDENTIFIER="edge-server")
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_FieldsFormatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level)
    # TVM's own rpc logger is chatty at INFO; keep it to warnings unless verbose.
    logging.getLogger("RPCServer").setLevel(logging.DEBUG if verbose else logging.WARNING)
    return handler
