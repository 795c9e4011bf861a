"""Log lines as text or JSON, carrying the ids of what they are about (DESIGN §9).

Four context variables hold the ids known where a line is logged: the request's id and
project while a request is handled (``http/exchange.py`` binds the first, ``http/context.py``
the second once the key is resolved), the execution while its actor handles a message, the
job where an engine works on one. A log call may also pass them with ``extra=``, which wins.
The formatters read them when the line is written, in the task that logged it.
"""

import contextvars
import itertools
import logging
import os
import re
import sys
import time

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
project_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("project_id", default=None)
execution_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "execution_id", default=None
)
job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)

IDS = (
    ("request_id", request_id),
    ("project_id", project_id),
    ("execution_id", execution_id),
    ("job_id", job_id),
)
"""The ids a line carries when known, in the order they are written."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# ----------------------------------------------------------------------- request ids

MAX_REQUEST_ID = 128
SANE_ID = re.compile(rb"[A-Za-z0-9\-_.:/+=@]{1,%d}" % MAX_REQUEST_ID)
"""A client's ``X-Request-Id`` that is kept: 1 to 128 of letters, digits and ``-_.:/+=@``."""
PREFIX = os.urandom(6).hex() + "-"
"""What every id this process makes begins with: 12 hex digits drawn at start, and ``-``."""
COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A fresh request id: this process's random 12 hex digits, ``-``, a counter in hex.

    Unique across restarts (the prefix is drawn at start), and cheaper than drawing random
    bytes per request (a counter step instead of a system call). ``http/protocol.py`` builds
    the same inline.
    """
    return f"{PREFIX}{next(COUNTER):x}"


def request_id_from(sent: bytes | None) -> str:
    """The client's ``X-Request-Id`` when it is sane (1 to 128 of letters, digits and
    ``-_.:/+=@``), else a fresh one."""
    if sent is not None and SANE_ID.fullmatch(sent) is not None:
        return sent.decode("ascii")
    return new_request_id()


class bound:  # lower case: used as a function, ``with bound(job=...):``
    """Bind these ids (``None`` clears one) for a ``with`` block, then restore what was there.

    Actors bind every id they handle, so a task started from a request's context does not
    carry that request's ids into lines about something else. Push deliveries and webhook
    attempts enter one each; the paths every request takes set the variables themselves.
    """

    __slots__ = ("ids", "tokens")

    def __init__(
        self,
        *,
        request: str | None = None,
        project: str | None = None,
        execution: str | None = None,
        job: str | None = None,
    ) -> None:
        self.ids = (request, project, execution, job)
        self.tokens: list[contextvars.Token[str | None]] = []

    def __enter__(self) -> None:
        self.tokens = [var.set(value) for (_, var), value in zip(IDS, self.ids, strict=True)]

    def __exit__(self, *exc: object) -> None:
        for (_, var), token in zip(IDS, self.tokens, strict=True):
            var.reset(token)


# ----------------------------------------------------------------------- formatters


def ids_of(record: logging.LogRecord) -> list[tuple[str, str]]:
    """The ids known for ``record``: its ``extra=`` ones, else the bound ones."""
    found = []
    fields = record.__dict__
    for name, var in IDS:
        value = fields.get(name)
        if value is None:
            value = var.get()
        if value is not None:
            found.append((name, str(value)))
    return found


def iso_time(record: logging.LogRecord) -> str:
    """When ``record`` was made: ISO 8601, UTC, milliseconds (``2026-12-06T23:41:07.123Z``)."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts, level, logger, msg``, the known ids, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, str] = {
            "ts": iso_time(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update(ids_of(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line).decode()


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, then the known ids as ``name=value``, then a
    traceback on the lines below."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        ids = ids_of(record)
        if ids:
            line += " " + " ".join(f"{name}={value}" for name, value in ids)
        return line


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for ``--log-format`` (``text`` or ``json``)."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {log_format!r}")


def configure(level: str, log_format: str) -> logging.Handler:
    """Send every logger's lines (uvicorn's too: it is run without a logging config of its
    own) to stderr in ``log_format``, from ``level`` up (aiosqlite's from INFO up); the
    handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # Two DEBUG lines per query would bury the service's own (the access log among them).
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLogger().level))
    return handler


def announce(handler: logging.Handler, logger: str, message: str) -> None:
    """Write ``message`` as an INFO line of ``logger`` whatever the level: lines that
    scripts wait for (``flowyard listening on ...``) are not lost at ``--log-level warning``."""
    record = logging.LogRecord(logger, logging.INFO, __file__, 0, message, None, None)
    handler.handle(record)
