"""`edge-client` as a user runs it: real processes, real tracker and boards."""
import json
import os
import socket
import subprocess
import sys

import pytest

from tests.support import client_kit
from edge_common.version import version
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


def test_list_shows_each_board_with_its_version_state_classes_and_modes(stack):
    for key in (LOCAL, RK, STOCK):
        stack.wait_free(key)
    proc = edge_client("list", "--tracker", stack.tracker)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["HOST", "BOARD", "ADDRESS", "KEY", "VERSION", "STATE", "CORE",
                                "CLASSES", "SANDBOX", "AT", "REGISTRATION", "MODES"]
    local_line = next(line for line in lines if " %s " % LOCAL in line)
    assert "  no cpufreq, no thermal zones  " in local_line   # this VM (issue 13)
    rk_line = next(line for line in lines if " %s " % RK in line)
    assert "FriendlyElec NanoPi M4" in rk_line and " free " in rk_line
    assert " %s " % version() in rk_line and rk_line.startswith(socket.gethostname())
    assert "big 2×cortex-a72@1.8GHz, little 4×cortex-a53@1.42GHz" in rk_line
    assert rk_line.endswith("all, big[:1-2], little[:1-4], cpus:0-5")
    assert "127.0.0.1:%d" % stack.rk3399.port in rk_line
    assert "key %s: 1/1 free, 0 pending" % RK in lines
    assert "seccomp" in rk_line.split("@1.42GHz", 1)[1] or "landlock" in rk_line   # SANDBOX
    stock_line = next(line for line in lines if " %s " % STOCK in line)
    assert " stock " in stock_line and "none (stock server)" in stock_line


def test_list_json_board_is_the_name_address_apart(stack):
    stack.wait_free(RK)
    proc = edge_client("list", "--tracker", stack.tracker, "--json")
    assert proc.returncode == 0, proc.stderr
    boards = {b["key"]: b for b in json.loads(proc.stdout)}
    assert boards[RK]["edge"] and boards[RK]["arch"] == "aarch64"
    assert boards[RK]["board"] == "FriendlyElec NanoPi M4"
    assert boards[RK]["address"] == "127.0.0.1:%d" % stack.rk3399.port
    assert boards[RK]["version"] == version() and boards[RK]["state"] == "free"
    assert [c["name"] for c in boards[RK]["classes"]] == ["big", "little"]
    assert boards[STOCK]["edge"] is False and boards[STOCK]["classes"] == []
    assert boards[STOCK]["sandbox"] == "none (stock server)"
    assert boards[RK]["sandbox"].startswith(("landlock", "seccomp", "none: kernel lacks"))


def test_list_into_a_closed_pipe_is_quiet(stack):
    proc = subprocess.Popen([sys.executable, "-m", "host_client.cli.main", "list", "--tracker",
                             stack.tracker, "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=str(client_kit.procs.REPO))
    proc.stdout.close()                       # the reader is gone before anything is written
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == b"", err


def test_probe_shows_topology_and_targets(stack):
    stack.wait_free(RK)
    proc = edge_client("probe", "--tracker", stack.tracker, "--key", RK, "--mode", "little:1")
    assert proc.returncode == 0, proc.stderr
    assert "FriendlyElec NanoPi M4" in proc.stdout
    assert "cortex-a53" in proc.stdout and "1416" in proc.stdout
    assert '"num-cores": 1' in proc.stdout

    stack.wait_free(RK)
    # (the fixture's little cores 0-1 exist on this machine, its big ones 4-5 do not)
    proc = edge_client("probe", "--tracker", stack.tracker, "--key", RK, "--mode", "little:2",
                       "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["topology"]["schema"] == 1
    assert doc["targets"]["little:2"]["mcpu"] == "cortex-a53"
    assert doc["targets"]["little:2"]["num-cores"] == 2
    assert doc["thread_state"]["mode"] == "little:2" and doc["thread_state"]["cpus"] == [0, 1]
    assert doc["board"] == "FriendlyElec NanoPi M4"
    assert doc["address"] == "127.0.0.1:%d" % stack.rk3399.port


def test_probe_mode_is_the_probing_sessions_mode(stack):
    stack.wait_free(LOCAL)
    proc = edge_client("probe", "--tracker", stack.tracker, "--key", LOCAL, "--mode", "cpus:1",
                       "--json")
    assert proc.returncode == 0, proc.stderr
    state = json.loads(proc.stdout)["thread_state"]
    assert (state["mode"], state["cpus"], state["nthreads"]) == ("cpus:1", [1], 1)
    stack.wait_free(LOCAL)
    proc = edge_client("probe", "--tracker", stack.tracker, "--key", LOCAL, "--mode", "cpus:0",
                       "--json")
    assert json.loads(proc.stdout)["thread_state"]["cpus"] == [0]


def test_probe_mode_the_board_cannot_meet_is_refused(stack):
    stack.wait_free(LOCAL)
    proc = edge_client("probe", "--tracker", stack.tracker, "--key", LOCAL, "--mode", "little:9")
    assert proc.returncode == 1
    assert "refused thread mode 'little:9'" in one_line_error(proc)


@pytest.mark.parametrize("args, words", [
    (["--matmul", "0"], "argument --matmul: 0 is too small; give a whole number of at least 1"),
    (["--repeat", "0"], "argument --repeat: 0 is too small"),
    (["--sessions", "x"], "argument --sessions: 'x' is not a number"),
    (["--wait", "-1"], "argument --wait: -1 is too small"),
    (["--modes", ","], "--modes needs at least one mode"),
    (["m.so", "--matmul", "8"], "give either MODULE.so or --matmul N, not both"),
])
def test_bench_bad_usage_exits_2_with_the_bench_usage(stack, args, words):
    proc = edge_client("bench", "--tracker", stack.tracker, "--key", LOCAL, *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("usage: edge-client bench ")
    assert "edge-client bench: error: " in proc.stderr and words in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_unresolvable_tracker_is_said_in_words():
    proc = edge_client("list", "--tracker", "no-such-tracker.invalid:9190")
    assert proc.returncode == 1
    line = one_line_error(proc)
    assert "cannot resolve the host name 'no-such-tracker.invalid'" in line
    assert "Unknown error" not in line and "-2" not in line


def test_the_start_a_tracker_hint_is_a_command_that_works(tmp_path):
    port = client_kit.procs.free_port()
    proc = edge_client("list", "--tracker", "127.0.0.1:%d" % port)
    hint = one_line_error(proc).split("start one with `")[1].split("`")[0]
    argv = hint.split()
    assert argv[:3] == ["python", "-m", "tvm.exec.rpc_tracker"]
    argv[argv.index("0.0.0.0")] = "127.0.0.1"
    tracker = client_kit.procs.Proc([sys.executable] + argv[1:], tmp_path / "tracker.log")
    try:
        client_kit.procs.wait_port(port)
        listed = edge_client("list", "--tracker", "127.0.0.1:%d" % port)
        assert listed.returncode == 0, listed.stderr + tracker.log()
    finally:
        tracker.stop()


def test_version():
    proc = edge_client("--version")
    assert proc.returncode == 0 and proc.stdout.split()[:2] == ["edge-client", version()]


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
    assert "aarch64-linux-gnu-g++" in line and "apt-get install g++-aarch64-linux-gnu" in line


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


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["bench", "--help"],
                                  ["bench", "--repeat", "0"]])
def test_commands_that_need_no_board_do_not_import_tvm(args):
    """TVM's import is most of a second: --help, --version and usage errors skip it."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "host_client.cli.main",
                           *args], capture_output=True, text=True, timeout=60,
                          cwd=str(client_kit.procs.REPO))
    assert proc.returncode in (0, 2), proc.stderr
    imported = [line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")]
    assert "host_client.cli.main" in imported or "argparse" in imported
    assert not [m for m in imported if m == "tvm" or m.startswith("tvm.")], imported


def test_bench_refuses_a_module_built_for_another_machine_in_one_line(stack, tmp_path):
    stack.wait_free(RK)   # serves the rk3399 topology: it announces aarch64
    kernel = build_matmul(24, {"kind": "llvm"}, str(tmp_path))
    proc = edge_client("bench", kernel.path, "--tracker", stack.tracker, "--key", RK,
                       "--modes", "little:1", "--arg", "24x24", "--arg", "24x24",
                       "--arg", "24x24", "--quiet")
    assert proc.returncode == 1
    assert one_line_error(proc) == ("edge-client: error: matmul_24.so: built for x86-64, "
                                    "board runs aarch64")


def test_bench_links_a_tar_on_the_host_before_upload(stack, tmp_path):
    import tvm
    from tvm.support.tar import tar

    from host_client.kernels import matmul_module

    stack.wait_free(LOCAL)
    archive = str(tmp_path / "matmul.tar")
    tvm.compile(matmul_module(32), target=tvm.target.Target({"kind": "llvm"})).export_library(
        archive, fcompile=tar)
    proc = edge_client("bench", archive, "--tracker", stack.tracker, "--key", LOCAL,
                       "--modes", "big:1", "--arg", "32x32", "--arg", "32x32", "--arg", "32x32",
                       "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert result["correct"] is True and result["error"] is None
    assert "matmul.tar.so" in stack.local.log()   # the board loaded what the host linked
