"""deploy/install.sh: its dry run line by line, a staged install (DESTDIR) file
by file, reinstalls that keep the settings file, and its refusals (not root,
missing apt packages, an old or home-directory Python, bad arguments)."""
import glob
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.deploy_kit import BOARD, DEPLOY, INSTALL_SH, REPO, run_install, stage

NOBODY = 65534


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def lines(proc):
    return proc.stdout.splitlines()


def test_dry_run_lists_every_action_and_changes_nothing(tmp_path):
    prefix = tmp_path / "opt" / "edge"
    proc = run_install("--dry-run", "--prefix", prefix, *BOARD)
    assert proc.returncode == 0, proc.stderr
    py = "/usr/bin/python3"
    assert lines(proc) == [
        "install.sh: role board, prefix %s, root / (dry run: nothing is changed)" % prefix,
        "+ %s -m venv %s" % (py, prefix),
        "+ copy %s to $TMPDIR/edge-server-src.XXXXXX (sources only: no .git, .venv, tests, "
        "build output)" % REPO,
        "+ %s/bin/python -I -m pip install --disable-pip-version-check "
        "$TMPDIR/edge-server-src.XXXXXX[systemd]" % prefix,
        "+ install -d -m 0755 /etc/systemd/system",
        "+ install -m 0644 %s/edge-server.service /etc/systemd/system/edge-server.service "
        "(ExecStart=%s/bin/...)" % (DEPLOY, prefix),
        "+ install -d -m 0755 /etc/default",
        "+ install -m 0644 %s/edge-server.env /etc/default/edge-server (with "
        "TRACKER=tuning-host:9190 KEY=rk3399-lab)" % DEPLOY,
        "+ systemctl daemon-reload",
        "+ systemctl enable --now edge-server.service",
        "install.sh: dry run: nothing was changed",
    ]
    assert not prefix.exists() and not (tmp_path / "opt").exists()
    assert not os.path.exists("/etc/systemd/system/edge-server.service")


def test_dry_run_with_destdir_stages_and_skips_systemctl(tmp_path):
    dest = tmp_path / "stage"
    proc = run_install("--dry-run", "--tracker", "tuning-host:9190", "--key", "rk3588",
                       destdir=dest)
    assert proc.returncode == 0, proc.stderr
    out = lines(proc)
    assert out[0] == ("install.sh: role board, prefix /opt/edge-server, root %s "
                      "(dry run: nothing is changed)" % dest)
    assert "+ /usr/bin/python3 -m venv %s/opt/edge-server" % dest in out
    assert ("+ install -m 0644 %s/edge-server.service %s/etc/systemd/system/edge-server.service "
            "(ExecStart=/opt/edge-server/bin/...)" % (DEPLOY, dest)) in out
    assert ("+ install -m 0644 %s/edge-server.env %s/etc/default/edge-server "
            "(with TRACKER=tuning-host:9190 KEY=rk3588)" % (DEPLOY, dest)) in out
    assert "install.sh: skipping systemctl: staged under %s" % dest in out
    assert not any(line.startswith("+ systemctl") for line in out), out
    assert not dest.exists()


def test_dry_run_as_non_root_previews(tmp_path):
    proc = run_install("--dry-run", "--prefix", tmp_path / "venv", *BOARD, user=NOBODY)
    assert proc.returncode == 0, proc.stderr
    assert "install.sh: note: not root; the real install needs root" in proc.stdout
    assert "+ systemctl enable --now edge-server.service" in lines(proc)


def test_no_systemctl_writes_files_but_runs_no_systemctl(tmp_path):
    proc = run_install("--dry-run", "--no-systemctl", "--prefix", tmp_path / "venv", *BOARD)
    assert proc.returncode == 0, proc.stderr
    assert not any(line.startswith("+ systemctl") for line in lines(proc))
    assert ("install.sh: skipping systemctl (--no-systemctl); run: systemctl daemon-reload "
            "&& systemctl enable --now edge-server.service") in lines(proc)
    assert ("+ install -m 0644 %s/edge-server.env /etc/default/edge-server (with "
            "TRACKER=tuning-host:9190 KEY=rk3399-lab)" % DEPLOY) in lines(proc)


def test_tracker_role_dry_run(tmp_path):
    proc = run_install("--dry-run", "--role", "tracker", destdir=tmp_path / "s")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "edge-server-src.XXXXXX[host]" in out
    assert "tvm-tracker.service (ExecStart=/opt/edge-server/bin/...)" in out
    assert "edge-server.env" not in out and "/etc/default" not in out


def test_staged_unit_has_the_prefix(staged_install):
    root, _ = staged_install
    unit = root / "etc/systemd/system/edge-server.service"
    assert mode_of(unit) == 0o644
    shipped = (DEPLOY / "edge-server.service").read_text().splitlines()
    written = unit.read_text().splitlines()
    assert len(written) == len(shipped)
    changed = [(a, b) for a, b in zip(shipped, written) if a != b]
    assert changed == [
        ("ExecStart=/opt/edge-server/bin/edge-server --tracker=${TRACKER} --key=${KEY} "
         "$EXTRA_ARGS",
         "ExecStart=/srv/edge/bin/edge-server --tracker=${TRACKER} --key=${KEY} $EXTRA_ARGS")]


def test_staged_settings_file(staged_install):
    root, _ = staged_install
    env = root / "etc/default/edge-server"
    assert mode_of(env) == 0o644
    shipped = (DEPLOY / "edge-server.env").read_text().splitlines()
    written = env.read_text().splitlines()
    assert len(written) == len(shipped)
    changed = [(a, b) for a, b in zip(shipped, written) if a != b]
    assert changed == [("TRACKER=", "TRACKER=tuning-host:9190"), ("KEY=", "KEY=rk3399-lab")]


def test_staged_environment_points_at_the_prefix(staged_install):
    """Every script in the staged venv names /srv/edge, not the staging dir,
    so the tree works once copied onto the board."""
    root, _ = staged_install
    venv = root / "srv/edge"
    assert (venv / "pyvenv.cfg").is_file()
    server = venv / "bin/edge-server"
    assert mode_of(server) & 0o111
    assert server.read_text().splitlines()[0] == "#!/srv/edge/bin/python"
    for path in (venv / "bin").iterdir():
        if path.is_file() and not path.is_symlink():
            assert str(root) not in path.read_text(errors="replace"), path
    assert str(root) not in (venv / "pyvenv.cfg").read_text()
    assert not Path("/srv/edge").exists()  # nothing outside DESTDIR


def test_staged_package_is_importable(staged_install):
    root, _ = staged_install
    proc = subprocess.run([str(root / "srv/edge/bin/python"), "-c",
                           "import edge_server.main, sys; print(edge_server.main.__file__)"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60,
                          cwd="/", env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(str(root / "srv/edge/lib"))


def test_staged_run_prints_the_real_actions(staged_install):
    root, proc = staged_install
    out = lines(proc)
    assert out[0] == "install.sh: role board, prefix /srv/edge, root %s (real)" % root
    assert "+ /usr/bin/python3 -m venv %s/srv/edge" % root in out
    copy = [line for line in out if line.startswith("+ copy %s to " % REPO)]
    assert len(copy) == 1
    build = copy[0].split()[4]
    assert "+ %s/srv/edge/bin/python -I -m pip install --disable-pip-version-check --no-deps "\
        "%s[systemd]" % (root, build) in out
    assert not os.path.exists(build)  # the private build copy is gone
    assert "install.sh: skipping systemctl: staged under %s" % root in out
    assert not any(line.startswith("+ systemctl") for line in out)


def test_reinstall_keeps_an_edited_settings_file(tmp_path):
    root = tmp_path / "root"
    stage(root, *BOARD)
    env = root / "etc/default/edge-server"
    unit = root / "etc/systemd/system/edge-server.service"
    env.write_text("TRACKER=my-host:9190\nKEY=mine\n")
    os.chmod(env, 0o600)
    unit.write_text("stale unit\n")
    proc = stage(root, "--key", "ignored")
    assert env.read_text() == "TRACKER=my-host:9190\nKEY=mine\n"
    assert mode_of(env) == 0o600
    assert unit.read_text() == (DEPLOY / "edge-server.service").read_text()
    assert "= keep %s: it exists (new defaults and docs are in %s/edge-server.env)" % (
        env, DEPLOY) in lines(proc)
    assert "--tracker/--key ignored because %s exists" % env in proc.stdout
    assert "install.sh: updating the existing environment %s/opt/edge-server" % root in lines(proc)


def test_not_root_without_destdir_is_refused(tmp_path):
    prefix = tmp_path / "venv"
    proc = run_install("--prefix", prefix, *BOARD, user=NOBODY)
    assert proc.returncode == 1
    assert "install.sh: error: must run as root" in proc.stderr
    assert "DESTDIR=/tmp/stage" in proc.stderr  # says what would work
    assert not prefix.exists()


@pytest.fixture
def nobody_dir():
    """A directory nobody can write (pytest's tmp dirs are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="edge-deploy-"))
    os.chmod(path, 0o755)
    os.chown(path, NOBODY, NOBODY)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_not_root_can_stage(nobody_dir):
    dest = nobody_dir / "stage"
    proc = run_install("--role", "tracker", "--pip-arg=--no-deps", destdir=dest, user=NOBODY,
                       env={"HOME": str(nobody_dir), "PIP_CACHE_DIR": str(nobody_dir / "cache")})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    unit = dest / "etc/systemd/system/tvm-tracker.service"
    assert os.stat(unit).st_uid == NOBODY and mode_of(unit) == 0o644


def _path_without(tmp_path, *missing):
    """A PATH with the commands install.sh uses, minus `missing`."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("dirname", "id", "grep", "sed", "install", "mktemp", "chmod", "mv", "ls",
                 "gcc", "g++", "pkg-config", "setpriv"):
        found = shutil.which(name)
        if found and name not in missing:
            (bindir / name).symlink_to(found)
    return str(bindir)


def test_missing_apt_packages_are_named_with_the_command(tmp_path):
    path = _path_without(tmp_path, "g++", "pkg-config")
    proc = run_install("--dry-run", *BOARD, env={"PATH": path})
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "install.sh: error: missing system packages: pkg-config g++",
        "  install them first: sudo apt-get install -y pkg-config g++",
    ]


def test_tracker_role_needs_no_compiler(tmp_path):
    path = _path_without(tmp_path, "g++", "gcc", "pkg-config")
    proc = run_install("--dry-run", "--role", "tracker", env={"PATH": path})
    assert proc.returncode == 0, proc.stderr


def _old_pythons():
    found = []
    for pattern in ("/root/.pyenv/versions/3.[0-9].*/bin/python3",
                    "/root/.pyenv/versions/2.*/bin/python2",
                    "/usr/bin/python3.[0-9]", "/usr/local/bin/python3.[0-9]"):
        found += glob.glob(pattern)
    return sorted(found)


@pytest.mark.skipif(not _old_pythons(), reason="no Python older than 3.10 on this machine")
def test_old_python_is_refused():
    old = _old_pythons()[-1]
    proc = run_install("--dry-run", "--python", old, *BOARD)
    assert proc.returncode == 1
    assert "edge-server needs Python >= 3.10" in proc.stderr
    assert "Python '%s' is %s." % (old, os.path.basename(old)[6]) in proc.stderr


def test_python_under_home_is_refused(tmp_path):
    """The unit has ProtectHome=yes: a venv on a Python in /root would not start."""
    real = os.path.realpath(sys.executable)
    if not real.startswith(("/root/", "/home/")):
        pytest.skip("this test's Python (%s) is not under a home directory" % real)
    proc = run_install("--dry-run", "--python", sys.executable, *BOARD)
    assert proc.returncode == 1
    assert "under a home directory the service cannot see (ProtectHome=yes)" in proc.stderr
    assert "--python /usr/bin/python3" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--key", "two words"], "--key 'two words' contains whitespace, which the RPC handshake "
                             "splits on; e.g. two-words"),
    (["--tracker", "nohost"], "--tracker 'nohost' is not HOST:PORT"),
    (["--prefix", "relative/dir"], "--prefix must be an absolute path"),
    (["--prefix", "/"], "--prefix / is not a virtual environment directory"),
    (["--role", "laptop"], "--role must be 'board' or 'tracker', not 'laptop'"),
    (["--role", "tracker", "--key", "k"], "the tracker role has no settings file"),
    (["--frobnicate"], "unknown option '--frobnicate'"),
])
def test_bad_arguments(args, message):
    proc = run_install("--dry-run", *BOARD, *args)
    assert proc.returncode == 1
    assert message in proc.stderr, proc.stderr


def test_a_stock_key_with_a_colon_is_taken_with_a_warning(tmp_path):
    proc = run_install("--dry-run", "--tracker", "t:9190", "--key", "lab:rk3399",
                       destdir=tmp_path / "root")
    assert proc.returncode == 0, proc.stderr
    assert "warning: --key 'lab:rk3399': stock TVM takes it, but MetaSchedule" in proc.stdout
    assert "(with TRACKER=t:9190 KEY=lab:rk3399)" in proc.stdout


def test_prefix_that_is_not_a_venv_is_refused(tmp_path):
    root = tmp_path / "root"
    (root / "opt/edge-server").mkdir(parents=True)
    (root / "opt/edge-server/data.txt").write_text("mine")
    proc = run_install("--dry-run", *BOARD, destdir=root)
    assert proc.returncode == 1
    assert "exists and is not a virtual environment" in proc.stderr
    assert (root / "opt/edge-server/data.txt").read_text() == "mine"


def test_help():
    proc = run_install("--help")
    assert proc.returncode == 0
    for option in ("--role", "--prefix", "--python", "--tracker", "--key", "--pip-arg",
                   "--destdir", "--no-systemctl", "--dry-run"):
        assert option in proc.stdout


def test_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    proc = subprocess.run(["shellcheck", str(INSTALL_SH)], stdout=subprocess.PIPE, text=True)
    assert proc.returncode == 0, proc.stdout


def test_full_install_with_dependencies(full_install):
    """The real pip path once: every dependency, systemd-python built from source."""
    root, _ = full_install
    python = root / "opt/edge-server/bin/python"
    check = subprocess.run(
        [str(python), "-c", "import tvm, systemd.daemon, systemd.journal, psutil, cpuinfo, "
         "cloudpickle, edge_server.daemon.server; print(tvm.__version__)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120, cwd="/")
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip().startswith("0.27")
    helptext = subprocess.run([str(python), "-m", "edge_server", "--help"], cwd="/",
                              stdout=subprocess.PIPE, text=True, timeout=120).stdout
    assert "--tracker" in helptext and "--grace" in helptext


@pytest.mark.parametrize("args", [(), ("--tracker", "t:9190"), ("--key", "rk3399")])
def test_first_install_needs_tracker_and_key(tmp_path, args):
    proc = run_install("--dry-run", *args, destdir=tmp_path / "root")
    assert proc.returncode == 1
    assert "a first install needs --tracker HOST:PORT and --key KEY" in proc.stderr
    assert "+ " not in proc.stdout          # refused before any action


def test_upgrade_reads_tracker_and_key_from_the_settings_file(tmp_path):
    root = tmp_path / "root"
    env = root / "etc/default/edge-server"
    env.parent.mkdir(parents=True)
    env.write_text('# mine\nTRACKER="[fd00::5]:9190"\nKEY=rk3588\n')
    proc = run_install("--dry-run", destdir=root)
    assert proc.returncode == 0, proc.stderr
    assert "install.sh: settings from %s: TRACKER=[fd00::5]:9190 KEY=rk3588" % env in lines(proc)
    env.write_text("TRACKER=\nKEY=rk3588\n")
    proc = run_install("--dry-run", destdir=root)
    assert proc.returncode == 1 and "has no TRACKER= or KEY= value" in proc.stderr


@pytest.mark.parametrize("tracker", ["[::1]:9190", "[fd00::5]:9190", "10.0.0.5:9190",
                                     "tracker.lan:1", "h:65535"])
def test_tracker_forms_accepted(tmp_path, tracker):
    proc = run_install("--dry-run", "--tracker", tracker, "--key", "k", destdir=tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    assert "(with TRACKER=%s KEY=k)" % tracker in proc.stdout


@pytest.mark.parametrize("tracker", ["::1:9190", "[::1]", "[::1]:", "host:0", "host:65536",
                                     "host:99999999", "[zz::1]:9190", "a b:1"])
def test_tracker_forms_refused(tracker):
    proc = run_install("--dry-run", "--tracker", tracker, "--key", "k")
    assert proc.returncode == 1
    assert "is not HOST:PORT" in proc.stderr and "[fd00::5]:9190" in proc.stderr


def test_uninstall_dry_run_lists_the_reverse(tmp_path):
    proc = run_install("--dry-run", "--uninstall", "--prefix", tmp_path / "venv")
    assert proc.returncode == 0, proc.stderr
    assert lines(proc)[1:] == [
        "+ systemctl disable --now edge-server.service",
        "+ rm -f /etc/systemd/system/edge-server.service",
        "+ systemctl daemon-reload",
        "install.sh: dry run: nothing was changed"]


def test_uninstall_removes_a_staged_install_and_keeps_settings(tmp_path):
    root = tmp_path / "root"
    stage(root, *BOARD)
    env = root / "etc/default/edge-server"
    assert (root / "opt/edge-server/pyvenv.cfg").is_file()
    proc = run_install("--uninstall", destdir=root)
    assert proc.returncode == 0, proc.stderr
    assert not (root / "opt/edge-server").exists()
    assert not (root / "etc/systemd/system/edge-server.service").exists()
    assert "TRACKER=tuning-host:9190" in env.read_text()
    assert "install.sh: kept %s (--purge removes it)" % env in lines(proc)
    reinstall = stage(root)                     # no flags: the kept settings are used
    assert "settings from %s: TRACKER=tuning-host:9190 KEY=rk3399-lab" % env in reinstall.stdout
    proc = run_install("--uninstall", "--purge", destdir=root)
    assert proc.returncode == 0 and not env.exists()
    assert not (root / "opt/edge-server").exists()


def test_uninstall_leaves_a_prefix_that_is_not_a_venv(tmp_path):
    root = tmp_path / "root"
    (root / "opt/edge-server").mkdir(parents=True)
    (root / "opt/edge-server/data.txt").write_text("mine")
    proc = run_install("--uninstall", destdir=root)
    assert proc.returncode == 0
    assert "is not a virtual environment; left as it is" in proc.stdout
    assert (root / "opt/edge-server/data.txt").read_text() == "mine"


@pytest.mark.parametrize("args, message", [
    (["--purge"], "--purge goes with --uninstall"),
    (["--uninstall", "--key", "k"], "--uninstall takes no --tracker, --key or --wheelhouse"),
    (["--wheelhouse", "/nonexistent"], "has no wheelhouse.txt; build one with: make wheelhouse"),
])
def test_bad_uninstall_and_wheelhouse_arguments(args, message):
    proc = run_install("--dry-run", *args)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr


CLOCK_FILES = {"etc/tmpfiles.d/edge-server-clocks.conf": "tmpfiles.d/edge-server-clocks.conf",
               "etc/sysusers.d/edge-server-clocks.conf": "sysusers.d/edge-server-clocks.conf",
               "etc/systemd/system/edge-server.service.d/lock-clocks.conf":
               "edge-server.service.d/lock-clocks.conf"}


def test_lock_clocks_installs_its_rules_and_the_flag_and_uninstall_removes_them(tmp_path):
    root = tmp_path / "root"
    proc = stage(root, *BOARD, "--lock-clocks", "1416000")
    for dest, src in CLOCK_FILES.items():
        assert (root / dest).read_text() == (DEPLOY / src).read_text()
        assert mode_of(root / dest) == 0o644
    env = (root / "etc/default/edge-server").read_text()
    assert 'EXTRA_ARGS="--port 9090 --port-end 9199 --lock-clocks=1416000"' in env.splitlines()
    assert "group edge-clocks: created by systemd-sysusers at the board's next boot" in proc.stdout
    # a reinstall keeps the (edited) settings and says what to add there
    (root / "etc/default/edge-server").write_text('TRACKER=h:1\nKEY=k\nEXTRA_ARGS=""\n')
    again = stage(root, "--lock-clocks=max")
    assert ("to lock clocks: add --lock-clocks=max to EXTRA_ARGS in %s/etc/default/edge-server"
            % root) in again.stdout
    gone = run_install("--uninstall", destdir=root)
    assert gone.returncode == 0, gone.stderr
    assert not any((root / dest).exists() for dest in CLOCK_FILES)
    assert not (root / "etc/systemd/system/edge-server.service.d").exists()
    assert (root / "etc/tmpfiles.d").is_dir()            # the system's directories stay


def test_lock_clocks_dry_run_creates_the_group_where_systemd_runs(tmp_path):
    proc = run_install("--dry-run", "--prefix", tmp_path / "venv", *BOARD, "--lock-clocks", "max")
    assert proc.returncode == 0, proc.stderr
    out = lines(proc)
    for dest, src in CLOCK_FILES.items():
        assert "+ install -m 0644 %s/%s /%s" % (DEPLOY, src, dest) in out
    assert "+ systemd-sysusers edge-server-clocks.conf" in out
    assert out.index("+ systemd-sysusers edge-server-clocks.conf") < out.index(
        "+ systemctl daemon-reload")
    assert "(with TRACKER=tuning-host:9190 KEY=rk3399-lab EXTRA_ARGS+=--lock-clocks=max)" in \
        proc.stdout


@pytest.mark.parametrize("args, message", [
    (["--lock-clocks", "fast"], "--lock-clocks 'fast': use max (performance governor at the "
                                "top clock) or a frequency in kHz such as 1416000"),
    (["--lock-clocks", "0"], "--lock-clocks '0': use max"),
    (["--role", "tracker", "--lock-clocks", "max"], "--lock-clocks goes with a board install"),
])
def test_bad_lock_clocks(args, message):
    base = [] if "--role" in args else list(BOARD)
    proc = run_install("--dry-run", *base, *args)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
