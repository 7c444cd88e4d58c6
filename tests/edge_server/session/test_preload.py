"""preload() leaves a session process nothing to import.

Every MetaSchedule trial is a fresh session process forked from the daemon.
What it imports after the fork it pays for on every trial, in CPU on the
board, on the trial's critical path: numpy.random (the board's argument
filler; numpy 2 loads it lazily) cost ~17 ms of CPU per trial here, the
spare's own module ~0.3 ms. The daemon imports both before it forks; this
checks, in a process that does what the daemon and a trial's session do,
that the child imports nothing at all.
"""
import json
import subprocess
import sys

from tests.support.procs import REPO

CHECK = r"""
import json, os, sys
import numpy as np
import tvm
from edge_server.session.child import preload
preload()
base = set(sys.modules)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    from edge_server.session.spare import spare_main            # what a spare runs
    fill = tvm.get_global_func("tvm.contrib.random.random_fill_for_measure")
    t = tvm.runtime.tensor(np.zeros((16, 16), dtype="float32"))
    fill(t)                                                     # what a trial's alloc does
    out = {"new": sorted(set(sys.modules) - base), "nonzero": int((t.numpy() != 0).sum())}
    os.write(w, json.dumps(out).encode())
    os._exit(0)
os.close(w)
os.waitpid(pid, 0)
print(os.read(r, 1 << 16).decode())
"""


def test_a_session_process_imports_nothing_for_a_metaschedule_trial():
    env = {"TVM_USE_RUNTIME_LIB": "1", "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["nonzero"] > 200, out          # the filler really ran in the child
    assert out["new"] == [], "imported after the fork, on every trial: %s" % out["new"]
