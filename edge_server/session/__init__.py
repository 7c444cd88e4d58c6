"""The forked session child: prepared session, IPC to the daemon, thread modes and pinning, work dir, the registered functions."""
