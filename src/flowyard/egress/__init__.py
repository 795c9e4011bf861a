"""Outgoing HTTP: which addresses the server may call, and a client that keeps to them."""
