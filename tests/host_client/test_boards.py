"""list_boards on a real tracker with edge-server and stock servers."""
import json
import socket
import time

from tests.support import client_kit
import host_client
from edge_common.version import version
from host_client.boards import describe_classes, mode_names, modes_text


def by_key(boards):
    return {b.key: b for b in boards}


def test_every_server_is_listed_with_its_capabilities(stack):
    for key in (client_kit.LOCAL_KEY, client_kit.RK_KEY, client_kit.STOCK_KEY):
        stack.wait_free(key)
    boards = by_key(host_client.list_boards(stack.tracker))
    assert set(boards) == {client_kit.LOCAL_KEY, client_kit.RK_KEY, client_kit.STOCK_KEY}

    rk = boards[client_kit.RK_KEY]
    assert rk.edge and rk.address == "127.0.0.1:%d" % stack.rk3399.port
    assert (rk.key_free, rk.key_pending, rk.key_total) == (1, 0, 1)
    assert rk.describe_classes() == "big 2×cortex-a72@1.8GHz, little 4×cortex-a53@1.42GHz"
    assert rk.cores == 6 and rk.arch == "aarch64"
    assert rk.suggested_target["mcpu"] == "cortex-a72"

    local = boards[client_kit.LOCAL_KEY]
    assert local.edge and [c["name"] for c in local.classes] == ["big"]

    stock = boards[client_kit.STOCK_KEY]
    assert not stock.edge and stock.topology is None
    assert "stock" in stock.describe_classes()
    assert stock.address == "127.0.0.1:%d" % stack.stock.port
    json.dumps([b.to_json() for b in boards.values()])


def test_each_edge_board_announces_its_version_host_name_and_state(stack):
    for key in (client_kit.LOCAL_KEY, client_kit.RK_KEY, client_kit.STOCK_KEY):
        stack.wait_free(key)
    boards = by_key(host_client.list_boards(stack.tracker))
    rk = boards[client_kit.RK_KEY]
    assert rk.version == version() and rk.hostname == socket.gethostname()
    assert rk.name == "FriendlyElec NanoPi M4" and rk.state == "free"
    doc = rk.to_json()
    assert (doc["board"], doc["address"], doc["version"], doc["state"]) == (
        "FriendlyElec NanoPi M4", "127.0.0.1:%d" % stack.rk3399.port, version(), "free")
    stock = boards[client_kit.STOCK_KEY]
    assert (stock.version, stock.hostname, stock.state, stock.modes) == (None, None, None, [])


def test_a_board_in_a_session_says_busy_and_free_again_after(stack):
    """Per board, not per key: the stock summary only counts free servers of a key."""
    stack.wait_free(client_kit.LOCAL_KEY)
    session = host_client.connect(stack.tracker, client_kit.LOCAL_KEY, thread_mode="all")
    try:
        local = _wait_state(stack, client_kit.LOCAL_KEY, "busy")
        assert local.state == "busy"
        assert by_key(host_client.list_boards(stack.tracker))[client_kit.RK_KEY].state == "free"
    finally:
        session.release()
        del session
    assert _wait_state(stack, client_kit.LOCAL_KEY, "free").state == "free"


def _wait_state(stack, key, state, timeout=30.0):
    deadline = time.time() + timeout
    while True:
        board = by_key(host_client.list_boards(stack.tracker))[key]
        if board.state == state or time.time() > deadline:
            return board
        time.sleep(0.05)


def test_modes_of_a_big_little_board():
    rk = json.loads((client_kit.procs.FIXTURES / "rk3399" / "expected.json").read_text())
    names = mode_names(rk)
    assert names == ["all", "big", "big:1", "big:2", "little", "little:1", "little:2",
                     "little:3", "little:4", "cpus:0-5"]
    assert modes_text(names) == "all, big[:1-2], little[:1-4], cpus:0-5"
    rk["cpus"][5]["online"] = False            # one big core offline: big:2 is gone
    rk["classes"][0]["cpus"] = [4, 5]
    assert "big:2" not in mode_names(rk) and "big:1" in mode_names(rk)
    assert mode_names(rk)[-1] == "cpus:0-4"


def test_a_busy_board_stays_listed_with_no_free_slot(stack):
    stack.wait_free(client_kit.LOCAL_KEY)
    session = host_client.connect(stack.tracker, client_kit.LOCAL_KEY, thread_mode="all")
    try:
        local = by_key(host_client.list_boards(stack.tracker))[client_kit.LOCAL_KEY]
        assert (local.key_free, local.key_total) == (0, 1)
    finally:
        session.release()


def test_class_description_without_frequency_or_uarch():
    topology = {"classes": [{"name": "big", "rank": 0, "cpus": [0, 1], "uarch": None,
                             "max_freq_khz": None}]}
    assert describe_classes(topology) == "big 2 cores"
