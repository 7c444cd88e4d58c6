import subprocess
import sys

import numpy as np
import pytest

from tests.support.procs import REPO

CHECK = r"""
import json, sys
import numpy as np
import tvm
from edge_server.session import measure
before = tvm.get_global_func(measure.FILL_NAME, allow_missing=True) is not None
measure.register()
fill = tvm.get_global_func(measure.FILL_NAME)
out = {"before": before}
for dt in sys.argv[1:]:
    t = tvm.runtime.tensor(np.zeros((64, 64), dtype=dt))
    fill(t)
    a = t.numpy()
    out[dt] = {"dtype": str(a.dtype), "nonzero": int((a != 0).sum()),
               "min": float(a.min()), "max": float(a.max())}
try:
    fill(tvm.runtime.empty((4,), "float8_e4m3fn"))
except Exception as err:
    out["complex"] = str(err)
print(json.dumps(out))
"""


def run_check(*dtypes):
    env = {"TVM_USE_RUNTIME_LIB": "1", "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", CHECK, *dtypes], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    import json
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_runtime_only_tvm_lacks_the_filler_and_we_provide_it():
    res = run_check("float32", "float16", "int8", "int32", "uint8")
    assert res["before"] is False  # why the session registers it
    for dt in ("float32", "float16", "int8", "int32", "uint8"):
        r = res[dt]
        assert r["dtype"] == dt
        assert r["nonzero"] > 64 * 64 // 2, (dt, r)   # random, not left at zero
    assert -1.0 <= res["float32"]["min"] < 0 < res["float32"]["max"] <= 1.0
    assert res["uint8"]["min"] >= 0 and res["int8"]["min"] >= -127


def test_unknown_dtype_is_a_clear_error():
    res = run_check()
    assert "cannot fill a tensor of dtype float8_e4m3fn" in res["complex"]


def test_a_stock_client_fills_arguments_through_edge_server(tmp_path, tracker):
    """What stock MetaSchedule's default filler does, over a real session."""
    from tests.support import procs
    from tvm import rpc
    server = procs.start_edge_server(tmp_path, tracker.port, key="fill-test")
    try:
        remote = rpc.connect_tracker(procs.HOST, tracker.port).request("fill-test")
        dev = remote.cpu()
        import tvm
        t = tvm.runtime.tensor(np.zeros((32, 32), dtype="float32"), dev)
        remote.get_function("tvm.contrib.random.random_fill_for_measure")(t)
        assert (t.numpy() != 0).sum() > 32 * 32 // 2
        del t, dev, remote
    finally:
        server.stop()
