"""`edge-client` as a user runs it: real processes, real tracker and boards."""
import json
import os
import subprocess
import sys

import pytest

from tests.support import client_kit
from host_client.kernels import build_matmul
from host_client.cli.bench import default_modes

LOCAL, RK, STOCK = client_kit.LOCAL_KEY, client_kit.RK_KEY, client_kit.STOCK_KEY
FIXTURES = client_kit.procs.FIXTURES


def edge_client(*args, env=None, timeout=300):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "host_client.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=str(client_kit.procs.REPO))


def one_line_error(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("edge-client: error: ")
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_list_shows_boards_keys_state_and_classes(stack):
    for key in (LOCAL, RK, STOCK):
        stack.wait_free(key)
    proc = edge_client("list", "--tracker", stack.tracker)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["KEY", "ADDRESS", "SERVER", "FREE", "PENDING", "CORE", "CLASSES",
                                "AT", "REGISTRATION", "SANDBOX"]
    local_line = next(line for line in lines if line.startswith(LOCAL + " "))
    assert "  no cpufreq, no thermal zones  " in local_line   # this VM (issue 13)
    rk_line = next(line for line in lines if line.startswith(RK))
    assert "big 2×cortex-a72@1.8GHz, little 4×cortex-a53@1.42GHz" in rk_line
    assert "127.0.0.1:%d" % stack.rk3399.port in rk_line and " 1/1 " in rk_line
    stock_line = next(line for line in lines if line.startswith(STOCK))
    assert "stock" in stock_line.split() and stock_line.endswith("none (stock server)")
    assert "seccomp" in rk_line.split("@1.42GHz", 1)[1] or "landlock" in rk_line   # SANDBOX


def test_list_json(stack):
    proc = edge_client("list", "--tracker", stack.tracker, "--json")
    assert proc.returncode == 0, proc.stderr
    boards = {b["key"]: b for b in json.loads(proc.stdout)}
    assert boards[RK]["edge"] and boards[RK]["arch"] == "aarch64"
    assert [c["name"] for c in boards[RK]["classes"]] == ["big", "little"]
    assert boards[STOCK]["edge"] is False and boards[STOCK]["classes"] == []
    assert boards[STOCK]["sandbox"] == "none (stock server)"
    assert boards[RK]["sandbox"].startswith(("landlock", "seccomp", "none: kernel lacks"))


def test_probe_shows_topology_and_targets(stack):
    stack.wait_free(RK)
    proc = edge_client("probe", "--tracker", stack.tracker, "--key", RK, "--mode", "little:1")
    assert proc.returncode == 0, proc.stderr
    assert "FriendlyElec NanoPi M4" in proc.stdout
    assert "cortex-a53" in proc.stdout and "1416" in proc.stdout
    assert '"num-cores": 1' in proc.stdout

    stack.wait_free(RK)
    proc = edge_client("probe", "--tracker", stack.tracker, "--key", RK, "--mode", "big",
                       "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["topology"]["schema"] == 1
    assert doc["targets"]["big"]["mcpu"] == "cortex-a72"
    assert doc["targets"]["big"]["num-cores"] == 2
    assert doc["thread_state"]["mode"]


def test_bench_json_runs_each_mode_in_its_own_session(stack):
    stack.wait_free(LOCAL)
    proc = edge_client("bench", "--tracker", stack.tracker, "--key", LOCAL, "--matmul", 64,
                       "--modes", "all,big:1,cpus:1", "--repeat", 3, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    results = {r["mode"]: r for r in doc["results"]}
    assert list(results) == ["all", "big:1", "cpus:1"]
    assert results["all"]["cpus"] == [0, 1] and results["all"]["nthreads"] == 2
    assert results["big:1"]["cpus"] == [0] and results["cpus:1"]["cpus"] == [1]
    for r in results.values():
        assert r["error"] is None and r["correct"] is True
        assert len(r["times_ms"]) == 3 and r["mean_ms"] > 0 and r["stddev_ms"] >= 0
    assert results["all"]["speed_vs_first"] == 1.0
    assert results["big:1"]["speed_vs_first"] == pytest.approx(
        results["all"]["mean_ms"] / results["big:1"]["mean_ms"])
    assert "3/3" in proc.stderr  # progress
    events = client_kit.session_events(stack.local.log())
    modes_seen = {e[1] for ev in events.values() for e in ev if e[0] == "mode"}
    assert {"big:1", "cpus:1"} <= modes_seen


def test_bench_table_and_a_refused_mode(stack):
    stack.wait_free(LOCAL)
    proc = edge_client("bench", "--tracker", stack.tracker, "--key", LOCAL, "--matmul", 32,
                       "--modes", "big:1,big:7", "--repeat", 2, "--quiet")
    assert proc.returncode == 3, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].split() == ["MODE", "CPUS", "THREADS", "MEAN", "MS", "STDDEV", "MS", "CV",
                                "SPEED", "VERDICT"]
    assert lines[3].split()[0] == "big:1" and lines[3].split()[-2:] == ["1.00x", "UNKNOWN"]
    assert lines[4].split()[0] == "big:7" and lines[4].split()[-2] == "failed"
    assert "big:1: UNKNOWN: no cpufreq for cpu" in proc.stdout   # this VM has no cpufreq
    assert "7 big cores" in proc.stdout
    assert proc.stderr == ""


def test_bench_a_module_the_user_built(stack, tmp_path):
    stack.wait_free(LOCAL)
    kernel = build_matmul(48, {"kind": "llvm"}, str(tmp_path))
    proc = edge_client("bench", kernel.path, "--tracker", stack.tracker, "--key", LOCAL,
                       "--modes", "big:1", "--arg", "48x48", "--arg", "48x48",
                       "--arg", "48x48:float32", "--func", "matmul", "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert result["mode"] == "big:1" and result["mean_ms"] > 0


def test_bench_module_without_its_arguments_is_a_usage_error(stack, tmp_path):
    kernel = build_matmul(8, {"kind": "llvm"}, str(tmp_path))
    proc = edge_client("bench", kernel.path, "--tracker", stack.tracker, "--key", LOCAL)
    assert proc.returncode == 2
    assert "--arg" in proc.stderr


def test_bench_on_a_stock_server_is_one_clear_line(stack):
    proc = edge_client("bench", "--tracker", stack.tracker, "--key", STOCK, "--matmul", 16)
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert "127.0.0.1:%d" % stack.stock.port in line and "edge-server" in line


def test_cross_board_without_cross_compiler_says_what_to_install(stack):
    proc = edge_client("bench", "--tracker", stack.tracker, "--key", RK, "--matmul", 16,
                       env={"PATH": "/nonexistent"})
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert "aarch64-linux-gnu-gcc" in line and "gcc-aarch64-linux-gnu" in line


def test_unknown_key(stack):
    proc = edge_client("probe", "--tracker", stack.tracker, "--key", "nope")
    assert proc.returncode == 1
    assert "'nope'" in one_line_error(proc)


def test_unreachable_tracker_one_line_then_traceback_with_verbose():
    port = client_kit.procs.free_port()
    proc = edge_client("list", "--tracker", "127.0.0.1:%d" % port)
    assert proc.returncode == 1
    assert "cannot reach the tracker at 127.0.0.1:%d" % port in one_line_error(proc)
    proc = edge_client("list", "--tracker", "127.0.0.1:%d" % port, "--verbose")
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_busy_board_past_the_wait(stack):
    import host_client

    stack.wait_free(LOCAL)
    holder = host_client.connect(stack.tracker, LOCAL, thread_mode="all")
    try:
        proc = edge_client("probe", "--tracker", stack.tracker, "--key", LOCAL, "--wait", 1)
        assert proc.returncode == 1
        assert "busy" in one_line_error(proc)
    finally:
        holder.release()


def test_no_tracker_given_names_the_flag_and_variables():
    env = {k: "" for k in ("TVM_TRACKER_HOST", "TVM_TRACKER_PORT")}
    proc = edge_client("list", env=env)
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert "--tracker" in line and "TVM_TRACKER_HOST" in line


def test_default_modes_cover_each_class_once():
    rk = json.loads((FIXTURES / "rk3399" / "expected.json").read_text())
    assert default_modes(rk) == ["all", "big", "big:1", "little", "little:1"]
    here = {"classes": [{"name": "big", "rank": 0, "cpus": [0, 1]}],
            "cpus": [{"id": i, "online": True, "allowed": True, "class": "big", "core_id": i,
                      "package": 0, "smt_siblings": [i]} for i in (0, 1)]}
    assert default_modes(here) == ["all", "big:1"]
