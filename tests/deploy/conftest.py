"""Fixtures for the deploy tests: staged install roots made by install.sh
(helpers in deploy_kit.py)."""
import shutil

import pytest

from tests.support.deploy_kit import (BOARD, DEPLOY, PREFIX, add_os_files, build_wheelhouse,
                                      run_install, stage)


@pytest.fixture(scope="session")
def staged_install(tmp_path_factory):
    """A board install staged by install.sh under PREFIX, plus the tracker
    unit, plus the OS files systemd-analyze needs: (root, board install output).
    Read-only for tests."""
    root = tmp_path_factory.mktemp("staged") / "root"
    proc = stage(root, "--prefix", PREFIX, "--tracker", "tuning-host:9190", "--key", "rk3399-lab")
    tracker = run_install("--role", "tracker", "--prefix", PREFIX, "--pip-arg=--no-deps",
                          destdir=root)
    assert tracker.returncode == 0, tracker.stdout + tracker.stderr
    add_os_files(root)
    return root, proc


@pytest.fixture(scope="session")
def staged_root(staged_install):
    return staged_install[0]


@pytest.fixture(scope="session")
def full_install(tmp_path_factory):
    """The real pip path: a board install staged with every dependency
    (systemd-python built from source), plus tornado so the same environment
    can also run the tracker unit. Returns (root, install output)."""
    root = tmp_path_factory.mktemp("full") / "root"
    proc = run_install("--pip-arg=tornado", *BOARD, destdir=root, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    shutil.copy2(DEPLOY / "tvm-tracker.service", root / "etc/systemd/system/tvm-tracker.service")
    return root, proc


@pytest.fixture(scope="session")
def x86_wheelhouse(tmp_path_factory):
    """make wheelhouse ARCH=x86_64 (this machine is the board of the offline tests)."""
    out = tmp_path_factory.mktemp("wheelhouse") / "x86_64"
    proc = build_wheelhouse(out, "--arch", "x86_64")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out
