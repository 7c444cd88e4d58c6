"""The spare's side: a session process forked before its client arrives.

Turnover between sessions is on the critical path of every MetaSchedule
trial, so the daemon forks the next session's process early. It must not
set up (build TVM's pool, pin the default mode) while another client is
measuring on those cores, so it waits for the daemon's word on the hand-off
channel (edge_server.session.ipc): `prepare` when no client is in a session,
then the client's socket. A spare never told to prepare sets up when its
client arrives, like a freshly forked session.
"""
import dataclasses
import logging
import socket

from edge_server.session import child as session_mod
from edge_server.session.ipc import MAX_HANDOFF, PREPARE, parse_handoff
from edge_server.session.sandbox import WorkDirMoved

log = logging.getLogger("edge_server.session.spare")


def spare_main(channel: socket.socket, template: session_mod.SessionContext) -> int:
    """Wait; set up when told; serve the client whose socket arrives. The exit
    code of the session (0 also when the daemon retired us unused)."""
    prepared = None
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(channel, MAX_HANDOFF, 1)
        except OSError:
            return 0
        if fds:
            break
        if not msg:
            return 0                      # retired by the daemon
        if msg == PREPARE and prepared is None:
            try:
                prepared = session_mod.prepare_session(template)
            except WorkDirMoved:
                pass     # its client came meanwhile: set up below, under the new name
    conn = socket.socket(fileno=fds[0])
    channel.close()
    handoff = parse_handoff(msg)
    ctx = dataclasses.replace(template, work_dir=handoff.work_dir, peer=handoff.peer,
                              clocks=handoff.clocks)
    if prepared is not None:
        return prepared.serve(conn, ctx)
    return session_mod.run_session(conn, ctx)
