"""Kernels, misbehaving libraries, client sessions and process inspection for the
daemon's integration tests (test_server.py, test_faults.py).

Run as a program it is a TVM client for tests that must kill the client mid-call
or run many sessions quickly (it imports only TVM's runtime library):

    python daemon_kit.py hold TRACKER_PORT KEY LIB     request, upload LIB, print
                                                        "loading", load it (blocks)
    python daemon_kit.py plan TRACKER_PORT KEY KERNEL STEP...
        STEP = ok | crash:LIB | timeout:LIB:SECONDS ; prints one JSON line per step
"""
import gc
import glob
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
from tests.support import procs, remote_kernels
from tests.support.procs import wait_for  # noqa: F401 - the daemon tests call kit.wait_for

N = 4096

# A shared library whose constructor misbehaves when a session load_module()s it:
# deterministic crashes without relying on a kernel reading out of bounds. It
# first drops a "started" file in the session's work dir so tests know the call
# is under way.
MISBEHAVING_C = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void edge_test_on_load(void) {
  FILE *f = fopen("started", "w");
  if (f) fclose(f);
  ACTION;
}
"""
ACTIONS = {
    "segv": "(*(volatile int *)0 = 1)",
    "abort": "abort()",
    "sigkill": "raise(SIGKILL)",      # what the OOM killer does
    "exit3": "_exit(3)",
    "sleep": "sleep(%d)",
}


def build_misbehaving_lib(directory, kind: str, seconds: int = 120) -> str:
    directory = Path(directory)
    src = directory / "misbehave.c"
    src.write_text(MISBEHAVING_C)
    action = ACTIONS[kind] % seconds if kind == "sleep" else ACTIONS[kind]
    out = directory / ("%s%s.so" % (kind, seconds if kind == "sleep" else ""))
    subprocess.run(["gcc", "-shared", "-fPIC", "-O0", "-DACTION=" + action, str(src), "-o",
                    str(out)], check=True)
    return str(out)


def build_kernel(directory) -> str:
    """B = 2 * A as a real TVM kernel, compiled for this machine."""
    import tvm
    from tvm import te
    a = te.placeholder((N,), name="A", dtype="float32")
    b = te.compute((N,), lambda i: a[i] * 2.0, name="B")
    lib = tvm.compile(te.create_prim_func([a, b]), target="llvm")
    path = Path(directory) / "vadd.so"
    lib.export_library(str(path))
    return str(path)


def exercise(remote, kernel_path: str) -> dict:
    """Upload, load, run and time the kernel; return the session's thread state."""
    mod, dev, args = remote_kernels.run_doubling(remote, kernel_path, N)
    cost = mod.time_evaluator("main", dev, number=3, repeat=1)(*args).mean
    assert cost > 0
    return json.loads(remote.get_function("edge.thread_state")())


def tracker_session(tracker_port: int, key: str, kernel_path: str,
                    session_timeout: float = 0, proc=None) -> dict:
    """One complete stock-client session through the tracker; returns its thread state."""
    procs.wait_free(tracker_port, key, proc=proc)   # a request would block forever otherwise
    from tvm import rpc
    client = rpc.connect_tracker(procs.HOST, tracker_port)
    try:
        remote = client.request(key, session_timeout=session_timeout)
        try:
            return exercise(remote, kernel_path)
        finally:
            del remote
    finally:
        client.close()
        gc.collect()


def misbehaving_session(tracker_port: int, key: str, lib_path: str,
                        session_timeout: float = 0, proc=None) -> str:
    """Load a misbehaving library in a session; returns the error the client saw."""
    procs.wait_free(tracker_port, key, proc=proc)
    from tvm import rpc
    client = rpc.connect_tracker(procs.HOST, tracker_port)
    try:
        remote = client.request(key, session_timeout=session_timeout)
        try:
            remote.upload(lib_path)
            remote.load_module(os.path.basename(lib_path))
        except Exception as err:  # noqa: B902 - whatever TVM raises for a dead session
            return "%s: %s" % (type(err).__name__, err)
        finally:
            del remote
        raise AssertionError("loading %s did not fail" % lib_path)
    finally:
        client.close()
        gc.collect()


def client_argv(*args) -> list:
    return [sys.executable, str(Path(__file__).resolve()), *map(str, args)]


def client_env() -> dict:
    return {"TVM_USE_RUNTIME_LIB": "1", "PYTHONPATH": str(procs.REPO)}


# ---- process inspection --------------------------------------------------------------
def proc_state(pid: int):
    """The one-letter state from /proc/<pid>/stat, or None when the pid is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def gone(pid: int) -> bool:
    return proc_state(pid) in (None, "Z", "X")


def children(pid: int) -> list:
    import psutil
    try:
        return [c.pid for c in psutil.Process(pid).children()]
    except psutil.NoSuchProcess:
        return []


def only_child(pid: int):
    """[child] when the daemon has exactly one live child (its spare while idle), else
    None: right after a session its old process may still be on its way out."""
    live = [c for c in children(pid) if not gone(c)]
    return live if len(live) == 1 else None


def zombies(pid: int) -> list:
    return [c for c in children(pid) if proc_state(c) == "Z"]


def rss_kb(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


def fd_count(pid: int) -> int:
    return len(os.listdir("/proc/%d/fd" % pid))


def session_dirs(work_root) -> list:
    """Session work dirs under a work root (<root>/<daemon pid>/s<n>)."""
    return sorted(glob.glob(os.path.join(str(work_root), "*", "s*")))


def started_markers(work_root) -> list:
    return glob.glob(os.path.join(str(work_root), "*", "s*", "started"))


def log_lines(proc, needle: str) -> list:
    return [line for line in proc.log().splitlines() if needle in line]


def session_pid(proc) -> int:
    """The daemon's latest session child, from its log: the next session's spare
    process may be forked next to it, so children() alone does not tell."""
    lines = log_lines(proc, ": started (pid ")
    assert lines, "no session started:\n" + proc.log()
    return int(lines[-1].split(": started (pid ")[1].split()[0])


# ---- the client program ------------------------------------------------------------------
def _hold(tracker_port: int, key: str, lib: str) -> int:
    from tvm import rpc
    remote = rpc.connect_tracker(procs.HOST, tracker_port).request(key)
    remote.upload(lib)
    print("loading", flush=True)
    try:
        remote.load_module(os.path.basename(lib))
    except Exception as err:  # noqa: B902
        print("error", type(err).__name__, err, flush=True)
        return 1
    print("loaded", flush=True)
    return 0


def _plan(tracker_port: int, key: str, kernel: str, steps) -> int:
    for step in steps:
        kind, _, rest = step.partition(":")
        started = time.time()
        if kind == "ok":
            state = tracker_session(tracker_port, key, kernel)
            result = {"step": step, "ok": True, "pid": state["pid"]}
        elif kind == "crash":
            result = {"step": step, "error": misbehaving_session(tracker_port, key, rest)}
        elif kind == "timeout":
            lib, _, seconds = rest.rpartition(":")
            result = {"step": step, "error": misbehaving_session(tracker_port, key, lib,
                                                                 session_timeout=float(seconds))}
        else:
            raise SystemExit("unknown step %r" % step)
        result["seconds"] = round(time.time() - started, 3)
        print(json.dumps(result), flush=True)
    return 0


def main(argv) -> int:
    if argv[0] == "hold":
        return _hold(int(argv[1]), argv[2], argv[3])
    if argv[0] == "plan":
        return _plan(int(argv[1]), argv[2], argv[3], argv[4:])
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
