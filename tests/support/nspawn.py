"""A container booted with systemd-nspawn on a copy-on-write overlay of this
machine's root: a board with a real systemd, for the deploy tests (units,
install.sh, the Ansible playbook). Needs root, overlayfs and systemd-nspawn."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from tests.support import procs

MINIMAL_TARGET = """[Unit]
Description=edge-server test boot: basic.target only
Requires=basic.target
After=basic.target
AllowIsolate=yes
"""


def prerequisites():
    missing = []
    if os.geteuid() != 0:
        missing.append("root")
    if shutil.which("systemd-nspawn") is None:
        missing.append("systemd-nspawn (apt-get install systemd-container)")
    if "overlay" not in Path("/proc/filesystems").read_text():
        missing.append("overlayfs")
    return missing


@contextmanager
def overlay_root():
    """(base, root): ROOT is / under a private copy-on-write layer in BASE."""
    base = Path(tempfile.mkdtemp(prefix="edge-ct-", dir="/var/tmp"))
    upper, work, root = base / "upper", base / "work", base / "root"
    for d in (upper, work, root):
        d.mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    "lowerdir=/,upperdir=%s,workdir=%s" % (upper, work), str(root)], check=True)
    try:
        yield base, root
    finally:
        subprocess.run(["umount", "-l", str(root)])
        shutil.rmtree(base, ignore_errors=True)


class Container:
    def __init__(self, base, root):
        self.base = Path(base)
        self.root = Path(root)
        self.log_path = self.base / "nspawn.log"
        self.proc = None
        self.leader = None

    def boot(self, private_network=True, target="edge-test.target", binds=()):
        """Boot systemd in ROOT into TARGET; its own network namespace (loopback only)
        unless private_network=False (then it shares this machine's). binds:
        "HOST_PATH:CONTAINER_PATH" bind mounts (systemd-nspawn --bind)."""
        self.proc = procs.Proc(
            ["systemd-nspawn", "-D", str(self.root), *(["--private-network"] if private_network
                                                        else []),
             *["--bind=%s" % b for b in binds],
             "--register=no", "--keep-unit", "--machine=edge-test-%d" % os.getpid(), "--quiet",
             "-b", "systemd.unit=%s" % target], self.log_path)
        deadline = time.time() + 60
        while time.time() < deadline and self.leader is None:
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid), "-x", "systemd"],
                                 stdout=subprocess.PIPE, text=True).stdout.split()
            self.leader = int(out[0]) if out else None
            if not self.proc.alive():
                raise RuntimeError("systemd-nspawn exited:\n" + self.proc.log())
            time.sleep(0.2)
        assert self.leader, "no systemd in the container:\n" + self.proc.log()
        # until its manager answers on the bus and the boot target is reached
        deadline = time.time() + 120
        state = ""
        while time.time() < deadline:
            state = self.run("systemctl", "is-system-running", check=False).strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.3)
        raise TimeoutError("container boot: systemctl is-system-running says %r\n%s"
                           % (state, self.proc.log()))

    def run(self, *cmd, check=True, timeout=120):
        """A command inside the container (all its namespaces), clean environment."""
        proc = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "env", "-i",
             "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=",
             *map(str, cmd)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=timeout)
        if check:
            assert proc.returncode == 0, "%s: %s" % (" ".join(map(str, cmd)), proc.stdout)
        return proc.stdout

    def client(self, *args, timeout=180, background=False):
        """Our TVM client in the container's network namespace (host filesystem)."""
        argv = ["nsenter", "-t", str(self.leader), "-n", sys.executable, "-m",
                "tests.support.ct_client", *map(str, args)]
        env = {"TVM_USE_RUNTIME_LIB": "1", "PYTHONPATH": str(procs.REPO)}
        if background:
            return procs.Proc(argv, self.base / ("client-%d.log" % time.time_ns()), env=env)
        full_env = dict(os.environ, **env)
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=timeout, env=full_env)

    def show(self, unit, prop):
        return self.run("systemctl", "show", "-p", prop, "--value", unit).strip()

    def journal(self, *args):
        return self.run("journalctl", "--no-pager", "-u", "edge-server", *args)

    def wait_status(self, pattern, timeout=90):
        deadline = time.time() + timeout
        status = ""
        while time.time() < deadline:
            status = self.show("edge-server", "StatusText")
            if re.search(pattern, status):
                return status
            time.sleep(0.3)
        raise TimeoutError("edge-server status %r never matched %r\n%s\n%s" % (
            status, pattern, self.run("systemctl", "status", "edge-server", check=False),
            self.run("journalctl", "--no-pager", "-o", "cat", "-n", "40", "-u", "edge-server",
                     check=False)))

    def shutdown(self):
        if self.proc is not None and self.proc.alive():
            self.proc.signal(signal.SIGTERM)       # nspawn asks the container to power off
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                pass
            self.proc.stop()
