"""--slots planning (auto admission on fake calibrations, explicit specs with
this boot's cached slowdowns) and the calibration itself on this machine."""
import dataclasses
import math
import os

import pytest

from edge_common.slots import SlotError
from edge_server.daemon.config import ConfigError, parse_args
from edge_server.slots import calibrate as cal
from edge_server.slots.plan import parse_threshold, plan_slots
from tests.support.boards import HAND_BOARDS, real_topology

RK3399 = HAND_BOARDS["rk3399"]
BOOT = "0f6c1f0e-9d43-4c41-a6f5-3b2f0d6a7e11"


@pytest.fixture
def boot_root(tmp_path):
    """A board root whose kernel wrote a boot_id, as /proc/sys/kernel/random/boot_id reads."""
    path = tmp_path / "root" / "proc" / "sys" / "kernel" / "random"
    path.mkdir(parents=True)
    (path / "boot_id").write_text(BOOT + "\n")
    return str(tmp_path / "root")


def config(*argv):
    return parse_args(list(argv) + ["--work-root", "/tmp/unused-slots-work"])


def fake_calibration(topology, specs):
    """Little cores disturb each other (4%), big and little clusters do not (1%)."""
    figures = {"cpus:0;cpus:1;cpus:2;cpus:3;cpus:4;cpus:5": 0.04, "cpus:4-5;cpus:0-3": 0.01}
    out = []
    for spec in specs:
        from edge_common.slots import resolve_slots
        slots = resolve_slots(topology, spec)
        worst = figures.get(spec, 0.0)
        out.append({"spec": spec, "slots": [
            {"cpus": list(s.cpus), "slowdown": {"memory": worst, "compute": worst / 4}}
            for s in slots]})
    return out


def test_auto_admits_the_most_slots_under_the_threshold():
    plan = plan_slots(config("--slots", "auto"), RK3399, calibrate=fake_calibration)
    assert plan.spec == "cpus:4-5;cpus:0-3"
    assert [s.cpus for s in plan.slots] == [(4, 5), (0, 1, 2, 3)]
    assert plan.slowdowns == {0: 0.01, 1: 0.01}
    assert "rejected cpus:0;cpus:1;cpus:2;cpus:3;cpus:4;cpus:5 (4.0%)" in plan.why
    doc = plan.topology(RK3399, 1)
    assert doc["slot"]["slowdown"] == 0.01 and doc["slot"]["cpus"] == [0, 1, 2, 3]
    # what a session's verdict needs: per-probe figures, the threshold, the co-slots' cores
    assert doc["slot"]["slowdown_by_probe"] == {"memory": 0.01, "compute": 0.0025}
    assert doc["slot"]["threshold"] == 0.03
    assert doc["slot"]["co_slots"] == [{"index": 0, "cpus": [4, 5]}]


def test_auto_threshold_flag_changes_the_layout():
    plan = plan_slots(config("--slots", "auto", "--slot-threshold", "5%"), RK3399,
                      calibrate=fake_calibration)
    assert len(plan.slots) == 6 and plan.slowdowns[0] == 0.04
    plan = plan_slots(config("--slots", "auto", "--slot-threshold", "0.5"), RK3399,
                      calibrate=fake_calibration)
    assert plan.spec == "all"


def test_explicit_slots_carry_this_boots_calibration(tmp_path, boot_root):
    cache = str(tmp_path / "cache")
    result = fake_calibration(RK3399, ["cpus:4-5;cpus:0-3"])[0]
    path = cal.store(RK3399, result, cache, boot_root)
    assert path == os.path.join(cache, "calibration-%s.json" % BOOT)
    conf = config("--slots", "big;little", "--calibration-cache", cache)
    conf = dataclasses.replace(conf, root=boot_root)
    plan = plan_slots(conf, RK3399)
    assert [s.cpus for s in plan.slots] == [(4, 5), (0, 1, 2, 3)]   # same cores, other spelling
    assert plan.slowdowns == {0: 0.01, 1: 0.01}
    assert "cache" in plan.why
    other = dataclasses.replace(conf, slots="little:1x4")
    assert plan_slots(other, RK3399).slowdowns == {0: None, 1: None, 2: None, 3: None}
    uncalibrated = plan_slots(other, RK3399).topology(RK3399, 2)["slot"]
    assert uncalibrated["slowdown_by_probe"] is None
    assert [c["cpus"] for c in uncalibrated["co_slots"]] == [[0], [1], [3]]


def test_slot_threshold_flag_reaches_the_slot_document():
    plan = plan_slots(config("--slots", "little:1x2", "--slot-threshold", "10%"), RK3399,
                      calibrate=fake_calibration)
    assert plan.topology(RK3399, 0)["slot"]["threshold"] == 0.1


def test_a_calibration_figure_that_is_not_a_number_is_not_measured(tmp_path, boot_root):
    cache = str(tmp_path / "cache")
    result = fake_calibration(RK3399, ["cpus:4-5;cpus:0-3"])[0]
    result["slots"][0]["slowdown"]["memory"] = "fast"
    cal.store(RK3399, result, cache, boot_root)
    conf = dataclasses.replace(config("--slots", "big;little", "--calibration-cache", cache),
                               root=boot_root)
    plan = plan_slots(conf, RK3399)
    assert plan.slowdowns == {0: None, 1: 0.01}


def test_cache_is_per_boot(tmp_path, boot_root):
    cache = str(tmp_path / "cache")
    cal.store(RK3399, fake_calibration(RK3399, ["cpus:4-5;cpus:0-3"])[0], cache, boot_root)
    assert cal.load_cached(RK3399, "big;little", cache, boot_root) is not None
    id_file = os.path.join(boot_root, "proc/sys/kernel/random/boot_id")
    with open(id_file, "w") as f:
        f.write("1b2c3d4e-0000-4000-8000-000000000000\n")     # rebooted
    assert cal.load_cached(RK3399, "big;little", cache, boot_root) is None
    with open(id_file, "w") as f:
        f.write("not a boot id\n")
    assert cal.boot_id(boot_root) is None
    assert cal.store(RK3399, {"spec": "all", "slots": []}, cache, boot_root) is None


def test_a_garbled_cache_is_ignored(tmp_path, boot_root):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / ("calibration-%s.json" % BOOT)).write_text("{not json")
    assert cal.load_cached(RK3399, "big;little", str(cache), boot_root) is None


def test_default_mode_must_fit_every_slot():
    with pytest.raises(SlotError, match=r"every slot.*slot 1 of 2.*--default-mode all"):
        plan_slots(config("--slots", "big;little", "--default-mode", "big"), RK3399,
                   calibrate=fake_calibration)
    plan = plan_slots(config("--slots", "big;little:1x2", "--default-mode", "all"), RK3399,
                      calibrate=fake_calibration)
    assert plan.default_modes == {0: "all", 1: "all", 2: "all"}


@pytest.mark.parametrize("text, value", [("3%", 0.03), ("3", 0.03), (" 0.5 % ", 0.005),
                                         ("0", 0.0)])
def test_threshold(text, value):
    assert math.isclose(parse_threshold(text), value)


@pytest.mark.parametrize("argv, words", [
    (["--slots", "big;;little"], ["--slots", "empty group"]),
    (["--slots", "auto;big"], ["whole slot spec"]),
    (["--slot-threshold=-1%"], ["between 0%"]),
    (["--slot-threshold", "nan"], ["between 0%"]),
])
def test_bad_slot_flags(argv, words):
    with pytest.raises(ConfigError) as err:
        config(*argv)
    for word in words:
        assert word in str(err.value)


def test_no_slots_is_todays_config():
    assert config().slots is None
    assert config("--slots", " AUTO ").slots == "auto"


# ---------------------------------------------------------------- the real probes, here

@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_calibration_measures_each_slot_alone_and_busy(tmp_path):
    topology = real_topology()
    result = cal.calibrate(topology, "cpus:0;cpus:1", memory_mb=4, rounds=1, reps=2)
    assert result["spec"] == "cpus:0;cpus:1" and "busy/alone - 1" in result["method"]
    assert [s["cpus"] for s in result["slots"]] == [[0], [1]]
    for slot in result["slots"]:
        for kind in cal.KINDS:
            alone, busy = slot["alone_ms"][kind], slot["busy_ms"][kind]
            assert alone > 0 and busy > 0
            assert math.isclose(slot["slowdown"][kind], busy / alone - 1, abs_tol=2e-3)
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _is_child_zombie(int(p))]


def _is_child_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] == "Z" and int(fields[1]) == os.getpid()


def test_calibration_refuses_cores_this_process_cannot_use():
    with pytest.raises(cal.CalibrationError, match=r"slot \d needs cpus .*without --root"):
        cal.calibrate(HAND_BOARDS["rk3399"], "little:1x4", memory_mb=1, rounds=1, reps=1)


def test_one_slot_needs_no_measurement(tmp_path, boot_root):
    [result] = cal.calibrated(RK3399, ["all"], str(tmp_path), boot_root)
    assert result["slots"][0]["slowdown"] == {"memory": 0.0, "compute": 0.0}


@pytest.mark.skipif(not os.path.exists("/proc/sys/kernel/random/boot_id"), reason="no boot_id")
def test_this_kernels_boot_id_is_read():
    """A sysctl file refuses one 4 MiB read (ENOMEM): the reader must read it in chunks."""
    with open("/proc/sys/kernel/random/boot_id") as f:
        assert cal.boot_id("/") == f.read().strip()
