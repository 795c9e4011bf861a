"""The timer service on a fake clock: order, wake-ups, replacement, cancellation, bounds."""

from collections.abc import AsyncIterator, Hashable

import anyio
import pytest

from flowyard.actors.timers import Timers
from flowyard.clock import SystemClock
from tests.fake_clock import FakeClock


class Fired:
    """Records fired keys (with the clock's time) and lets a test wait for a count of them."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.keys: list[Hashable] = []
        self.times: list[int] = []
        self.changed = anyio.Event()

    def __call__(self, key: Hashable) -> None:
        self.keys.append(key)
        self.times.append(self.clock.now_ms())
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(5):
            while len(self.keys) < count:
                await self.changed.wait()
                self.changed = anyio.Event()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fired(clock: FakeClock) -> Fired:
    return Fired(clock)


@pytest.fixture
async def timers(clock: FakeClock, fired: Fired) -> AsyncIterator[Timers]:
    """A running timer service on the fake clock."""
    service = Timers(fired, clock)
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        yield service
        tg.cancel_scope.cancel()


async def settle() -> None:
    """Let the timer loop run until it waits again."""
    await anyio.wait_all_tasks_blocked()


async def test_timers_fire_in_due_order_and_never_early(
    timers: Timers, clock: FakeClock, fired: Fired
) -> None:
    now = clock.now_ms()
    dues = {"c": now + 150, "a": now + 30, "d": now + 200, "b": now + 90}
    for key, due in dues.items():
        timers.arm(due, key)
    assert len(timers) == 4
    clock.advance(ms=29)
    await settle()
    assert fired.keys == []
    for step in (1, 60, 60, 50):
        clock.advance(ms=step)
        await settle()
    await fired.wait_for(4)
    assert fired.keys == ["a", "b", "c", "d"]
    for key, at in zip(fired.keys, fired.times, strict=True):
        assert at >= dues[key]
    assert len(timers) == 0


async def test_timers_with_equal_due_fire_in_arming_order(
    timers: Timers, clock: FakeClock, fired: Fired
) -> None:
    due = clock.now_ms() + 20
    # Keys of different types must never be compared with each other.
    keys: list[Hashable] = [("lease", "job_1", None), 7, ("due", 3), "x", None]
    for key in keys:
        timers.arm(due, key)
    clock.advance(ms=20)
    await fired.wait_for(len(keys))
    assert fired.keys == keys


async def test_an_earlier_timer_wakes_a_sleeping_loop(
    timers: Timers, clock: FakeClock, fired: Fired
) -> None:
    timers.arm(clock.now_ms() + 60_000, "late")
    await settle()  # the loop sleeps until the late timer
    timers.arm(clock.now_ms() + 20, "early")
    clock.advance(ms=20)
    await fired.wait_for(1)
    assert fired.keys == ["early"]


async def test_a_past_due_timer_fires_at_once_and_later_ones_still_run(
    timers: Timers, clock: FakeClock, fired: Fired
) -> None:
    timers.arm(clock.now_ms() - 5_000, "overdue")
    await fired.wait_for(1)
    timers.arm(clock.now_ms() + 20, "next")
    clock.advance(ms=20)
    await fired.wait_for(2)
    assert fired.keys == ["overdue", "next"]


async def test_arming_a_key_again_replaces_its_deadline(
    timers: Timers, clock: FakeClock, fired: Fired
) -> None:
    now = clock.now_ms()
    timers.arm(now + 100, "lease")
    timers.arm(now + 300, "lease")  # pushed back
    timers.arm(now + 200, "other")
    assert timers.due("lease") == now + 300
    clock.advance(ms=250)
    await fired.wait_for(1)
    assert fired.keys == ["other"]
    timers.arm(now + 260, "lease")  # brought forward
    clock.advance(ms=10)
    await fired.wait_for(2)
    clock.advance(ms=100)
    await settle()
    assert fired.keys == ["other", "lease"]  # once, not once per arming


async def test_a_cancelled_key_never_fires(timers: Timers, clock: FakeClock, fired: Fired) -> None:
    timers.arm(clock.now_ms() + 10, "gone")
    timers.arm(clock.now_ms() + 20, "kept")
    timers.cancel("gone")
    timers.cancel("never armed")
    clock.advance(ms=50)
    await fired.wait_for(1)
    await settle()
    assert fired.keys == ["kept"]
    assert timers.due("gone") is None


def test_rearming_one_key_keeps_the_heap_bounded(clock: FakeClock, fired: Fired) -> None:
    timers = Timers(fired, clock)
    for index in range(100):
        timers.arm(clock.now_ms() + 3_600_000 + index, ("lease", f"job_{index}", "t"))
    for beat in range(10_000):
        timers.arm(clock.now_ms() + 30_000 + beat, ("lease", "job_long", "t"))
    assert len(timers) == 101
    assert timers.heap_size <= 2 * len(timers)
    for index in range(100):
        timers.cancel(("lease", f"job_{index}", "t"))
    assert timers.heap_size <= max(64, 2 * len(timers))


async def test_the_system_clock_waits_until_a_deadline_or_a_wake() -> None:
    clock = SystemClock()
    woken = anyio.Event()
    woken.set()
    with anyio.fail_after(1):
        await clock.wait(woken, None)  # set already: returns at once
        await clock.wait(anyio.Event(), clock.now_ms() - 1)  # past deadline: at once
    assert abs(clock.monotonic() - clock.monotonic()) < 1
