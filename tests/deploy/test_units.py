"""The systemd units as installed: systemd's own checker, its security rating,
and the settings the daemon depends on (notify, watchdog, kill mode, the
system calls and address families a session needs).

`systemd-analyze verify` and `security --offline=yes` run against a root that
install.sh staged (tests/deploy/conftest.py), so ExecStart names a real file.
"""
import re
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

from tests.support.deploy_kit import DEPLOY, PREFIX

SCORE_BOUND = 2.0
UNITS = ("edge-server.service", "tvm-tracker.service")

# What edge-server and its sessions do, by system call: serve TCP, fork session
# children and kill their process groups, pin threads, run g++ on uploaded
# .tar files, dlopen the result, flock the work root, talk to journald.
NEEDED_SYSCALLS = (
    "sched_setaffinity", "sched_getaffinity", "clone", "clone3", "execve", "wait4",
    "kill", "setpgid", "socket", "bind", "listen", "accept4", "connect", "setsockopt",
    "sendmsg", "recvfrom", "mmap", "mprotect", "munmap", "flock", "openat", "getdents64",
    "mkdir", "unlinkat", "rename", "fchmod", "pipe2", "dup3", "futex", "prctl",
    "epoll_wait", "poll", "sched_yield", "getrandom",
    # the per-session sandbox (edge_server/session/sandbox.py)
    "landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self", "seccomp",
)


def analyze(*args, timeout=120):
    return subprocess.run(["systemd-analyze", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def unit_settings(path):
    """[Service]-and-all settings of a unit file: name -> list of values, in order."""
    settings = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        name, _, value = line.partition("=")
        settings.setdefault(name.strip(), []).append(value.strip())
    return settings


def security_score(root, unit):
    proc = analyze("security", "--offline=yes", "--root=%s" % root, unit)
    match = re.search(r"Overall exposure level for %s: ([0-9.]+)" % re.escape(unit), proc.stdout)
    assert match, "no overall exposure in systemd-analyze output:\n" + proc.stdout
    return float(match.group(1)), proc.stdout


def seconds(value):
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|min)?", value)
    assert match, "unexpected time span %r" % value
    return float(match.group(1)) * (60 if match.group(2) == "min" else 1)


@lru_cache(maxsize=None)
def syscall_group(name):
    """Expand a systemd syscall group (recursively) with systemd's own table."""
    out = analyze("syscall-filter", name).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if not item or item.startswith("#"):
            continue
        calls |= syscall_group(item) if item.startswith("@") else {item}
    return frozenset(calls)


def allowed_syscalls(filters):
    """The allow list systemd builds from SystemCallFilter= lines (allow-list mode)."""
    allowed = None
    for value in filters:
        deny = value.startswith("~")
        items = value.lstrip("~").split()
        calls = set()
        for item in items:
            calls |= syscall_group(item) if item.startswith("@") else {item}
        if allowed is None:
            assert not deny, "the first SystemCallFilter= should be an allow list"
            allowed = calls
        elif deny:
            allowed -= calls
        else:
            allowed |= calls
    return allowed


@pytest.mark.parametrize("unit", UNITS)
def test_verify_passes_on_staged_install(staged_root, unit):
    proc = analyze("verify", "--root=%s" % staged_root, unit)
    assert proc.returncode == 0 and proc.stdout.strip() == "", proc.stdout


def test_verify_would_catch_a_broken_unit(staged_root):
    """The verify check above can fail: a bad value and a missing binary are reported."""
    unit = staged_root / "etc/systemd/system/edge-server.service"
    broken = unit.read_text().replace("WatchdogSec=30s", "WatchdogSec=thirty") \
        .replace(PREFIX + "/bin/edge-server", "/opt/missing/bin/edge-server")
    path = unit.parent / "broken-copy.service"
    path.write_text(broken)
    try:
        proc = analyze("verify", "--root=%s" % staged_root, path.name)
    finally:
        path.unlink()
    assert "WatchdogSec" in proc.stdout or "sec value" in proc.stdout, proc.stdout
    assert "/opt/missing/bin/edge-server" in proc.stdout, proc.stdout


@pytest.mark.parametrize("unit", UNITS)
def test_security_score_within_bound(staged_root, unit):
    score, report = security_score(staged_root, unit)
    assert score <= SCORE_BOUND, report


@pytest.mark.parametrize("unit", UNITS)
def test_documented_score_is_the_real_one(staged_root, unit):
    """The comment in the unit states the score; keep it true."""
    score, _ = security_score(staged_root, unit)
    text = (DEPLOY / unit).read_text()
    claimed = re.search(r"rates this unit ([0-9.]+)", text)
    assert claimed, "%s does not state its security score" % unit
    assert float(claimed.group(1)) == score, "%s says %s, systemd-analyze says %s" % (
        unit, claimed.group(1), score)


def test_a_weaker_unit_scores_worse(staged_root, tmp_path):
    """The bound is meaningful: the same unit without its sandbox rates far above it."""
    unit = (staged_root / "etc/systemd/system/edge-server.service").read_text()
    service, _, _ = unit.partition("# Sandbox:")
    weak = tmp_path / "etc/systemd/system/weak.service"
    weak.parent.mkdir(parents=True)
    weak.write_text(service.replace("DynamicUser=yes", ""))
    score, report = security_score(tmp_path, "weak.service")
    assert score > 5.0, report


def test_edge_server_is_a_notify_service_with_watchdog(staged_root):
    s = unit_settings(staged_root / "etc/systemd/system/edge-server.service")
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert seconds(s["WatchdogSec"][0]) >= 10
    assert s["Restart"][0] in ("on-failure", "always")
    assert seconds(s["RestartSec"][0]) >= 1
    # bad flags exit 2 (serve_cli): restarting cannot fix them
    assert s["RestartPreventExitStatus"] == ["2"]
    assert s["ExecReload"] == ["/bin/kill -HUP $MAINPID"]


def test_stop_gives_the_daemon_its_grace_period(staged_root):
    """SIGTERM to the daemon only (it ends its sessions itself), SIGKILL to
    everything left only after TimeoutStopSec, which outlasts --grace."""
    from edge_server.daemon.config import parse_args
    s = unit_settings(staged_root / "etc/systemd/system/edge-server.service")
    assert s["KillMode"] == ["mixed"]
    assert s.get("OOMPolicy") == ["continue"]  # an OOM-killed session must not stop the service
    env = (staged_root / "etc/default/edge-server").read_text()
    extra = re.search(r'^EXTRA_ARGS="?([^"\n]*)"?$', env, re.M).group(1).split()
    grace = parse_args(["--tracker=h:9190", "--key=k", *extra]).grace
    assert seconds(s["TimeoutStopSec"][0]) >= grace + 10


def test_exec_start_uses_the_settings_file(staged_root):
    s = unit_settings(staged_root / "etc/systemd/system/edge-server.service")
    assert s["EnvironmentFile"] == ["/etc/default/edge-server"]
    assert s["ExecStart"] == [
        PREFIX + "/bin/edge-server --tracker=${TRACKER} --key=${KEY} $EXTRA_ARGS"]
    env = (staged_root / "etc/default/edge-server").read_text()
    for name in ("TRACKER", "KEY", "EXTRA_ARGS"):
        assert re.search(r"^%s=\S" % name, env, re.M), name


def test_settings_file_flags_are_accepted_by_the_daemon(staged_root):
    """The shipped EXTRA_ARGS and the documented flags all parse."""
    from edge_server.daemon.config import parse_args
    env = (DEPLOY / "edge-server.env").read_text()
    extra = re.search(r'^EXTRA_ARGS="?([^"\n]*)"?$', env, re.M).group(1).split()
    # install.sh fills TRACKER and KEY in; the template holds no made-up values
    assert re.findall(r"^(TRACKER|KEY)=(.*)$", env, re.M) == [("TRACKER", ""), ("KEY", "")]
    parse_args(["--tracker=[fd00::5]:9190", "--key=rk3399", *extra])
    documented = set(re.findall(r"^#\s+(--[a-z-]+)", env, re.M))
    assert documented >= {"--host", "--port", "--custom-addr", "--default-mode", "--grace"}
    help_text = subprocess.run(["python", "-m", "edge_server", "--help"], stdout=subprocess.PIPE,
                               text=True, cwd=str(DEPLOY.parent), timeout=60).stdout
    for flag in documented:
        assert flag in help_text, "%s is documented in edge-server.env but not a flag" % flag


@pytest.mark.parametrize("unit", UNITS)
def test_runs_as_an_unprivileged_dynamic_user(staged_root, unit):
    s = unit_settings(staged_root / "etc/systemd/system" / unit)
    assert s["DynamicUser"] == ["yes"]
    assert s["CapabilityBoundingSet"] == [""]
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["ProtectSystem"] == ["strict"]


def test_session_work_dirs_have_a_runtime_directory(staged_root):
    s = unit_settings(staged_root / "etc/systemd/system/edge-server.service")
    assert s["RuntimeDirectory"] == ["edge-server"]
    assert s["RuntimeDirectoryMode"] == ["0700"]
    # the daemon takes its work root from $RUNTIME_DIRECTORY
    from edge_server.daemon.workroot import default_work_root
    assert default_work_root({"RUNTIME_DIRECTORY": "/run/edge-server"}) == "/run/edge-server"


def test_sessions_keep_the_system_calls_they_need(staged_root):
    s = unit_settings(staged_root / "etc/systemd/system/edge-server.service")
    allowed = allowed_syscalls(s["SystemCallFilter"])
    assert "sched_setaffinity" in syscall_group("@resources")  # why @resources stays allowed
    missing = [c for c in NEEDED_SYSCALLS if c not in allowed]
    assert not missing, "SystemCallFilter= denies %s" % missing
    for denied in ("mount", "reboot", "init_module", "ptrace", "setuid", "settimeofday"):
        assert denied not in allowed, denied


def test_tracker_denies_what_it_does_not_use(staged_root):
    s = unit_settings(staged_root / "etc/systemd/system/tvm-tracker.service")
    allowed = allowed_syscalls(s["SystemCallFilter"])
    assert "sched_setaffinity" not in allowed
    assert {"socket", "bind", "accept4", "clone", "execve"} <= allowed


def test_address_families_and_filesystem_access(staged_root):
    s = unit_settings(staged_root / "etc/systemd/system/edge-server.service")
    assert set(s["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    # /proc/cpuinfo and /proc/device-tree must stay visible to the probe
    assert "ProcSubset" not in s
    # uploaded kernels are dlopen()ed from the work dir, g++ runs from /usr:
    # both must stay executable (W^X is fine: nothing JIT-compiles)
    assert "NoExecPaths" not in s and "ExecPaths" not in s
    assert s["MemoryDenyWriteExecute"] == ["yes"]
    assert s["ProtectHome"] == ["yes"]  # so install.sh refuses a Python under /root or /home
