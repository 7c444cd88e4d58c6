"""The one topology view both `edge-server probe` and `edge-client probe` print."""
import json
from pathlib import Path

from edge_common.render import describe_classes, render, table
from edge_common.topology import Topology

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "boards"


def board(name: str) -> Topology:
    return Topology.from_dict(json.loads((FIXTURES / name / "expected.json").read_text()))


def test_table_pads_aligns_and_shows_unknowns_as_dashes():
    lines = table(["name", "n"], [["big", 2], ["little", None]], right=(1,), indent="  ")
    assert lines == ["  name    n", "  ------  -", "  big     2", "  little  -"]


def test_render_shows_classes_clusters_cpus_isa_target_and_provenance():
    text = render(board("rk3399"), source="tests/fixtures/boards/rk3399")
    lines = [line.split() for line in text.splitlines()]
    assert text.startswith("board: FriendlyElec NanoPi M4   arch: aarch64   (read from tests/")
    assert ["1", "little", "0-3", "cortex-a53", "1416", "381"] in lines
    assert ["1", "4-5", "big", "cluster_cpus_list"] in lines
    assert ["5", "yes", "yes", "big", "1", "cortex-a72", "midr_el1", "0x410fd082", "1800",
            "1024", "1", "0", "5"] in lines
    assert '"mcpu": "cortex-a72"' in text and "isa: aes asimd" in text
    assert "warnings:" not in text


def test_unknown_provenance_shows_as_a_dash():
    doc = board("rk3399").to_dict()
    del doc["cpus"][0]["uarch_source"]
    doc["clusters"][0]["source"] = None
    lines = [line.split() for line in render(Topology.from_dict(doc)).splitlines()]
    assert ["0", "0-3", "little", "-"] in lines
    assert lines[lines.index(["cpus:"]) + 3][6] == "-"              # cpu0's "uarch from"


def test_warnings_are_listed():
    text = render(board("snapdragon855"))
    assert "warnings:\n  - the kernel groups CPUs 0-7 in one cluster" in text


def test_describe_classes_names_count_uarch_and_clock():
    assert describe_classes(board("rk3399")) == \
        "big 2×cortex-a72@1.8GHz, little 4×cortex-a53@1.42GHz"
