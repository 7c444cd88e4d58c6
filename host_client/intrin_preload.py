"""Import tvm.s_tir.tensor_intrin in seconds instead of a minute.

TVM 0.27's MetaSchedule imports tvm.s_tir.tensor_intrin in the tuning
process (TuneContext) and again in every LocalBuilder worker (each build
batch gets a fresh worker pool). That import parses ~250 TVMScript
functions, and each `@T.prim_func` calls `inspect.stack()`. For frames
whose file does not exist ("<frozen importlib._bootstrap>", "<string>",
"<ast>"), `inspect.getmodule` scans all of sys.modules on every call, so
the import takes 30-60 s of CPU on Python 3.11 (measured here: 55 s, up to
148 s under cProfile). Telling `inspect` up front that these pseudo-files
belong to no module (the answer its scan reaches anyway) makes the same
import take ~7 s. The entries are removed again after the import.
"""
import inspect
import time

PSEUDO_FILES = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>",
                "<string>", "<ast>", "<stdin>")


def pseudo_files() -> list:
    """File names of frames that have no file: exec'd code, and the frozen
    stdlib modules ("<frozen importlib._bootstrap>", "<frozen runpy>", ...)."""
    import _imp
    import sys

    frozen = ["<frozen %s>" % name for name in list(sys.modules) if _imp.is_frozen(name)]
    return list(PSEUDO_FILES) + [f for f in frozen if f not in PSEUDO_FILES]


def preload_tensor_intrin() -> float:
    """Import tvm.s_tir.tensor_intrin now, fast; returns the seconds it took
    (0 when it was already imported). Also usable as a pool initializer."""
    import sys

    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return 0.0
    t0 = time.perf_counter()
    added = [f for f in pseudo_files() if f not in inspect.modulesbyfile]
    for name in added:
        inspect.modulesbyfile[name] = ""  # sys.modules.get("") is None: "no module"
    try:
        import tvm.s_tir.tensor_intrin  # noqa: F401
    finally:
        for name in added:
            if inspect.modulesbyfile.get(name) == "":
                del inspect.modulesbyfile[name]
    return time.perf_counter() - t0
