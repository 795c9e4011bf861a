"""Push delivery over HTTP: one shared client, signed requests, outcome classification.

The dispatcher does the HTTP part only; the engine decides what an outcome means for the job.
"""

import logging
import socket
import time

import anyio
import httpx
import msgspec
from msgspec import Raw

from flowyard.egress.pinned import AddressBlocked, PublicNetwork, public_client
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

    With ``handler_network="public"`` every connection is opened by a :class:`PublicNetwork`
    (``network``, or one refusing ``own_hosts`` and this machine's name); with ``any`` the
    client is a plain one, with no DNS lookup of its own.
    """

    def __init__(
        self,
        *,
        handler_network: str = "any",
        own_hosts: frozenset[str] = frozenset(),
        network: PublicNetwork | None = None,
    ) -> None:
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
        if handler_network == "public":
            network = network or PublicNetwork(own_hosts=own_hosts | {socket.gethostname()})
            self._client = public_client(network, limits=limits)
        else:
            self._client = httpx.AsyncClient(limits=limits, follow_redirects=False)

    async def aclose(self) -> None:
        """Close the shared client."""
        await self._client.aclose()

    async def post(
        self, url: str, body: bytes, headers: dict[str, str], secret: str, timeout: float
    ) -> Outcome:
        """POST ``body`` signed with ``secret`` and classify the answer.

        The job's ``timeout`` covers everything: the DNS lookup of a public network, connecting,
        and reading the answer.
        """
        signed = {
            **headers,
            "Content-Type": "application/json",
            "X-Flowyard-Signature": signature_header(secret, body),
        }
        try:
            with anyio.fail_after(timeout):
                async with self._client.stream("POST", url, content=body, headers=signed) as resp:
                    data = await _read_capped(resp)
        except AddressBlocked as exc:
            return Outcome("failed", error=f"handler_blocked: {exc}"[:500])
        except TimeoutError:
            return Outcome("failed", error=f"timeout: no answer within {timeout:g}s")
        except httpx.HTTPError as exc:
            return Outcome("failed", error=f"connection_error: {type(exc).__name__}: {exc}"[:500])
        except (httpx.InvalidURL, ValueError) as exc:  # e.g. a host that is not valid IDNA
            return Outcome("failed", error=f"invalid_url: {exc}"[:500])
        return _classify(resp.status_code, data)

    async def send(
        self, url: str, body: bytes, headers: dict[str, str], secret: str, timeout: float
    ) -> Sent:
        """POST a webhook delivery signed with ``secret``; the answer's status and snippet."""
        signed = {
            **headers,
            "Content-Type": "application/json",
            "X-Flowyard-Signature": signature_header(secret, body),
        }
        started = time.monotonic()
        status: int | None = None
        snippet: str | None = None
        error: str | None = None
        try:
            with anyio.fail_after(timeout):
                async with self._client.stream("POST", url, content=body, headers=signed) as resp:
                    status = resp.status_code
                    data = await _read_snippet(resp, SNIPPET_BYTES)
                    snippet = data.decode("utf-8", errors="replace")
        except AddressBlocked as exc:
            error = f"handler_blocked: {exc}"[:500]
        except TimeoutError:
            status, error = None, f"timeout: no answer within {timeout:g}s"
        except httpx.HTTPError as exc:
            status, error = None, f"connection_error: {type(exc).__name__}: {exc}"[:500]
        except (httpx.InvalidURL, ValueError) as exc:
            error = f"invalid_url: {exc}"[:500]
        duration = int((time.monotonic() - started) * 1000)
        return Sent(status, snippet, error, duration)


async def _read_snippet(resp: httpx.Response, size: int) -> bytes:
    """The first ``size`` bytes of the body; the rest is not read."""
    data = b""
    async for chunk in resp.aiter_bytes():
        data += chunk
        if len(data) >= size:
            break
    return data[:size]


async def _read_capped(resp: httpx.Response) -> bytes | None:
    """The body, or None when it is over the result size limit."""
    chunks, size = [], 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESULT_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


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
