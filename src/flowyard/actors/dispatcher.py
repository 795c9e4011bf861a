"""Push delivery over HTTP: one shared client, signed requests, outcome classification.

The dispatcher does the HTTP part only; the engine decides what an outcome means for the job.
"""

import logging
import socket
import ssl
import time
from typing import Any

import msgspec
from msgspec import Raw

from flowyard.egress.connection import Answer, HttpError
from flowyard.egress.http1 import Http1Client, InvalidUrl, Opener
from flowyard.egress.pinned import AddressBlocked, PublicNetwork
from flowyard.signing import signature_header

log = logging.getLogger("flowyard.push")

MAX_RESULT_BYTES = 256 * 1024
SNIPPET_BYTES = 1024


class Outcome(msgspec.Struct, frozen=True):
    """What a handler answered: ``completed``, ``accepted`` (202) or ``failed``."""

    kind: str
    handler_status: int | None = None
    result: Raw | None = None
    error: str | None = None


class Sent(msgspec.Struct, frozen=True):
    """What a webhook receiver answered: its status (None when there was no answer), the
    start of its body, and why the attempt failed if it did not answer."""

    status: int | None
    snippet: str | None
    error: str | None
    duration_ms: int


class Dispatcher:
    """Sends signed POSTs to handler URLs and callback URLs.

    With ``handler_network="public"`` every connection goes to an address a
    :class:`PublicNetwork` checked (``network``, or one refusing ``own_hosts`` and this
    machine's name); with ``any`` the event loop resolves the name itself.
    """

    def __init__(
        self,
        *,
        handler_network: str = "any",
        own_hosts: frozenset[str] = frozenset(),
        network: PublicNetwork | None = None,
        opener: Opener | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        options: dict[str, Any] = {"tls": tls}
        if opener is not None:
            options["opener"] = opener
        if handler_network == "public":
            network = network or PublicNetwork(own_hosts=own_hosts | {socket.gethostname()})
            options["addresses"] = network.checked
        self._client = Http1Client(**options)

    async def aclose(self) -> None:
        """Close the kept-alive connections."""
        await self._client.aclose()

    async def _post(
        self,
        url: str,
        body: bytes,
        headers: dict[str, str],
        secret: str,
        timeout: float,
        max_body: int,
    ) -> Answer | str:
        """POST ``body`` signed with ``secret``: the answer, or why there is none.

        ``timeout`` covers everything: the DNS lookup of a public network, connecting, and
        reading the answer.
        """
        signed = [
            *headers.items(),
            ("Content-Type", "application/json"),
            ("X-Flowyard-Signature", signature_header(secret, body)),
        ]
        try:
            return await self._client.post(url, body, signed, timeout=timeout, max_body=max_body)
        except AddressBlocked as exc:
            return f"handler_blocked: {exc}"[:500]
        except TimeoutError:
            return f"timeout: no answer within {timeout:g}s"
        except HttpError as exc:
            return f"connection_error: {type(exc).__name__}: {exc}"[:500]
        except InvalidUrl as exc:
            return f"invalid_url: {exc}"[:500]

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], secret: str, timeout: float
    ) -> Outcome:
        """POST a job's payload and classify the answer."""
        answer = await self._post(url, body, headers, secret, timeout, MAX_RESULT_BYTES)
        if isinstance(answer, str):
            return Outcome("failed", error=answer)
        return _classify(answer.status, answer.body if answer.complete else None)

    async def send(
        self, url: str, body: bytes, headers: dict[str, str], secret: str, timeout: float
    ) -> Sent:
        """POST a webhook delivery signed with ``secret``; the answer's status and snippet."""
        started = time.monotonic()
        answer = await self._post(url, body, headers, secret, timeout, SNIPPET_BYTES)
        duration = int((time.monotonic() - started) * 1000)
        if isinstance(answer, str):
            return Sent(None, None, answer, duration)
        snippet = answer.body.decode("utf-8", errors="replace")
        return Sent(answer.status, snippet, None, duration)


def _classify(status: int, data: bytes | None) -> Outcome:
    if status == 202:
        return Outcome("accepted", handler_status=status)
    if not 200 <= status < 300:
        return Outcome("failed", handler_status=status, error=f"handler returned HTTP {status}")
    too_large = Outcome(
        "failed", handler_status=status, error="result_too_large: body over 256 KiB"
    )
    if data is None:
        return too_large
    try:
        result = _as_result(data)
    except RecursionError:  # workflow steps decode results: one that cannot be read is refused
        return Outcome("failed", handler_status=status, error="result_too_deep: nested too deeply")
    if result is not None and len(result) > MAX_RESULT_BYTES:  # text grows when quoted
        return too_large
    return Outcome("completed", handler_status=status, result=result)


def _as_result(data: bytes) -> Raw | None:
    """A handler's 2xx body as a result: its JSON, a JSON string of its text, or null."""
    if not data.strip():
        return None
    try:
        msgspec.json.decode(data)
    except msgspec.DecodeError:  # not JSON, or a number out of range such as 1e999
        return Raw(msgspec.json.encode(data.decode("utf-8", errors="replace")))
    return Raw(data)
