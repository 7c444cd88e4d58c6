"""Property-based fuzzing of thread-mode resolution (issue 7): whatever the
string and whatever the board, resolve() returns CPUs that are usable,
distinct and what the mode means, or raises ModeError -- nothing else."""
import string

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.boards import all_boards, class_names, physical_cores, usable
from edge_common.modes import ModeError, parse, resolve

BOARDS = all_boards()
BOARD_NAMES = sorted(BOARDS)

WORDS = ["all", "big", "little", "mid", "prime", "cpus", "class0", "class1", "class2",
         "class3", "class4", "class9", "huge", "BIG", "Little"]

# Strings near the grammar, where resolution bugs live: words, colons,
# numbers, ranges, separators, junk characters and unicode digits.
near_grammar = st.builds(
    lambda word, sep, tail, pad: pad + word + sep + tail + pad,
    st.sampled_from(WORDS) | st.text(string.ascii_lowercase, min_size=1, max_size=8),
    st.sampled_from(["", ":", ": ", "::", "-", ","]),
    st.text(alphabet="0123456789,- :\u0661\uff12\u00b2x", max_size=20)
    | st.integers(-5, 10 ** 12).map(str)
    | st.lists(st.integers(0, 40), max_size=6).map(lambda xs: ",".join(map(str, xs))),
    st.sampled_from(["", " ", "\t", "\n"]),
)
any_text = st.text(max_size=300)
huge_text = st.text(alphabet="big:0123456789,-", min_size=250, max_size=10_000)
modes = near_grammar | any_text | huge_text


def check(topo, mode):
    """Invariants of one resolve() call; returns the Resolution or None."""
    try:
        res = resolve(topo, mode)
        assert mode.isascii(), "non-ASCII mode %r accepted" % mode
    except ModeError as err:
        assert str(err), "a ModeError must explain itself"
        assert len(str(err)) < 2000
        return None
    spec = parse(mode)
    assert parse(res.mode) == spec, "canonical mode must mean the same request"
    cpus = res.cpus
    assert cpus and len(set(cpus)) == len(cpus)
    assert set(cpus) <= set(usable(topo)), (mode, cpus)
    if spec.kind == "cpus":
        assert cpus == list(spec.cpus)
        return res
    # class and all modes: one CPU per physical core, lowest ids first
    table = {c["id"]: c for c in topo["cpus"]}
    for cpu in cpus:
        others = set(table[cpu].get("smt_siblings") or []) - {cpu}
        assert not others & set(cpus), "two SMT siblings chosen: %s" % cpus
    if spec.kind == "all":
        assert cpus == physical_cores(topo, usable(topo))
        return res
    cls = next(c for c in topo["classes"] if c["name"] == res.cls)
    cores = physical_cores(topo, cls["cpus"])
    assert cpus == cores[:spec.count or len(cores)]
    return res


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(BOARD_NAMES), modes)
def test_resolve_on_known_boards_never_crashes_or_lies(board, mode):
    check(BOARDS[board], mode)


@st.composite
def topologies(draw):
    """Random but well-formed topology documents: any CPU count, online and
    allowed unknown or false, SMT pairs, up to 6 classes, gaps in the ids."""
    ids = sorted(draw(st.sets(st.integers(0, 40), min_size=1, max_size=14)))
    nclasses = draw(st.integers(1, min(6, len(ids))))
    owner = {cpu: draw(st.integers(0, nclasses - 1)) for cpu in ids}
    for rank in range(nclasses):          # every class has at least one CPU
        owner[ids[rank]] = rank
    names = class_names(nclasses)
    flag = st.sampled_from([True, True, True, False, None])
    siblings = {cpu: [cpu] for cpu in ids}
    if draw(st.booleans()):
        for a, b in zip(ids[::2], ids[1::2]):
            if owner[a] == owner[b]:
                siblings[a] = siblings[b] = [a, b]
    cpus = [{"id": cpu, "online": draw(flag), "allowed": draw(flag), "class": names[owner[cpu]],
             "smt_siblings": siblings[cpu]} for cpu in ids]
    classes = [{"name": names[r], "rank": r, "cpus": [c for c in ids if owner[c] == r]}
               for r in range(nclasses)]
    return {"schema": 1, "cpus": cpus, "classes": classes}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topologies(), near_grammar | any_text)
def test_resolve_on_random_boards_never_crashes_or_lies(topo, mode):
    check(topo, mode)


@settings(max_examples=300, deadline=None)
@given(topologies(), st.data())
def test_every_valid_count_resolves_on_random_boards(topo, data):
    """The positive side: for a class with k usable cores, <class>:n for
    1 <= n <= k always resolves, and k+1 never does."""
    cls = data.draw(st.sampled_from(topo["classes"]))
    cores = physical_cores(topo, cls["cpus"])
    if not cores:
        return
    n = data.draw(st.integers(1, len(cores)))
    assert resolve(topo, "%s:%d" % (cls["name"], n)).cpus == cores[:n]
    assert check(topo, "%s:%d" % (cls["name"], len(cores) + 1)) is None


# ------------------------------------- the same strings against a live session

@pytest.fixture(scope="module")
def live_session(tmp_path_factory):
    from tests.support.session_kit import Session
    s = Session(tmp_path_factory.mktemp("fuzz-session"))
    yield s
    s.close()


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(mode=near_grammar | any_text | huge_text)
def test_set_thread_mode_over_rpc_returns_true_state_or_clear_error(live_session, mode):
    """edge.set_thread_mode in a real session: a state that /proc confirms
    from outside, or an RPC error with an explanation; the session lives on."""
    from tvm.error import RPCError
    from edge_server.session.pinning import read_affinities
    topo = live_session.topology
    if "\x00" in mode:
        mode = mode.split("\x00")[0]    # TVM's RPC cuts strings at the first NUL
    try:
        expected = resolve(topo, mode)
    except ModeError:
        expected = None
    try:
        state = live_session.set_mode(mode)
    except RPCError as err:
        assert expected is None, "refused a valid mode %r: %s" % (mode, err)
        assert "thread mode" in str(err)
        state = live_session.state()
    else:
        assert expected is not None and state["cpus"] == expected.cpus
    seen = read_affinities(state["pid"])
    assert {t["tid"]: t["cpus"] for t in state["threads"]} == seen
    assert seen[state["pid"]] == [state["cpus"][0]]
    assert all(set(c) <= set(state["cpus"]) for c in seen.values())
    assert state["tvm_num_threads"] == len(state["cpus"])
