"""The long-lived process: config, the poll loop, signals, admission, handshakes, session supervision, tracker registration, notify, logs, work roots."""
