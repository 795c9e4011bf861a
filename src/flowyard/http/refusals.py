"""How a connection ends when its client oversteps a limit of time or form.

One timer per connection closes it when idle too long or answers ``408`` to a head or body
that comes too slowly; another drops a connection whose answer goes unread. A refused
request is answered after the answers to the requests before it, then the connection is
closed without resetting it on a client still sending. :class:`HttpProtocol
<flowyard.http.protocol.HttpProtocol>` holds the state these read and write.
"""

import asyncio
import contextlib
import logging
import socket
import struct
from collections import deque

from flowyard.http import limits
from flowyard.http.exchange import Exchange
from flowyard.logs import request_id_from

log = logging.getLogger("flowyard.http.protocol")

_RESET = struct.pack("ii", 1, 0)
"""``SO_LINGER`` on, for 0 seconds: closing the socket resets the connection."""


class Refusals:
    """The timers and refusals of one connection (see the module's docstring).

    Not an ``asyncio.Protocol`` subclass (the event loop only calls the methods): compiled by
    mypyc, a subclass of a Python class would take weak references it never clears.
    """

    read_timeout: float
    timed_out: bytes
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport | None
    client: tuple[str, int] | None
    keep_alive_seconds: float
    parsing: Exchange | None
    answering: Exchange | None
    waiting: deque[Exchange]
    reading_paused: bool
    last_read: float
    head_since: float | None
    refusal: bytes | None
    idle_since: float | None
    timer: asyncio.TimerHandle | None
    timer_due: float
    write_timer: asyncio.TimerHandle | None
    lingering: bool
    sent_id: bytes | None

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _pause_reading(self) -> None:
        raise NotImplementedError

    def _arm(self, due: float, now: float) -> None:
        """Have :meth:`_check` run at ``due`` at the latest."""
        if self.timer is not None:
            if self.timer_due <= due:
                return
            self.timer.cancel()
        self.timer_due = due
        self.timer = self.loop.call_later(due - now, self._check)

    def _check(self) -> None:
        """Close an idle connection, or answer ``408`` to one that sends too slowly; else
        look again when that could next happen.

        One timer per connection, armed when it goes idle or a request begins and left to
        run while it is busy: arming and cancelling one per request cost more than the
        rest of the check. Nothing is due while the app answers or reading is paused.
        """
        self.timer = None
        now = self.loop.time()
        if self.idle_since is not None:
            due = self.idle_since + self.keep_alive_seconds
            if due <= now:
                self.close()
                return
        elif self.reading_paused:
            return  # held up here, not by the client: resuming arms the timer again
        elif self.head_since is not None:
            due = self.head_since + self.read_timeout
        elif self.parsing is not None and self.parsing.more_body:
            due = self.last_read + self.read_timeout
        else:
            return  # the app answers: the next request or idle spell arms the timer again
        if due <= now:
            self._refuse(self.timed_out)
        else:
            self._arm(due, now)

    def _unread(self) -> None:
        """The client read nothing of the answer for the write timeout: drop it all now.

        The connection is reset (``SO_LINGER`` of 0), not closed: a close would leave what
        the kernel still holds of the answer queued, for a client that does not read, until
        the kernel gives up on it.
        """
        self.write_timer = None
        log.debug("dropping a connection whose answer %s does not read", self.client)
        transport = self.transport
        if transport is None:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        transport.abort()

    def _refuse(self, answer: bytes) -> None:
        """Answer a request that is broken, over a limit or too slow, then close.

        The answers to the requests before it go first; the request itself (if its head was
        parsed) is dropped: the app sees the client leave. The answer carries the request's
        id: its exchange's when its head was parsed, else the sane ``X-Request-Id`` read so
        far, else a new one.
        """
        bad, self.parsing = self.parsing, None
        rid = bad.request_id if bad is not None else request_id_from(self.sent_id)
        answer = answer.replace(b"\r\n", b"\r\nx-request-id: %s\r\n" % rid.encode(), 1)
        log.debug(
            "refused a request from %s: %r", self.client, answer[:12], extra={"request_id": rid}
        )
        self.head_since = None
        self.refusal = answer
        self._pause_reading()  # nothing after a broken request is read
        if bad is not None:
            bad.disconnected = True
            bad.wake()
            if bad.complete or bad.wrote:
                self.close()  # its answer is (partly) out: nothing can follow it
                return
            if bad is self.answering:
                self.answering = None
            elif bad in self.waiting:
                self.waiting.remove(bad)  # the last one: its turn has not come
        if self.answering is None:
            self._send_refusal(answer)

    def _send_refusal(self, answer: bytes) -> None:
        """Send the last answer, then close without resetting the connection on the client.

        A client still sending (a 64 MiB header, a body after a refused head) would have its
        kernel reset a connection closed on bytes it sent, and drop the answer unread. So the
        sending side is shut and what still arrives is read and thrown away, for at most
        :data:`limits.LINGER_SECONDS`, before the connection closes (RFC 9112 §9.6).
        """
        self.write(answer)
        transport = self.transport
        if transport is None or transport.is_closing() or not transport.can_write_eof():
            self.close()
            return
        transport.write_eof()
        self.lingering = True
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(limits.LINGER_SECONDS, self.close)
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
