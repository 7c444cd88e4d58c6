"""The board side on aarch64: an emulated arm64 Debian board with no compiler
(scripts/arm-board.sh), edge-server on it registered with a tracker on this
x86_64 host, and everything a user does from the host.

Run by `make test-arm`; skipped (with that hint) in a plain `make test`.
The board is qemu-user emulation: functional, never a performance figure.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tvm

import host_client
from edge_common.modes import resolve
from host_client.errors import ArchMismatch
from host_client.kernels import build_matmul
from tests.support import arm_board, procs
from tests.support.pinning_kit import status_affinities


def board_topology(board) -> dict:
    """The document the board announced on the tracker, as JSON-like dict."""
    (entry,) = [b for b in host_client.list_boards(board.tracker) if b.key == board.key]
    return entry.topology.to_dict()


def test_probe_on_the_board_says_aarch64_and_no_linker(board):
    out = arm_board.run(arm_board.BOARD_PREFIX + "/bin/edge-server", "probe", "--json")
    assert out.returncode == 0, out.stderr
    probed = json.loads(out.stdout)
    # qemu-user shows the host's /proc/cpuinfo; the arch comes from the ELF of the server
    assert probed["arch"] == "aarch64"
    assert probed["tvm_target"]["mtriple"] == "aarch64-linux-gnu"
    announced = board_topology(board)
    assert announced["arch"] == "aarch64" and announced["linker"] is None
    uname = arm_board.run("/bin/uname", "-m")
    assert uname.stdout.strip() == "aarch64"


def every_mode(topology):
    from host_client.cli.bench import default_modes
    cpus = [c["id"] for c in topology["cpus"]]
    return default_modes(topology) + ["cpus:%d" % c for c in cpus] + ["big:1"]


def test_every_mode_is_pinned_as_asked_and_read_back(board):
    topology = board_topology(board)
    for mode in every_mode(topology):
        board.wait_free()
        session = host_client.connect(board.tracker, board.key, thread_mode=mode, wait=120)
        try:
            state = session.thread_state
            want = resolve(topology, mode).cpus
            assert state["cpus"] == want, (mode, state)
            assert state["nthreads"] == len(want)
            # the session process is a process of this machine too: read /proc ourselves
            seen = status_affinities(state["pid"])
            assert seen[state["pid"]] == [want[0]], (mode, seen)
            assert all(set(cpus) <= set(want) for cpus in seen.values()), (mode, seen)
        finally:
            session.release()
            del session


def test_edge_client_bench_cross_compiles_and_checks_against_numpy(board):
    board.wait_free()
    out = subprocess.run([sys.executable, "-m", "host_client.cli.main", "bench",
                          "--tracker", board.tracker, "--key", board.key, "--matmul", "48",
                          "--repeat", "2", "--min-repeat-ms", "0", "--json", "--quiet",
                          "--wait", "120"],
                         capture_output=True, text=True, timeout=900, cwd=str(procs.REPO))
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)["results"]
    assert [r["mode"] for r in results][0] == "all"
    for result in results:
        assert result["error"] is None and result["correct"] is True, result
        assert result["mean_ms"] > 0


def test_a_host_library_is_refused_before_upload_in_one_line(board, tmp_path):
    kernel = build_matmul(16, {"kind": "llvm"}, str(tmp_path))       # x86-64
    board.wait_free()
    session = host_client.connect(board.tracker, board.key, thread_mode="big:1", wait=120)
    try:
        try:
            session.upload(kernel.path)
        except ArchMismatch as err:
            said = str(err)
        else:
            said = "uploaded"
        assert said == "matmul_16.so: built for x86-64, board runs aarch64"
        assert "matmul_16.so" not in session.listdir(".").split(",")
    finally:
        session.release()
        del session


def matmul_mod(n):
    from tvm import te
    a = te.placeholder((n, n), name="A")
    b = te.placeholder((n, n), name="B")
    k = te.reduce_axis((0, n), name="k")
    c = te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    return tvm.IRModule({"main": te.create_prim_func([a, b, c])})


def run_on_board(board, lib, n, mode):
    """Export `lib` for the board, run it there, return (out, a, b)."""
    import tempfile
    from host_client.link import export_for_board
    with tempfile.TemporaryDirectory() as tmp:
        path = export_for_board(lib, os.path.join(tmp, "best.so"), "aarch64")
        board.wait_free()
        session = host_client.connect(board.tracker, board.key, thread_mode=mode, wait=120)
        try:
            module = session.upload_module(path)
            dev = session.cpu()
            rng = np.random.default_rng(1)
            a, b = (rng.uniform(-1, 1, (n, n)).astype("float32") for _ in range(2))
            out = tvm.runtime.tensor(np.zeros((n, n), "float32"), dev)
            module["main"](tvm.runtime.tensor(a, dev), tvm.runtime.tensor(b, dev), out)
            return out.numpy(), a, b
        finally:
            session.release()
            del session


def drop_unnamed_ms_handlers():
    """A second tune_tir in one process formats the names of the handlers its
    logger already has (TVM 0.27 s_tir.meta_schedule.logging); pytest's log
    capture has put unnamed ones there, so drop those first."""
    import logging
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    logger.handlers = [h for h in logger.handlers if h.get_name()]


@pytest.mark.parametrize("builder", ["stock LocalBuilder (.tar)", "edge_builder(runner)"])
def test_metaschedule_tunes_through_the_plugin_on_a_board_without_a_compiler(
        board, tmp_path, builder):
    from tvm.s_tir import meta_schedule as ms
    n, trials = 32, 8
    record = tmp_path / "sessions.jsonl"
    board.wait_free()
    # The README's two lines:
    runner = host_client.edge_runner(board.tracker, board.key, thread_mode="big:1",
                                     record=str(record), session_timeout=300)
    target = host_client.target_for(runner)
    assert str(target.attrs["mtriple"]) == "aarch64-linux-gnu"
    kwargs = {}
    if builder.startswith("edge_builder"):
        kwargs["builder"] = host_client.edge_builder(runner, in_process=True)
    else:
        kwargs["builder"] = ms.builder.LocalBuilder(max_workers=1, timeout_sec=600)
    drop_unnamed_ms_handlers()
    database = ms.tune_tir(matmul_mod(n), target, str(tmp_path / "work"),
                           max_trials_global=trials, num_trials_per_iter=trials,
                           runner=runner, **kwargs)
    records = database.get_all_tuning_records()
    measured = [r for r in records if r.run_secs and float(r.run_secs[0]) < 1e9]
    assert len(records) == trials and len(measured) == trials, \
        [str(r.run_secs) for r in records]
    sessions = [json.loads(line) for line in record.read_text().splitlines()]
    assert {s["thread_state"]["mode"] for s in sessions} == {"big:1"}
    assert "refused" not in board.server.log()
    best = ms.tir_integration.compile_tir(database, matmul_mod(n), target)
    out, a, b = run_on_board(board, tvm.compile(best.mod, target=target), n, "big:1")
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-4)


def test_a_stock_client_session(board, tmp_path):
    """Plain TVM on the host: request, set_thread_mode, upload a cross-linked
    .so, run it; then a .tar, which this compiler-less board refuses clearly."""
    from tvm import rpc
    from host_client.link import export_for_board
    from tvm.support.tar import tar

    n = 24
    target = tvm.target.Target(board_topology(board)["tvm_target"])
    lib = tvm.compile(matmul_mod(n), target=target)
    so = export_for_board(lib, str(tmp_path / "mm.so"), "aarch64")
    archive = str(tmp_path / "mm.tar")
    lib.export_library(archive, fcompile=tar)
    board.wait_free()
    remote = rpc.connect_tracker(procs.HOST, board.tracker_proc.port).request(
        board.key, session_timeout=300)
    state = json.loads(remote.get_function("edge.set_thread_mode")("cpus:1"))
    assert state["cpus"] == [1]
    remote.upload(so)
    module = remote.load_module("mm.so")
    dev = remote.cpu()
    a, b = (np.random.rand(n, n).astype("float32") for _ in range(2))
    out = tvm.runtime.tensor(np.zeros((n, n), "float32"), dev)
    module["main"](tvm.runtime.tensor(a, dev), tvm.runtime.tensor(b, dev), out)
    np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-4)
    remote.upload(archive)
    message = refused_load(remote, "mm.tar")
    assert "no C/C++ compiler" in message and "host_client.edge_builder()" in message
    assert "sudo apt-get install g++" in message
    del module, out, remote
    assert "load_module" in board.server.log() and "mm.tar refused" in board.server.log()


def refused_load(remote, name) -> str:
    from tvm.error import RPCError
    try:
        remote.load_module(name)
    except RPCError as err:
        return str(err)
    raise AssertionError("the board loaded %s without a compiler" % name)
