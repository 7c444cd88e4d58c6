"""The long-lived process (docs/daemon.md): config (one table of settings), server
(wiring + the poll loop), signals, listener (bind, admission, handshakes, parking),
supervisor + children (a slot's session and spare as an explicit state machine),
spare, forking (fork hygiene, reaping), status, tracker (registration), handshake,
workroot, notify, logs."""
