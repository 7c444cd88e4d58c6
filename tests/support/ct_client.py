"""A stock TVM client for test_systemd.py, run inside the container's network
namespace (the tracker listens on the container's 127.0.0.1), as
`python -m tests.support.ct_client` from the repository.

    python -m tests.support.ct_client session TRACKER_PORT KEY ARTIFACT.tar   one session: mode
        "all", upload the .tar (the board links it with g++), load, run, check;
        prints the thread state as one JSON line
    python -m tests.support.ct_client hold TRACKER_PORT KEY SECONDS           open a session,
        print "open", keep it SECONDS
    python -m tests.support.ct_client measure PORT KEY SECONDS    a session straight to
        the server at 127.0.0.1:PORT: print one verdict as a JSON line, keep it SECONDS
"""
import json
import sys
import time

from tests.support import remote_kernels

N = 4096


def request(port, key):
    from tvm import rpc
    return rpc.connect_tracker("127.0.0.1", port).request(key, session_timeout=120)


def session(port, key, artifact):
    remote = request(port, key)
    state = json.loads(remote.get_function("edge.set_thread_mode")("all"))
    remote_kernels.run_doubling(remote, artifact, N)
    print(json.dumps(state), flush=True)
    return 0


def hold(port, key, seconds):
    remote = request(port, key)  # noqa: F841 - kept open on purpose
    print("open", flush=True)
    time.sleep(seconds)
    return 0


def measure(port, key, seconds):
    from tvm import rpc
    remote = rpc.connect("127.0.0.1", port, key)
    remote.get_function("edge.measure_begin")("")
    print(remote.get_function("edge.measure_end")(), flush=True)
    time.sleep(seconds)
    return 0


if __name__ == "__main__":
    cmd, port, key, arg = sys.argv[1:5]
    if cmd == "measure":
        sys.exit(measure(int(port), key, float(arg)))
    if cmd == "session":
        sys.exit(session(int(port), key, arg))
    sys.exit(hold(int(port), key, float(arg)))
