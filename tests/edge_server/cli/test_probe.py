"""`edge-server probe` as a user runs it: the installed console script, as a subprocess."""
import json
import subprocess
import sys
from pathlib import Path

from edge_server.cli.probe import main

REPO = Path(__file__).resolve().parents[3]
BOARDS = REPO / "tests" / "fixtures" / "boards"
EDGE_SERVER = str(Path(sys.executable).parent / "edge-server")


def run(*args):
    return subprocess.run([EDGE_SERVER, "probe", *args], capture_output=True, text=True,
                          cwd=str(REPO), timeout=120)


def test_json_of_a_fixture_is_its_expected_document():
    result = run("--json", "--root", "tests/fixtures/boards/rk3399")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads((BOARDS / "rk3399" / "expected.json")
                                                   .read_text())


def test_table_of_a_fixture_shows_classes_clusters_cpus_and_target():
    result = run("--root", "tests/fixtures/boards/rk3588-binned")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "board: Orange Pi 5 Plus   arch: aarch64" in out
    lines = [line.split() for line in out.splitlines()]
    assert ["0", "prime", "6-7", "cortex-a76", "2304", "1024"] in lines
    assert ["1", "big", "4-5", "cortex-a76", "2256", "1002"] in lines
    assert ["2", "little", "0-3", "cortex-a55", "1800", "414"] in lines
    assert ["2", "6-7", "prime", "cluster_cpus_list"] in lines  # cluster 2
    assert ["6", "yes", "yes", "prime", "2", "cortex-a76", "midr_el1", "0x414fd0b0", "2304",
            "1024", "0", "0", "6"] in lines
    assert '"mcpu": "cortex-a76"' in out and '"num-cores": 8' in out
    assert "isa: aes asimd asimddp" in out
    assert "warnings:" not in out


def test_table_shows_unknowns_offline_cpus_and_warnings():
    result = run("--root", "tests/fixtures/boards/rk3399-offline")
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    # cpu4 is offline: no MIDR, its uarch comes from its frequency domain (cpu5's A72).
    assert ["4", "no", "no", "big", "1", "cortex-a72", "frequency", "-", "1800", "1024", "-",
            "-", "-"] in lines
    assert ["1", "4-5", "big", "related_cpus"] in lines
    result = run("--root", "tests/fixtures/boards/snapdragon855")
    assert "warnings:\n  - the kernel groups CPUs 0-7 in one cluster" in result.stdout


def test_table_shows_global_block_and_soc_table_provenance():
    result = run("--root", "tests/fixtures/boards/exynos5422-linux3.10")
    lines = [line.split() for line in result.stdout.splitlines()]
    assert ["0", "yes", "yes", "little", "0", "cortex-a7", "cpuinfo-global", "-", "1400", "-",
            "0", "1", "0"] in lines
    assert ["4", "yes", "yes", "big", "1", "cortex-a15", "soc-table", "-", "2000", "-", "0",
            "0", "4"] in lines


def test_this_machine():
    result = run()
    assert result.returncode == 0, result.stderr
    assert "core classes (rank 0 = fastest):" in result.stdout
    doc = json.loads(run("--json").stdout)
    assert doc["schema"] == 1 and doc["cpus"] and doc["classes"]
    assert doc["tvm_target"]["kind"] == "llvm"


def test_missing_root_exits_non_zero_with_one_line(tmp_path):
    result = run("--root", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "--root %s is not a directory" % (tmp_path / "nope") in result.stderr


def test_root_without_cpus_exits_non_zero_with_one_line(tmp_path):
    (tmp_path / "proc").mkdir()
    result = run("--root", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("edge-server probe: no CPU found under")
    assert "Traceback" not in result.stderr


def test_strange_board_still_exits_zero(tmp_path):
    cpu0 = tmp_path / "sys" / "devices" / "system" / "cpu" / "cpu0"
    cpu0.mkdir(parents=True)
    (cpu0 / "cpu_capacity").write_text("lots\n")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text("processor : zero\n::::\n")
    assert main(["--root", str(tmp_path)]) == 0
    result = run("--json", "--root", str(tmp_path))
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    assert [c["id"] for c in doc["cpus"]] == [0]
    assert any("cpu_capacity" in w and "'lots'" in w for w in doc["warnings"])


def test_capture_script_output_probes_like_the_live_machine(tmp_path):
    """scripts/capture-board.sh on this machine: probing the dump equals probing /."""
    out = tmp_path / "capture"
    result = subprocess.run(["sh", str(REPO / "scripts" / "capture-board.sh"), str(out),
                             "--tar"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (out / "proc" / "cpuinfo").is_file()
    assert (tmp_path / "capture.tar.gz").is_file()
    live = json.loads(run("--json").stdout)
    dumped = json.loads(run("--json", "--root", str(out)).stdout)
    for doc in (live, dumped):
        for cpu in doc["cpus"]:
            cpu.pop("allowed")  # the live set is this process's affinity
        doc["tvm_target"].pop("num-cores")  # counts allowed cores
    assert dumped == live


def test_capture_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "old").write_text("keep me")
    result = subprocess.run(["sh", str(REPO / "scripts" / "capture-board.sh"), str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "not empty" in result.stderr
    assert (tmp_path / "old").read_text() == "keep me"


def test_capture_help_prints_usage_and_creates_nothing(tmp_path):
    for flag in ("--help", "-h"):
        result = subprocess.run(["sh", str(REPO / "scripts" / "capture-board.sh"), flag],
                                capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("usage: ") and "--tar" in result.stdout
    assert list(tmp_path.iterdir()) == []    # no directory named --help


def test_capture_bad_usage_exits_2_and_says_why(tmp_path):
    script = str(REPO / "scripts" / "capture-board.sh")
    for args, words in [([], "give the directory"), (["--tarr"], "unknown option '--tarr'"),
                        ([str(tmp_path / "d"), "--zip"], "unknown argument '--zip'")]:
        result = subprocess.run(["sh", script, *args], capture_output=True, text=True,
                                timeout=60, cwd=str(tmp_path))
        assert result.returncode == 2 and words in result.stderr and "usage: " in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_probe_into_a_closed_pipe_is_quiet():
    """`edge-server probe --json | head -1`: no BrokenPipeError traceback, exit 0."""
    proc = subprocess.Popen([sys.executable, "-m", "edge_server.main", "probe", "--json",
                             "--root", str(BOARDS / "rk3399")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=str(REPO))
    proc.stdout.close()                      # the reader is gone before anything is written
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == b"", err


def test_edge_server_version_and_in_its_help():
    from edge_common.version import version
    out = subprocess.run([sys.executable, "-m", "edge_server.main", "--version"],
                         capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert out.returncode == 0 and out.stdout.split()[:2] == ["edge-server", version()]
    helptext = subprocess.run([sys.executable, "-m", "edge_server.main", "--help"],
                              capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert "--version" in helptext.stdout
