"""How the workflow engine hands a message to an execution actor.

An idle actor handles the message in the asker's own task: no mailbox, task or reply stream
to create, which is the common case (its log lines then carry the asker's request id and the
execution's id). A busy one gets it through its bounded mailbox (full: 503), drained by one
task until it is empty again.
"""

from typing import Any

import anyio
from anyio.abc import TaskGroup

from flowyard import logs
from flowyard.actors.execution_records import Carry, ExecutionActor
from flowyard.actors.mailbox import Mailbox, reply
from flowyard.errors import Unavailable
from flowyard.metrics import Metrics
from flowyard.settings import Settings
from flowyard.storage.workflows import is_active
from flowyard.workflows.state import Message


class ActorHost:
    """The engine's side of the actors' mailboxes; the engine says how a message is
    processed (``_process``) and drained (``_drain``)."""

    settings: Settings
    metrics: Metrics
    actors: dict[str, ExecutionActor]
    _tg: TaskGroup | None

    async def _process(self, actor: ExecutionActor, message: Message, carry: Carry | None) -> Any:
        raise NotImplementedError

    async def _drain(self, actor: ExecutionActor) -> None:
        raise NotImplementedError

    def _rest(self, actor: ExecutionActor) -> None:
        """The actor is done with its message: drain what arrived meanwhile, or go idle."""
        mailbox = actor.mailbox
        if mailbox is not None and mailbox.receive.statistics().current_buffer_used:
            self._start_drain(actor)
            return
        actor.busy = False
        if mailbox is not None:
            actor.mailbox = None
            mailbox.close()
            mailbox.receive.close()  # found empty just above, with no await since
        if not is_active(actor.state) and self.actors.get(actor.state.id) is actor:
            del self.actors[actor.state.id]  # an ended execution leaves memory

    def _mailbox(self, actor: ExecutionActor) -> Mailbox[tuple[Message, Carry | None]]:
        if actor.mailbox is None:
            actor.mailbox = Mailbox(self.settings.mailbox_size, self.metrics.mailbox_full)
        if not actor.busy:
            self._start_drain(actor)
        return actor.mailbox

    def _start_drain(self, actor: ExecutionActor) -> None:
        if self._tg is None:
            raise Unavailable("starting")
        actor.busy = True
        self._tg.start_soon(self._drain, actor)

    def _turn_away(self) -> None:
        """The engine stopped (a cluster node's shards changed, or shutdown): the messages
        still in the actors' mailboxes are answered 503 now, not at their ask's timeout."""
        stopped = Unavailable("the execution's engine stopped (its shard moved); retry")
        for actor in list(self.actors.values()):
            mailbox = actor.mailbox
            if mailbox is None:
                continue
            actor.mailbox = None
            mailbox.close()
            while True:
                try:
                    reply(mailbox.receive.receive_nowait(), stopped)
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                    break
            mailbox.receive.close()

    def _tell(self, actor: ExecutionActor, message: Message) -> None:
        self._mailbox(actor).tell((message, None))

    async def _ask(
        self, actor: ExecutionActor, message: Message, carry: Carry | None = None
    ) -> Any:
        if actor.busy:
            return await self._mailbox(actor).ask((message, carry))
        # An idle actor handles the message in the asker's task (no mailbox, task or reply
        # stream to create). A transition cannot be cut by a cancellation: its only wait is
        # the commit, which is shielded, and nothing after the commit awaits.
        actor.busy = True
        token = logs.execution_id.set(actor.state.id)  # the asker's request id stays
        try:
            outcome = await self._process(actor, message, carry)
        finally:
            logs.execution_id.reset(token)
            self._rest(actor)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome
