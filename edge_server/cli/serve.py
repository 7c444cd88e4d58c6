"""`edge-server [flags]`: flags -> Config -> Server(config).run() -> exit code.

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 2 for a bad command line
or a default mode the board cannot meet (nothing was bound), 1 when the
daemon cannot start (no free port, unusable work root, probe failure).
"""
import logging
import sys
from typing import Optional, Sequence

from edge_server.daemon.config import ConfigError, check_default_mode, key_warning, parse_args
from edge_server.daemon.measure_config import MeasureConfigError, at_start

log = logging.getLogger("edge_server.serve")


def _error(message: str) -> None:
    print("edge-server: error: " + " ".join(str(message).split()), file=sys.stderr)


def probe_topology(root: Optional[str]) -> dict:
    from edge_server.board.topology import probe
    from edge_server.session.toolchain import with_linker
    return with_linker(probe(root or "/"))  # "linker": can .o/.tar uploads be linked here


def main(argv: Sequence[str]) -> int:
    try:
        config = parse_args(argv)
    except ConfigError as err:
        _error("%s (see edge-server --help)" % err)
        return 2
    except SystemExit as exit_:  # --help
        return exit_.code if isinstance(exit_.code, int) else 0

    from edge_server.daemon.logs import setup_logging
    setup_logging(silent=config.silent, verbose=config.verbose)
    if key_warning(config.key):
        log.warning(key_warning(config.key))
    try:
        topology = probe_topology(config.root)
        default_mode = check_default_mode(config, topology)
        at_start(config)   # restore clocks a killed daemon left locked; check --lock-clocks
    except (ConfigError, MeasureConfigError) as err:
        _error(err)
        return 2
    except Exception as err:  # the probe's own errors say what to fix
        _error("probing the CPU topology%s failed: %s"
               % (" under --root %s" % config.root if config.root else "", err))
        return 1
    if config.no_fork:
        log.info("--no-fork accepted for compatibility; sessions still run in forked children "
                 "(the listener never initialises GPU compilers, so fork is safe)")

    # Import TVM's runtime and the session code now, so forked children start warm.
    import tvm.rpc  # noqa: F401
    import edge_server.session.child  # noqa: F401
    from edge_server.daemon.listener import ServerError
    from edge_server.daemon.server import Server
    from edge_server.daemon.workroot import WorkRootError

    from edge_server.session.sandbox import SandboxError
    try:
        if config.slots:
            from edge_server.slots.supervisor import serve_slots
            return serve_slots(config, topology, probe_topology)
        server = Server(config, topology, default_mode, probe=probe_topology)
        return server.run()
    except (ServerError, WorkRootError, SandboxError) as err:
        _error(err)
        return 1
