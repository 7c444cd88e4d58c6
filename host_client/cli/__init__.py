"""The `edge-client` command line: list boards, probe one, bench thread modes, the demo."""
