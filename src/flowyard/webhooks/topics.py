"""Topic patterns (an exact topic, ``*``, or a prefix ending in ``.*``) and custom topics."""

import re

PATTERN_MAX = 128
RESERVED_PREFIXES = ("jobs.", "workflows.", "webhooks.")
"""Topics Flowyard emits itself; ``POST /infra/webhooks/publish`` may not use them."""

_TOPIC = re.compile(r"^[a-z0-9_.-]{1,128}$")

JOB_TOPICS = ("jobs.completed", "jobs.failed", "jobs.dead")
WORKFLOW_TOPICS = (
    "workflows.execution.completed",
    "workflows.execution.failed",
    "workflows.execution.compensated",
    "workflows.execution.cancelled",
    "workflows.step.failed",
    "workflows.step.waiting",
)
TEST_TOPIC = "webhooks.test"


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a topic pattern, or None."""
    if pattern == "*":
        return None
    body = pattern[:-2] if pattern.endswith(".*") else pattern
    if not body or not _TOPIC.match(body) or len(pattern) > PATTERN_MAX:
        return "must be a topic ([a-z0-9_.-], 1 to 128 characters), '*' or a prefix ending in '.*'"
    if "*" in body or body.startswith(".") or body.endswith("."):
        return "must be a topic, '*' or a prefix ending in '.*'"
    return None


def custom_topic_problem(topic: str) -> str | None:
    """Why ``topic`` may not be published by a client, or None."""
    if not _TOPIC.match(topic):
        return "must be 1 to 128 characters of [a-z0-9_.-]"
    if topic.startswith(RESERVED_PREFIXES):
        return "may not start with jobs., workflows. or webhooks. (Flowyard's own topics)"
    return None


def matches(pattern: str, topic: str) -> bool:
    """Whether ``topic`` is one ``pattern`` subscribes to (``jobs.*`` takes ``jobs.failed``
    and ``jobs.x.y``, not ``jobs`` itself)."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return topic.startswith(pattern[:-1])
    return pattern == topic


def matches_any(patterns: tuple[str, ...] | list[str], topic: str) -> bool:
    """Whether any of ``patterns`` takes ``topic``."""
    return any(matches(pattern, topic) for pattern in patterns)
