"""Serve exactly one RPC session with edge_server.session.run_session, the
way the daemon's forked child does, without the daemon: listen, accept one
client, do TVM's server handshake (key "client:<key>"), run the session.

Usage: python session_harness.py SETTINGS.json
SETTINGS: {"port": int, "key": str, "topology": {...}, "default_mode": str,
           "work_dir": str, "fixture_root": bool, "max_upload_bytes": int,
           "max_disk_bytes": int}
Prints "listening" once the socket is bound. Exits with run_session's code.
"""
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
    from edge_server.session import SessionContext, run_session
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", settings["port"]))
    listener.listen(1)
    print("listening", flush=True)
    conn, addr = listener.accept()
    listener.close()
    handshake(conn, settings["key"])
    ctx = SessionContext(
        topology=settings["topology"], default_mode=settings["default_mode"],
        work_dir=settings["work_dir"], peer="%s:%d" % addr,
        max_upload_bytes=settings.get("max_upload_bytes", 256 << 20),
        max_disk_bytes=settings.get("max_disk_bytes", 1 << 30),
        fixture_root=settings.get("fixture_root", False))
    return run_session(conn, ctx)


if __name__ == "__main__":
    sys.exit(main())
