"""bench/fork_cost: the memory it forks with is really there, and the slope is a slope."""
import pytest

from bench import fork_cost


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4


def test_touched_memory_is_resident_and_private():
    before = _rss_kb()
    buf = fork_cost.touched(8)
    try:
        assert _rss_kb() - before >= 8 * 1024 - 64
    finally:
        buf.close()
    assert _rss_kb() - before < 1024          # closed: gone again


@pytest.mark.parametrize("points, expected", [
    ([(0, 1.0), (25, 1.8), (50, 2.6), (100, 4.2)], 0.032),
    ([(0, 2.0), (100, 2.0)], 0.0),
    ([(10, 5.0)], 0.0),                         # one size: no slope, not a division by zero
])
def test_slope_is_least_squares_ms_per_mb(points, expected):
    assert fork_cost.slope(points) == pytest.approx(expected)
