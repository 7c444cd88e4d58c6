"""Helpers the tests (and bench/) import: real processes, fixture boards, kits."""
