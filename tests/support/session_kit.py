"""One edge-server session child served by session_harness.py in a subprocess,
with a real TVM RPC client connected to it: what the session tests drive."""
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import procs
from tests.support.boards import real_topology

HARNESS = Path(__file__).resolve().parent / "session_harness.py"


class Session:
    """One harness process serving one session, and the client connected to it."""

    def __init__(self, tmp_path, topology=None, default_mode="all", fixture_root=False,
                 env=None, **limits):
        from tvm import rpc
        self.work_dir = tmp_path / "work"
        self.work_dir.mkdir()
        port = procs.free_port()
        self.topology = topology or real_topology()
        settings = dict(port=port, key="s1test", topology=self.topology,
                        default_mode=default_mode, work_dir=str(self.work_dir),
                        fixture_root=fixture_root, **limits)
        cfg = tmp_path / "settings.json"
        cfg.write_text(json.dumps(settings))
        self.log_path = tmp_path / "harness.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, str(HARNESS), str(cfg)],
                                     stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     env=dict(os.environ, PYTHONPATH=str(procs.REPO),
                                              **(env or {})))
        assert self.proc.stdout.readline().strip() == "listening", self.log()
        self.remote = rpc.connect(procs.HOST, port, key="s1test")

    def log(self):
        self._log.flush()
        return self.log_path.read_text()

    def func(self, name):
        return self.remote.get_function(name)

    def set_mode(self, mode):
        return json.loads(self.func("edge.set_thread_mode")(mode))

    def state(self):
        return json.loads(self.func("edge.thread_state")())

    def close(self):
        import gc
        self.remote = None
        gc.collect()   # tracebacks of expected errors keep the session alive in cycles
        try:
            code = self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._log.close()
        return code
