"""Webhooks: topic patterns, the webhook and delivery records, and the events that feed them.

Pure: no I/O, no clock; the outbox actor and the HTTP routes do the rest.
"""
