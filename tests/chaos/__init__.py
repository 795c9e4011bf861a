"""Crash soak: the real server killed with SIGKILL under load, then every invariant checked."""
