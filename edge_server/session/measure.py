"""Functions a stock MetaSchedule runner expects to find on the board.

`RPCRunner`'s default argument filler calls
`tvm.contrib.random.random_fill_for_measure` in the session. It lives in the
full `libtvm.so`, which the board does not load (runtime-only import), so a
stock tuning script pointed at edge-server would fail every trial. This fills
the tensor the same way in spirit (random values of the tensor's dtype, so
kernels do not see all-zero inputs) with numpy, which TVM already depends on.

numpy.random is imported here, in the daemon (register() runs in preload),
not at first use: numpy 2 loads it lazily, and every trial is a fresh
session process, which would pay ~17 ms of CPU for that import per trial.
"""
import numpy as np
from numpy.random import default_rng

FILL_NAME = "tvm.contrib.random.random_fill_for_measure"


def random_fill_for_measure(tensor) -> None:
    dtype = str(tensor.dtype)
    shape = tuple(int(d) for d in tensor.shape)
    rng = default_rng()
    if dtype in ("float16", "float32", "float64"):
        values = rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    elif dtype == "bool":
        values = rng.integers(0, 2, size=shape).astype(bool)
    elif dtype.startswith("int") or dtype.startswith("uint"):
        info = np.iinfo(np.dtype(dtype))
        values = rng.integers(max(info.min, -127), min(info.max, 127) + 1, size=shape,
                              dtype=np.dtype(dtype))
    else:
        raise ValueError("random_fill_for_measure: cannot fill a tensor of dtype %s; "
                         "fill it on the host and copy it in instead" % dtype)
    tensor.copyfrom(np.ascontiguousarray(values))


def register() -> None:
    """Register the fallbacks unless the loaded TVM library already has them."""
    import tvm
    if tvm.get_global_func(FILL_NAME, allow_missing=True) is None:
        tvm.register_global_func(FILL_NAME, random_fill_for_measure)
