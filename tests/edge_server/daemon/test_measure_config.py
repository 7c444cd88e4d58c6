"""The daemon's verdict, cooldown and clock-lock flags: defaults from one
table (verdict.Thresholds), bad values refused with one line."""
import pytest

from edge_server.daemon.config import ConfigError, build_parser, parse_args
from edge_server.daemon.measure_config import resolved
from edge_server.session.verdict import Thresholds


def test_defaults_come_from_the_thresholds_table(tmp_path):
    config = parse_args(["--work-root", str(tmp_path)], environ={})
    assert config.measure.thresholds == Thresholds()
    assert config.measure.lock_clocks is None and config.measure.root == "/"
    assert resolved(config).state_dir == str(tmp_path)          # the work root by default
    help_text = " ".join(build_parser().format_help().split())
    assert "--verdict-max-rise-c N SUSPECT when a thermal zone warmed more than this many °C " \
           "during the run (default 5.0)" in help_text


def test_flags_set_thresholds_cooldown_lock_and_state(tmp_path):
    config = parse_args(["--work-root", str(tmp_path), "--verdict-max-rise-c", "2.5",
                         "--verdict-max-preemptions", "40", "--cooldown-margin", "1",
                         "--cooldown-max-wait", "5", "--lock-clocks", "1416000",
                         "--clock-state", str(tmp_path / "st")], environ={})
    m = config.measure
    assert m.thresholds.max_rise_c == 2.5 and m.thresholds.max_preemptions == 40
    assert (m.cooldown_margin_c, m.cooldown_max_wait_s) == (1.0, 5.0)
    assert m.lock_clocks == 1416000 and m.state_dir == str(tmp_path / "st")
    assert m.clock_dir() == str(tmp_path / "st" / "clock-locks")


def test_state_directory_from_systemd(tmp_path):
    config = parse_args(["--work-root", str(tmp_path)],
                        environ={"STATE_DIRECTORY": "/var/lib/edge-server"})
    assert resolved(config).state_dir == "/var/lib/edge-server"


@pytest.mark.parametrize("argv, words", [
    (["--verdict-min-clock-ratio", "95"], "--verdict-min-clock-ratio 95.0 must be a number >= 0 "
                                          "and <= 1 (e.g. 0.95)"),
    (["--verdict-max-other-ms", "-1"], "--verdict-max-other-ms -1.0 must be a number >= 0"),
    (["--cooldown-max-wait", "nan"], "--cooldown-max-wait nan must be a number >= 0"),
    (["--lock-clocks", "fast"], "--lock-clocks 'fast': use max (performance governor at the top "
                                "clock) or a frequency in kHz such as 1416000"),
])
def test_bad_values_are_one_line_errors(tmp_path, argv, words):
    with pytest.raises(ConfigError) as err:
        parse_args(["--work-root", str(tmp_path)] + argv, environ={})
    assert str(err.value) == words
