import pytest
from hypothesis import given, strategies as st

from edge_common.cpulist import CpuListError, format_cpulist, parse_cpulist


@pytest.mark.parametrize("text,cpus", [
    ("0", [0]),
    ("0-3", [0, 1, 2, 3]),
    ("0-3,6", [0, 1, 2, 3, 6]),
    ("4-5", [4, 5]),
    ("0,2,4-7\n", [0, 2, 4, 5, 6, 7]),
    ("", []),
    ("\n", []),
    ("3,1,1-2", [1, 2, 3]),
])
def test_parse_known_lists(text, cpus):
    assert parse_cpulist(text) == cpus


@pytest.mark.parametrize("junk", [
    "a", "0-", "-1", "3-1", "0,,1", "1.5", "0x3", "٣", "0-99999999", "1 2", ",", None, 5,
])
def test_parse_refuses_junk(junk):
    with pytest.raises(CpuListError):
        parse_cpulist(junk)


def test_format_uses_ranges_like_the_kernel():
    assert format_cpulist([0, 1, 2, 3, 6]) == "0-3,6"
    assert format_cpulist([5, 4]) == "4-5"
    assert format_cpulist([]) == ""
    assert format_cpulist([7]) == "7"


@given(st.sets(st.integers(min_value=0, max_value=300)))
def test_round_trip(cpus):
    assert parse_cpulist(format_cpulist(cpus)) == sorted(cpus)


@pytest.mark.parametrize("text, cpu", [("1,1", 1), ("0-3,2", 2), ("4-5,3-4", 4)])
def test_repeats_are_refused_when_asked_and_merged_otherwise(text, cpu):
    assert parse_cpulist(text) == sorted(set(parse_cpulist(text)))
    with pytest.raises(CpuListError, match="names CPU %d twice" % cpu):
        parse_cpulist(text, repeats=False)


def test_a_backwards_range_shows_the_right_way_round():
    with pytest.raises(CpuListError, match="write '1-3'"):
        parse_cpulist("3-1")
