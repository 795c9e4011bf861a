"""Per-project accounts: token balances, usage and request rate limits, kept in memory.

Every call is checked here without a round trip to SQLite: the rate limit (a token bucket of
``rate_limit_rps`` with one second of burst) and the token balance. Charges and usage are
written behind, once a second, as deltas (``token_balance = token_balance - spent``), so that
a balance changed meanwhile by the CLI or another process is not overwritten; the projects'
settings are read back at the same pace. A ``kill -9`` can therefore lose up to a second of
charges and usage counts (never a balance set by an admin: that is committed before it is
answered).
"""

import logging
import math
from types import TracebackType

import anyio
from anyio.abc import TaskStatus

from flowyard.billing import format_tokens
from flowyard.clock import SYSTEM_CLOCK, Clock
from flowyard.errors import InsufficientTokens, Unavailable
from flowyard.storage import accounts as store
from flowyard.storage.intents import Intent
from flowyard.storage.port import Store

log = logging.getLogger("flowyard.accounts")

SYNC_SECONDS = 1.0
MAX_WAIT_SECONDS = 86_400.0
"""The longest wait a rate limit announces: a tiny rate would overflow a float."""

RateHeaders = list[tuple[bytes, bytes]]
Usage = dict[tuple[str, int, str], list[int]]


class Account:
    """One project's balance, its unwritten spending, and its rate bucket."""

    __slots__ = ("balance", "bucket", "bucket_at", "committing", "rate", "unwritten", "version")

    def __init__(self, balance: int | None, rate: float | None, at: float = 0.0) -> None:
        self.balance = balance  # nanotokens left, None = unlimited
        self.unwritten = 0  # spent since the last write-behind
        self.rate = rate  # requests per second, None = no limit
        self.bucket = float(max(1.0, rate or 1.0))
        self.bucket_at = at  # the clock's monotonic seconds when the bucket was filled
        self.version = 0  # bumped when an admin changes the settings here
        self.committing = 0  # an admin's changes on their way to the file


class Accounts:
    """Every project's :class:`Account`, and the task that keeps SQLite in step."""

    def __init__(self, db: Store, clock: Clock = SYSTEM_CLOCK) -> None:
        self.db = db
        self.clock = clock
        self._accounts: dict[str, Account] = {}
        self._usage: Usage = {}  # (project, day, family) -> [calls, nanotokens]
        self._writing: Usage = {}  # handed to the writer, not committed yet
        # A usage read and a write-behind do not interleave: else a read could see rows the
        # write just committed and also the same counts still in ``_writing`` (or neither).
        self._usage_lock = anyio.Lock()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Load every project, then write behind and read back once a second until cancelled."""
        await self.refresh()
        task_status.started()
        try:
            while True:
                await anyio.sleep(SYNC_SECONDS)
                try:
                    await self.write_behind()
                    await self.refresh()
                except Unavailable as exc:  # storage failing: what is unwritten waits
                    log.warning("could not sync project accounts: %s", exc)
                except Exception:
                    log.exception("could not sync project accounts")
        finally:
            with anyio.CancelScope(shield=True):
                await self.write_behind()

    async def write_behind(self) -> None:
        """Commit the spending and usage counted since the last call."""
        ops: list[Intent] = []
        spent: dict[str, int] = {}
        for project_id, account in self._accounts.items():
            if account.unwritten:
                ops.append(store.spend(project_id, account.unwritten))
                spent[project_id], account.unwritten = account.unwritten, 0
        async with self._usage_lock:
            self._writing, self._usage = self._usage, {}
            ops += [store.add_usage(*key, *counts) for key, counts in self._writing.items()]
            try:
                await self.db.commit(ops)
            except BaseException:
                # Not written (storage failing): keep it for the next write-behind.
                for project_id, nanos in spent.items():
                    self._accounts[project_id].unwritten += nanos
                for key, (calls, nanos) in self._writing.items():
                    counts = self._usage.setdefault(key, [0, 0])
                    counts[0] += calls
                    counts[1] += nanos
                raise
            finally:
                self._writing = {}

    async def refresh(self) -> None:
        """Read every project's balance and rate limit (what is unwritten stays deducted).

        An account an admin changes meanwhile (its version moves) keeps what the admin set.
        """
        versions = {pid: account.version for pid, account in self._accounts.items()}
        for project_id, balance, rate in await store.all_settings(self.db):
            account = self._accounts.get(project_id)
            if account is None:
                self._accounts[project_id] = Account(balance, rate, self.clock.monotonic())
            elif account.version == versions.get(project_id) and not account.committing:
                # (else an admin has just set it, and the file may not show it yet)
                account.balance = None if balance is None else max(0, balance - account.unwritten)
                self._set_rate(account, rate)

    def get(self, project_id: str) -> Account | None:
        """The project's account if it is loaded (the hot path: no await)."""
        return self._accounts.get(project_id)

    async def load(self, project_id: str) -> Account:
        """The project's account, read from SQLite on first use (e.g. a project made by the CLI)."""
        account = self._accounts.get(project_id)
        if account is None:
            settings = await store.project_settings(self.db, project_id)
            balance, rate = settings if settings else (None, None)
            account = self._accounts.setdefault(
                project_id, Account(balance, rate, self.clock.monotonic())
            )
        return account

    # ----------------------------------------------------------------- rate limits

    def admit(self, account: Account) -> tuple[RateHeaders, int | None]:
        """Take one request from the bucket: the ``X-RateLimit-*`` headers, and the seconds to
        wait (``Retry-After``) when the bucket is empty. No headers for an unlimited project."""
        rate = account.rate
        if rate is None:
            return [], None
        now = self.clock.monotonic()
        capacity = max(1.0, rate)
        tokens = min(capacity, account.bucket + (now - account.bucket_at) * rate)
        account.bucket_at = now
        retry_after = None
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            retry_after = max(1, math.ceil(min((1.0 - tokens) / rate, MAX_WAIT_SECONDS)))
        account.bucket = tokens
        reset = math.ceil(
            self.clock.now_ms() / 1000 + min((capacity - tokens) / rate, MAX_WAIT_SECONDS)
        )
        headers = [
            (b"x-ratelimit-limit", _number(rate).encode()),
            (b"x-ratelimit-remaining", str(int(tokens)).encode()),
            (b"x-ratelimit-reset", str(reset).encode()),
        ]
        return headers, retry_after

    def set_rate(self, project_id: str, rate: float | None) -> Intent:
        """An admin sets the limit: memory now, and the write to commit before answering."""
        account = self._accounts.setdefault(project_id, Account(None, rate, self.clock.monotonic()))
        account.version += 1
        self._set_rate(account, rate)
        return store.set_rate(project_id, rate)

    def _set_rate(self, account: Account, rate: float | None) -> None:
        if rate != account.rate:
            account.rate = rate
            account.bucket = float(max(1.0, rate or 1.0))
            account.bucket_at = self.clock.monotonic()

    # ----------------------------------------------------------------- tokens and usage

    def count_call(self, project_id: str, family: str) -> None:
        """Count one call of the project in today's usage."""
        self._counts(project_id, family)[0] += 1

    def charge(self, project_id: str, nanos: int, family: str) -> None:
        """Take ``nanos`` from the balance, or raise 402 and take nothing."""
        if nanos <= 0:
            return
        account = self._accounts.get(project_id)
        if account is not None and account.balance is not None:
            if account.balance < nanos:
                raise InsufficientTokens(
                    f"this call costs {format_tokens(nanos)} tokens and the balance is"
                    f" {format_tokens(account.balance)}"
                )
            account.balance -= nanos
            account.unwritten += nanos
        self._counts(project_id, family)[1] += nanos

    def refund(self, project_id: str, nanos: int, family: str) -> None:
        """Give back a charge whose write failed."""
        if nanos <= 0:
            return
        account = self._accounts.get(project_id)
        if account is not None and account.balance is not None:
            account.balance += nanos
            account.unwritten -= nanos
        self._counts(project_id, family)[1] -= nanos

    def can_pay(self, project_id: str, nanos: int) -> bool:
        """Whether a charge of ``nanos`` would go through."""
        account = self._accounts.get(project_id)
        return account is None or account.balance is None or account.balance >= nanos

    def paying(self, project_id: str, nanos: int, family: str) -> "_Paying":
        """Charge now (402 if the balance is short); refund if the ``with`` block fails."""
        self.charge(project_id, nanos, family)
        return _Paying(self, project_id, nanos, family)

    def set_balance(self, project_id: str, nanos: int | None) -> Intent:
        """An admin sets the balance: memory now, and the write to commit before answering."""
        account = self._accounts.setdefault(project_id, Account(None, None, self.clock.monotonic()))
        account.version += 1
        account.balance = nanos
        account.unwritten = 0
        return store.set_balance(project_id, nanos)

    async def commit_settings(self, project_id: str, ops: list[Intent]) -> None:
        """Commit an admin's :meth:`set_balance` / :meth:`set_rate` writes.

        Until they are committed, and once more after (the version moves again), a read-back
        of the file may hold the old values: :meth:`refresh` leaves the account alone then.
        """
        account = self._accounts.get(project_id)
        if account is None:
            await self.db.commit(ops)
            return
        account.committing += 1
        try:
            await self.db.commit(ops)
            account.version += 1
        finally:
            account.committing -= 1

    def balance(self, project_id: str) -> int | None:
        """The balance left, in nanotokens (None: unlimited)."""
        account = self._accounts.get(project_id)
        return None if account is None else account.balance

    def rate(self, project_id: str) -> float | None:
        """The project's rate limit in requests per second (None: none)."""
        account = self._accounts.get(project_id)
        return None if account is None else account.rate

    async def usage(self, project_id: str) -> list[store.UsageRow]:
        """The project's usage per day and family, stored and not yet written, oldest first."""
        async with self._usage_lock:
            rows = {(r.day, r.family): r for r in await store.usage(self.db, project_id)}
            pending = [*self._writing.items(), *self._usage.items()]
        for (pid, day, fam), (calls, nanos) in pending:
            if pid != project_id:
                continue
            row = rows.get((day, fam)) or store.UsageRow(day, fam, 0, 0)
            rows[(day, fam)] = store.UsageRow(day, fam, row.calls + calls, row.nanos + nanos)
        return sorted(rows.values(), key=lambda r: (r.day, r.family))

    def _counts(self, project_id: str, family: str) -> list[int]:
        key = (project_id, self.clock.now_ms() // 86_400_000, family)
        counts = self._usage.get(key)
        if counts is None:
            counts = self._usage[key] = [0, 0]
        return counts


class _Paying:
    """The ``with`` block of :meth:`Accounts.paying` (a class: every transition enters one)."""

    __slots__ = ("accounts", "family", "nanos", "project_id")

    def __init__(self, accounts: Accounts, project_id: str, nanos: int, family: str) -> None:
        self.accounts = accounts
        self.project_id = project_id
        self.nanos = nanos
        self.family = family

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is not None:
            self.accounts.refund(self.project_id, self.nanos, self.family)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
