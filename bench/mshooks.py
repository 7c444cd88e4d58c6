"""Timing wrappers for RPCRunner's hooks, for bench/metaschedule.py.

RPCRunner runs its hooks in PopenPoolExecutor workers (fresh processes that
get the hooks through cloudpickle), so the wrapper is a plain class whose
instances carry the wrapped hook and a log path; each call appends one JSON
line with one O_APPEND write. This module is pickled by value (see
metaschedule.py), so the workers need not find it on their sys.path; it
imports nothing outside the standard library at module level.
"""
import json
import os
import time

HOOKS = ["f_create_session", "f_upload_module", "f_alloc_argument", "f_run_evaluator",
         "f_cleanup"]


class TimedHook:
    """Calls `inner`, appends {"hook", "ms", "pid", "ok"} to `log_path`."""

    def __init__(self, hook, inner, log_path):
        self.hook = hook
        self.inner = inner
        self.log_path = log_path

    def __call__(self, *args):
        t0 = time.perf_counter()
        ok = False
        try:
            result = self.inner(*args)
            ok = True
            return result
        finally:
            ms = (time.perf_counter() - t0) * 1e3
            line = json.dumps({"hook": self.hook, "ms": ms, "pid": os.getpid(), "ok": ok,
                               "t": time.time()})
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)


def default_hooks():
    """RPCRunner's own defaults, by hook name (what `None` means in a worker)."""
    from tvm.s_tir.meta_schedule.runner import rpc_runner as rr
    return {"f_create_session": rr.default_create_session,
            "f_upload_module": rr.default_upload_module,
            "f_alloc_argument": rr.default_alloc_argument,
            "f_run_evaluator": rr.default_run_evaluator,
            "f_cleanup": rr.default_cleanup}


def wrap_runner(runner, log_path) -> None:
    """Time every hook of `runner` (defaults included) into `log_path`."""
    defaults = default_hooks()
    for hook in HOOKS:
        inner = getattr(runner, hook)
        if inner is None:
            inner = defaults[hook]
        elif isinstance(inner, str):
            raise ValueError("hook %s is a registered name (%r); cannot time it" % (hook, inner))
        setattr(runner, hook, TimedHook(hook, inner, str(log_path)))


def read_log(log_path) -> list:
    if not os.path.exists(log_path):
        return []
    with open(log_path) as f:
        return [json.loads(line) for line in f if line.strip()]


def preimport_runner():
    """RPCRunner worker initializer: import TVM before the first trial, so the
    first trial's hooks time the session, not the import."""
    import tvm.rpc  # noqa: F401
    import tvm.s_tir.meta_schedule.runner.rpc_runner  # noqa: F401
