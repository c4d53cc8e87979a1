"""FairSlots: slots granted round-robin among keys, cancellation-safe."""

from __future__ import annotations

import asyncio

import pytest

from libs.common.fair_slots import FairSlots


def test_a_keys_one_waiter_is_served_before_another_keys_queue() -> None:
    async def main() -> list[str]:
        slots = FairSlots(1)
        order: list[str] = []
        release = asyncio.Event()

        async def work(key: str, n: int) -> None:
            async with slots.hold(key):
                order.append(f"{key}{n}")
                if not release.is_set():
                    await release.wait()

        first = asyncio.create_task(work("a", 0))
        await asyncio.sleep(0)  # a0 holds the only slot
        tasks = [asyncio.create_task(work("a", n)) for n in range(1, 6)]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(work("b", 0)))
        await asyncio.sleep(0)
        assert slots.waiting == 6
        release.set()
        await asyncio.gather(first, *tasks)
        return order

    # First come, first served would run b0 last.
    assert asyncio.run(main()) == ["a0", "a1", "b0", "a2", "a3", "a4", "a5"]


def test_a_cancelled_waiter_gives_up_its_place_and_slots_are_not_lost() -> None:
    async def main() -> None:
        slots = FairSlots(2)
        gate = asyncio.Event()

        async def hold(key: str) -> None:
            async with slots.hold(key):
                await gate.wait()

        holders = [asyncio.create_task(hold("a")) for _ in range(2)]
        await asyncio.sleep(0)
        waiter = asyncio.create_task(hold("b"))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert slots.waiting == 0
        gate.set()
        await asyncio.gather(*holders)
        # Both slots are free again: two can hold at once without waiting.
        gate.clear()
        again = [asyncio.create_task(hold("c")) for _ in range(2)]
        await asyncio.sleep(0)
        assert slots.waiting == 0
        gate.set()
        await asyncio.gather(*again)

    asyncio.run(main())
