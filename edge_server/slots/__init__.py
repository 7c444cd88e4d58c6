"""Slots: one board serving several measurements at once on disjoint cores.

`edge-server --slots SPEC` runs one supervisor (the daemon systemd sees) and
under it one slot server per slot (slot_server.py): the ordinary listener
loop of edge_server.daemon.server, with its own port, its own tracker
registration (same key), its own session process and spare, and a topology
document that names its slot, so a session's thread mode resolves within the
slot's cores. The supervisor (supervisor.py) forks the slot servers, forwards
stop and reload, restarts one that dies, and speaks for all of them to
systemd (READY, STATUS with slots busy/free, WATCHDOG).

Why a process per slot rather than several slots in one loop: a slot's
listener then shares nothing with another slot's (no fd, no state, no
deadline), so whatever happens in one slot, down to its listener dying, the
others keep measuring; and the listener needs no change to serve a slot.

calibrate.py measures how much slots disturb each other; plan.py turns
`--slots` (or `auto`, with that calibration) into the slots to run.
"""
