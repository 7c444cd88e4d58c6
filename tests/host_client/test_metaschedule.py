"""The MetaSchedule runner plugin against real edge-servers: a short tuning
run whose every measurement must run in the requested mode, and the ways a
measurement can fail to get its mode."""
import json
import re

import cloudpickle
import numpy as np
import pytest
import tvm
from tvm import te
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.runner import RunnerInput

from tests.support import client_kit
import host_client
from host_client.errors import KeyUnknown, NotAnEdgeServer, ThreadModeRefused
from host_client.metaschedule import EdgeSessionFactory, alloc_argument, host_random_fill

LOCAL, RK, STOCK = client_kit.LOCAL_KEY, client_kit.RK_KEY, client_kit.STOCK_KEY
N = 64


def matmul_mod() -> tvm.IRModule:
    a = te.placeholder((N, N), name="A")
    b = te.placeholder((N, N), name="B")
    k = te.reduce_axis((0, N), name="k")
    c = te.compute((N, N), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    return tvm.IRModule({"main": te.create_prim_func([a, b, c])})


def run_locally(mod: tvm.IRModule, target) -> None:
    lib = tvm.compile(mod, target=target)
    dev = tvm.cpu()
    a = np.random.rand(N, N).astype("float32")
    b = np.random.rand(N, N).astype("float32")
    c = tvm.runtime.empty((N, N), "float32", dev)
    lib["main"](tvm.runtime.tensor(a, dev), tvm.runtime.tensor(b, dev), c)
    np.testing.assert_allclose(c.numpy(), a @ b, rtol=1e-4)


def test_tuning_measures_every_trial_in_the_requested_mode(stack, tmp_path):
    stack.wait_free(LOCAL)
    record = tmp_path / "sessions.jsonl"
    # The two lines of the README:
    runner = host_client.edge_runner(stack.tracker, LOCAL, thread_mode="big:1",
                                     record=str(record))
    target = host_client.target_for(runner)
    assert int(target.attrs["num-cores"]) == 1

    mod = matmul_mod()
    log_start = len(stack.local.log())  # the stack is shared: look at this run's lines only
    database = ms.tune_tir(mod, target, str(tmp_path / "work"), max_trials_global=24,
                           num_trials_per_iter=24, runner=runner,
                           builder=host_client.edge_builder(in_process=True))
    measured = [r for r in database.get_all_tuning_records()
                if r.run_secs and float(r.run_secs[0]) < 1e9]
    assert len(measured) >= 8, "most trials should have been measured"

    sessions = [json.loads(line) for line in record.read_text().splitlines()]
    assert len(sessions) >= len(measured)
    for session in sessions:
        assert session["thread_state"]["mode"] == "big:1"
        assert session["thread_state"]["cpus"] == [0]
        assert all(t["cpus"] == [0] for t in session["thread_state"]["threads"])

    # The board's own log: each session that loaded a module had been put in
    # big:1 (on CPU 0) before it did.
    events = client_kit.session_events(stack.local.log()[log_start:])
    loaded = {peer: ev for peer, ev in events.items() if ("load",) in ev}
    assert len(loaded) >= len(measured)
    for peer, ev in loaded.items():
        first_load = ev.index(("load",))
        modes = [e for e in ev[:first_load] if e[0] == "mode"]
        assert modes and modes[-1] == ("mode", "big:1", "0"), (peer, ev)

    best = ms.tir_integration.compile_tir(database, mod, target)
    assert best is not None
    run_locally(best.mod, target)


def artifact(tmp_path) -> RunnerInput:
    from tvm.support.tar import tar

    mod = matmul_mod()
    path = str(tmp_path / "trial.tar")
    tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"})).export_library(path,
                                                                                fcompile=tar)
    args_info = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
    return RunnerInput(path, "cpu", args_info)


def test_a_refused_mode_is_a_runner_error_with_the_boards_message(stack, tmp_path):
    stack.wait_free(LOCAL)
    runner = host_client.edge_runner(stack.tracker, LOCAL, thread_mode="big:3", check=False,
                                     preload=False)
    log_start = len(stack.local.log())
    result = runner.run([artifact(tmp_path)])[0].result()
    assert result.run_secs is None
    assert "refused thread mode 'big:3'" in result.error_msg
    assert "3 big cores" in result.error_msg
    # Nothing was loaded in the session that did not get its mode.
    log = stack.local.log()[log_start:]
    refused = set(re.findall(r"session (\S+): refused.*big:3", log))
    assert len(refused) == 1
    events = client_kit.session_events(log)
    assert all(("load",) not in events.get(peer, []) for peer in refused)


def test_a_stock_board_is_a_runner_error_naming_edge_server(stack, tmp_path):
    stack.wait_free(STOCK)
    runner = host_client.edge_runner(stack.tracker, STOCK, thread_mode="all", check=False,
                                     preload=False)
    result = runner.run([artifact(tmp_path)])[0].result()
    assert result.run_secs is None
    assert "edge-server" in result.error_msg
    assert "127.0.0.1:%d" % stack.stock.port in result.error_msg


def test_measurement_in_mode_on_the_plugin_alone(stack, tmp_path):
    stack.wait_free(LOCAL)
    runner = host_client.edge_runner(stack.tracker, LOCAL, thread_mode="cpus:1",
                                     preload=False)
    result = runner.run([artifact(tmp_path)])[0].result()
    assert result.error_msg is None, result.error_msg
    assert len(result.run_secs) >= 1 and all(float(s) > 0 for s in result.run_secs)


@pytest.mark.parametrize("key, mode, error, words", [
    (RK, "little:9", ThreadModeRefused, "little"),
    (STOCK, "all", NotAnEdgeServer, "edge-server"),
    ("nobody", "all", KeyUnknown, "nobody"),
])
def test_runner_refuses_up_front_what_no_board_would_accept(stack, key, mode, error, words):
    with pytest.raises(error, match=words):
        host_client.edge_runner(stack.tracker, key, thread_mode=mode, preload=False)


def test_fixture_board_runner_gives_the_little_core_target(stack):
    runner = host_client.edge_runner(stack.tracker, RK, thread_mode="little:1", preload=False)
    target = host_client.target_for(runner)
    assert str(target.attrs["mcpu"]) == "cortex-a53"
    assert int(target.attrs["num-cores"]) == 1


def test_hooks_survive_the_worker_pickling():
    factory = cloudpickle.loads(cloudpickle.dumps(EdgeSessionFactory("little:1", wait=5)))
    assert (factory.thread_mode, factory.wait) == ("little:1", 5)
    assert cloudpickle.loads(cloudpickle.dumps(alloc_argument)) is alloc_argument


def test_arguments_are_filled_on_the_board_and_by_the_host_fallback(stack):
    """edge-server registers random_fill_for_measure (its runtime-only TVM lacks
    it); the plugin's host-side fill stays for boards that do not have it."""
    stack.wait_free(LOCAL)
    session = host_client.connect(stack.tracker, LOCAL, thread_mode="big:1")
    try:
        session.get_function("tvm.contrib.random.random_fill_for_measure")  # the board has it
        dev = session.cpu()
        (args,) = alloc_argument(session, dev, [["TENSOR", "float32", [8, 8]],
                                                ["TENSOR", "int32", [4]]], 1)
        floats = args[0].numpy()
        assert floats.shape == (8, 8) and np.unique(floats).size > 1
        assert args[1].numpy().dtype == np.int32
        remote = tvm.runtime.tensor(np.zeros((8, 8), dtype="float32"), dev)
        host_random_fill(remote)
        assert np.unique(remote.numpy()).size > 1
    finally:
        session.release()


def test_runner_upload_refuses_another_machine_and_links_a_tar_for_this_one(stack, tmp_path):
    """f_upload_module: a trial built for x86-64 never reaches an aarch64 board
    (the rk3399 fixture server announces aarch64); on this machine's board a
    .tar is linked here and loaded as a .so."""
    from tvm.support.tar import tar

    from host_client.errors import ArchMismatch
    from host_client.metaschedule import upload_module

    lib = tvm.compile(matmul_mod(), target=tvm.target.Target({"kind": "llvm"}))
    archive = str(tmp_path / "tvm_tmp_mod.tar")
    lib.export_library(archive, fcompile=tar)
    stack.wait_free(RK)
    session = host_client.connect(stack.tracker, RK, thread_mode="little:1")
    try:
        said = None
        try:
            upload_module(session, archive, "tvm_tmp_mod.tar")
        except ArchMismatch as err:
            said = str(err)
        assert said == "tvm_tmp_mod.tar:lib0.o: built for x86-64, board runs aarch64"
        assert not any(n.startswith("tvm_tmp_mod") for n in session.listdir(".").split(","))
    finally:
        session.release()
        del session
    stack.wait_free(LOCAL)
    session = host_client.connect(stack.tracker, LOCAL, thread_mode="big:1")
    try:
        module = upload_module(session, archive, "tvm_tmp_mod.tar")
        assert "tvm_tmp_mod.tar.so" in session.listdir(".").split(",")
        dev = session.cpu()
        a, b = (np.random.rand(N, N).astype("float32") for _ in range(2))
        c = tvm.runtime.tensor(np.zeros((N, N), "float32"), dev)
        module["main"](tvm.runtime.tensor(a, dev), tvm.runtime.tensor(b, dev), c)
        np.testing.assert_allclose(c.numpy(), a @ b, rtol=1e-4)
        del module, c
    finally:
        session.release()
        del session
