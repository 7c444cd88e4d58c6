"""run_session on a real socket with a real TVM RPC client: the stock session
functions with confinement and limits, edge.* functions, thread modes
checked from outside through /proc, hostile arguments.

Most tests serve one session with tests/support/session_harness.py (what
the daemon's forked child does, without the daemon), so a failure points at
the session and not the listen loop. The last section runs the same checks
end to end: a stock tracker, a real `edge-server`, a stock TVM client.
"""
import json
import os
from pathlib import Path

import pytest

from edge_server.session.toolchain import find_linker
from tests.support import procs, remote_kernels
from tests.support.boards import HAND_BOARDS, real_topology
from tests.support.session_kit import Session

REPO = Path(__file__).resolve().parents[3]
HOST_CPUS = sorted(os.sched_getaffinity(0))

pytestmark = pytest.mark.skipif(HOST_CPUS != [0, 1], reason="written for the 2-CPU test machine")


@pytest.fixture
def session(tmp_path):
    s = Session(tmp_path)
    yield s
    if s.remote is not None:
        s.close()


@pytest.fixture(scope="module")
def kernel_so(tmp_path_factory):
    from tests.support.pinning_kit import build_kernel
    path = tmp_path_factory.mktemp("kernel") / "matmul.so"
    build_kernel(path)
    return path


def outside_layout(pid, cpus):
    """The state as /proc shows it from this process: every thread inside
    the set, the serving thread (tid == pid) on the first CPU."""
    from tests.support.pinning_kit import status_affinities
    seen = status_affinities(pid)
    assert seen[pid] == [cpus[0]], seen
    assert all(set(c) <= set(cpus) for c in seen.values()), seen
    return seen


def assert_session_works(s, kernel_so=None):
    state = s.state()
    assert state["pid"] == s.proc.pid
    s.remote.upload(bytearray(b"still here"), "probe.txt")
    assert bytes(s.remote.download("probe.txt")) == b"still here"
    if kernel_so is not None:
        remote_kernels.run_matmul(s.remote, str(kernel_so), 512, name="k.so", rtol=1e-3)


# ------------------------------------------------------------ thread modes

def test_default_mode_without_any_call(tmp_path):
    s = Session(tmp_path, default_mode="all")
    state = s.state()
    assert (state["mode"], state["cpus"], state["nthreads"], state["tvm_num_threads"]) \
        == ("all", [0, 1], 2, 2)
    outside_layout(state["pid"], [0, 1])
    assert s.close() == 0


def test_default_mode_can_be_a_subset(tmp_path):
    s = Session(tmp_path, default_mode="big:1")
    state = s.state()
    assert (state["mode"], state["cpus"], state["tvm_num_threads"]) == ("big:1", [0], 1)
    outside_layout(state["pid"], [0])
    # and a bigger mode is still possible: the pool was sized for every CPU
    assert s.set_mode("all")["cpus"] == [0, 1]
    outside_layout(state["pid"], [0, 1])
    assert s.close() == 0


def test_a_slot_session_builds_its_pool_on_the_slot_only(tmp_path, kernel_so):
    """In slot 1 of `cpus:0;cpus:1` TVM's pool has one thread (the serving one):
    a pool as wide as the machine would start a worker on cpu 0, the other slot's
    core, spinning there while that slot measures. The same mode without a slot
    keeps the machine-wide pool (one more thread), so any later mode fits."""
    from edge_common.slots import resolve_slots, slot_topology
    spec = "cpus:0;cpus:1"
    slot = resolve_slots(real_topology(), spec)[1]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    inside = Session(tmp_path / "a", topology=slot_topology(real_topology(), slot, 2, spec))
    whole = Session(tmp_path / "b", default_mode="cpus:1")
    try:
        state, other = inside.state(), whole.state()
        assert (state["cpus"], state["tvm_num_threads"]) == ([1], 1) == \
            (other["cpus"], other["tvm_num_threads"])
        assert len(state["threads"]) == len(other["threads"]) - 1, (state, other)
        outside_layout(state["pid"], [1])
        assert_session_works(inside, kernel_so)   # a parallel kernel runs on the one thread
        outside_layout(state["pid"], [1])
    finally:
        assert inside.close() == 0 and whole.close() == 0


@pytest.mark.parametrize("mode, cpus", [
    ("all", [0, 1]), ("big", [0, 1]), ("little", [0, 1]), ("big:1", [0]), ("big:2", [0, 1]),
    ("little:1", [0]), ("class0", [0, 1]), ("class0:1", [0]), ("cpus:0", [0]),
    ("cpus:1", [1]), ("cpus:0-1", [0, 1]), ("cpus:1,0", [0, 1]), (" BIG:1 ", [0]),
])
def test_every_mode_on_this_machine(session, mode, cpus):
    state = session.set_mode(mode)
    assert state["cpus"] == cpus
    assert state["nthreads"] == state["tvm_num_threads"] == len(cpus)
    seen = outside_layout(state["pid"], cpus)
    assert {t["tid"]: t["cpus"] for t in state["threads"]} == seen
    now = session.state()   # thread_state also carries the cores' conditions (issue 13)
    assert {k: now[k] for k in state} == state and "conditions" in now


def test_modes_in_sequence_with_kernels_between(session, kernel_so):
    for mode, cpus in [("cpus:1", [1]), ("all", [0, 1]), ("big:1", [0]), ("all", [0, 1])]:
        state = session.set_mode(mode)
        assert state["cpus"] == cpus
        outside_layout(state["pid"], cpus)
        assert_session_works(session, kernel_so)


HOSTILE = [
    ("", "empty thread mode"),
    (" ", "empty thread mode"),
    ("big:0", "at least 1"),
    ("big:-1", "whole number"),
    ("big:3", "has 2"),
    ("big:99999999999999999999999999", "at most 4096"),
    ("big:" + "9" * 200, "at most 4096"),
    ("cpus:99", "CPU 99"),
    ("cpus:-1", "not a CPU number"),
    ("cpus:0,0", "twice"),
    ("cpus:4095", "CPU 4095"),
    ("cpus:0-4095", "does not have"),
    ("mid", "classes are big"),
    ("prime:1", "classes are big"),
    ("big:\u0661", "non-ASCII"),
    ("\u5927\u6838", "non-ASCII"),
    ("b\u0131g", "non-ASCII"),
    ("x" * 10_000, "longer than 256"),
    ("cpus:" + "0," * 5000, "longer than 256"),
    ("'; DROP TABLE modes; --", "not understood"),
]


def test_hostile_modes_get_clear_errors_and_the_session_survives(session, kernel_so):
    from tvm.error import RPCError
    before = session.state()
    for mode, words in HOSTILE:
        with pytest.raises(RPCError) as err:
            session.set_mode(mode)
        assert words in str(err.value), (mode[:40], str(err.value))
        assert len(str(err.value)) < 2000
    after = session.state()
    assert (after["mode"], after["cpus"]) == (before["mode"], before["cpus"])
    outside_layout(after["pid"], after["cpus"])
    assert_session_works(session, kernel_so)
    assert session.set_mode("cpus:1")["cpus"] == [1]


@pytest.mark.parametrize("arg", [7, -1, 2 ** 40, 1.5, None, bytearray(b"big")])
def test_non_string_modes_are_refused(session, arg):
    from tvm.error import RPCError
    with pytest.raises((RPCError, TypeError)) as err:
        session.func("edge.set_thread_mode")(arg)
    assert "string" in str(err.value) or "str" in str(err.value), str(err.value)
    assert session.state()["cpus"] == [0, 1]


def test_mode_changes_are_logged_with_the_peer(session):
    session.set_mode("cpus:1")
    with pytest.raises(Exception):
        session.set_mode("big:9")
    peer = "127.0.0.1:"
    log = session.log()
    assert "thread mode cpus:1 on cpus 1" in log and peer in log, log
    assert "refused: thread mode 'big:9' asks for 9" in log, log


def test_topology_function_returns_the_document(session):
    assert json.loads(session.func("edge.topology")()) == real_topology()


def test_prepared_before_the_client_then_served(tmp_path):
    """What the daemon's spare does: prepare_session with no work dir and no peer
    (it touches no file, changes no directory, logs nothing), then serve()."""
    prepare, modes = tmp_path / "prepare.json", tmp_path / "modes.txt"
    s = Session(tmp_path, prepare=str(prepare), mode_report=str(modes))
    done = json.loads(prepare.read_text())
    assert done["cwd_after"] == done["cwd_before"] != str(s.work_dir)
    assert done["work_dir_files"] == [] and done["log_lines"] == []
    state = s.state()
    assert (state["mode"], state["cpus"], state["tvm_num_threads"]) == ("all", [0, 1], 2)
    outside_layout(state["pid"], [0, 1])
    assert s.set_mode("cpus:1")["cpus"] == [1]
    assert s.set_mode(" CPUS:1 ")["mode"] == "cpus:1"      # same mode: not reported again
    assert s.set_mode("all")["cpus"] == [0, 1]
    assert_session_works(s)
    assert (s.work_dir / "probe.txt").read_bytes() == b"still here"
    log = s.log()
    assert "session 127.0.0.1:" in log and "default thread mode all on cpus 0-1" in log, log
    assert "not connected yet" not in log, log
    assert s.close() == 0
    assert modes.read_text() == "mode all\nmode cpus:1\nmode all\n"


def test_default_mode_set_up_failure_is_reported_as_unpinned(tmp_path):
    """A default mode this machine cannot pin: the session serves, unpinned, and says so."""
    from tvm.error import RPCError
    modes = tmp_path / "modes.txt"
    topology = json.loads(json.dumps(real_topology()))
    topology["cpus"].append(dict(topology["cpus"][0], id=7))   # a CPU this machine lacks
    s = Session(tmp_path, topology=topology, default_mode="cpus:7", mode_report=str(modes))
    with pytest.raises(RPCError, match="thread pinning is unavailable in this session"):
        s.set_mode("all")
    s.remote.upload(bytearray(b"still here"), "probe.txt")
    assert bytes(s.remote.download("probe.txt")) == b"still here"
    assert "cannot set up the default thread mode 'cpus:7'" in s.log()
    assert s.close() == 0
    assert modes.read_text() == "mode unpinned\n"


# --------------------------------------------------------- fixture topology

def test_fixture_topology_pins_what_exists_and_refuses_the_rest(tmp_path):
    from tvm.error import RPCError
    s = Session(tmp_path, topology=HAND_BOARDS["rk3399"], default_mode="all", fixture_root=True)
    # default "all" means cpus 0-5 of the fixture: falls back to this machine's CPUs
    state = s.state()
    assert state["cpus"] == [0, 1] and state["mode"] == "cpus:0-1"
    assert "lacks" in s.log()
    # little:2 is cpus 0-1 of the fixture, which exist here: pinned for real
    state = s.set_mode("little:2")
    assert (state["mode"], state["cpus"]) == ("little:2", [0, 1])
    outside_layout(state["pid"], [0, 1])
    for mode, words in [("big", ["fixture", "cpus 4-5", "may use cpus 0-1"]),
                        ("little:6", ["has 4", "little:4"]),
                        ("prime", ["classes are big, little"])]:
        with pytest.raises(RPCError) as err:
            s.set_mode(mode)
        assert all(w in str(err.value) for w in words), str(err.value)
    assert s.set_mode("class1:1")["cpus"] == [0]
    assert s.close() == 0


# ------------------------------------------------------ work directory

def test_stock_client_flow_upload_load_run(session, kernel_so):
    assert_session_works(session, kernel_so)
    assert set(session.remote.listdir(".").split(",")) >= {"k.so", "probe.txt"}
    session.remote.remove("probe.txt")
    assert "probe.txt" not in session.remote.listdir(".")
    assert (session.work_dir / "k.so").is_file()


def test_time_evaluator_of_a_stock_client(session, kernel_so):
    import numpy as np
    import tvm
    session.remote.upload(str(kernel_so), "k.so")
    mod = session.remote.load_module("k.so")
    dev = session.remote.cpu()
    args = [tvm.runtime.tensor(np.ones((512, 512), "float32"), dev) for _ in range(3)]
    res = mod.time_evaluator("main", dev, number=2, repeat=2)(*args)
    assert len(res.results) == 2 and all(r > 0 for r in res.results)


@pytest.mark.skipif(find_linker() is None, reason="this board has no compiler: "
                    "test_toolchain.py checks the refusal a .tar gets there")
def test_load_module_from_tar_links_on_the_board(session, tmp_path):
    """load_module of a .tar links it with the board's compiler, as stock does."""
    import numpy as np
    import tvm
    from tvm import te
    a = te.placeholder((16,), name="A")
    b = te.compute((16,), lambda i: a[i] + 1.0, name="B")
    lib = tvm.compile(te.create_prim_func([a, b]), target="llvm")
    lib.export_library(str(tmp_path / "add.tar"))
    session.remote.upload(str(tmp_path / "add.tar"))
    mod = session.remote.load_module("add.tar")
    dev = session.remote.cpu()
    x = tvm.runtime.tensor(np.arange(16, dtype="float32"), dev)
    y = tvm.runtime.tensor(np.zeros(16, "float32"), dev)
    mod["main"](x, y)
    np.testing.assert_allclose(y.numpy(), np.arange(16) + 1.0)
    linked = session.remote.download_linked_module("add.tar")
    assert bytes(linked[:4]) == b"\x7fELF"


@pytest.mark.parametrize("name, words", [
    ("../evil.so", "climbs out"),
    ("a/../../evil.so", "climbs out"),
    ("..", "climbs out"),
    ("sub/../../../etc/passwd", "climbs out"),
    ("/tmp/evil.so", "absolute"),
    ("/etc/passwd", "absolute"),
    ("x" * 5000, "too long"),
])
def test_names_outside_the_work_dir_are_refused(session, tmp_path, name, words):
    from tvm.error import RPCError
    for call in (lambda: session.remote.upload(bytearray(b"pwned"), name),
                 lambda: session.remote.download(name),
                 lambda: session.remote.remove(name),
                 lambda: session.remote.load_module(name),
                 lambda: session.func("tvm.rpc.server.workpath")(name)):
        with pytest.raises(RPCError) as err:
            call()
        assert words in str(err.value), str(err.value)
    assert not (tmp_path / "evil.so").exists() and not Path("/tmp/evil.so").exists()
    assert_session_works(session)


def test_nul_in_names_is_refused(tmp_path):
    """TVM's RPC cuts strings at a NUL before they reach the session, so this
    is checked on WorkDir itself."""
    from edge_server.session.workdir import WorkDir, WorkDirError
    work = WorkDir(str(tmp_path), 100, 1000)
    with pytest.raises(WorkDirError, match="NUL"):
        work.upload("evil\x00.so", b"x")
    assert list(tmp_path.iterdir()) == []


def test_symlink_out_of_the_work_dir_is_refused(session, tmp_path):
    from tvm.error import RPCError
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, session.work_dir / "link")
    with pytest.raises(RPCError, match="outside the session's work directory"):
        session.remote.upload(bytearray(b"pwned"), "link/evil.so")
    assert list(outside.iterdir()) == []


def test_subdirectories_inside_the_work_dir_are_fine(session):
    session.remote.upload(bytearray(b"nested"), "a/b/c.bin")
    assert (session.work_dir / "a" / "b" / "c.bin").read_bytes() == b"nested"
    assert bytes(session.remote.download("a/./b/c.bin")) == b"nested"
    assert session.remote.listdir("a") == "b"


def test_upload_and_disk_limits(tmp_path):
    from tvm.error import RPCError
    s = Session(tmp_path, max_upload_bytes=1000, max_disk_bytes=2500)
    s.remote.upload(bytearray(1000), "one.bin")
    with pytest.raises(RPCError) as err:
        s.remote.upload(bytearray(1001), "big.bin")
    assert "1001 bytes, over the per-file limit of 1000 bytes" in str(err.value)
    s.remote.upload(bytearray(1000), "two.bin")
    with pytest.raises(RPCError) as err:
        s.remote.upload(bytearray(600), "three.bin")
    assert "over its limit of 2500 bytes" in str(err.value)
    assert "remove files first" in str(err.value)
    s.remote.upload(bytearray(900), "two.bin")           # replacing a file frees its space
    s.remote.upload(bytearray(600), "three.bin")
    s.remote.remove("one.bin")
    s.remote.upload(bytearray(900), "four.bin")
    assert sorted(os.listdir(s.work_dir)) == ["four.bin", "three.bin", "two.bin"]
    assert_session_works(s)
    del err            # its traceback holds the client session open
    assert s.close() == 0


def test_missing_files_get_clear_errors(session):
    from tvm.error import RPCError
    for call, words in [(lambda: session.remote.download("nope.so"), "no such file"),
                        (lambda: session.remote.load_module("nope.so"), "cannot find file"),
                        (lambda: session.remote.listdir("nope"), "not a directory"),
                        (lambda: session.remote.download_linked_module("x.txt"),
                         "do not know how to link")]:
        if "link" in words:
            session.remote.upload(bytearray(b"text"), "x.txt")
        with pytest.raises(RPCError) as err:
            call()
        assert words in str(err.value), str(err.value)
    assert_session_works(session)


def test_remove_is_as_forgiving_as_stock_but_stays_inside(session):
    """MetaSchedule's default cleanup removes path, path + ".so" and "": none of
    them may fail (the stock server ignores what it cannot remove)."""
    from tvm.error import RPCError
    session.remote.upload(bytearray(b"x"), "kept.bin")
    session.remote.upload(bytearray(b"x"), "gone.bin")
    session.remote.remove("gone.bin")
    session.remote.remove("gone.bin.so")
    session.remote.remove("")
    session.remote.remove(".")
    assert sorted(os.listdir(session.work_dir)) == ["kept.bin"]
    with pytest.raises(RPCError) as err:
        session.remote.remove("../kept.bin")
    assert "climbs out" in str(err.value)
    assert_session_works(session)


def test_session_ends_with_exit_code_zero(session):
    assert session.state()["pid"] == session.proc.pid
    assert session.close() == 0


# ------------------------------------------- end to end: tracker + edge-server

def thread_ticks(pid):
    """{tid: utime + stime clock ticks} for every thread of pid."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        out[int(tid)] = int(fields[11]) + int(fields[12])
    return out


class RemoteKernel:
    """The matmul kernel uploaded to a remote session, ready to run."""

    def __init__(self, remote, kernel_so):
        import numpy as np
        import tvm
        remote.upload(str(kernel_so), "matmul.so")
        self.func = remote.load_module("matmul.so")["main"]
        dev = remote.cpu()
        self.args = [tvm.runtime.tensor(np.random.rand(512, 512).astype("float32"), dev)
                     for _ in range(3)]

    def busy_threads(self, pid, runs=6):
        """{tid: ticks} of the session threads that did real work while the
        kernel ran `runs` times (at least a quarter of the busiest thread)."""
        before = thread_ticks(pid)
        for _ in range(runs):
            self.func(*self.args)
        after = thread_ticks(pid)
        used = {tid: after[tid] - before.get(tid, 0) for tid in after}
        top = max(used.values())
        assert top > 20, "kernel too short to measure: %s" % used
        return {tid: t for tid, t in used.items() if t >= top / 4}


def request(tracker, key="edge-test"):
    from tvm import rpc
    return rpc.connect_tracker(procs.HOST, tracker.port).request(key, session_timeout=120)


@pytest.fixture
def edge_server(tracker, tmp_path):
    server = procs.start_edge_server(tmp_path, tracker.port)
    yield server
    server.stop()


def test_e2e_stock_client_gets_both_cores_where_stock_tvm_uses_one(tracker, edge_server,
                                                                   tmp_path, kernel_so):
    """A client that never calls set_thread_mode: the default `all` runs the
    kernel on 2 threads, one per core; the stock server on 1 on x86-64 (TVM
    halves the count there) and on 2 unpinned ones on ARM."""
    import platform
    from tests.support.pinning_kit import stock_tvm_threads
    import gc
    import psutil
    remote = request(tracker)
    state = json.loads(remote.get_function("edge.thread_state")())
    assert (state["mode"], state["cpus"], state["tvm_num_threads"]) == ("all", [0, 1], 2)
    seen = outside_layout(state["pid"], [0, 1])
    busy = RemoteKernel(remote, kernel_so).busy_threads(state["pid"])
    assert len(busy) == 2
    assert sorted(seen[t][0] for t in busy) == [0, 1] and all(len(seen[t]) == 1 for t in busy)
    del remote
    gc.collect()

    stock = procs.start_stock_server(tmp_path, tracker.port)
    try:
        idle = set(psutil.Process(stock.pid).children(recursive=True))
        remote = request(tracker, key=stock.key)
        kernel = RemoteKernel(remote, kernel_so)
        children = set(psutil.Process(stock.pid).children(recursive=True)) - idle
        assert len(children) == 1, children       # the session's process
        busy = kernel.busy_threads(children.pop().pid)
        assert len(busy) == stock_tvm_threads(platform.machine(), 2)
        del remote, kernel
        gc.collect()
    finally:
        stock.stop()


@pytest.mark.parametrize("mode, cpus", [("big:1", [0]), ("cpus:1", [1]), ("all", [0, 1]),
                                        ("little:2", [0, 1]), ("class0:1", [0])])
def test_e2e_every_mode_uses_exactly_its_cores(tracker, edge_server, kernel_so, mode, cpus):
    remote = request(tracker)
    state = json.loads(remote.get_function("edge.set_thread_mode")(mode))
    assert (state["cpus"], state["nthreads"], state["tvm_num_threads"]) == (cpus, len(cpus),
                                                                            len(cpus))
    assert state["pid"] != edge_server.pid
    seen = outside_layout(state["pid"], cpus)
    busy = RemoteKernel(remote, kernel_so).busy_threads(state["pid"])
    assert len(busy) == len(cpus)
    assert sorted(seen[t][0] for t in busy) == cpus
    assert json.loads(remote.get_function("edge.thread_state")())["cpus"] == cpus


def test_e2e_hostile_modes_and_paths_leave_session_and_daemon_serving(tracker, edge_server,
                                                                      kernel_so):
    import gc
    from tvm.error import RPCError
    remote = request(tracker)
    set_mode = remote.get_function("edge.set_thread_mode")
    for mode, words in HOSTILE:
        with pytest.raises(RPCError) as err:
            set_mode(mode)
        assert words in str(err.value), (mode[:40], str(err.value))
    for name, words in [("../escape.so", "climbs out"), ("/tmp/escape.so", "absolute")]:
        with pytest.raises(RPCError, match=words):
            remote.upload(bytearray(b"pwned"), name)
    assert not Path("/tmp/escape.so").exists()
    state = json.loads(set_mode("cpus:1"))
    kernel = RemoteKernel(remote, kernel_so)
    assert len(kernel.busy_threads(state["pid"], runs=4)) == 1
    first_pid = state["pid"]
    del remote, set_mode, kernel, err
    gc.collect()
    # the daemon serves the next session normally, with the default mode again
    procs.wait_free(tracker.port, edge_server.key, proc=edge_server)
    remote = request(tracker)
    state = json.loads(remote.get_function("edge.thread_state")())
    assert state["pid"] != first_pid and state["cpus"] == [0, 1]
    assert edge_server.alive()
    assert "refused: thread mode 'big:0'" in edge_server.log()


def test_e2e_fixture_board_resolves_against_the_fixture(tracker, tmp_path):
    from tvm.error import RPCError
    root = procs.FIXTURES / "rk3399"
    server = procs.start_edge_server(tmp_path, tracker.port, key="rk3399-fixture",
                                     args=["--root", root, "--default-mode", "little:2"])
    try:
        remote = request(tracker, key="rk3399-fixture")
        topo = json.loads(remote.get_function("edge.topology")())
        assert [c["name"] for c in topo["classes"]] == ["big", "little"]
        state = json.loads(remote.get_function("edge.thread_state")())
        assert (state["mode"], state["cpus"]) == ("little:2", [0, 1])
        set_mode = remote.get_function("edge.set_thread_mode")
        assert json.loads(set_mode("class1:1"))["cpus"] == [0]
        outside_layout(state["pid"], [0])
        with pytest.raises(RPCError) as err:
            set_mode("big")
        assert "fixture" in str(err.value) and "cpus 4-5" in str(err.value)
        with pytest.raises(RPCError) as err:
            set_mode("little:6")
        assert "asks for 6 little cores but this board has 4 (cpus 0-3)" in str(err.value)
        assert json.loads(set_mode("little:1"))["cpus"] == [0]
    finally:
        server.stop()
