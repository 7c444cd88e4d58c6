"""Helpers for the deploy tests: run install.sh, stage installs, make a staged root verifiable.

Staging is real: install.sh creates a virtual environment under DESTDIR and
pip-installs this checkout into it. The quick staging passes `--no-deps`
(our package only, ~10 s); test_install.py has one test that stages with
every dependency.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
INSTALL_SH = DEPLOY / "install.sh"
PREFIX = "/srv/edge"  # the staged installs' prefix: not the default, so substitution shows
BOARD = ("--tracker", "tuning-host:9190", "--key", "rk3399-lab")  # a first install needs both


def run_install(*args, destdir=None, env=None, user=None, timeout=600):
    """Run deploy/install.sh; returns the CompletedProcess (text, stdout+stderr apart)."""
    full_env = dict(os.environ)
    full_env.pop("DESTDIR", None)
    if destdir is not None:
        full_env["DESTDIR"] = str(destdir)
    full_env.update(env or {})
    argv = [shutil.which("bash") or "/bin/bash", str(INSTALL_SH), *map(str, args)]
    if user is not None:  # run as another uid, e.g. 65534 (nobody)
        argv = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups", *argv]
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=full_env, timeout=timeout, cwd="/")


WHEELHOUSE_SH = REPO / "scripts" / "wheelhouse.sh"


def build_wheelhouse(out, *args, timeout=900):
    """Run scripts/wheelhouse.sh --out OUT ARGS (pip download: PyPI or pip's cache)."""
    env = dict(os.environ, PY=sys.executable)
    return subprocess.run(["bash", str(WHEELHOUSE_SH), "--out", str(out), *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=timeout, env=env)


def rebuilt_with_version(house, out, version):
    """A copy of wheelhouse HOUSE whose tvm-edge-rpc wheel says VERSION: a release
    to upgrade to, without downloading the dependencies again."""
    src = Path(out).parent / ("src-" + version)
    files = subprocess.run(["git", "ls-files"], cwd=str(REPO), stdout=subprocess.PIPE,
                           text=True, check=True).stdout.split()
    for name in files:
        if name.startswith(("tests/", "bench/")) or not (REPO / name).is_file():
            continue
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    cfg = src / "setup.cfg"
    cfg.write_text(re.sub(r"(?m)^version = .*$", "version = " + version, cfg.read_text()))
    shutil.copytree(house, out)
    for old in Path(out).glob("tvm_edge_rpc-*.whl"):
        old.unlink()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out),
                    str(src)], check=True)
    manifest = Path(out) / "wheelhouse.txt"
    manifest.write_text(re.sub(r"(?m)^version=.*$", "version=" + version, manifest.read_text()))
    return Path(out)


def stage(destdir, *args):
    """Stage a board install quickly (our package only); fails the test on error."""
    proc = run_install("--pip-arg=--no-deps", *args, destdir=destdir)
    assert proc.returncode == 0, "install.sh failed:\n%s\n%s" % (proc.stdout, proc.stderr)
    return proc


def add_os_files(root):
    """What a real board's root already has and `systemd-analyze verify --root`
    looks up: the distribution's units (sysinit.target, ...) and /bin/kill
    (the unit's ExecReload)."""
    root = Path(root)
    units = root / "usr/lib/systemd/system"
    if not units.exists():
        units.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree("/usr/lib/systemd/system", units, symlinks=True)
    kill = shutil.which("kill", path="/usr/bin:/bin")
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(kill, root / "usr/bin/kill")
    if not (root / "bin").exists():
        (root / "bin").symlink_to("usr/bin")
    # the system Python the staged environment's bin/python3 links to
    for venv_python in root.glob("*/*/bin/python3"):
        target = Path(os.readlink(venv_python))
        if target.is_absolute() and not (root / target.relative_to("/")).exists():
            (root / target.parent.relative_to("/")).mkdir(parents=True, exist_ok=True)
            shutil.copy2(target, root / target.relative_to("/"))


# ---------------------------------------------------------------- a fake cpufreq for containers

CPUFREQ = "/sys/devices/system/cpu/cpufreq"
CLOCKS = {"scaling_governor": "schedutil", "scaling_min_freq": "408000",
          "scaling_max_freq": "1416000"}


def fake_cpufreq() -> Path:
    """policy0 for cpus 0-1 (this machine's), as a kernel's cpufreq would show it,
    settings CLOCKS. Under /var/tmp: nspawn binds it into a container (the caller
    removes it)."""
    tree = Path(tempfile.mkdtemp(prefix="edge-cpufreq-", dir="/var/tmp"))
    files = {"related_cpus": "0 1 \n", "affected_cpus": "0 1 \n",
             "cpuinfo_max_freq": "1416000\n", "cpuinfo_min_freq": "408000\n",
             "scaling_cur_freq": "1008000\n",
             "scaling_available_frequencies": "408000 816000 1008000 1416000 \n",
             "scaling_available_governors": "performance schedutil powersave\n"}
    files.update({k: v + "\n" for k, v in CLOCKS.items()})
    (tree / "policy0").mkdir()
    tree.chmod(0o755)
    for name, text in files.items():
        path = tree / "policy0" / name
        path.write_text(text)
        path.chmod(0o644)
    return tree


def clock_settings(tree: Path) -> dict:
    """The lockable settings of the fake tree's policy0, as files say now."""
    return {n: (tree / "policy0" / n).read_text().strip() for n in CLOCKS}


def mount_cpufreq(ct) -> None:
    """Inside a container booted with the tree bound at /run/fake-cpufreq: put it over
    the cpufreq dir. nspawn --bind cannot place it there (it mounts /sys/devices
    after its custom binds, which hides them)."""
    ct.run("mount", "--bind", "/run/fake-cpufreq", CPUFREQ)
