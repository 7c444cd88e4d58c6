"""Pinning TVM's pool and every thread, in a real process with real TVM and a
real parallel kernel, checked from outside through /proc/<pid>/task.

This machine has 2 CPUs (0 and 1) and no SMT, so the modes here are the CPU
sets {0}, {1} and {0, 1}; resolution on bigger boards is test_modes.py's job.
"""
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_server.session.pinning import read_affinities
from tests.support.pinning_kit import build_kernel, status_affinities, stock_tvm_threads

REPO = Path(__file__).resolve().parents[3]
WORKER = REPO / "tests" / "support" / "pin_worker.py"
HOST_CPUS = sorted(os.sched_getaffinity(0))

pytestmark = pytest.mark.skipif(HOST_CPUS != [0, 1], reason="written for the 2-CPU test machine")


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    path = tmp_path_factory.mktemp("kernel") / "matmul.so"
    build_kernel(path)
    return str(path)


class Worker:
    """tests/support/pin_worker.py in a subprocess."""

    def __init__(self, env=None):
        full_env = dict(os.environ, PYTHONPATH=str(REPO), TVM_USE_RUNTIME_LIB="1")
        full_env.update(env or {})
        self.proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=full_env)
        self.pid = self.proc.pid

    def call(self, *words):
        self.proc.stdin.write(" ".join(map(str, words)) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "pin_worker died (exit %s)" % self.proc.poll()
        return json.loads(line)

    def ok(self, *words):
        out = self.call(*words)
        assert "error" not in out, out
        return out

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(20)


@pytest.fixture
def worker():
    w = Worker()
    yield w
    w.close()


def ticks(pid):
    """{tid: utime + stime in clock ticks} for every thread of pid."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out[int(tid)] = int(fields[11]) + int(fields[12])
    return out


def busy_threads(worker, command, runs):
    """Run the kernel; return {tid: ticks} of the threads that did real work
    (at least a quarter of the busiest thread's CPU time)."""
    before = ticks(worker.pid)
    worker.ok(command, runs)
    after = ticks(worker.pid)
    used = {tid: after[tid] - before.get(tid, 0) for tid in after}
    top = max(used.values())
    assert top > 20, "kernel too short to measure: %s" % used
    return {tid: t for tid, t in used.items() if t >= top / 4}


def assert_layout(pid, cpus, serving_tid):
    """From outside: the serving thread on cpus[0], every thread inside the set."""
    seen = status_affinities(pid)
    assert seen[serving_tid] == [cpus[0]], seen
    for tid, allowed in seen.items():
        assert set(allowed) <= set(cpus), (tid, allowed, cpus)
    return seen


def test_read_affinities_of_this_process():
    seen = read_affinities()
    assert seen and all(set(c) <= set(HOST_CPUS) for c in seen.values())
    assert os.getpid() in seen
    assert seen == status_affinities("self")


def test_read_affinities_agrees_with_proc_status_of_a_pinned_pool(worker):
    worker.ok("create")
    for cpus in ("1", "0", "0-1"):
        worker.ok("apply", "cpus:" + cpus, cpus)
        seen = read_affinities(worker.pid)
        assert seen == status_affinities(worker.pid)
        assert len(seen) >= 3          # serving thread, a pool worker, numpy's thread(s)


@pytest.mark.parametrize("machine, cpus, threads", [
    ("x86_64", 2, 1), ("x86_64", 16, 8), ("x86_64", 1, 1),
    ("aarch64", 2, 2), ("aarch64", 6, 6), ("armv7l", 4, 4),
])
def test_stock_tvm_sizing_per_arch(machine, cpus, threads):
    assert stock_tvm_threads(machine, cpus) == threads


def test_stock_tvm_thread_count_follows_the_arch(worker, kernel):
    """The baseline the default mode fixes: on this 2-CPU box a parallel
    kernel under TVM's own sizing runs on one thread on x86-64 (halved) and on
    two on ARM (the emulated arm64 board of `make test-arm` runs this too)."""
    worker.ok("load", kernel)
    expected = stock_tvm_threads(platform.machine(), len(os.sched_getaffinity(0)))
    assert len(busy_threads(worker, "stock_run", 6)) == expected


def test_default_all_uses_both_cores(worker, kernel):
    created = worker.ok("create")
    assert created["pool_size"] == 2 and len(created["pool_tids"]) == 1
    state = worker.ok("apply", "all", "0-1")
    assert (state["cpus"], state["nthreads"], state["tvm_num_threads"]) == ([0, 1], 2, 2)
    assert state["pid"] == worker.pid
    seen = assert_layout(worker.pid, [0, 1], created["serving_tid"])
    assert seen[created["pool_tids"][0]] == [1]
    worker.ok("load", kernel)
    busy = busy_threads(worker, "run", 6)
    assert len(busy) == 2
    assert sorted(seen[t][0] for t in busy) == [0, 1]    # each on its own core


@pytest.mark.parametrize("sequence", [
    ["all", "0", "1", "all"],
    ["1", "all", "0", "all", "1"],
    ["0", "1"],
])
def test_modes_before_and_after_kernels(worker, kernel, sequence):
    """Any mode, in any order, before or after kernels ran: exactly its cores."""
    created = worker.ok("create")
    worker.ok("load", kernel)
    for step in sequence:
        cpus = [0, 1] if step == "all" else [int(step)]
        mode = "all" if step == "all" else "cpus:" + step
        state = worker.ok("apply", mode, ",".join(map(str, cpus)))
        assert (state["mode"], state["cpus"], state["tvm_num_threads"]) == (mode, cpus, len(cpus))
        assert {t["tid"]: t["cpus"] for t in state["threads"]} == status_affinities(worker.pid)
        seen = assert_layout(worker.pid, cpus, created["serving_tid"])
        busy = busy_threads(worker, "run", 4)
        assert len(busy) == len(cpus), (step, busy)
        assert sorted(seen[t][0] for t in busy) == cpus
        assert all(len(seen[t]) == 1 for t in busy)


def test_other_threads_follow_the_set(worker):
    """numpy's BLAS pool and any other thread are pinned too, not only TVM's."""
    created = worker.ok("create")
    worker.ok("apply", "cpus:1", "1")
    seen = status_affinities(worker.pid)
    others = set(seen) - {created["serving_tid"], *created["pool_tids"]}
    assert others, "expected at least numpy's extra thread: %s" % seen
    assert all(seen[t] == [1] for t in seen), seen


def test_pool_that_cannot_grow_is_refused_and_stays_usable(worker, kernel):
    created = worker.ok("create", 1)
    assert created["pool_tids"] == []
    out = worker.call("apply", "all", "0-1")
    assert out["error"] == "PinningError"
    assert "can only shrink" in out["message"]
    assert "call set_thread_mode before" in out["message"]
    assert "open a new session" in out["message"]
    state = worker.ok("apply", "cpus:1", "1")
    assert state["cpus"] == [1] and state["tvm_num_threads"] == 1
    worker.ok("load", kernel)
    assert len(busy_threads(worker, "run", 3)) == 1
    assert_layout(worker.pid, [1], created["serving_tid"])


def test_cpus_this_process_may_not_use_are_refused(worker):
    worker.ok("create")
    before = worker.ok("apply", "all", "0-1")
    for cpus in ("7", "0,1,2"):
        out = worker.call("apply", "cpus:" + cpus, cpus)
        assert out["error"] == "PinningError"
        assert "not available to this server process" in out["message"]
        assert "cpus 0-1" in out["message"]
    after = worker.ok("state")
    assert (after["mode"], after["cpus"]) == (before["mode"], before["cpus"])


def test_a_pool_made_before_the_pinner_is_detected(kernel):
    """If something ran parallel TVM code first, the pool's size is unknown:
    say so instead of pinning blind. (TVM_NUM_THREADS=2, because with TVM's
    own x86 sizing of 1 thread a kernel runs serially and makes no pool.)"""
    w = Worker(env={"TVM_NUM_THREADS": "2"})
    try:
        w.ok("load", kernel)
        w.ok("stock_run", 1)
        out = w.call("create")
        assert out["error"] == "PinningError"
        assert "a pool existed before" in out["message"]
    finally:
        w.close()


def test_env_that_would_break_binding_is_overridden(kernel):
    """TVM_BIND_THREADS=0 / TVM_EXCLUDE_WORKER0=0 / TVM_NUM_THREADS=1 in the
    environment do not change the layout."""
    w = Worker(env={"TVM_BIND_THREADS": "0", "TVM_EXCLUDE_WORKER0": "0", "TVM_NUM_THREADS": "1"})
    try:
        created = w.ok("create")
        assert created["pool_size"] == 2
        w.ok("apply", "all", "0-1")
        seen = assert_layout(w.pid, [0, 1], created["serving_tid"])
        assert seen[created["pool_tids"][0]] == [1]
        w.ok("load", kernel)
        assert len(busy_threads(w, "run", 4)) == 2
    finally:
        w.close()


def test_calls_from_another_thread_are_refused():
    """The pool is thread-local: touching it from another thread would make a
    second pool, so the pinner refuses."""
    code = (
        "import os, threading; os.environ['TVM_USE_RUNTIME_LIB'] = '1'\n"
        "from edge_server.session.pinning import ThreadPinner, PinningError\n"
        "p = ThreadPinner.create()\n"
        "out = []\n"
        "def other():\n"
        "    try:\n"
        "        p.apply('all', [0, 1])\n"
        "    except PinningError as e:\n"
        "        out.append(str(e))\n"
        "t = threading.Thread(target=other); t.start(); t.join()\n"
        "print(out[0])\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert "TVM's pool belongs to thread" in res.stdout, res.stderr
