"""Bounded mailboxes with ``tell`` (fire and forget) and ``ask`` (request and reply).

An ``ask`` carries a one-shot reply stream in its envelope; the actor sends the reply (or the
exception) on it and closes it. A full mailbox raises :class:`MailboxFull` at once instead of
growing memory, and counts the refusal in ``flowyard_mailbox_full_total`` when given it.
"""

import contextlib
from typing import Any, Generic, TypeVar

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from flowyard.errors import MailboxFull, Unavailable
from flowyard.metrics import Count

M = TypeVar("M")

ASK_TIMEOUT_SECONDS = 30.0


class Envelope(msgspec.Struct, Generic[M]):
    """A message and, for an ``ask``, where to send the reply."""

    message: M
    reply_to: MemoryObjectSendStream[Any] | None = None


class Mailbox(Generic[M]):
    """A bounded queue of envelopes for one actor."""

    def __init__(self, size: int, full: Count | None = None) -> None:
        send, receive = anyio.create_memory_object_stream[Envelope[M]](size)
        self._send = send
        self._full = full  # counts the messages refused
        self.receive: MemoryObjectReceiveStream[Envelope[M]] = receive

    def tell(self, message: M) -> None:
        """Deliver ``message`` without waiting for it to be handled."""
        self._put(Envelope(message))

    async def ask(self, message: M, timeout: float = ASK_TIMEOUT_SECONDS) -> Any:
        """Deliver ``message`` and wait for the actor's reply (or its exception)."""
        reply_send, reply_receive = anyio.create_memory_object_stream[Any](1)
        try:
            self._put(Envelope(message, reply_send))
        except BaseException:
            reply_send.close()  # never queued: close both ends (else a ResourceWarning leaks)
            reply_receive.close()
            raise
        with anyio.fail_after(timeout), reply_receive:
            try:
                outcome = await reply_receive.receive()
            except anyio.EndOfStream:
                raise Unavailable("the actor stopped before replying") from None
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _put(self, envelope: Envelope[M]) -> None:
        try:
            self._send.send_nowait(envelope)
        except anyio.WouldBlock:
            if self._full is not None:
                self._full.inc()
            raise MailboxFull("mailbox full") from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise Unavailable("shutting down") from None

    def close(self) -> None:
        """Take no more messages; the actor handles what is queued, then stops."""
        self._send.close()


def reply(envelope: Envelope[Any], outcome: Any) -> None:
    """Answer an ``ask`` (no-op for a ``tell``) and close the reply stream."""
    if envelope.reply_to is None:
        return
    # The asker may have given up (timeout or disconnect): then nobody needs the reply.
    gone = (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError)
    with envelope.reply_to, contextlib.suppress(*gone):
        envelope.reply_to.send_nowait(outcome)
