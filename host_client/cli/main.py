"""`edge-client`: list boards, probe one, bench a kernel across thread modes.

main() only maps arguments to calls and outcomes to exit codes:
0 done, 1 an error the message explains, 2 bad usage, 3 bench ran but some
mode could not be measured, 130 interrupted.
"""
import argparse
import json
import os
import sys
import tempfile
import traceback
from typing import List, Optional

from edge_common.version import python_refusal, version_line

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tracker", default=None,
                        help="tracker HOST:PORT (default: $TVM_TRACKER_HOST:$TVM_TRACKER_PORT)")
    common.add_argument("--json", action="store_true", help="print JSON instead of tables")
    common.add_argument("--verbose", "-v", action="store_true",
                        help="show tracebacks on errors")
    keyed = argparse.ArgumentParser(add_help=False)
    keyed.add_argument("--key", default=None, help="device key (default: $TVM_TRACKER_KEY)")
    keyed.add_argument("--wait", type=non_negative_float, default=60.0,
                       help="seconds to wait for a free board before giving up (default 60)")
    keyed.add_argument("--session-timeout", type=positive_float, default=None,
                       help="the board ends each session after this many seconds")

    parser = argparse.ArgumentParser(
        prog="edge-client",
        description="Talk to edge-server boards through a TVM RPC tracker.")
    parser.add_argument("--version", action="version", version=version_line("edge-client"))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    sub.add_parser("list", parents=[common],
                   help="boards on the tracker, their keys, state and core classes")
    probe = sub.add_parser("probe", parents=[common, keyed],
                           help="a board's topology and suggested TVM target, via a session")
    probe.add_argument("--mode", default=None,
                       help="also show the target for this thread mode")
    bench = sub.add_parser("bench", parents=[common, keyed],
                           help="time one kernel under several thread modes")
    bench.add_argument("module", nargs="?", default=None,
                       help="a compiled MODULE.so for the board (default: build a matmul)")
    bench.add_argument("--matmul", type=positive_int, metavar="N", default=None,
                       help="build an N×N float32 matmul for the board (default 256)")
    bench.add_argument("--modes", default=None,
                       help="comma-separated thread modes, e.g. big,big:1,little,little:1,all "
                            "(default: all, then each class and one core of it)")
    bench.add_argument("--repeat", type=positive_int, default=5,
                       help="timed repeats per session (default 5)")
    bench.add_argument("--sessions", type=positive_int, default=1,
                       help="fresh sessions per mode (default 1)")
    bench.add_argument("--min-repeat-ms", type=non_negative_int, default=20,
                       help="each repeat runs the kernel at least this long")
    bench.add_argument("--func", default=None,
                       help="function to call in MODULE.so (default: matmul)")
    bench.add_argument("--arg", action="append", default=None, metavar="SHAPE[:DTYPE]",
                       help="argument of MODULE.so's function, e.g. 128x128:float32 (repeat "
                            "per argument; default: three N×N float32 matmul arguments)")
    bench.add_argument("--parallel", default="1", metavar="N|slots",
                       help="measure N modes at once, each in its own slot of the key "
                            "(edge-server --slots); 'slots' = one per slot (default 1)")
    bench.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    parser.subcommands = sub.choices   # name -> parser, for usage errors found later
    return parser


def _number(kind, minimum: float, words: str):
    """An argparse type: KIND at least MINIMUM, else a usage error in words."""
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError("%r is not a number; give %s" % (text, words))
        if value < minimum or value != value:
            raise argparse.ArgumentTypeError("%s is too small; give %s" % (text, words))
        return value
    convert.__name__ = words    # argparse names the type in its messages
    return convert


positive_int = _number(int, 1, "a whole number of at least 1")
non_negative_int = _number(int, 0, "a whole number of at least 0")
positive_float = _number(float, 1e-9, "a number of seconds above 0")
non_negative_float = _number(float, 0, "a number of seconds, 0 or more")


def main(argv: Optional[List[str]] = None) -> int:
    refusal = python_refusal("edge-client")
    if refusal:
        print(refusal, file=sys.stderr)
        return EXIT_USAGE
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = COMMANDS[args.command](args)
        sys.stdout.flush()   # inside the try: a closed pipe is noticed here, not at exit
        return code
    except KeyboardInterrupt:
        print("edge-client: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `edge-client ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except UsageError as err:  # the subcommand's usage line, exit status 2
        parser.subcommands[args.command].error(str(err))
    except Exception as err:  # every failure is one line unless --verbose
        if args.verbose:
            traceback.print_exc()
        print("edge-client: error: %s" % one_line(err), file=sys.stderr)
        return EXIT_ERROR


class UsageError(ValueError):
    """Arguments that do not fit together."""


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def cmd_list(args) -> int:
    from host_client.boards import list_boards

    boards = list_boards(args.tracker)
    if args.json:
        print(json.dumps([b.to_json() for b in boards], indent=2))
    elif not boards:
        print("no servers registered on the tracker")
    else:
        from host_client.cli import tables
        print(tables.boards_table(boards))
    return EXIT_OK


def cmd_probe(args) -> int:
    from host_client.session import connect
    from host_client.target import target_dict_for

    # --mode is applied to the probing session: the state shown is that mode's
    # (a mode the board cannot meet fails here, in the board's own words).
    session = connect(args.tracker, args.key, thread_mode=args.mode,
                      session_timeout=args.session_timeout, wait=args.wait)
    # edge.thread_state: the mode's layout plus the cores' conditions now (issue 13)
    topology, state, address = session.topology(), session.read_thread_state(), session.board
    session.release()
    del session
    targets = {"suggested": topology.tvm_target}
    if args.mode:
        targets[args.mode] = target_dict_for(topology, args.mode)
    if args.json:
        print(json.dumps({"board": topology.board, "address": address,
                          "key": args.key or os.environ.get("TVM_TRACKER_KEY"),
                          "topology": topology.to_dict(), "thread_state": state,
                          "targets": targets},
                         indent=2))
    else:
        from host_client.cli import tables
        print(tables.probe_text(address, topology, state, targets))
    return EXIT_OK


def parse_modes(text: Optional[str]) -> Optional[List[str]]:
    if text is None:
        return None
    modes = [m.strip() for m in text.split(",") if m.strip()]
    if not modes:
        raise UsageError("--modes needs at least one mode, e.g. --modes all,big:1")
    return modes


def parse_parallel(text: str, servers: int) -> int:
    """--parallel: a count, or 'slots' for one per server (slot) of the key."""
    if str(text).strip().lower() == "slots":
        return max(1, servers)
    try:
        value = int(text)
    except ValueError:
        raise UsageError("--parallel %r: give a number of modes to measure at once, or 'slots' "
                         "(one per slot of the key)" % text) from None
    if value < 1:
        raise UsageError("--parallel must be at least 1")
    if value > servers:
        raise UsageError("--parallel %d but the key has %d server(s)/slot(s); more would only "
                         "queue at the tracker; use --parallel slots" % (value, servers))
    return value


def parse_arg_spec(spec: str):
    shape_text, _, dtype = spec.partition(":")
    try:
        shape = tuple(int(d) for d in shape_text.lower().split("x"))
    except ValueError:
        raise UsageError("bad --arg %r: expected SHAPE[:DTYPE] like 128x128:float32" % spec)
    return shape, dtype or "float32"


def cmd_bench(args) -> int:
    from host_client.boards import list_boards
    from host_client.cli.bench import bench_modes, default_modes
    from host_client.cli import tables
    from host_client.tracker import default_key, parse_tracker

    if args.module and args.matmul is not None:
        raise UsageError("give either MODULE.so or --matmul N, not both")
    tracker, key = str(parse_tracker(args.tracker)), default_key(args.key)
    modes = parse_modes(args.modes)
    boards = list_boards(tracker)
    board = _edge_board(boards, key, tracker)
    parallel = parse_parallel(args.parallel, sum(1 for b in boards if b.key == key))
    if modes is None:
        modes = default_modes(board.topology)
    with tempfile.TemporaryDirectory(prefix="edge-client-") as tmp:
        kernel = _kernel(args, board, tmp)
        progress = None if args.quiet else tables.Progress(sys.stderr)
        results = bench_modes(tracker, key, modes, kernel, sessions=args.sessions,
                              repeat=args.repeat, min_repeat_ms=args.min_repeat_ms,
                              session_timeout=args.session_timeout, wait=args.wait,
                              parallel=parallel, progress=progress)
    baseline = next((r.mean_ms for r in results if r.mean_ms), None)
    if args.json:
        print(json.dumps({"board": board.name, "address": board.address, "key": key,
                          "kernel": _kernel_json(args, kernel), "parallel": parallel,
                          "results": [r.to_json(baseline) for r in results]}, indent=2))
    else:
        print(tables.bench_table(results, board, _kernel_label(args, kernel)))
        if parallel > 1:
            print("measured %d modes at once, each in its own slot: %s" % (
                parallel, ", ".join("%s on %s" % (r.mode, r.board) for r in results if r.board)))
    return EXIT_PARTIAL if any(r.error for r in results) else EXIT_OK


def _edge_board(boards, key: str, tracker: str):
    from host_client.errors import KeyUnknown, NotAnEdgeServer

    mine = [b for b in boards if b.key == key]
    if not mine:
        known = ", ".join(sorted({b.key for b in boards})) or "none"
        raise KeyUnknown("no board with key %r on the tracker %s (registered keys: %s)"
                         % (key, tracker, known))
    edge = [b for b in mine if b.topology is not None]
    if not edge:
        board = mine[0]
        why = ("announces a topology this client cannot read (%s); run the same edge-server "
               "version on the board and the host" % board.topology_error if board.edge else
               "runs a stock TVM RPC server without thread modes; run edge-server there")
        raise NotAnEdgeServer("board %s (key %r) %s" % (board.address, key, why))
    return edge[0]


def _kernel(args, board, tmp: str):
    from host_client.kernels import Kernel, build_matmul

    if args.module:
        if not os.path.isfile(args.module):
            raise UsageError("module %r does not exist" % args.module)
        if args.arg:
            specs = [parse_arg_spec(a) for a in args.arg]
            dtypes = {d for _, d in specs}
            if len(dtypes) != 1:
                raise UsageError("all --arg of one module must share a dtype for now")
            return Kernel(os.path.abspath(args.module), args.func or "matmul",
                          tuple(s for s, _ in specs), dtypes.pop())
        raise UsageError("with MODULE.so, give its function's arguments: --arg 256x256 "
                         "--arg 256x256 --arg 256x256 (and --func NAME if not 'matmul')")
    n = args.matmul or 256
    return build_matmul(n, board.suggested_target, tmp, board_arch=board.arch)


def _kernel_label(args, kernel) -> str:
    if args.module:
        return "%s:%s" % (os.path.basename(kernel.path), kernel.func)
    return "matmul %d×%d float32" % kernel.shapes[0]


def _kernel_json(args, kernel) -> dict:
    return {"label": _kernel_label(args, kernel), "func": kernel.func,
            "shapes": [list(s) for s in kernel.shapes], "dtype": kernel.dtype,
            "module": args.module}


COMMANDS = {"list": cmd_list, "probe": cmd_probe, "bench": cmd_bench}

if __name__ == "__main__":
    sys.exit(main())
