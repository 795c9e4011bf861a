"""The once-a-second read-back of project settings never undoes an admin's change.

The storage here is a stand-in whose commit the test holds open: what is checked is the
in-memory account while an admin's write is on its way to the file and a read-back of the
file (which still holds the old balance) lands meanwhile.
"""

from typing import Any

import anyio

from flowyard.actors.accounts import Accounts
from flowyard.storage.intents import Intent, SetBalance


class _HeldStorage:
    """Commits wait for ``release``; reads answer what the file held before the change."""

    def __init__(self, balance: int) -> None:
        self.balance = balance
        self.release = anyio.Event()
        self.committing = anyio.Event()

    async def commit(self, intents: list[Intent]) -> None:
        self.committing.set()
        await self.release.wait()
        [intent] = intents
        assert isinstance(intent, SetBalance) and intent.nanos is not None
        self.balance = intent.nanos

    async def fetchall(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        return [("proj_1", self.balance, None)]


async def test_a_read_back_during_an_admin_commit_keeps_the_new_balance() -> None:
    storage = _HeldStorage(balance=800)
    accounts = Accounts(storage)  # type: ignore[arg-type]
    await accounts.refresh()
    assert accounts.balance("proj_1") == 800
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            op = accounts.set_balance("proj_1", 5_000)
            tg.start_soon(accounts.commit_settings, "proj_1", [op])
            await storage.committing.wait()
            await accounts.refresh()  # reads 800: the commit has not landed
            assert accounts.balance("proj_1") == 5_000
            storage.release.set()
    assert accounts.balance("proj_1") == 5_000
    await accounts.refresh()  # the file holds it now
    assert accounts.balance("proj_1") == 5_000
