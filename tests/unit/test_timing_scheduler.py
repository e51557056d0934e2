"""The completion scheduler: the due-time heap with a fake clock, then the timerfd and the
trio task on the real clock (ordering and firing asserted, never how late)."""

from __future__ import annotations

import time

import pytest
import trio

from ocssd_vfu.timing.scheduler import CompletionScheduler, DueQueue
from ocssd_vfu.timing.timerfd import Timerfd


def test_due_queue_runs_what_is_due_earliest_first_then_in_order_added() -> None:
    queue, ran = DueQueue(), []
    for due, name in ((300, "c"), (100, "a"), (200, "b1"), (200, "b2"), (400, "d")):
        queue.add(due, lambda name=name: ran.append(name))
    assert queue.next_due() == 100
    assert queue.run_due(99) == 0
    assert queue.run_due(300) == 4
    assert ran == ["a", "b1", "b2", "c"]
    assert queue.next_due() == 400
    assert len(queue) == 1


def test_a_callback_may_schedule_one_that_is_already_due() -> None:
    queue, ran = DueQueue(), []
    queue.add(10, lambda: (ran.append("first"), queue.add(5, lambda: ran.append("second"))))
    assert queue.run_due(10) == 2
    assert ran == ["first", "second"]
    assert queue.next_due() is None


def test_timerfd_expires_at_a_past_deadline_at_once_and_not_when_disarmed() -> None:
    timer = Timerfd()
    try:
        assert not timer.clear()
        timer.arm(time.monotonic_ns() - 1_000)
        assert timer.clear()
        assert not timer.clear()
        timer.arm(time.monotonic_ns() + 10 * 1_000_000_000)
        timer.disarm()
        assert not timer.clear()
    finally:
        timer.close()


async def fire(scheduler: CompletionScheduler, offsets_us: dict[str, int]
               ) -> tuple[list[str], dict[str, int], dict[str, int], int]:
    """Schedule each name at now + its offset, run until all fired; (order, due, fired at,
    batches)."""
    order: list[str] = []
    due: dict[str, int] = {}
    fired: dict[str, int] = {}
    batches = 0
    everything = trio.Event()

    def done(name: str) -> None:
        fired[name] = time.monotonic_ns()
        order.append(name)
        if len(order) == len(offsets_us):
            everything.set()

    def batch() -> None:
        nonlocal batches
        batches += 1

    start = time.monotonic_ns()
    for name, offset in offsets_us.items():
        due[name] = start + offset * 1000
        scheduler.schedule(due[name], lambda name=name: done(name))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(scheduler.run, batch)
            await everything.wait()
            nursery.cancel_scope.cancel()
    return order, due, fired, batches


@pytest.mark.timeout(30)
@pytest.mark.parametrize("lead_ns", [0, 100_000])
def test_completions_fire_in_due_order_and_never_early(lead_ns: int) -> None:
    scheduler = CompletionScheduler(lead_ns=lead_ns)
    try:
        order, due, fired, batches = trio.run(fire, scheduler, {"c": 300, "a": 200, "b": 250})
    finally:
        scheduler.close()
    assert order == ["a", "b", "c"]
    assert all(fired[name] >= due[name] for name in order)
    assert 1 <= batches <= 3


@pytest.mark.timeout(30)
def test_an_earlier_completion_rearms_the_timer_while_the_task_sleeps() -> None:
    scheduler = CompletionScheduler()
    fired: list[str] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(scheduler.run)
            scheduler.schedule(time.monotonic_ns() + 3600 * 1_000_000_000,
                               lambda: fired.append("an hour later"))
            await trio.sleep(0.01)  # run() is asleep on the hour-long deadline
            near = trio.Event()
            scheduler.schedule(time.monotonic_ns() + 200_000,
                               lambda: (fired.append("200 µs later"), near.set()))
            with trio.fail_after(10):
                await near.wait()
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        scheduler.close()
    assert fired == ["200 µs later"]
    assert len(scheduler.queue) == 1


@pytest.mark.timeout(30)
def test_waiting_for_a_far_deadline_is_one_wakeup_not_a_busy_loop() -> None:
    scheduler = CompletionScheduler()
    try:
        order, _, _, _ = trio.run(fire, scheduler, {"only": 50_000})
    finally:
        scheduler.close()
    assert order == ["only"]
    assert scheduler.wakeups <= 2


@pytest.mark.timeout(30)
def test_a_shared_queue_filled_by_its_owner_is_served_after_rearm() -> None:
    queue = DueQueue()   # as the controller would hold its held completions
    scheduler = CompletionScheduler(queue=queue)
    fired: list[int] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(scheduler.run)
            await trio.sleep(0.01)  # run() is asleep with nothing armed
            done = trio.Event()
            for n in (2, 1):
                queue.add(time.monotonic_ns() + n * 100_000,
                          lambda n=n: (fired.append(n), n == 2 and done.set()))
            scheduler.rearm()
            with trio.fail_after(10):
                await done.wait()
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    finally:
        scheduler.close()
    assert fired == [1, 2]
