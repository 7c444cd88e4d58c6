"""The accuracy score over every fixture board: 100% on ours, and the scorer itself can fail."""
import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
BOARDS = REPO / "tests" / "fixtures" / "boards"

_spec = importlib.util.spec_from_file_location("score_topology",
                                               REPO / "scripts" / "score_topology.py")
score_topology = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(score_topology)


def test_every_fixture_scores_100_percent():
    result = score_topology.score(BOARDS)
    assert result["boards"] >= 27
    wrong = [r for r in result["rows"] if not r[1] or r[3] != r[4]]
    assert wrong == []
    assert result["partition"] == 1.0 and result["uarch"] == 1.0
    # TVM's two-frequency split gets some of them wrong (tri-cluster, equal-clock clusters).
    assert result["tvm_partition"] < 1.0


def test_scorer_sees_a_wrong_partition_and_a_wrong_uarch():
    want = json.loads((BOARDS / "mate20-kirin980" / "expected.json").read_text())
    got = copy.deepcopy(want)
    got["clusters"][1]["cpus"] = [4, 5, 6, 7]
    got["clusters"][2]["cpus"] = []
    got["cpus"][6]["uarch"] = "cortex-a77"
    part, _, right, total = score_topology.score_board(got, want)
    assert part is False and (right, total) == (2, 3)


def test_offline_cpus_do_not_count():
    want = json.loads((BOARDS / "nexus5-msm8974" / "expected.json").read_text())
    got = copy.deepcopy(want)
    got["cpus"][3]["uarch"] = None  # cpu3 is offline
    got["clusters"] = [{"id": 0, "cpus": [0, 1, 2], "class": "big", "source": "x"},
                       {"id": 1, "cpus": [3], "class": None, "source": "x"}]
    assert score_topology.score_board(got, want)[0] is True
    assert score_topology.score_board(got, want)[2:] == (1, 1)


def test_script_prints_the_report():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "score_topology.py")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "cluster partition: 100.0% of" in result.stdout
    assert "uarch per cluster: 100.0% of" in result.stdout
