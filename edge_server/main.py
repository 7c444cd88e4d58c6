"""`edge-server` entry point: arguments in, exit code out.

`edge-server probe ...` inspects the CPU topology; anything else serves RPC
sessions with the flags of `python -m tvm.exec.rpc_server` plus ours.
"""
import os
import sys

# The board never compiles: load only libtvm_runtime.so when tvm is imported
# (0.34 s / 82 MB instead of 1.17 s / 195 MB for the full compiler).
os.environ.setdefault("TVM_USE_RUNTIME_LIB", "1")


def main(argv=None) -> int:
    from edge_common.version import python_refusal
    refusal = python_refusal("edge-server")
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "probe":
        from edge_server.cli.probe import main as probe_main
        return probe_main(argv[1:])
    if argv and argv[0] == "calibrate":
        from edge_server.cli.calibrate import main as calibrate_main
        return calibrate_main(argv[1:])
    from edge_server.cli.serve import main as serve_main
    return serve_main(argv)


if __name__ == "__main__":
    sys.exit(main())
