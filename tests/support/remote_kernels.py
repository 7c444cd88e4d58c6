"""Run a real TVM kernel in a remote session and check its answer against numpy.

One copy of the "upload, load, run, compare" steps the session, daemon and
systemd tests all take to prove that a session is a working TVM session.
"""
import os
from typing import List, Tuple

import numpy as np


def load(remote, path: str, name: str = ""):
    """Upload `path` (as `name`, default its base name) and load it in the session."""
    name = name or os.path.basename(path)
    remote.upload(path, name)
    return remote.load_module(name)


def run_doubling(remote, path: str, n: int) -> Tuple[object, object, list]:
    """The B = 2 * A kernel of length n ("main"), checked; (module, device, [a, b])."""
    import tvm
    mod = load(remote, path)
    dev = remote.cpu()
    args = [tvm.runtime.tensor(np.arange(n, dtype="float32"), dev),
            tvm.runtime.tensor(np.zeros(n, dtype="float32"), dev)]
    mod["main"](*args)
    np.testing.assert_allclose(args[1].numpy(), 2 * np.arange(n, dtype="float32"))
    return mod, dev, args


def run_matmul(remote, path: str, n: int, func: str = "main", name: str = "",
               rtol: float = 1e-4) -> Tuple[object, object, List[object]]:
    """An n×n float32 matmul (C = A @ B) on random inputs, checked; (module, device, [a, b, c])."""
    import tvm
    mod = load(remote, path, name)
    dev = remote.cpu()
    a = np.random.rand(n, n).astype("float32")
    b = np.random.rand(n, n).astype("float32")
    args = [tvm.runtime.tensor(a, dev), tvm.runtime.tensor(b, dev),
            tvm.runtime.tensor(np.zeros((n, n), "float32"), dev)]
    mod[func](*args)
    np.testing.assert_allclose(args[2].numpy(), a @ b, rtol=rtol)
    return mod, dev, args
