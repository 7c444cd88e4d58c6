"""The project's version and the Python it needs, from one source of truth.

The version is written once, in setup.cfg; an installed copy reads it back
from the package metadata pip recorded, a source checkout run with
PYTHONPATH (no install) reads setup.cfg itself. Both CLIs print it for
--version and the daemon announces it on the tracker, so after a rolling
upgrade `edge-client list` shows which board runs what.
"""
import configparser
import os
import socket
import sys
from typing import Optional

DIST_NAME = "tvm-edge-rpc"
# apache-tvm 0.27.0.post1, the pinned TVM, is published for Python >= 3.10 only.
MIN_PYTHON = (3, 10)
_SETUP_CFG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "setup.cfg")


def version() -> str:
    """"0.1.0", or "unknown" when neither metadata nor setup.cfg says."""
    return _checkout_version() or _installed_version() or "unknown"


def _installed_version() -> Optional[str]:
    try:
        from importlib.metadata import PackageNotFoundError, version as dist_version
    except ImportError:
        return None
    try:
        return dist_version(DIST_NAME)
    except PackageNotFoundError:
        return None


def _checkout_version() -> Optional[str]:
    """The version in the setup.cfg next to this package, when it is a checkout.

    Checked first: a checkout on PYTHONPATH shadows an older installed copy,
    and the code that runs is the checkout's.
    """
    parser = configparser.ConfigParser(interpolation=None)
    try:
        if not parser.read(_SETUP_CFG, encoding="utf-8"):
            return None
    except configparser.Error:
        return None
    if parser.get("metadata", "name", fallback=None) != DIST_NAME:
        return None
    return parser.get("metadata", "version", fallback=None)


def version_line(prog: str) -> str:
    """What `PROG --version` prints: program, version, Python."""
    return "%s %s (%s, Python %s)" % (prog, version(), DIST_NAME,
                                      ".".join(map(str, sys.version_info[:3])))


def python_refusal(prog: str, info=None) -> Optional[str]:
    """The message refusing an interpreter older than MIN_PYTHON, else None."""
    info = tuple(sys.version_info[:3] if info is None else info)
    if info[:2] >= MIN_PYTHON:
        return None
    need = ".".join(map(str, MIN_PYTHON))
    return ("%s: error: Python %s is too old; %s needs Python >= %s (the pinned "
            "apache-tvm 0.27 wheels exist for 3.10+ only: Debian 12, Ubuntu 22.04, "
            "Raspberry Pi OS Bookworm or newer), or install a newer python3 and "
            "reinstall with deploy/install.sh --python /usr/bin/python3.11"
            % (prog, ".".join(map(str, info)), DIST_NAME, need))


def identity() -> dict:
    """Fields the daemon adds to its edge info on the tracker."""
    return {"version": version(), "hostname": socket.gethostname()}
