"""Thread-mode grammar and resolution against hand-written boards and every
fixture board's expected topology."""
import pytest

from tests.support.boards import HAND_BOARDS, all_boards, physical_cores, usable
from edge_common.modes import MAX_MODE_LEN, ModeError, ModeSpec, parse, resolve

BOARDS = all_boards()


def cpus_of(board, mode):
    return resolve(HAND_BOARDS[board], mode).cpus


# ------------------------------------------------------------------ grammar

@pytest.mark.parametrize("text, spec", [
    ("all", ModeSpec("all")),
    ("big", ModeSpec("class", name="big")),
    ("little:2", ModeSpec("class", name="little", count=2)),
    ("class1:3", ModeSpec("class", name="class1", count=3)),
    ("class0", ModeSpec("class", name="class0")),
    ("cpus:4,5", ModeSpec("cpus", cpus=(4, 5))),
    ("cpus:0-3,6", ModeSpec("cpus", cpus=(0, 1, 2, 3, 6))),
    ("cpus:5,4", ModeSpec("cpus", cpus=(4, 5))),
    ("  BIG : 2 ", ModeSpec("class", name="big", count=2)),
    ("Cpus: 1 - 2", ModeSpec("cpus", cpus=(1, 2))),
    ("big:007", ModeSpec("class", name="big", count=7)),
])
def test_parse(text, spec):
    assert parse(text) == spec


@pytest.mark.parametrize("spec", [
    ModeSpec("all"), ModeSpec("class", name="prime"), ModeSpec("class", name="mid", count=1),
    ModeSpec("class", name="class12", count=40), ModeSpec("cpus", cpus=(0,)),
    ModeSpec("cpus", cpus=(0, 1, 2, 3, 6, 8, 9)),
])
def test_canonical_text_round_trips(spec):
    assert parse(spec.text()) == spec
    assert parse(spec.text()).text() == spec.text()


@pytest.mark.parametrize("text, words", [
    ("", ["empty thread mode", "big:2"]),
    ("   ", ["empty thread mode"]),
    ("big:0", ["0 cores", "big:1"]),
    ("big:-1", ["whole number", "big:2"]),
    ("big:+1", ["whole number"]),
    ("big:1.5", ["whole number"]),
    ("big:", ["whole number"]),
    ("big:1:2", ["whole number"]),
    ("big:\u0661", ["non-ASCII"]),               # Arabic-Indic digit one
    ("big:\uff12", ["non-ASCII"]),               # fullwidth digit two
    ("cpus:\u0661", ["non-ASCII"]),
    ("cpus:\u00b2", ["non-ASCII"]),              # superscript two
    ("\u212aig", ["non-ASCII"]),                  # KELVIN SIGN lower-cases to 'k'
    ("b\u0130g", ["non-ASCII"]),
    ("big:99999999999999999999", ["at most 4096"]),
    ("cpus:99999", ["beyond the largest CPU id"]),
    ("cpus", ["needs a CPU list"]),
    ("cpus:", ["empty CPU list"]),
    ("cpus:1,1", ["CPU 1 twice"]),
    ("cpus:0-3,2", ["CPU 2 twice"]),
    ("cpus:3-1", ["backwards", "1-3"]),
    ("cpus:0,,1", ["empty item"]),
    ("cpus:-1", ["not a CPU number"]),
    ("cpus:a", ["not a CPU number"]),
    ("all:2", ["takes no count"]),
    ("big little", ["not understood"]),
    ("b\u00efg", ["non-ASCII"]),
    ("\u0000big", ["not understood"]),
    ("big;rm -rf /", ["not understood"]),
    ("../../etc", ["not understood"]),
    ("2", ["not understood"]),
    ("x" * (MAX_MODE_LEN + 1), ["longer than 256"]),
    ("cpus:" + "1," * 5000, ["longer than 256"]),
])
def test_parse_refuses_garbage_clearly(text, words):
    with pytest.raises(ModeError) as err:
        parse(text)
    for word in words:
        assert word in str(err.value)
    assert len(str(err.value)) < 400          # a 10 kB request is not echoed back


@pytest.mark.parametrize("value", [None, 2, 2.0, b"big", ["big"], {"mode": "big"}])
def test_parse_refuses_non_strings(value):
    with pytest.raises(ModeError, match="must be a string"):
        parse(value)


# ------------------------------------------------------- resolution, by board

@pytest.mark.parametrize("board, mode, cpus, cls", [
    ("rk3399", "all", [0, 1, 2, 3, 4, 5], None),
    ("rk3399", "big", [4, 5], "big"),
    ("rk3399", "little", [0, 1, 2, 3], "little"),
    ("rk3399", "big:1", [4], "big"),
    ("rk3399", "little:2", [0, 1], "little"),
    ("rk3399", "class0", [4, 5], "big"),
    ("rk3399", "class1:3", [0, 1, 2], "little"),
    ("rk3399", "cpus:4,5", [4, 5], "big"),
    ("rk3399", "cpus:3-4", [3, 4], None),
    ("rk3588", "big", [4, 5, 6, 7], "big"),
    ("rk3588", "big:2", [4, 5], "big"),
    ("rpi4", "big", [0, 1, 2, 3], "big"),
    ("rpi4", "little", [0, 1, 2, 3], "big"),       # one class: little == big
    ("rpi4", "little:2", [0, 1], "big"),
    ("rpi4", "class0:1", [0], "big"),
    ("phone", "prime", [7], "prime"),
    ("phone", "big", [4, 5, 6], "big"),
    ("phone", "little:4", [0, 1, 2, 3], "little"),
    ("phone", "class1:2", [4, 5], "big"),
    ("four-class", "mid", [4, 5, 6], "mid"),
    ("four-class", "class2:1", [4], "mid"),
    ("five-class", "class4", [0], "class4"),
    ("five-class", "class0", [4], "class0"),
    ("five-class", "all", [0, 1, 2, 3, 4], None),
    # SMT: one CPU per physical core, except when named explicitly.
    ("intel-hybrid", "big", [0, 2, 4, 6, 8, 10], "big"),
    ("intel-hybrid", "big:2", [0, 2], "big"),
    ("intel-hybrid", "little:3", [12, 13, 14], "little"),
    ("intel-hybrid", "all", [0, 2, 4, 6, 8, 10] + list(range(12, 20)), None),
    ("intel-hybrid", "cpus:0,1", [0, 1], "big"),
    ("x86-smt", "all", [0, 1, 2, 3], None),
    ("x86-smt", "big:4", [0, 1, 2, 3], "big"),
    ("x86-smt", "cpus:0,4", [0, 4], "big"),
    # offline and disallowed CPUs are never chosen
    ("rk3399-cpu5-offline", "big", [4], "big"),
    ("rk3399-cpu5-offline", "all", [0, 1, 2, 3, 4], None),
    ("rk3399-little-only-allowed", "all", [0, 1, 2, 3], None),
    ("rk3399-little-only-allowed", "little", [0, 1, 2, 3], "little"),
    ("this-2cpu-x86", "all", [0, 1], None),
    ("this-2cpu-x86", "little:1", [0], "big"),
])
def test_resolve(board, mode, cpus, cls):
    res = resolve(HAND_BOARDS[board], mode)
    assert (res.cpus, res.cls) == (cpus, cls)
    assert parse(res.mode) == parse(mode)       # canonical form of the same request


@pytest.mark.parametrize("board, mode, words", [
    ("rk3399", "little:6", ["little:6", "asks for 6 little cores", "has 4", "cpus 0-3",
                            "little:4", "or little"]),
    ("rk3399", "big:3", ["has 2", "cpus 4-5", "big:2"]),
    ("rk3399", "mid", ["class 'mid'", "classes are big, little", "big:2", "little:4"]),
    ("rk3399", "prime:1", ["class 'prime'", "big, little"]),
    ("rk3399", "class2", ["class 'class2'", "big, little"]),
    ("rk3399", "huge", ["class 'huge'"]),
    ("rpi4", "mid", ["classes are big", "cpus 0-3"]),
    ("rpi4", "prime", ["class 'prime'"]),
    ("phone", "mid", ["classes are prime, big, little"]),
    ("rk3399", "cpus:99", ["CPU 99", "does not have", "present cpus 0-5", "cpus:0-5"]),
    ("rk3399", "cpus:6", ["CPU 6", "does not have"]),
    ("rk3399-cpu5-offline", "cpus:5", ["CPU 5", "offline", "usable cpus are 0-4"]),
    ("rk3399-cpu5-offline", "cpus:4-5", ["CPU 5", "offline"]),
    ("rk3399-cpu5-offline", "big:2", ["has 1", "big:1"]),
    ("rk3399-little-only-allowed", "cpus:4", ["CPU 4", "not in its affinity mask", "0-3"]),
    ("rk3399-little-only-allowed", "big", ["no usable core", "4-5", "little"]),
    ("x86-smt", "big:5", ["has 4", "big:4"]),
    ("intel-hybrid", "big:7", ["has 6", "cpus 0,2,4,6,8,10", "big:6"]),
    ("this-2cpu-x86", "big:3", ["has 2", "big:2"]),
    ("this-2cpu-x86", "cpus:99", ["CPU 99", "cpus:0-1"]),
    ("this-2cpu-x86", "mid:1", ["class 'mid'", "classes are big"]),
])
def test_resolve_refuses_with_what_would_work(board, mode, words):
    with pytest.raises(ModeError) as err:
        resolve(HAND_BOARDS[board], mode)
    for word in words:
        assert word in str(err.value), str(err.value)


def test_mode_error_is_a_value_error():
    assert issubclass(ModeError, ValueError)


def test_resolve_does_not_change_the_topology():
    import copy
    topo = HAND_BOARDS["intel-hybrid"]
    before = copy.deepcopy(topo)
    for mode in ["all", "big:2", "cpus:0-3", "mid", "little:99"]:
        try:
            resolve(topo, mode)
        except ModeError:
            pass
    assert topo == before


def test_board_without_usable_cpus_refuses_all():
    topo = {"schema": 1, "cpus": [{"id": 0, "online": False, "allowed": False}], "classes": []}
    with pytest.raises(ModeError, match="no usable CPU"):
        resolve(topo, "all")


# --------------------------------------- every board, hand-written and fixture

@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_board_all_and_classes(name):
    topo = BOARDS[name]
    everything = physical_cores(topo, usable(topo))
    assert resolve(topo, "all").cpus == everything
    for cls in topo["classes"]:
        cores = physical_cores(topo, cls["cpus"])
        for spelling in (cls["name"], "class%d" % cls["rank"]):
            if not cores:
                with pytest.raises(ModeError, match="no usable core"):
                    resolve(topo, spelling)
                continue
            assert resolve(topo, spelling).cpus == cores
            assert resolve(topo, spelling).cls == cls["name"]
            for n in range(1, len(cores) + 1):
                assert resolve(topo, "%s:%d" % (spelling, n)).cpus == cores[:n]
            with pytest.raises(ModeError, match="has %d" % len(cores)):
                resolve(topo, "%s:%d" % (spelling, len(cores) + 1))


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_board_explicit_cpus(name):
    topo = BOARDS[name]
    ok = usable(topo)
    for cpu in ok:
        assert resolve(topo, "cpus:%d" % cpu).cpus == [cpu]
    assert resolve(topo, "cpus:" + ",".join(map(str, ok))).cpus == ok
    present = {c["id"] for c in topo["cpus"]}
    for cpu in sorted(present - set(ok)):
        with pytest.raises(ModeError, match="CPU %d" % cpu):
            resolve(topo, "cpus:%d" % cpu)
    with pytest.raises(ModeError, match="does not have"):
        resolve(topo, "cpus:%d" % (max(present) + 1))


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_board_names_its_missing_classes(name):
    topo = BOARDS[name]
    have = {c["name"] for c in topo["classes"]}
    for wanted in ("prime", "mid", "big", "little"):
        if wanted in have or (wanted in ("big", "little") and len(have) == 1):
            continue
        with pytest.raises(ModeError) as err:
            resolve(topo, wanted)
        assert all(n in str(err.value) for n in have)


# ------------------------------------------------ fixture boards, exact values

FIXTURE_CASES = [
    ("rk3399", "little:6", None, "asks for 6 little cores but this board has 4 (cpus 0-3); "
                                 "try little:4 or little"),
    ("rk3399", "big:2", [4, 5], None),
    ("rk3399-offline", "big", [5], None),              # cpu4 offline
    ("rk3399-offline", "big:2", None, "has 1 (cpus 5)"),
    ("rk3399-offline", "cpus:4", None, "CPU 4, which is offline"),
    ("rk3588-binned", "prime", [6, 7], None),          # the faster-binned A76 pair
    ("rk3588-binned", "big:1", [4], None),
    ("snapdragon855", "prime", [7], None),
    ("snapdragon855", "big", [4, 5, 6], None),
    ("snapdragon855", "class2:2", [0, 1], None),
    ("snapdragon855", "mid", None, "classes are prime, big, little"),
    ("rpi4", "little:2", [0, 1], None),                # one class: little == big
    ("x86-server-smt", "all", list(range(16)), None),  # siblings 16-31 left out
    ("x86-server-smt", "big:17", None, "has 16"),
    ("x86-server-smt", "cpus:0,16", [0, 16], None),    # explicit siblings are fine
    ("intel-hybrid", "big", [0, 2, 4, 6], None),       # P-cores, one thread each
    ("intel-hybrid", "little:8", list(range(8, 16)), None),
]


@pytest.mark.parametrize("board, mode, cpus, error", FIXTURE_CASES)
def test_fixture_boards(board, mode, cpus, error):
    topo = BOARDS["fixture:" + board]
    if error is None:
        assert resolve(topo, mode).cpus == cpus
        assert resolve(BOARDS["probe:" + board], mode).cpus == cpus
    else:
        with pytest.raises(ModeError) as err:
            resolve(topo, mode)
        assert error in str(err.value), str(err.value)
