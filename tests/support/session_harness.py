"""Serve exactly one RPC session with edge_server.session.child.run_session, the
way the daemon's forked child does, without the daemon: listen, accept one
client, do TVM's server handshake (key "client:<key>"), run the session.

Usage: python session_harness.py SETTINGS.json
SETTINGS: {"port": int, "key": str, "topology": {...}, "default_mode": str,
           "work_dir": str, "fixture_root": bool, "max_upload_bytes": int,
           "max_disk_bytes": int,
           "mode_report": path (optional: the effective-mode lines go to this file),
           "prepare": path (optional: prepare_session() first, as the daemon's spare does,
                      with work_dir "" and a placeholder peer, then write what it
                      touched to this JSON file, then serve())}
Prints "listening" once the socket is bound. Exits with run_session's code.
"""
import dataclasses
import json
import logging
import os
import socket
import struct
import sys

os.environ.setdefault("TVM_USE_RUNTIME_LIB", "1")


def handshake(conn, key):
    from tvm.rpc import base
    magic = struct.unpack("<i", base.recvall(conn, 4))[0]
    assert magic == base.RPC_MAGIC, magic
    keylen = struct.unpack("<i", base.recvall(conn, 4))[0]
    client_key = base.recvall(conn, keylen).decode()
    assert client_key.split()[0] == "client:" + key, client_key
    server_key = ("server:" + key).encode()
    conn.sendall(struct.pack("<ii", base.RPC_CODE_SUCCESS, len(server_key)) + server_key)


def main():
    settings = json.load(open(sys.argv[1]))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    import tvm.rpc  # noqa: F401  (the daemon imports tvm before it forks)
    from edge_server.session.child import SessionContext, prepare_session, run_session
    report_fd = None
    if settings.get("mode_report"):
        report_fd = os.open(settings["mode_report"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    ctx = SessionContext(
        topology=settings["topology"], default_mode=settings["default_mode"],
        work_dir="", peer="(not connected yet)",
        max_upload_bytes=settings.get("max_upload_bytes", 256 << 20),
        max_disk_bytes=settings.get("max_disk_bytes", 1 << 30),
        fixture_root=settings.get("fixture_root", False), mode_report_fd=report_fd,
        measure=measure_settings(settings))
    prepared = None
    if settings.get("prepare"):
        logged = []
        handler = logging.Handler()
        handler.emit = logged.append
        logging.getLogger().addHandler(handler)
        cwd = os.getcwd()
        prepared = prepare_session(ctx)
        logging.getLogger().removeHandler(handler)
        with open(settings["prepare"], "w") as f:
            json.dump({"cwd_before": cwd, "cwd_after": os.getcwd(),
                       "work_dir_files": os.listdir(settings["work_dir"]),
                       "log_lines": [r.getMessage() for r in logged]}, f)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", settings["port"]))
    listener.listen(1)
    print("listening", flush=True)
    conn, addr = listener.accept()
    listener.close()
    handshake(conn, settings["key"])
    ctx = dataclasses.replace(ctx, work_dir=settings["work_dir"], peer="%s:%d" % addr)
    if prepared is not None:
        return prepared.serve(conn, ctx)
    return run_session(conn, ctx)


def measure_settings(settings):
    """Verdict settings: "board_root" (conditions read there), "state_dir". Clock locks
    are the daemon's (tests/edge_server/daemon/test_clock_lock*.py), not a session's."""
    from edge_server.session.timed import MeasureSettings
    return MeasureSettings(root=settings.get("board_root", "/"),
                           state_dir=settings.get("state_dir"))


if __name__ == "__main__":
    sys.exit(main())
