"""Keys the stock server takes (a ':' included) work end to end through the stock
tracker and a stock client; the daemon warns once that MetaSchedule will not
count such a board."""
import gc

from tests.support import daemon_kit as kit
from tests.support import procs


def test_a_key_with_a_colon_serves_a_stock_client_and_is_warned_about_once(tmp_path,
                                                                          shared_tracker):
    key = "lab:rk3399"
    server = procs.start_edge_server(tmp_path, shared_tracker.port, key=key,
                                     args=["--work-root", tmp_path / "work"])
    try:
        from tvm import rpc
        for _ in range(2):
            procs.wait_free(shared_tracker.port, key, proc=server)
            client = rpc.connect_tracker(procs.HOST, shared_tracker.port)
            remote = client.request(key, session_timeout=30)
            state = remote.get_function("edge.thread_state")()
            assert '"mode"' in state
            del remote, client
            gc.collect()
        kit.wait_for(lambda: kit.log_lines(server, "ended, exit 0")[1:], 30, "two sessions",
                     proc=server)
        warnings = kit.log_lines(server, "MetaSchedule's RPCConfig.count_num_servers")
        assert len(warnings) == 1 and "'lab:rk3399'" in warnings[0], server.log()
    finally:
        server.stop()
