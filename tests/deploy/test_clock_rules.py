"""The --lock-clocks deploy rules under systemd 252's own tools, on a fake root
(systemd-sysusers and systemd-tmpfiles with --root=DIR: globs and the group
lookup happen inside DIR): group edge-clocks is created, exactly the three
files per cpufreq policy become root:edge-clocks 0664, nothing else changes;
the unit with the drop-in passes systemd-analyze verify."""
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
POLICY_DIR = "sys/devices/system/cpu/cpufreq"
WRITTEN = ("scaling_governor", "scaling_max_freq", "scaling_min_freq")
READ_ONLY = ("scaling_cur_freq", "cpuinfo_max_freq", "cpuinfo_min_freq", "related_cpus",
             "scaling_available_governors", "stats/time_in_state", "stats/reset")

pytestmark = pytest.mark.skipif(
    not (shutil.which("systemd-sysusers") and shutil.which("systemd-tmpfiles")),
    reason="needs systemd-sysusers and systemd-tmpfiles")


def fake_root(root: Path) -> Path:
    (root / "etc/sysusers.d").mkdir(parents=True)
    (root / "etc/tmpfiles.d").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    shutil.copy(DEPLOY / "sysusers.d/edge-server-clocks.conf", root / "etc/sysusers.d")
    shutil.copy(DEPLOY / "tmpfiles.d/edge-server-clocks.conf", root / "etc/tmpfiles.d")
    for policy in ("policy0", "policy4"):
        for name in WRITTEN + READ_ONLY:
            path = root / POLICY_DIR / policy / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x\n")
            path.chmod(0o644)
    other = root / "sys/devices/system/cpu/cpu0/cpufreq_like/scaling_governor"
    other.parent.mkdir(parents=True)     # same name outside the policy dirs: untouched
    other.write_text("x\n")
    other.chmod(0o644)
    return root


def modes(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_relative_to(root / "etc"):
                continue
            st = path.lstat()
            out[str(path.relative_to(root))] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


def group_id(root: Path, name: str):
    for line in (root / "etc/group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2])
    return None


def test_sysusers_then_tmpfiles_grant_exactly_the_three_files(tmp_path):
    root = fake_root(tmp_path / "root")
    host_group = Path("/etc/group").read_text()
    before = modes(root)
    subprocess.run(["systemd-sysusers", "--root=%s" % root], check=True, capture_output=True)
    gid = group_id(root, "edge-clocks")
    assert gid is not None and 0 < gid < 1000                  # a system group, in the root
    out = subprocess.run(["systemd-tmpfiles", "--root=%s" % root, "--create",
                          "edge-server-clocks.conf"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    after = modes(root)
    changed = {p for p in after if after[p] != before[p]}
    assert changed == {"%s/%s/%s" % (POLICY_DIR, pol, name)
                       for pol in ("policy0", "policy4") for name in WRITTEN}
    assert {after[p] for p in changed} == {(0o664, 0, gid)}
    assert set(after) == set(before)                           # nothing created or removed
    assert Path("/etc/group").read_text() == host_group        # the host is untouched


def test_tmpfiles_with_no_policies_succeeds_and_changes_nothing(tmp_path):
    """A board without cpufreq: the drop-in's ExecStartPre must not fail the unit."""
    root = tmp_path / "root"
    (root / "etc/tmpfiles.d").mkdir(parents=True)
    (root / "etc/group").write_text("root:x:0:\nedge-clocks:x:990:\n")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    shutil.copy(DEPLOY / "tmpfiles.d/edge-server-clocks.conf", root / "etc/tmpfiles.d")
    (root / "sys/devices/system/cpu").mkdir(parents=True)
    before = modes(root)
    out = subprocess.run(["systemd-tmpfiles", "--root=%s" % root, "--create",
                          "edge-server-clocks.conf"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert modes(root) == before


def verify(root):
    return subprocess.run(["systemd-analyze", "verify", "--root=%s" % root, "edge-server.service"],
                          capture_output=True, text=True, timeout=120)


def test_the_unit_with_the_drop_in_verifies(staged_root):
    """On the shared staged root: the drop-in and the binary its ExecStartPre runs
    (what a board's root has) are added for this test only. A drop-in naming a
    binary the root lacks is reported: the drop-in really is read."""
    drop_in = staged_root / "etc/systemd/system/edge-server.service.d"
    drop_in.mkdir(parents=True, exist_ok=True)
    conf = drop_in / "lock-clocks.conf"
    text = (DEPLOY / "edge-server.service.d/lock-clocks.conf").read_text()
    tmpfiles = staged_root / "usr/bin/systemd-tmpfiles"
    shutil.copy2("/usr/bin/systemd-tmpfiles", tmpfiles)
    try:
        conf.write_text(text)
        good = verify(staged_root)
        conf.write_text(text.replace("/usr/bin/systemd-tmpfiles", "/usr/bin/no-such-tmpfiles"))
        bad = verify(staged_root)
    finally:
        shutil.rmtree(drop_in)
        tmpfiles.unlink()
    assert good.returncode == 0 and good.stdout.strip() == "", good.stdout + good.stderr
    assert "/usr/bin/no-such-tmpfiles" in bad.stdout + bad.stderr
