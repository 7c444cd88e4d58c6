"""Slot specs: grammar, disjoint allocation on real board shapes, modes inside
a slot, and the threshold admission of `--slots auto` on fake calibrations."""
import pytest
from hypothesis import given, settings, strategies as st

from edge_common.modes import ModeError
from edge_common.slots import (MAX_SPEC_LEN, SlotError, admit, candidate_specs, parse_spec,
                               resolve_mode, resolve_slots, slot_topology, split_spec,
                               worst_slowdown)
from tests.support.boards import HAND_BOARDS, all_boards, physical_cores, usable

RK3399 = HAND_BOARDS["rk3399"]


def layout(board, spec):
    return [(s.cpus, s.cls) for s in resolve_slots(HAND_BOARDS[board], spec)]


# ------------------------------------------------------------------ grammar

@pytest.mark.parametrize("spec, groups", [
    ("little:1x4", ["little:1x4"]),
    ("big:2,little:1x4", ["big:2", "little:1x4"]),
    ("cpus:0;cpus:1", ["cpus:0", "cpus:1"]),
    ("cpus:0,1;cpus:2", ["cpus:0,1", "cpus:2"]),
    ("cpus:0,1,big:2", ["cpus:0,1", "big:2"]),
    ("cpus:0-1,4 ; little", ["cpus:0-1,4", "little"]),
    (" BIG:1 , Big:1 ", ["big:1", "big:1"]),
])
def test_split(spec, groups):
    assert split_spec(spec) == groups


@pytest.mark.parametrize("spec, words", [
    ("", ["empty slot spec", "little:1x4"]),
    (";", ["empty slot spec"]),
    ("big;;little", ["empty group"]),
    ("little:0x4", ["at least 1"]),
    ("little:1x0", ["at least 1"]),
    ("little:1x999", ["more than 256"]),
    ("all:1x2", ["core class"]),
    ("auto;big", ["whole slot spec"]),
    ("b\u00efg:1x2", ["non-ASCII"]),
    ("big:1y2", ["neither a thread mode", "<class>:<k>x<n>"]),
    ("x" * (MAX_SPEC_LEN + 1), ["longer than 512"]),
])
def test_bad_specs_say_what_would_work(spec, words):
    with pytest.raises(SlotError) as err:
        parse_spec(spec)
    for word in words:
        assert word in str(err.value)
    assert len(str(err.value)) < 700


def test_non_string_spec():
    with pytest.raises(SlotError, match="must be a string"):
        split_spec(["cpus:0"])


# ------------------------------------------------------------------ allocation

@pytest.mark.parametrize("board, spec, expected", [
    ("rk3399", "little:1x4", [((0,), "little"), ((1,), "little"), ((2,), "little"),
                              ((3,), "little")]),
    ("rk3399", "big:2,little:1x4", [((4, 5), "big"), ((0,), "little"), ((1,), "little"),
                                    ((2,), "little"), ((3,), "little")]),
    ("this-2cpu-x86", "cpus:0;cpus:1", [((0,), "big"), ((1,), "big")]),
    ("rk3399", "big:1,big:1", [((4,), "big"), ((5,), "big")]),
    # explicit CPUs are placed first, whatever their place in the spec
    ("rk3399", "big;cpus:4", [((5,), "big"), ((4,), "big")]),
    # `all` takes whatever the other groups left
    ("rk3399", "all;little:2x2", [((4, 5), "big"), ((0, 1), "little"), ((2, 3), "little")]),
    ("rk3399", "cpus:3-4", [((3, 4), None)]),
    # SMT: a slot holds a core and its sibling; siblings never go to two slots
    ("x86-smt", "big:1x4", [((0,), "big"), ((1,), "big"), ((2,), "big"), ((3,), "big")]),
    ("x86-smt", "cpus:0;big:1x3", [((0,), "big"), ((1,), "big"), ((2,), "big"), ((3,), "big")]),
    ("rk3399-cpu5-offline", "big", [((4,), "big")]),
])
def test_layouts(board, spec, expected):
    assert layout(board, spec) == expected


@pytest.mark.parametrize("board, spec, words", [
    ("rk3399", "little:1x5", ["needs 5 little cores", "cpus 0-3", "try little:1x4"]),
    ("rk3399", "cpus:4;big:2", ["needs 2 big cores", "1 of them free", "try big:1"]),
    ("rk3399", "cpus:0;cpus:0-1", ["needs cpus 0", "already in slot group 'cpus:0'",
                                   "free cores: cpus 1-5"]),
    ("rk3399", "huge:1x2", ["class 'huge'", "big, little", "try all"]),
    ("rk3399", "all;all", ["no usable core left", "drop the group"]),
    ("rk3399", "cpus:9", ["CPU 9", "present cpus 0-5"]),
    ("rk3399-cpu5-offline", "cpus:5", ["offline"]),
    ("x86-smt", "cpus:4;big:1x4", ["needs 4 big cores", "3 of them free", "big:1x3"]),
])
def test_boards_refuse_what_they_cannot_meet(board, spec, words):
    with pytest.raises(SlotError) as err:
        resolve_slots(HAND_BOARDS[board], spec)
    for word in words:
        assert word in str(err.value)


BOARDS = all_boards()


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_one_core_slots_cover_every_physical_core_of_every_board(name):
    topology = BOARDS[name]
    cores = physical_cores(topology, usable(topology))
    spec = ";".join("cpus:%d" % c for c in cores)
    slots = resolve_slots(topology, spec)
    assert [s.cpus for s in slots] == [(c,) for c in cores]
    for cand in candidate_specs(topology):
        got = resolve_slots(topology, cand)
        flat = [c for s in got for c in s.cpus]
        assert len(flat) == len(set(flat))


@settings(max_examples=200, deadline=None)
@given(board=st.sampled_from(sorted(HAND_BOARDS)),
       groups=st.lists(st.one_of(
           st.tuples(st.sampled_from(["big", "little", "prime", "mid", "class0", "class1"]),
                     st.integers(1, 3), st.integers(1, 4)).map(lambda t: "%s:%dx%d" % t),
           st.sampled_from(["big", "little", "all", "big:1", "little:2", "class1:1"]),
           st.lists(st.integers(0, 20), min_size=1, max_size=3, unique=True).map(
               lambda ids: "cpus:" + ",".join(map(str, ids)))), min_size=1, max_size=5))
def test_any_spec_gives_disjoint_slots_or_a_clear_error(board, groups):
    topology = HAND_BOARDS[board]
    spec = ";".join(groups)
    try:
        slots = resolve_slots(topology, spec)
    except SlotError as err:
        text = str(err)
        assert text.startswith("slot spec ")                      # names what was asked
        assert any(w in text for w in ("try", "drop the group", "free", "usable cpus are"))
        return
    siblings = {c["id"]: set(c["smt_siblings"]) for c in topology["cpus"]}
    held = set()
    for slot in slots:
        assert slot.cpus and list(slot.cpus) == sorted(slot.cpus)
        for cpu in slot.cpus:
            assert cpu in usable(topology)
            assert not (siblings[cpu] & held)
        held.update(c for cpu in slot.cpus for c in siblings[cpu])
    assert sum(len(s.cpus) for s in slots) == len({c for s in slots for c in s.cpus})


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_garbage_specs_only_raise_slot_error(text):
    try:
        resolve_slots(RK3399, text)
    except SlotError:
        pass


# ------------------------------------------------------------------ modes in a slot

def slot_doc(board, spec, index):
    topology = HAND_BOARDS[board]
    slots = resolve_slots(topology, spec)
    return slot_topology(topology, slots[index], len(slots), spec, co_slots=slots)


@pytest.mark.parametrize("mode, cpus", [
    ("all", [1]), ("little", [1]), ("little:1", [1]), ("cpus:1", [1]), ("class1", [1]),
])
def test_modes_resolve_within_the_slot(mode, cpus):
    assert resolve_mode(slot_doc("rk3399", "little:1x4", 1), mode).cpus == cpus


def test_all_in_a_big_slot_is_the_slot():
    doc = slot_doc("rk3399", "big:2,little:1x4", 0)
    assert resolve_mode(doc, "all").cpus == [4, 5]
    assert resolve_mode(doc, "big:1").cpus == [4]


@pytest.mark.parametrize("mode, means", [
    ("big", "cpus 4-5"), ("little:2", "cpus 0-1"), ("cpus:0", "cpus 0"), ("cpus:1-2", "cpus 1-2"),
])
def test_modes_outside_the_slot_are_refused_in_three_parts(mode, means):
    with pytest.raises(ModeError) as err:
        resolve_mode(slot_doc("rk3399", "little:1x4", 1), mode)
    text = str(err.value)
    assert means + " on this board" in text                 # what was asked
    assert "slot 1 of 4 (cpus 1, little)" in text           # what the slot has
    assert "try all (= cpus 1), little, little:1, cpus:1" in text   # what would work


def test_a_mode_no_board_meets_names_the_slot():
    with pytest.raises(ModeError, match=r"in slot 1 of 4 \(cpus 1, little\).*class 'huge'"):
        resolve_mode(slot_doc("rk3399", "little:1x4", 1), "huge")


def test_no_slot_is_plain_resolution():
    assert resolve_mode(RK3399, "all").cpus == [0, 1, 2, 3, 4, 5]


def test_slot_document_leaves_the_board_untouched():
    doc = slot_doc("rk3399", "little:1x4", 2)
    assert doc["slot"] == {"index": 2, "count": 4, "spec": "little:1x4", "group": "little:1x4",
                           "cpus": [2], "class": "little", "mode": "cpus:2", "slowdown": None,
                           "slowdown_by_probe": None, "threshold": None,
                           "co_slots": [{"index": 0, "cpus": [0]}, {"index": 1, "cpus": [1]},
                                        {"index": 3, "cpus": [3]}]}
    assert "slot" not in RK3399 and doc["cpus"] == RK3399["cpus"]


# ------------------------------------------------------------------ auto: admission

def fake(spec, *slowdowns):
    return {"spec": spec, "slots": [{"slowdown": {"memory": m, "compute": c}}
                                    for m, c in slowdowns]}


def test_admission_takes_the_most_slots_under_the_threshold():
    results = [fake("cpus:0;cpus:1;cpus:2;cpus:3", (0.10, 0.01), (0.09, 0.0), (0.2, 0.0),
                    (0.1, 0.0)),
               fake("cpus:0-1;cpus:2-3", (0.02, 0.001), (0.025, 0.0)),
               fake("all", (0.0, 0.0))]
    chosen, why = admit(results, 0.03)
    assert chosen["spec"] == "cpus:0-1;cpus:2-3"
    assert "2.5% < threshold 3.0%" in why and "rejected cpus:0;cpus:1;cpus:2;cpus:3 (20.0%)" in why


def test_admission_threshold_is_strict_and_configurable():
    results = [fake("cpus:0;cpus:1", (0.05, 0.01), (0.01, 0.04)), fake("all", (0.0, 0.0))]
    assert admit(results, 0.03)[0]["spec"] == "all"
    assert admit(results, 0.05)[0]["spec"] == "all"          # 5% is not under 5%
    assert admit(results, 0.051)[0]["spec"] == "cpus:0;cpus:1"


def test_admission_never_admits_what_was_not_measured():
    unmeasured = {"spec": "cpus:0;cpus:1", "slots": [{"slowdown": {"memory": 0.0}},
                                                      {"slowdown": None}]}
    assert worst_slowdown(unmeasured) is None
    assert admit([unmeasured, {"spec": "all", "slots": [{}]}])[0]["spec"] == "all"


def test_admission_fails_clearly_without_a_passing_candidate():
    with pytest.raises(SlotError, match=r"threshold 3.0%.*cpus:0;cpus:1 \(50.0%\).*--slot-threshold"):
        admit([fake("cpus:0;cpus:1", (0.5, 0.0), (0.0, 0.0))])
    with pytest.raises(SlotError, match="fraction"):
        admit([], -1)


def test_candidates_go_from_most_slots_to_one():
    assert candidate_specs(RK3399) == ["cpus:0;cpus:1;cpus:2;cpus:3;cpus:4;cpus:5",
                                       "cpus:4-5;cpus:0-3", "all"]
    assert candidate_specs(HAND_BOARDS["this-2cpu-x86"]) == ["cpus:0;cpus:1", "all"]
