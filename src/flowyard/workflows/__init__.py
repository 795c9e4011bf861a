"""Workflow blueprints: validation, the step graph, and payload templates (pure, no I/O)."""
