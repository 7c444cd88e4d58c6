"""The topology schema: every document the probe writes reads back byte for
byte, unknown keys survive in place, and a malformed one is refused with the
path of the field that is wrong (never anything but TopologyError)."""
import copy
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_common.topology import SCHEMA, CoreClass, Cpu, Topology, TopologyError, as_topology
from tests.support.boards import HAND_BOARDS, all_boards

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "boards"
EXPECTED = sorted(FIXTURES.glob("*/expected.json"))
RK3399 = json.loads((FIXTURES / "rk3399" / "expected.json").read_text())


@pytest.mark.parametrize("path", EXPECTED, ids=lambda p: p.parent.name)
def test_every_fixture_document_reads_back_byte_for_byte(path):
    doc = json.loads(path.read_text())
    again = Topology.from_dict(doc).to_dict()
    assert json.dumps(again, indent=2) == json.dumps(doc, indent=2)


def test_what_the_probe_writes_today_reads_back_byte_for_byte():
    boards = all_boards()     # hand-made, fixtures, the probe on each tree, this machine
    assert len(boards) > len(EXPECTED) * 2
    for name, doc in boards.items():
        assert json.dumps(Topology.from_dict(doc).to_dict()) == json.dumps(doc), name


def test_the_schema_version_is_the_one_the_producer_writes():
    from edge_server.board.topology import SCHEMA as PRODUCED
    assert SCHEMA == PRODUCED == RK3399["schema"] == 1


def test_fields_read_as_attributes():
    t = Topology.from_dict(RK3399)
    assert (t.board, t.arch, t.schema) == ("FriendlyElec NanoPi M4", "aarch64", 1)
    assert [c.name for c in t.ranked_classes()] == ["big", "little"]
    assert t.cpu_table()[4].cls == "big" and t.cpu_table()[4].max_freq_khz == 1800000
    assert t.clusters[1].cpus == [4, 5] and t.clusters[1].cls == "big"
    assert t.usable_cpus() == [0, 1, 2, 3, 4, 5]
    assert t.tvm_target["mcpu"] == "cortex-a72"
    assert (t.linker, t.version, t.host) == (None, None, None)


def test_unknown_keys_stay_in_their_place_at_every_level():
    doc = copy.deepcopy(RK3399)
    doc = {"schema": 1, "slots": [{"cpus": [4]}], **{k: v for k, v in doc.items()
                                                    if k != "schema"}}
    doc["cpus"][0] = {"id": 0, "temp_mc": 41000, **{k: v for k, v in doc["cpus"][0].items()
                                                    if k != "id"}}
    doc["classes"][0]["governor"] = "schedutil"
    doc["clusters"][0] = {"l2_kb": 512, **doc["clusters"][0]}
    t = Topology.from_dict(doc)
    assert t.extra == {"slots": [{"cpus": [4]}]} and t.cpus[0].extra == {"temp_mc": 41000}
    assert json.dumps(t.to_dict()) == json.dumps(doc)


def test_the_fields_added_later_are_typed_kept_and_never_required():
    doc = copy.deepcopy(RK3399)
    del doc["cpus"][0]["uarch_source"]                    # a board older than provenance
    del doc["clusters"][0]["source"]
    doc.update(linker="/usr/bin/g++", version="0.3.0", host="nanopi",
               slot={"index": 0, "count": 2, "cpus": [4]})
    t = Topology.from_dict(doc)
    assert t.slot["cpus"] == [4] and t.extra == {}
    assert t.cpus[4].uarch_source == "midr_el1" and t.cpus[0].uarch_source is None
    assert t.clusters[1].source == "cluster_cpus_list" and t.clusters[0].source is None
    assert (t.linker, t.version, t.host) == ("/usr/bin/g++", "0.3.0", "nanopi")
    assert json.dumps(t.to_dict()) == json.dumps(doc)
    assert "uarch_source" not in t.cpus[0].to_dict()      # absent stays absent
    doc["linker"] = None                                  # null: "the board cannot link"
    assert Topology.from_dict(doc).to_dict()["linker"] is None


def test_a_newer_schema_is_read_not_refused():
    doc = dict(RK3399, schema=SCHEMA + 1, new_thing={"x": 1})
    assert Topology.from_dict(doc).to_dict() == doc


def test_a_document_built_in_code_has_every_standard_key():
    t = Topology(cpus=[Cpu(0, online=True, allowed=True, cls="big", smt_siblings=[0])],
                 classes=[CoreClass("big", 0, [0])])
    doc = t.to_dict()
    assert list(doc) == ["schema", "board", "arch", "cpus", "clusters", "classes", "isa",
                         "tvm_target", "warnings"]
    assert list(doc["cpus"][0]) == list(RK3399["cpus"][0])
    assert list(doc["classes"][0]) == list(RK3399["classes"][0])
    assert Topology.from_dict(doc) == t


def test_as_topology_takes_either_form():
    t = as_topology(RK3399)
    assert as_topology(t) is t


def _broken(path, value):
    doc = copy.deepcopy(RK3399)
    node = doc
    for part in path[:-1]:
        node = node[part]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


@pytest.mark.parametrize("path, value, words", [
    (("cpus",), KeyError, "topology has no 'cpus'"),
    (("classes",), None, "topology.classes is null; it must be"),
    (("cpus",), {"0": {}}, "topology.cpus must be a list, got {'0': {}}"),
    (("cpus", 2), "cpu2", "topology.cpus[2] must be a JSON object, got 'cpu2'"),
    (("cpus", 2, "id"), KeyError, "topology.cpus[2] has no 'id'"),
    (("cpus", 2, "id"), True, "topology.cpus[2].id must be an integer, got True"),
    (("cpus", 2, "id"), -1, "topology.cpus[2].id must be a CPU id 0..4095, got -1"),
    (("cpus", 2, "id"), 1, "topology.cpus lists CPU 1 more than once"),
    (("cpus", 2, "online"), "yes", "topology.cpus[2].online must be true or false or null"),
    (("cpus", 2, "max_freq_khz"), "1.4GHz", "max_freq_khz must be an integer or null"),
    (("cpus", 2, "smt_siblings"), [2, "3"], "smt_siblings must be a list of CPU ids"),
    (("classes", 0, "rank"), -1, "topology.classes[0].rank must be 0 or more"),
    (("classes", 0, "name"), None, "topology.classes[0].name is null; it must be a string"),
    (("classes", 1, "name"), "big", "two classes named 'big'"),
    (("clusters", 0, "cpus"), "0-3", "topology.clusters[0].cpus must be a list of CPU ids"),
    (("isa",), "neon", "topology.isa must be a list of strings, got 'neon'"),
    (("tvm_target",), "llvm -mcpu=cortex-a72", "tvm_target must be a JSON object or null"),
    (("schema",), 0, "schema must be 1 or more"),
    (("linker",), 0, "topology.linker must be a string or null, got 0"),
    (("slot",), [4], "topology.slot must be a JSON object or null, got [4]"),
])
def test_a_malformed_document_names_the_field_and_what_it_must_be(path, value, words):
    with pytest.raises(TopologyError) as info:
        Topology.from_dict(_broken(path, value))
    assert words in str(info.value)


def test_not_a_document_at_all():
    for junk in (None, [], "topology", 3):
        with pytest.raises(TopologyError, match="topology must be a JSON object"):
            Topology.from_dict(junk)


# ---- generated documents ------------------------------------------------------

maybe = lambda s: st.none() | s   # noqa: E731
ints = st.integers(0, 4095)
names = st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8)
extras = st.dictionaries(st.sampled_from(["x_note", "x_temp", "x_slot"]),
                         st.integers() | st.text(max_size=5), max_size=2)


def _with_extras(fixed, extra, keep):
    """fixed keys (some dropped when optional), plus unknown ones, in a drawn order."""
    doc = {k: v for k, v in fixed.items() if keep.get(k, True)}
    doc.update(extra)
    return doc


@st.composite
def cpu_docs(draw, cpu_id):
    fixed = {"id": cpu_id, "online": draw(maybe(st.booleans())),
             "allowed": draw(maybe(st.booleans())), "uarch": draw(maybe(names)),
             "max_freq_khz": draw(maybe(st.integers(0, 10 ** 7))),
             "class": draw(maybe(names)), "smt_siblings": draw(maybe(st.lists(ints, max_size=3))),
             "uarch_source": draw(maybe(names))}
    keep = {k: draw(st.booleans()) for k in fixed if k != "id"}
    return _with_extras(fixed, draw(extras), keep)


@st.composite
def documents(draw):
    ids = draw(st.lists(ints, unique=True, max_size=6))
    classes = draw(st.lists(names, unique=True, max_size=3))
    fixed = {"schema": draw(maybe(st.integers(1, 3))), "board": draw(maybe(st.text(max_size=10))),
             "arch": draw(maybe(names)), "cpus": [draw(cpu_docs(i)) for i in ids],
             "classes": [{"name": n, "rank": r, "cpus": draw(st.lists(ints, max_size=3))}
                         for r, n in enumerate(classes)],
             "isa": draw(st.lists(names, max_size=3)),
             "tvm_target": draw(maybe(st.just({"kind": "llvm"}))),
             "linker": draw(maybe(st.text(max_size=10))), "host": draw(maybe(names))}
    keep = {k: draw(st.booleans()) for k in ("schema", "board", "arch", "isa", "tvm_target",
                                             "linker", "host")}
    return _with_extras(fixed, draw(extras), keep)


@settings(max_examples=200, deadline=None)
@given(documents())
def test_generated_documents_read_back_byte_for_byte(doc):
    assert json.dumps(Topology.from_dict(doc).to_dict()) == json.dumps(doc)


json_junk = st.recursive(st.none() | st.booleans() | st.integers(-5, 5000) | st.text(max_size=4),
                         lambda inner: st.lists(inner, max_size=3)
                         | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                         max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(HAND_BOARDS)), st.data())
def test_any_corruption_is_read_or_refused_with_topology_error(board, data):
    doc = copy.deepcopy(HAND_BOARDS[board])
    node, path = doc, []
    while isinstance(node, (dict, list)) and node and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(node) if isinstance(node, dict)
                                        else range(len(node))))
        if not isinstance(node[key], (dict, list)):
            break
        node, path = node[key], path + [key]
    if isinstance(node, dict) and node:
        node[data.draw(st.sampled_from(sorted(node)))] = data.draw(json_junk)
    elif isinstance(node, list) and node:
        node[data.draw(st.integers(0, len(node) - 1))] = data.draw(json_junk)
    try:
        topology = Topology.from_dict(doc)
    except TopologyError as err:
        assert str(err).startswith("topology")
        return
    assert json.dumps(topology.to_dict()) == json.dumps(doc)
