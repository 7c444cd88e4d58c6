"""scripts/wheelhouse.sh builds an offline install set; install.sh --wheelhouse
installs from it with the network cut off (a network namespace with no
interface up) and no compiler involved."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.deploy_kit import BOARD, REPO, build_wheelhouse as build, run_install

def requirement_names():
    lines, inside = [], False
    for line in (REPO / "setup.cfg").read_text().splitlines():
        if line.startswith("install_requires"):
            inside = True
        elif inside and line and not line[0].isspace():
            break
        elif inside and line.strip() and not line.strip().startswith("#"):
            lines.append(line.strip())
    return [l.split("=")[0].split(">")[0].split("<")[0].replace("-", "_").lower() for l in lines]


def test_wheelhouse_holds_every_requirement_the_project_and_systemd(x86_wheelhouse):
    wheels = [p.name for p in x86_wheelhouse.glob("*.whl")]
    names = {w.split("-")[0].lower() for w in wheels}
    for requirement in requirement_names():
        assert requirement in names, (requirement, wheels)
    assert "tvm_edge_rpc" in names and "numpy" in names       # numpy: TVM's dependency
    assert all("x86_64" in w or "-none-any" in w for w in wheels), wheels
    assert [p.name for p in x86_wheelhouse.glob("python3-systemd_*_amd64.deb")]
    manifest = (x86_wheelhouse / "wheelhouse.txt").read_text().splitlines()
    from edge_common.version import version
    assert {"version=" + version(), "arch=x86_64", "python=3.11"} <= set(manifest)
    assert (x86_wheelhouse / "deploy/install.sh").is_file()
    check = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=str(x86_wheelhouse),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert check.returncode == 0, check.stdout


def test_offline_install_from_the_wheelhouse(x86_wheelhouse, tmp_path):
    """No network at all (unshare -n), the wheelhouse's own install.sh, an IPv6 tracker,
    and the clock-lock rules, which must travel in the wheelhouse too."""
    root = tmp_path / "root"
    proc = subprocess.run(
        ["unshare", "-n", "bash", str(x86_wheelhouse / "deploy/install.sh"), "--wheelhouse",
         str(x86_wheelhouse), "--tracker", "[::1]:9190", "--key", "rk3399", "--destdir",
         str(root), "--lock-clocks", "max"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, timeout=900,
        cwd="/", env={k: v for k, v in os.environ.items() if not k.startswith("PIP_")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for rule in ("etc/sysusers.d/edge-server-clocks.conf", "etc/tmpfiles.d/edge-server-clocks.conf",
                 "etc/systemd/system/edge-server.service.d/lock-clocks.conf"):
        assert (root / rule).is_file(), rule
    assert "--lock-clocks=max" in (root / "etc/default/edge-server").read_text()
    assert "--no-index --find-links %s tvm-edge-rpc==" % x86_wheelhouse in proc.stdout
    assert "+ unpack python3-systemd_" in proc.stdout
    python = root / "opt/edge-server/bin/python"
    env = {"PATH": "/usr/bin:/bin"}
    check = subprocess.run(
        [str(python), "-c", "import tvm, systemd.daemon, systemd.journal, edge_server.main; "
         "print(systemd.daemon.__file__)"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, timeout=120, cwd="/", env=env)
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(str(root / "opt/edge-server/lib/python3.11/site-packages"))
    from edge_common.version import version
    server = subprocess.run([str(root / "opt/edge-server/bin/python"), "-m", "edge_server.main",
                             "--version"], stdout=subprocess.PIPE, text=True, timeout=120,
                            cwd="/", env=env)
    assert server.stdout.split()[:2] == ["edge-server", version()]
    assert "TRACKER=[::1]:9190\n" in (root / "etc/default/edge-server").read_text()


def _fake_wheelhouse(path, **fields):
    path.mkdir()
    values = {"version": "0.1.0", "arch": os.uname().machine, "python": "3.11"}
    values.update(fields)
    (path / "wheelhouse.txt").write_text("".join("%s=%s\n" % kv for kv in values.items()))
    return path


@pytest.mark.parametrize("fields, words", [
    ({"arch": "aarch64"}, "is for aarch64, this machine is %s; build one with: make wheelhouse "
                          "ARCH=%s" % (os.uname().machine, os.uname().machine)),
    ({"python": "3.12"}, "is for Python 3.12, /usr/bin/python3 is 3.11"),
])
def test_a_wheelhouse_for_another_board_is_refused(tmp_path, fields, words):
    house = _fake_wheelhouse(tmp_path / "house", **fields)
    proc = run_install("--wheelhouse", house, *BOARD, destdir=tmp_path / "root")
    assert proc.returncode == 1 and words in proc.stderr, proc.stderr


def test_wheelhouse_needs_no_compiler_or_headers(tmp_path):
    """The PATH has no gcc, g++ or pkg-config: the pip route refuses, the wheelhouse one not."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("dirname", "id", "grep", "sed", "install", "mktemp", "chmod", "mv", "ls",
                 "dpkg-deb", "find", "head", "uname"):
        (bindir / name).symlink_to(shutil.which(name))
    house = _fake_wheelhouse(tmp_path / "house")
    (house / "python3-systemd_235-1+b2_amd64.deb").write_bytes(b"")   # dry run: not unpacked
    env = {"PATH": str(bindir)}
    pip_route = run_install("--dry-run", *BOARD, env=env)
    assert pip_route.returncode == 1 and "gcc" in pip_route.stderr
    offline = run_install("--dry-run", "--wheelhouse", house, *BOARD, env=env)
    assert offline.returncode == 0, offline.stderr
    assert "--no-index --find-links %s tvm-edge-rpc==0.1.0" % house in offline.stdout


def test_a_wheelhouse_without_the_systemd_package_is_refused(tmp_path):
    house = _fake_wheelhouse(tmp_path / "house")
    proc = run_install("--dry-run", "--wheelhouse", house, *BOARD)
    assert proc.returncode == 1
    assert "has no python3-systemd_*.deb (journald and sd_notify need it)" in proc.stderr


@pytest.mark.parametrize("args, words", [
    ([], "--arch is required"),
    (["--arch", "arm64"], "--arch 'arm64' is not one of aarch64, armv7l, x86_64"),
    (["--arch", "aarch64", "--python", "3.9"], "--python '3.9' is not 3.10 or newer"),
    (["--arch", "aarch64", "--python", "3.12"], "pass that release's package: --systemd-deb"),
])
def test_wheelhouse_bad_usage(tmp_path, args, words):
    proc = build(tmp_path / "out", *args)
    assert proc.returncode == 2 and words in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_armv7l_says_there_are_no_tvm_wheels(tmp_path):
    proc = build(tmp_path / "out", "--arch", "armv7l")
    assert proc.returncode == 1
    assert "apache-tvm publishes x86_64 and aarch64 wheels only" in proc.stderr


def _arm_board():
    """The emulated arm64 board scripts/arm-board.sh caches (built by `make test-arm`)."""
    cache = Path(os.environ.get("TVM_EDGE_CACHE") or Path.home() / ".cache" / "tvm-edge-rpc")
    ready = sorted(cache.glob("arm64-bookworm-*/ready"))
    binfmt = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if not ready or os.geteuid() != 0 or not binfmt.exists():
        return None
    return ready[-1].parent / "rootfs"


@pytest.fixture
def arm_overlay(tmp_path):
    """The cached board under an overlay: what the test writes never reaches the cache."""
    rootfs = _arm_board()
    if rootfs is None:
        pytest.skip("no emulated arm64 board: run scripts/arm-board.sh build (root, binfmt)")
    dirs = {name: tmp_path / name for name in ("upper", "work", "merged")}
    for path in dirs.values():
        path.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", "lowerdir=%s,upperdir=%s,"
                    "workdir=%s" % (rootfs, dirs["upper"], dirs["work"]), str(dirs["merged"])],
                   check=True)
    try:
        yield dirs["merged"]
    finally:
        subprocess.run(["umount", "-l", str(dirs["merged"])], check=False)


def in_board_offline(root, command, timeout=1800):
    """COMMAND in the board, in a network namespace with only a downed loopback."""
    script = ('r=$1; shift; for d in proc sys dev; do mount --rbind /$d $r/$d; done; '
              'exec chroot "$r" env -i HOME=/root LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin '
              'TMPDIR=/tmp sh -c "$1"')
    return subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "--",
                           "/bin/sh", "-c", script, "sh", str(root), command],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout)


def test_offline_install_on_the_emulated_arm64_board(arm_overlay, tmp_path):
    house = tmp_path / "aarch64"
    proc = build(house, "--arch", "aarch64")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shutil.copytree(house, arm_overlay / "root/wh")
    board = in_board_offline(arm_overlay, "command -v gcc cc g++ || echo no-compiler; "
                             "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
    assert board.stdout.split() == ["no-compiler", "lo"], board.stdout
    install = in_board_offline(
        arm_overlay, "bash /root/wh/deploy/install.sh --wheelhouse /root/wh --tracker "
        "'[::1]:9190' --key rk3399 --prefix /opt/edge-offline --no-systemctl")
    assert install.returncode == 0, install.stdout[-4000:]
    assert "Successfully installed apache-tvm-0.27.0.post1" in install.stdout
    from edge_common.version import version
    check = in_board_offline(
        arm_overlay, "uname -m; /opt/edge-offline/bin/edge-server --version; "
        "/opt/edge-offline/bin/python -c 'import systemd.daemon, systemd.journal, tvm.rpc; "
        "print(tvm.__version__)'")
    assert check.returncode == 0, check.stdout
    lines = check.stdout.splitlines()
    assert lines[0] == "aarch64"
    assert lines[1].split()[:2] == ["edge-server", version()]
    assert lines[2] == "0.27.0.post1"
