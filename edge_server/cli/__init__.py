"""The `edge-server` commands: flags -> Config -> run, and `probe`."""
