"""A process that owns a TVM pool through edge_server.session.pinning, driven line by
line on stdin, so tests can look at it from outside through /proc.

Commands (one per line), each answered with one JSON line on stdout:
  create [POOL_SIZE]    ThreadPinner.create() in the main thread
  apply MODE CPULIST    pinner.apply(MODE, cpus)
  state                 pinner.state()
  load PATH             load a compiled kernel (a 512x512 matmul, parallel outer loop)
  run N                 run the kernel N times in the main thread
  stock_run N           run it without any pinner (stock TVM behaviour)
Errors come back as {"error": type, "message": str}; the process keeps going.
"""
import json
import os
import sys

os.environ.setdefault("TVM_USE_RUNTIME_LIB", "1")

import numpy as np  # noqa: E402
import tvm  # noqa: E402

from edge_common.cpulist import parse_cpulist  # noqa: E402
from edge_server.session.pinning import ThreadPinner  # noqa: E402


def main():
    pinner = None
    kernel = args = None
    for line in sys.stdin:
        cmd, *rest = line.split()
        try:
            if cmd == "create":
                pinner = ThreadPinner.create(pool_size=int(rest[0]) if rest else None)
                out = {"pool_size": pinner.pool_size, "pool_tids": pinner.pool_tids,
                       "serving_tid": pinner.serving_tid}
            elif cmd == "apply":
                out = pinner.apply(rest[0], parse_cpulist(rest[1]))
            elif cmd == "state":
                out = pinner.state()
            elif cmd == "load":
                kernel = tvm.runtime.load_module(rest[0])
                shape = (512, 512)
                args = [tvm.runtime.tensor(np.random.rand(*shape).astype("float32")),
                        tvm.runtime.tensor(np.random.rand(*shape).astype("float32")),
                        tvm.runtime.tensor(np.zeros(shape, "float32"))]
                out = {"loaded": rest[0]}
            elif cmd in ("run", "stock_run"):
                for _ in range(int(rest[0])):
                    kernel["main"](*args)
                out = {"ran": int(rest[0])}
            else:
                out = {"error": "unknown", "message": line}
        except Exception as err:  # report, keep serving: the test decides
            out = {"error": type(err).__name__, "message": str(err)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
