"""Cooldown by temperature: the idle record and the bounded wait, with a fake clock."""

from edge_server.board.conditions import ConditionsReader
from edge_server.session.cooldown import KEEP, IdleTemps, wait_until_cool
from tests.support.conditions_kit import rk3399_conditions


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def test_idle_level_is_the_lowest_recent_reading_and_persists(tmp_path):
    board = rk3399_conditions(tmp_path / "b")
    reader = ConditionsReader(str(board.root), [0])
    path = str(tmp_path / "state" / "idle-temps.json")
    idle = IdleTemps(path)
    for temp in (52000, 47000, 49000):
        board.set_temp(0, temp)
        idle.record(reader.snapshot())
    assert IdleTemps(path).idle_mc("soc-thermal") == 47000
    for _ in range(KEEP):                 # old readings age out
        idle.record(reader.snapshot())
    assert IdleTemps(path).idle_mc("soc-thermal") == 49000


def test_garbage_idle_file_is_ignored(tmp_path, caplog):
    path = tmp_path / "idle-temps.json"
    path.write_text("{not json")
    assert IdleTemps(str(path)).readings == {}
    assert "ignoring idle temperatures in %s" % path in caplog.text


def test_wait_polls_until_within_margin_of_idle(tmp_path):
    board = rk3399_conditions(tmp_path / "b")
    reader = ConditionsReader(str(board.root), [0])
    idle = IdleTemps(None)
    idle.record(reader.snapshot())                       # 45 and 43 °C
    temps = iter([60000, 55000, 49500, 47900])
    clock = Clock()

    def read():
        board.set_temp(0, next(temps))
        return reader.snapshot()
    out = wait_until_cool(read, idle, 3.0, 10.0, sleep=clock.sleep, clock=clock)
    assert out == {"waited_s": 0.6, "reached": True, "zone": "soc-thermal", "temp_c": 47.9,
                   "target_c": 48.0, "idle_c": 45.0}


def test_wait_is_bounded(tmp_path):
    board = rk3399_conditions(tmp_path / "b")
    reader = ConditionsReader(str(board.root), [0])
    idle = IdleTemps(None)
    idle.record(reader.snapshot())
    board.set_temp(1, 70000)                             # gpu-thermal stays hot
    clock = Clock()
    out = wait_until_cool(reader.snapshot, idle, 3.0, 1.0, sleep=clock.sleep, clock=clock)
    assert out["reached"] is False and out["zone"] == "gpu-thermal"
    assert abs(out["waited_s"] - 1.0) < 1e-6 and out["temp_c"] == 70.0
