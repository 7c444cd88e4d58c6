"""The daemon's settings: parsed once from the command line, validated, frozen.

Every mistake a user can make on the command line is found here, before the
daemon binds a port or talks to a tracker, and reported as one line that says
what was wrong and what would work (`ConfigError`).
"""
import argparse
import ipaddress
import math
import os
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Tuple

from edge_server.daemon import measure_config
from edge_server.daemon.workroot import default_work_root
from edge_server.session.timed import MeasureSettings

KEY_RE = re.compile(r"[A-Za-z0-9._-]+")
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*$")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

DEFAULT_PORT = 9090
DEFAULT_PORT_END = 9199


def parse_address(text: str) -> Tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port); ValueError says what is wrong."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError("tracker address %r is not HOST:PORT (e.g. 10.0.0.2:9190)" % text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError("tracker address %r: port %r is not a number" % (text, port_text)) from None
    if not 1 <= port <= 65535:
        raise ValueError("tracker address %r: port %d outside 1..65535" % (text, port))
    if any(c.isspace() for c in host):
        raise ValueError("tracker address %r: host contains whitespace" % text)
    return host, port


class ConfigError(ValueError):
    """A bad setting; str() is one line for the terminal."""


@dataclass(frozen=True)
class Config:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    port_end: int = DEFAULT_PORT_END
    tracker: Optional[Tuple[str, int]] = None
    key: str = ""
    custom_addr: Optional[str] = None
    load_library: Tuple[str, ...] = ()
    silent: bool = False
    verbose: bool = False
    no_fork: bool = False
    default_mode: str = "all"
    root: Optional[str] = None            # fixture topology root; None = this machine
    allow: Tuple[ipaddress._BaseNetwork, ...] = ()   # empty = everyone
    session_timeout_cap: Optional[float] = None
    grace: float = 10.0
    handshake_timeout: float = 5.0
    max_upload_bytes: int = 256 << 20
    max_disk_bytes: int = 1 << 30
    work_root: str = field(default_factory=default_work_root)
    measure: MeasureSettings = MeasureSettings()   # verdicts, cooldown, --lock-clocks

    @property
    def tracker_text(self) -> Optional[str]:
        return "%s:%d" % self.tracker if self.tracker else None

    def allows(self, ip: str) -> bool:
        """Whether a peer address may get past accept(); IPv4-mapped IPv6 counts as IPv4."""
        if not self.allow:
            return True
        try:
            addr = ipaddress.ip_address(ip.split("%")[0])
        except ValueError:
            return False
        mapped = getattr(addr, "ipv4_mapped", None)
        if mapped is not None:
            addr = mapped
        return any(addr in net for net in self.allow)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message):
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edge-server", description=(
        "TVM RPC server for ARM boards: registers with a TVM tracker with its CPU topology, "
        "runs every session in its own process pinned to a thread mode. Flags are a superset "
        "of `python -m tvm.exec.rpc_server`. `edge-server probe --help` for the topology probe."))
    stock = p.add_argument_group("flags of python -m tvm.exec.rpc_server")
    stock.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    stock.add_argument("--port", type=int, default=DEFAULT_PORT,
                       help="first port to try (default %d)" % DEFAULT_PORT)
    stock.add_argument("--port-end", type=int, default=DEFAULT_PORT_END,
                       help="end of the port range, exclusive (default %d)" % DEFAULT_PORT_END)
    stock.add_argument("--tracker", help="tracker address HOST:PORT, e.g. 10.0.0.2:9190")
    stock.add_argument("--key", default="", help="device key clients request, e.g. rk3399 "
                       "(letters, digits, '.', '_', '-'; required with --tracker)")
    stock.add_argument("--custom-addr", help="address to report to the tracker instead of "
                       "the one the tracker sees (for NAT or several interfaces)")
    stock.add_argument("--load-library", help="colon-separated shared libraries every "
                       "session loads first (RTLD_GLOBAL)")
    stock.add_argument("--silent", action="store_true", help="log warnings and errors only")
    stock.add_argument("--no-fork", action="store_true", help="accepted for compatibility; "
                       "sessions are still forked children (the listener never initialises "
                       "GPU compilers, so fork is safe, and a fresh process per session would "
                       "cost 0.3 s each)")
    p.add_argument("--default-mode", default="all", metavar="MODE",
                   help="cores a session gets when the client never asks (default all; "
                        "all | <class> | <class>:<n> | cpus:<list>)")
    p.add_argument("--root", metavar="DIR", help="read the CPU topology from a fixture tree "
                   "instead of / (tests and demos)")
    p.add_argument("--allow", action="append", default=[], metavar="CIDR",
                   help="only accept clients from this network (repeatable; default: anyone), "
                        "e.g. --allow 10.0.0.0/24 --allow 127.0.0.1/32")
    p.add_argument("--session-timeout-cap", type=float, metavar="SECONDS",
                   help="longest a session may run, whatever the client asks (default: no cap)")
    p.add_argument("--grace", type=float, default=10.0, metavar="SECONDS",
                   help="on SIGTERM, how long a running session may finish (default 10)")
    p.add_argument("--handshake-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="close a connection that has not completed the RPC handshake "
                        "by then (default 5)")
    p.add_argument("--max-upload", default="256M", metavar="SIZE",
                   help="largest file a client may upload (default 256M)")
    p.add_argument("--max-disk", default="1G", metavar="SIZE",
                   help="most disk one session's work dir may use (default 1G)")
    p.add_argument("--work-root", metavar="DIR", help="where session work dirs go (default "
                   "$RUNTIME_DIRECTORY or $STATE_DIRECTORY from systemd, else "
                   "<tmp>/edge-server-<uid>)")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    measure_config.add_flags(p)
    return p


def parse_size(text: str, flag: str) -> int:
    match = _SIZE_RE.match(text or "")
    if not match:
        raise ConfigError("%s %r is not a size; use bytes or a number with K, M, G or T "
                          "(e.g. 256M)" % (flag, text))
    value = float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if value < 1:
        raise ConfigError("%s %r must be at least 1 byte" % (flag, text))
    return int(value)


def _seconds(value: Optional[float], flag: str, allow_zero: bool = False) -> Optional[float]:
    if value is None:
        return None
    if math.isnan(value) or math.isinf(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError("%s %r must be a positive number of seconds" % (flag, value))
    return value


def _networks(texts: Sequence[str]) -> tuple:
    nets = []
    for text in texts:
        try:
            nets.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ConfigError("--allow %r is not a network; use CIDR like 10.0.0.0/24 or an "
                              "address like 192.168.1.5" % text) from None
    return tuple(nets)


def _libraries(text: Optional[str]) -> Tuple[str, ...]:
    if not text:
        return ()
    paths = []
    for name in text.split(":"):
        if not name:
            continue
        path = os.path.abspath(name)
        if not os.path.isfile(path):
            raise ConfigError("--load-library %s: no such file (resolved to %s)" % (name, path))
        paths.append(path)
    return tuple(paths)


def parse_args(argv: Sequence[str], environ: Optional[Mapping[str, str]] = None) -> Config:
    """argv -> Config, or ConfigError (one line). --help exits via SystemExit(0)."""
    args = build_parser().parse_args(list(argv))
    if not 1 <= args.port <= 65535:
        raise ConfigError("--port %d outside 1..65535" % args.port)
    if not args.port < args.port_end <= 65536:
        raise ConfigError("--port-end %d must be above --port %d (the range is [port, port-end))"
                          % (args.port_end, args.port))
    tracker = None
    if args.tracker is not None:
        try:
            tracker = parse_address(args.tracker)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if not args.key:
            raise ConfigError("--tracker needs --key: the device key clients will request "
                              "(e.g. --key rk3399)")
    if args.key and not KEY_RE.fullmatch(args.key):
        raise ConfigError("--key %r: use only letters, digits, '.', '_' and '-' (a ':' breaks "
                          "MetaSchedule and the tracker summary, spaces break the handshake)"
                          % args.key)
    if args.root is not None and not os.path.isdir(args.root):
        raise ConfigError("--root %s is not a directory (expected a fixture tree with sys/ "
                          "and proc/)" % args.root)
    if not args.default_mode.strip():
        raise ConfigError("--default-mode is empty; use all, big, little:2, cpus:0-3, ...")
    if args.custom_addr is not None and (not args.custom_addr.strip()
                                         or any(c.isspace() for c in args.custom_addr)):
        raise ConfigError("--custom-addr %r is not a host name or address" % args.custom_addr)
    work_root = args.work_root or default_work_root(environ)
    root = os.path.abspath(args.root) if args.root else None
    try:
        measure = measure_config.settings(args, root, os.path.abspath(work_root), environ)
    except measure_config.MeasureConfigError as err:
        raise ConfigError(str(err)) from None
    return Config(
        host=args.host, port=args.port, port_end=args.port_end, tracker=tracker, key=args.key,
        custom_addr=args.custom_addr, load_library=_libraries(args.load_library),
        silent=args.silent, verbose=args.verbose, no_fork=args.no_fork,
        default_mode=args.default_mode.strip(),
        root=os.path.abspath(args.root) if args.root else None,
        allow=_networks(args.allow),
        session_timeout_cap=_seconds(args.session_timeout_cap, "--session-timeout-cap"),
        grace=_seconds(args.grace, "--grace", allow_zero=True),
        handshake_timeout=_seconds(args.handshake_timeout, "--handshake-timeout"),
        max_upload_bytes=parse_size(args.max_upload, "--max-upload"),
        max_disk_bytes=parse_size(args.max_disk, "--max-disk"),
        work_root=os.path.abspath(work_root), measure=measure,
    )


def check_default_mode(config: Config, topology: dict) -> str:
    """The canonical default mode, or ConfigError if this board cannot meet it."""
    from edge_common.modes import ModeError, resolve
    try:
        return resolve(topology, config.default_mode).mode
    except ModeError as err:
        raise ConfigError("--default-mode: " + " ".join(str(err).split())) from None
