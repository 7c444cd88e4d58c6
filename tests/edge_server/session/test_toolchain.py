"""Whether a board can link, and what a session says to a .tar when it cannot.

The unit tests build PATH directories by hand; the session tests run a real
session child whose PATH holds no compiler (what a board installed with plain
pip looks like) next to one with this machine's g++."""
import json
import os
import sys

import pytest

from edge_server.session.toolchain import (CannotLink, find_linker, needs_linking,
                                           require_linker, with_linker)
from tests.support import procs
from tests.support.session_kit import Session

# A PATH with the interpreter's directory only: no compiler on any board or host.
NO_COMPILER = {"PATH": os.path.dirname(sys.executable), "CXX": "", "CC": ""}


def tool(directory, name):
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return str(path)


def test_first_compiler_in_tvm_order_then_path_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    tool(a, "cc")
    gpp = tool(b, "g++")
    env = {"PATH": "%s:%s" % (a, b)}
    assert find_linker(env) == gpp                  # g++ before cc whatever the PATH order
    first = tool(a, "g++")
    assert find_linker(env) == first                # same name: PATH order


def test_environment_compiler_wins_and_nothing_is_none(tmp_path):
    tool(tmp_path / "a", "gcc")
    assert find_linker({"PATH": str(tmp_path / "a"), "CXX": "clang++-17"}) == "clang++-17"
    assert find_linker({"PATH": str(tmp_path / "a"), "CC": "tcc"}) == "tcc"
    assert find_linker({"PATH": str(tmp_path / "empty")}) is None


def test_a_file_that_is_not_executable_is_not_a_compiler(tmp_path):
    (tmp_path / "g++").write_text("not a program")
    (tmp_path / "g++").chmod(0o644)
    (tmp_path / "cc").mkdir()
    assert find_linker({"PATH": str(tmp_path)}) is None


def test_topology_gets_the_linker_and_the_refusal_names_both_fixes(tmp_path):
    assert with_linker({"arch": "aarch64"}, {"PATH": str(tmp_path)}) == {"arch": "aarch64",
                                                                         "linker": None}
    assert needs_linking("a/b/tvm_tmp_mod.tar") and needs_linking("x.o")
    assert not needs_linking("x.so") and not needs_linking("x.tar.so")
    with pytest.raises(CannotLink) as info:
        require_linker("/work/tvm_tmp_mod.tar", {"PATH": str(tmp_path)})
    message = str(info.value)
    assert message.startswith("cannot load tvm_tmp_mod.tar:")
    assert "host_client.edge_builder()" in message and "apt-get install g++" in message


def add_one_tar(tmp_path):
    """MetaSchedule's default export: objects in a .tar (needs no compiler to make)."""
    import tvm
    from tvm import te
    from tvm.support.tar import tar
    a = te.placeholder((16,), name="A")
    b = te.compute((16,), lambda i: a[i] + 1.0, name="B")
    lib = tvm.compile(te.create_prim_func([a, b]), target=tvm.target.Target({"kind": "llvm"}))
    path = tmp_path / "add.tar"
    lib.export_library(str(path), fcompile=tar)
    return path


def rpc_error(func, *args) -> str:
    """The text of the RPCError func(*args) raises; nothing of it kept alive
    (its traceback would hold the session open)."""
    from tvm.error import RPCError
    try:
        func(*args)
    except RPCError as err:
        return str(err)
    raise AssertionError("%s%r did not fail" % (func.__name__, args))


def test_session_without_a_compiler_refuses_a_tar_logs_it_and_keeps_serving(tmp_path):
    tar = add_one_tar(tmp_path)
    session = Session(tmp_path, env=NO_COMPILER)
    try:
        session.remote.upload(str(tar))
        for said in (rpc_error(session.remote.load_module, "add.tar"),
                     rpc_error(session.remote.download_linked_module, "add.tar")):
            assert "cannot load add.tar" in said and "no C/C++ compiler" in said
            assert "host_client.edge_builder()" in said and "sudo apt-get install g++" in said
        log = session.log()
        assert "load_module" in log and "download_linked_module" in log
        assert log.count("add.tar refused: cannot load add.tar") == 2
        session.remote.upload(bytearray(b"still here"), "probe.txt")   # the session serves on
        assert bytes(session.remote.download("probe.txt")) == b"still here"
        assert session.state()["mode"] == "all"
    finally:
        session.close()


def test_daemon_announces_its_linker_on_the_tracker(tmp_path):
    """edge-server's topology (what the tracker carries) says whether it links."""
    from host_client.boards import list_boards

    tracker = procs.start_tracker(tmp_path)
    servers = []
    try:
        servers.append(procs.start_edge_server(tmp_path, tracker.port, key="nolink",
                                               env=NO_COMPILER, name="nolink"))
        servers.append(procs.start_edge_server(tmp_path, tracker.port, key="withlink",
                                               name="withlink"))
        boards = {b.key: b for b in list_boards("127.0.0.1:%d" % tracker.port)}
        assert boards["nolink"].topology["linker"] is None
        assert boards["withlink"].topology["linker"] == find_linker()
    finally:
        for proc in servers + [tracker]:
            proc.stop()
