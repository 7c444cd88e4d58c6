"""edge_common.version: one version (setup.cfg), read back by both CLIs; the
refusal of a Python older than the pinned TVM supports."""
import importlib.metadata
import subprocess
import sys

import pytest

from edge_common import version as version_mod
from tests.support.procs import REPO


def run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True,
                          text=True, timeout=60, cwd=str(REPO))


def test_both_clis_print_the_same_version_as_the_metadata():
    installed = importlib.metadata.version("tvm-edge-rpc")
    server, client = run("edge_server.main", "--version"), run("host_client.cli.main",
                                                                "--version")
    assert server.returncode == 0 and client.returncode == 0, server.stderr + client.stderr
    assert server.stdout.split()[:2] == ["edge-server", installed]
    assert client.stdout.split()[:2] == ["edge-client", installed]


def test_the_checkout_setup_cfg_is_the_source(tmp_path, monkeypatch):
    cfg = tmp_path / "setup.cfg"
    cfg.write_text("[metadata]\nname = tvm-edge-rpc\nversion = 9.8.7rc1\n")
    monkeypatch.setattr(version_mod, "_SETUP_CFG", str(cfg))
    assert version_mod.version() == "9.8.7rc1"
    assert version_mod.version_line("edge-server").startswith("edge-server 9.8.7rc1 ")
    assert version_mod.identity()["version"] == "9.8.7rc1"


@pytest.mark.parametrize("text", ["[metadata]\nname = other-project\nversion = 5.0\n",
                                  "not an ini file [[[", ""])
def test_a_foreign_or_broken_setup_cfg_falls_back_to_metadata(tmp_path, monkeypatch, text):
    cfg = tmp_path / "setup.cfg"
    cfg.write_text(text)
    monkeypatch.setattr(version_mod, "_SETUP_CFG", str(cfg))
    assert version_mod.version() == importlib.metadata.version("tvm-edge-rpc")


def test_old_python_refused_in_words():
    message = version_mod.python_refusal("edge-server", (3, 9, 18))
    assert message.startswith("edge-server: error: Python 3.9.18 is too old")
    assert "Python >= 3.10" in message and "--python" in message
    assert version_mod.python_refusal("edge-server", (3, 10, 0)) is None
    assert version_mod.python_refusal("edge-client", (3, 13, 1)) is None


def test_setup_cfg_and_install_sh_agree_on_the_minimum():
    need = ".".join(map(str, version_mod.MIN_PYTHON))
    assert "python_requires = >=%s\n" % need in (REPO / "setup.cfg").read_text()
    assert "MIN_PYTHON=%s\n" % need in (REPO / "deploy" / "install.sh").read_text()
