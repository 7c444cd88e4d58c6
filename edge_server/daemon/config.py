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
from typing import Callable, Mapping, Optional, Sequence, Tuple

from edge_common.address import parse_address
from edge_common.version import version_line
from edge_server.daemon import measure_config
from edge_server.daemon.workroot import default_work_root
from edge_server.session.timed import MeasureSettings
from edge_server.session.limits import Limits, default_address_space
from edge_server.slots.plan import SLOTS_HELP, check_cache_dir, check_slots, check_threshold

KEY_RE = re.compile(r"[A-Za-z0-9._-]+")
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(i?[bB])?\s*$")
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

class ConfigError(ValueError):
    """A bad setting; str() is one line for the terminal."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message):
        raise ConfigError(message)


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


def _seconds_or_zero(value: Optional[float], flag: str) -> Optional[float]:
    return _seconds(value, flag, allow_zero=True)


def _port(value: int, flag: str) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError("%s %d outside 1..65535" % (flag, value))
    return value


def _networks(texts: Sequence[str], flag: str = "--allow") -> tuple:
    nets = []
    for text in texts:
        try:
            nets.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ConfigError("%s %r is not a network; use CIDR like 10.0.0.0/24 or an "
                              "address like 192.168.1.5" % (flag, text)) from None
    return tuple(nets)


def _libraries(text: Optional[str], flag: str = "--load-library") -> Tuple[str, ...]:
    if not text:
        return ()
    paths = []
    for name in text.split(":"):
        if not name:
            continue
        path = os.path.abspath(name)
        if not os.path.isfile(path):
            raise ConfigError("%s %s: no such file (resolved to %s)" % (flag, name, path))
        paths.append(path)
    return tuple(paths)


def _tracker(text: Optional[str], flag: str) -> Optional[Tuple[str, int]]:
    if text is None:
        return None
    try:
        return parse_address(text, what=flag)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _key(text: str, flag: str) -> str:
    """Any key the stock server takes; only whitespace (the handshake splits on it) is
    refused. A ':' is taken, and serve warns about it once (key_warning)."""
    if text and any(c.isspace() for c in text):
        raise ConfigError("%s %r: a key cannot contain whitespace (the RPC handshake splits "
                          "on it); e.g. %s" % (flag, text, "-".join(text.split())))
    return text


def key_warning(key: Optional[str]) -> Optional[str]:
    """Why KEY will trip up tools, or None: stock TVM takes it, MetaSchedule does not."""
    if key and not KEY_RE.fullmatch(key):
        return ("key %r has characters other than letters, digits, '.', '_' and '-': stock "
                "TVM clients can request it, but MetaSchedule's RPCConfig.count_num_servers "
                "parses the tracker's text summary on ':' and will not count this board; "
                "e.g. %s works everywhere" % (key, re.sub(r"[^A-Za-z0-9._-]", "-", key)))
    return None


def _custom_addr(text: Optional[str], flag: str) -> Optional[str]:
    if text is not None and (not text.strip() or any(c.isspace() for c in text)):
        raise ConfigError("%s %r is not a host name or address" % (flag, text))
    return text


def _mode_text(text: str, flag: str) -> str:
    if not text.strip():
        raise ConfigError("%s is empty; use all, big, little:2, cpus:0-3, ..." % flag)
    return text.strip()


def _root(text: Optional[str], flag: str) -> Optional[str]:
    if text is None:
        return None
    if not os.path.isdir(text):
        raise ConfigError("%s %s is not a directory (expected a fixture tree with sys/ "
                          "and proc/)" % (flag, text))
    return os.path.abspath(text)


def _work_root(text: Optional[str], flag: str) -> Optional[str]:
    return os.path.abspath(text) if text else None   # None: from the environment


def _same(value, flag):
    return value


def _sandbox_mode(text: str, flag: str) -> str:
    if text not in ("auto", "required", "off"):
        raise ConfigError("%s %r: use auto (what the kernel has), required (refuse to start "
                          "without Landlock and seccomp) or off" % (flag, text))
    return text


def _memory(text: str, flag: str) -> int:
    return default_address_space() if text.strip().lower() == "auto" else parse_size(text, flag)


def _optional_size(text: Optional[str], flag: str) -> Optional[int]:
    return parse_size(text, flag) if text else None


def _session_count(value: int, flag: str) -> int:
    if value < 16:
        raise ConfigError("%s %d is too low for a TVM session (its thread pool and libraries "
                          "need more); use at least 16" % (flag, value))
    return value


@dataclass(frozen=True)
class Option:
    """One setting: its flag, its default as typed on the command line, its help, and
    the check that turns what was typed into the Config value (ConfigError if bad)."""
    flag: str
    field: str                        # the Config attribute it sets
    default: object
    help: str
    check: Callable[[object, str], object] = _same
    stock: bool = False               # a flag of python -m tvm.exec.rpc_server
    type: Optional[type] = None
    action: Optional[str] = None      # "store_true" | "append"
    metavar: Optional[str] = None


# The one table of the daemon's settings. A default shows in --help as "(default X)".
OPTIONS: Tuple[Option, ...] = (
    Option("--host", "host", "0.0.0.0", "address to listen on", stock=True),
    Option("--port", "port", 9090, "first port to try", _port, stock=True, type=int),
    Option("--port-end", "port_end", 9199, "end of the port range, exclusive", stock=True,
           type=int),
    Option("--tracker", "tracker", None, "tracker address HOST:PORT, e.g. 10.0.0.2:9190",
           _tracker, stock=True),
    Option("--key", "key", "", "device key clients request, e.g. rk3399 (letters, digits, "
           "'.', '_', '-'; required with --tracker)", _key, stock=True),
    Option("--custom-addr", "custom_addr", None, "address to report to the tracker instead "
           "of the one the tracker sees (for NAT or several interfaces)", _custom_addr,
           stock=True),
    Option("--load-library", "load_library", None, "colon-separated shared libraries every "
           "session loads first (RTLD_GLOBAL)", _libraries, stock=True),
    Option("--silent", "silent", False, "log warnings and errors only", stock=True,
           action="store_true"),
    Option("--through-proxy", "through_proxy", False, "connect out to a TVM RPC proxy "
           "(python -m tvm.exec.rpc_proxy) at --host:--port and serve the sessions it "
           "relays, for a board behind NAT; no listen socket, no tracker (the proxy "
           "registers with one)", stock=True, action="store_true"),
    Option("--no-fork", "no_fork", False, "accepted for compatibility; sessions are still "
           "forked children (the listener never initialises GPU compilers, so fork is safe, "
           "and a fresh process per session would cost 0.3 s each)", stock=True,
           action="store_true"),
    Option("--default-mode", "default_mode", "all", "cores a session gets when the client "
           "never asks (all | <class> | <class>:<n> | cpus:<list>)", _mode_text,
           metavar="MODE"),
    Option("--root", "root", None, "read the CPU topology from a fixture tree instead of / "
           "(tests and demos)", _root, metavar="DIR"),
    Option("--allow", "allow", (), "only accept clients from this network (repeatable; "
           "default: anyone), e.g. --allow 10.0.0.0/24 --allow 127.0.0.1/32", _networks,
           action="append", metavar="CIDR"),
    Option("--session-timeout-cap", "session_timeout_cap", None, "longest a session may "
           "run, whatever the client asks (default: no cap)", _seconds, type=float,
           metavar="SECONDS"),
    Option("--grace", "grace", 10.0, "on SIGTERM, how long a running session may finish",
           _seconds_or_zero, type=float, metavar="SECONDS"),
    Option("--handshake-timeout", "handshake_timeout", 5.0, "close a connection that has "
           "not completed the RPC handshake by then", _seconds, type=float,
           metavar="SECONDS"),
    Option("--max-upload", "max_upload_bytes", "256M", "largest file a client may upload",
           parse_size, metavar="SIZE"),
    Option("--max-disk", "max_disk_bytes", "1G", "most disk one session's work dir may use",
           parse_size, metavar="SIZE"),
    Option("--work-root", "work_root", None, "where session work dirs go (default "
           "$RUNTIME_DIRECTORY or $STATE_DIRECTORY from systemd, else "
           "<tmp>/edge-server-<uid>)", _work_root, metavar="DIR"),
    Option("--verbose", "verbose", False, "debug logging", action="store_true"),
    # the per-session sandbox (docs/security.md)
    Option("--sandbox", "sandbox", "auto", "confine each session's code with Landlock, "
           "seccomp and rlimits: auto takes what the kernel has, required refuses to start "
           "without Landlock and seccomp, off is for debugging", _sandbox_mode,
           metavar="auto|required|off"),
    Option("--session-max-memory", "session_max_memory", "auto", "address space a session "
           "may add to what it maps at start (auto: 3/4 of RAM)", _memory, metavar="SIZE"),
    Option("--session-max-files", "session_max_files", 1024, "open files per session "
           "process", _session_count, type=int, metavar="N"),
    Option("--session-max-procs", "session_max_procs", 512, "processes and threads of the "
           "daemon's user a session may reach (RLIMIT_NPROC; the kernel ignores it for root)",
           _session_count, type=int, metavar="N"),
    Option("--session-max-file-size", "session_max_file_size", None, "largest file a "
           "session may write (default: --max-disk)", _optional_size, metavar="SIZE"),
    Option("--allow-perf", "allow_perf", False, "let sessions use perf_event_open "
           "(hardware counters)", action="store_true"),
    Option("--slots", "slots", None, SLOTS_HELP, check_slots, metavar="SPEC"),
    Option("--slot-threshold", "slot_threshold", "3", "largest slowdown, in percent, busy "
           "co-slots may cause a slot for --slots auto to form it, and above which a "
           "measurement next to a busy co-slot is SUSPECT (3 or 3%%)", check_threshold,
           metavar="PERCENT"),
    Option("--calibration-cache", "calibration_cache", None, "where `edge-server calibrate` "
           "keeps its results per boot (default $STATE_DIRECTORY, else "
           "$XDG_CACHE_HOME/edge-server or ~/.cache/edge-server)", check_cache_dir,
           metavar="DIR"),
)
_DEFAULTS = {o.field: o.check(o.default, o.flag) for o in OPTIONS if o.field != "work_root"}


@dataclass(frozen=True)
class Config:
    """The daemon's settings; defaults from OPTIONS (parse_args is the way to make one)."""
    host: str = _DEFAULTS["host"]
    port: int = _DEFAULTS["port"]
    port_end: int = _DEFAULTS["port_end"]
    tracker: Optional[Tuple[str, int]] = _DEFAULTS["tracker"]
    key: str = _DEFAULTS["key"]
    custom_addr: Optional[str] = _DEFAULTS["custom_addr"]
    load_library: Tuple[str, ...] = _DEFAULTS["load_library"]
    silent: bool = _DEFAULTS["silent"]
    verbose: bool = _DEFAULTS["verbose"]
    no_fork: bool = _DEFAULTS["no_fork"]
    through_proxy: bool = _DEFAULTS["through_proxy"]
    default_mode: str = _DEFAULTS["default_mode"]
    root: Optional[str] = _DEFAULTS["root"]            # fixture topology root; None = here
    allow: Tuple[ipaddress._BaseNetwork, ...] = _DEFAULTS["allow"]   # empty = everyone
    session_timeout_cap: Optional[float] = _DEFAULTS["session_timeout_cap"]
    grace: float = _DEFAULTS["grace"]
    handshake_timeout: float = _DEFAULTS["handshake_timeout"]
    max_upload_bytes: int = _DEFAULTS["max_upload_bytes"]
    max_disk_bytes: int = _DEFAULTS["max_disk_bytes"]
    work_root: str = field(default_factory=default_work_root)
    sandbox: str = _DEFAULTS["sandbox"]
    session_max_memory: int = _DEFAULTS["session_max_memory"]
    session_max_files: int = _DEFAULTS["session_max_files"]
    session_max_procs: int = _DEFAULTS["session_max_procs"]
    session_max_file_size: Optional[int] = _DEFAULTS["session_max_file_size"]
    allow_perf: bool = _DEFAULTS["allow_perf"]

    @property
    def session_limits(self) -> Limits:
        """The rlimits every session process sets (edge_server.session.limits)."""
        return Limits(address_space=self.session_max_memory, open_files=self.session_max_files,
                      processes=self.session_max_procs,
                      file_size=self.session_max_file_size or self.max_disk_bytes)
    slots: Optional[str] = _DEFAULTS["slots"]          # --slots SPEC; None = one server
    slot_threshold: float = _DEFAULTS["slot_threshold"]
    calibration_cache: Optional[str] = _DEFAULTS["calibration_cache"]
    measure: MeasureSettings = MeasureSettings()   # --verdict-*, --cooldown-*, --lock-clocks

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


def _help(option: Option) -> str:
    value = option.default
    if value in (None, False, "", ()):
        return option.help
    return option.help + " (default %s)" % ("%g" % value if isinstance(value, float) else value)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="edge-server", description=(
        "TVM RPC server for ARM boards: registers with a TVM tracker with its CPU topology, "
        "runs every session in its own process pinned to a thread mode. Flags are a superset "
        "of `python -m tvm.exec.rpc_server`. `edge-server probe --help` for the topology probe."))
    stock = p.add_argument_group("flags of python -m tvm.exec.rpc_server")
    for option in OPTIONS:
        group = stock if option.stock else p
        kwargs = {"dest": option.field, "help": _help(option)}
        if option.action == "store_true":
            kwargs.update(action="store_true")
        elif option.action == "append":
            kwargs.update(action="append", default=[], metavar=option.metavar)
        else:
            kwargs.update(default=option.default, type=option.type, metavar=option.metavar)
        group.add_argument(option.flag, **kwargs)
    p.add_argument("--version", action="version", version=version_line("edge-server"))
    measure_config.add_flags(p)   # their table: verdict.Thresholds' fields
    return p


def parse_args(argv: Sequence[str], environ: Optional[Mapping[str, str]] = None) -> Config:
    """argv -> Config, or ConfigError (one line). --help exits via SystemExit(0)."""
    args = vars(build_parser().parse_args(list(argv)))
    values = {o.field: o.check(args[o.field], o.flag) for o in OPTIONS}
    if not values["through_proxy"] and not values["port"] < values["port_end"] <= 65536:
        raise ConfigError("--port-end %d must be above --port %d (the range is [port, port-end))"
                          % (values["port_end"], values["port"]))
    if values["through_proxy"] and not values["key"]:
        raise ConfigError("--through-proxy needs --key: the key clients ask the proxy for "
                          "(e.g. --key rk3399)")
    if values["tracker"] is not None and not values["key"]:
        raise ConfigError("--tracker needs --key: the device key clients will request "
                          "(e.g. --key rk3399)")
    values["work_root"] = os.path.abspath(values["work_root"] or default_work_root(environ))
    try:
        values["measure"] = measure_config.settings(args, values["root"], environ)
    except measure_config.MeasureConfigError as err:
        raise ConfigError(str(err)) from None
    return Config(**values)


def check_default_mode(config: Config, topology: dict) -> str:
    """The canonical default mode, or ConfigError if this board cannot meet it."""
    from edge_common.modes import ModeError, resolve
    try:
        return resolve(topology, config.default_mode).mode
    except ModeError as err:
        raise ConfigError("--default-mode: " + " ".join(str(err).split())) from None
