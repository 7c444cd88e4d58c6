"""bench/sched_trace: perf's scheduler lines in, who ran beside whom out."""
import pytest
from hypothesis import given, strategies as st

from bench import sched_trace as tr

SWITCH_LINE = ("[%03d] %.6f:       sched:sched_switch: prev_comm=%s prev_pid=%d prev_prio=120 "
               "prev_state=S ==> next_comm=%s next_pid=%d next_prio=120")
FORK_LINE = "[%03d] %.6f: sched:sched_process_fork: comm=%s pid=%d child_comm=%s child_pid=%d"

comms = st.text(st.characters(min_codepoint=33, max_codepoint=126,
                              blacklist_characters="="), min_size=1, max_size=15)
tids = st.integers(0, 4_000_000)


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 10 ** 12), tids, tids,
                          comms, comms), max_size=30))
def test_switch_lines_round_trip(items):
    text = "\n".join(SWITCH_LINE % (cpu, us / 1e6, a, prev, b, nxt)
                     for cpu, us, prev, nxt, a, b in items)
    switches, parents = tr.parse(text)
    assert parents == {}
    assert [(s.cpu, s.prev, s.next) for s in switches] == \
        [(cpu, prev, nxt) for cpu, _, prev, nxt, _, _ in items]
    assert [s.time for s in switches] == pytest.approx([us / 1e6 for _, us, *_ in items])


@given(st.dictionaries(tids, tids, max_size=20), comms)
def test_fork_lines_round_trip(forks, comm):
    text = "\n".join(FORK_LINE % (1, 5.0, comm, parent, comm, child)
                     for child, parent in forks.items())
    assert tr.parse(text) == ([], forks)


@given(st.text(max_size=300))
def test_junk_is_skipped_not_fatal(text):
    switches, parents = tr.parse(text)
    assert isinstance(switches, list) and isinstance(parents, dict)


def test_perf_headers_and_other_events_are_skipped():
    text = "\n".join(["# ========", "# captured on: x", "",
                      "[000] 1.000000: sched:sched_wakeup: comm=a pid=5 prio=120 target_cpu=000",
                      SWITCH_LINE % (0, 1.5, "a", 5, "b", 6)])
    assert tr.parse(text) == ([tr.Switch(0, 1.5, 5, 6)], {})


def test_slices_follow_each_cpu_and_skip_idle_and_the_unknown_start():
    switches = [tr.Switch(0, 1.0, 9, 5), tr.Switch(1, 1.2, 9, 0),
                tr.Switch(0, 2.0, 5, 0), tr.Switch(1, 2.5, 0, 7), tr.Switch(1, 3.0, 7, 8)]
    assert tr.slices(switches) == [tr.Slice(0, 1.0, 2.0, 5), tr.Slice(1, 2.5, 3.0, 7)]


def test_overlap_counts_side_by_side_time_per_role_and_pair():
    runs = [tr.Slice(0, 0.0, 10.0, 1),      # the kernel, alone but for 2..4
            tr.Slice(1, 2.0, 4.0, 2),       # a spare beside it
            tr.Slice(0, 10.0, 11.0, 3),     # the client, then the server beside it
            tr.Slice(1, 10.5, 12.0, 4)]
    names = {1: "kernel", 2: "spare", 3: "client", 4: "server"}
    ov = tr.overlap(runs, lambda s, t: names[s.tid], cpus=2)
    assert ov.span == 12.0
    assert ov.busy == {"kernel": 10.0, "spare": 2.0, "client": 1.0, "server": 1.5}
    assert ov.beside == {"kernel": 2.0, "spare": 2.0, "client": 0.5, "server": 0.5}
    assert ov.both_busy == pytest.approx(2.5)
    assert ov.pairs == {("kernel", "spare"): 2.0, ("client", "server"): 0.5}


def test_overlap_of_nothing_is_empty():
    ov = tr.overlap([], lambda s, t: "x", cpus=2)
    assert (ov.span, ov.both_busy, dict(ov.busy)) == (0.0, 0.0, {})


def test_ancestry_walks_to_the_nearest_known_and_survives_loops():
    parents = {10: 5, 5: 2, 7: 8, 8: 7}
    assert tr.ancestry(10, parents, {2: "server"}) == "server"
    assert tr.ancestry(10, parents, {5: "session", 2: "server"}) == "session"
    assert tr.ancestry(7, parents, {2: "server"}) is None
    assert tr.ancestry(99, parents, {}) is None


def test_kernel_window_spans_the_long_slices_only():
    runs = [tr.Slice(0, 0.0, 0.001, 5), tr.Slice(0, 0.002, 0.010, 5),
            tr.Slice(0, 0.011, 0.012, 5), tr.Slice(0, 0.013, 0.020, 5),
            tr.Slice(1, 0.0, 0.001, 6)]
    assert tr.kernel_windows(runs, [5, 6]) == {5: (0.002, 0.020)}
