"""How the workflow engine hands a message to an execution actor.

An idle actor handles the message in the asker's own task: no mailbox, task or reply stream
to create, which is the common case (its log lines then carry the asker's request id and the
execution's id). A busy one gets it through its bounded mailbox (full: 503), drained by one
task until it is empty again.
"""

from typing import Any

from anyio.abc import TaskGroup

from flowyard import logs
from flowyard.actors.execution_records import Carry, ExecutionActor
from flowyard.actors.mailbox import Mailbox
from flowyard.errors import Unavailable
from flowyard.metrics import Metrics
from flowyard.settings import Settings
from flowyard.workflows.state import Message


class ActorHost:
    """The engine's side of the actors' mailboxes; the engine says how a message is
    processed (``_process``), drained (``_drain``) and what an actor does once idle
    (``_rest``)."""

    settings: Settings
    metrics: Metrics
    _tg: TaskGroup | None

    async def _process(self, actor: ExecutionActor, message: Message, carry: Carry | None) -> Any:
        raise NotImplementedError

    async def _drain(self, actor: ExecutionActor) -> None:
        raise NotImplementedError

    def _rest(self, actor: ExecutionActor) -> None:
        raise NotImplementedError

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
