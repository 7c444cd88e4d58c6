"""--lock-clocks under the hardened unit and a real systemd 252: a container
booted with systemd-nspawn (tests/support/nspawn.py) with a fake cpufreq tree
bind-mounted at /sys/devices/system/cpu/cpufreq, the deploy rules installed
(sysusers.d, tmpfiles.d, the unit drop-in), edge-server running as the unit's
dynamic user with the session sandbox on. Asserted from outside, on the
bound files: the group rule applied, the policy locked during a session and
restored at its end, and restored after the daemon was SIGKILLed mid-session
(systemd restarts it; the new daemon restores at start).

nspawn --bind cannot place it there: nspawn mounts /sys/devices (sysfs) after
its custom binds, which hides them. So the tree is bound at /run/fake-cpufreq
and, once the container is up, bind-mounted over the cpufreq dir inside its
mount namespace; edge-server is started after that, so its ExecStartPre
(the drop-in's tmpfiles call, as for a cpufreq module loaded after boot) is
what grants the group.

The unit is deploy/edge-server.service with only ExecStart changed to run this
checkout with the system Python and this machine's environment's packages
(the container's root is an overlay of this machine's; the environment's own
interpreter lives under /root, which ProtectHome= hides), so no install is
needed.
"""
import json
import re
import shutil
import sysconfig
import time
from pathlib import Path

import pytest

from tests.support.deploy_kit import CLOCKS as ORIGINAL, CPUFREQ, fake_cpufreq, mount_cpufreq
from tests.support.deploy_kit import clock_settings as settings
from tests.support.nspawn import Container, overlay_root, prerequisites

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PORT, KEY = 9091, "ct-lock"
TARGET = """[Unit]
Description=edge-server clock-lock test boot
Requires=basic.target
After=basic.target
AllowIsolate=yes
"""

pytestmark = pytest.mark.skipif(bool(prerequisites()), reason="needs %s" % prerequisites())


def install(root: Path) -> None:
    etc = root / "etc"
    for sub, name in (("sysusers.d", "edge-server-clocks.conf"),
                      ("tmpfiles.d", "edge-server-clocks.conf")):
        (etc / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(DEPLOY / sub / name, etc / sub / name)
    unit = (DEPLOY / "edge-server.service").read_text()
    exec_start = ("ExecStart=/usr/bin/python3 -m edge_server --host 127.0.0.1 --port %d "
                  "--port-end %d --key %s --lock-clocks=max --grace 2\n"
                  "Environment=PYTHONPATH=%s:%s"
                  % (PORT, PORT + 1, KEY, REPO, sysconfig.get_paths()["purelib"]))
    unit, n = re.subn(r"(?m)^ExecStart=.*$", exec_start.replace("\\", "\\\\"), unit)
    assert n == 1
    system = etc / "systemd/system"
    (system / "edge-server.service").write_text(unit)
    (system / "edge-server.service.d").mkdir(exist_ok=True)
    shutil.copy(DEPLOY / "edge-server.service.d/lock-clocks.conf",
                system / "edge-server.service.d")
    (etc / "default").mkdir(exist_ok=True)
    (etc / "default/edge-server").write_text("TRACKER=\nKEY=\nEXTRA_ARGS=\n")
    (system / "edge-test.target").write_text(TARGET)


def wait(cond, timeout, what, ct):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.3)
    raise TimeoutError("%s\n%s" % (what, ct.run("journalctl", "--no-pager", "-o", "cat", "-n",
                                               "60", "-u", "edge-server", check=False)))


def main_pid(ct) -> int:
    return int(ct.show("edge-server", "MainPID") or 0)


def test_lock_clocks_under_the_hardened_unit(tmp_path):
    tree = fake_cpufreq()
    try:
        with overlay_root() as (base, root):
            install(root)
            ct = Container(base, root)
            try:
                ct.boot(binds=["%s:/run/fake-cpufreq" % tree])
                mount_cpufreq(ct)
                assert ct.run("ls", CPUFREQ).split() == ["policy0"]
                ct.run("systemctl", "start", "--no-block", "edge-server")
                wait(lambda: ct.show("edge-server", "ActiveState") == "active", 120,
                     "edge-server never became active", ct)
                check_under_systemd(ct, root, tree)
            finally:
                ct.shutdown()
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def check_under_systemd(ct, root, tree):
    gid = int(ct.run("getent", "group", "edge-clocks").split(":")[2])
    for name in ORIGINAL:                                      # the tmpfiles rule applied
        st = (tree / "policy0" / name).stat()
        assert (oct(st.st_mode & 0o777), st.st_uid, st.st_gid) == (oct(0o664), 0, gid), name
    st = (tree / "policy0" / "scaling_cur_freq").stat()
    assert (st.st_mode & 0o777, st.st_gid) == (0o644, 0)       # and nothing else
    user = ct.run("ps", "-o", "user=,uid=", "-p", str(main_pid(ct))).split()
    assert int(user[1]) >= 61184                                # a dynamic user, not root
    assert settings(tree) == ORIGINAL                           # idle: nothing held

    client = ct.client("measure", PORT, KEY, 60, background=True)
    wait(lambda: "status" in client.log(), 120, "no verdict: %s" % client.log(), ct)
    verdict = json.loads(client.log().strip().splitlines()[-1])
    assert not [u for u in verdict["unknown"] if "clock lock" in u], verdict
    assert settings(tree) == dict(ORIGINAL, scaling_governor="performance")
    state = root / "var/lib/private/edge-server/clock-locks/clock-lock-policy0.json"
    assert json.loads(state.read_text())["saved"] == ORIGINAL
    client.stop()                                               # the session ends
    wait(lambda: settings(tree) == ORIGINAL, 30, "not restored at the session's end", ct)
    assert not state.exists()

    client = ct.client("measure", PORT, KEY, 60, background=True)
    wait(lambda: "status" in client.log(), 120, "no verdict: %s" % client.log(), ct)
    assert settings(tree)["scaling_governor"] == "performance"
    killed = main_pid(ct)
    ct.run("systemctl", "kill", "--signal=SIGKILL", "edge-server")   # the whole unit goes
    client.stop()
    wait(lambda: main_pid(ct) not in (0, killed)
         and ct.show("edge-server", "ActiveState") == "active", 60,
         "edge-server was not restarted after SIGKILL", ct)
    assert settings(tree) == ORIGINAL                           # restored by the new daemon
    assert "restored clocks a previous daemon left locked" in ct.journal("-o", "cat")
