"""--through-proxy with the stock `python -m tvm.exec.rpc_proxy`: the board connects
out (retrying while the proxy is down), a stock client reaches it through the
proxy, thread modes pin as they do on a direct connection, and the next client
gets the next session."""
import gc
import json
import sys

from tests.support import daemon_kit as kit
from tests.support import procs

KEY = "proxy-board"


def start_proxy(tmp_path, port):
    proxy = procs.Proc([sys.executable, "-m", "tvm.exec.rpc_proxy", "--host", procs.HOST,
                        "--port", str(port), "--port-end", str(port + 1),
                        "--web-port", str(procs.free_port())], tmp_path / "proxy.log")
    procs.wait_port(port)
    return proxy


def session_through_proxy(port, mode):
    from tvm import rpc
    remote = rpc.connect(procs.HOST, port, key=KEY, session_timeout=60)
    try:
        state = json.loads(remote.get_function("edge.set_thread_mode")(mode))
        topology = json.loads(remote.get_function("edge.topology")())
        return state, topology
    finally:
        del remote
        gc.collect()


def test_sessions_through_the_stock_proxy_keep_their_thread_modes(tmp_path):
    port = procs.free_port()
    server = procs.Proc(procs.edge_server_argv(
        "--through-proxy", "--host", procs.HOST, "--port", port, "--key", KEY,
        "--work-root", tmp_path / "work"), tmp_path / "edge-server.log")
    proxy = None
    try:
        # the proxy is not up yet: the board keeps retrying, and says so
        kit.wait_for(lambda: kit.log_lines(server, "retrying in"), 30, "a retry", proc=server)
        proxy = start_proxy(tmp_path, port)
        kit.wait_for(lambda: kit.log_lines(server, "waiting for a client of key %s" % KEY), 60,
                     "registered with the proxy", proc=server)
        state, topology = session_through_proxy(port, "cpus:1")
        assert (state["mode"], state["cpus"], state["nthreads"]) == ("cpus:1", [1], 1)
        assert all(t["cpus"] == [1] for t in state["threads"])
        assert topology["schema"] == 1
        kit.wait_for(lambda: kit.log_lines(server, "ended, exit 0"), 30, "first session ends",
                     proc=server)
        kit.wait_for(lambda: len(kit.log_lines(server, "waiting for a client of key")) >= 2,
                     30, "back at the proxy", proc=server)
        state, _ = session_through_proxy(port, "cpus:0")
        assert state["cpus"] == [0]
        assert kit.log_lines(server, "via proxy %s:%d" % (procs.HOST, port))
        assert not kit.log_lines(server, "listening on")
    finally:
        server.stop()
        if proxy is not None:
            proxy.stop()


def test_through_proxy_needs_a_key(tmp_path):
    import subprocess
    out = subprocess.run(procs.edge_server_argv("--through-proxy", "--host", procs.HOST),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--through-proxy needs --key" in out.stderr
