"""FairSlots with a per-key cap: one key never holds every slot, another key's waiter is
served at once, and a capped key's waiters are served as its own slots free."""

from __future__ import annotations

import asyncio

import pytest

from libs.common.fair_slots import FairSlots


def test_a_key_at_its_cap_waits_while_a_slot_stays_free_for_another_key() -> None:
    async def main() -> None:
        slots = FairSlots(2, per_key=1)
        gate = asyncio.Event()
        running: list[str] = []
        capped: list[str] = []

        async def work(key: str, n: int) -> None:
            async with slots.hold(key, on_capped=lambda: capped.append(f"{key}{n}")):
                running.append(f"{key}{n}")
                await gate.wait()

        a = [asyncio.create_task(work("a", n)) for n in range(3)]
        await asyncio.sleep(0)
        # One of a's runs; the others wait although a slot is free, and say so.
        assert running == ["a0"]
        assert capped == ["a1", "a2"]
        assert slots.waiting_keys() == {"a"}
        b = asyncio.create_task(work("b", 0))
        await asyncio.sleep(0)
        assert running == ["a0", "b0"]  # at once: b holds nothing
        assert capped == ["a1", "a2"]
        gate.set()
        await asyncio.gather(*a, b)
        assert running == ["a0", "b0", "a1", "a2"]
        assert slots.waiting_keys() == frozenset()

    asyncio.run(main())


def test_a_capped_keys_waiter_takes_its_own_freed_slot_before_a_later_key() -> None:
    async def main() -> list[str]:
        slots = FairSlots(2, per_key=1)
        order: list[str] = []
        gates = {k: asyncio.Event() for k in ("a0", "a1", "b0", "c0")}

        async def work(key: str, n: int) -> None:
            async with slots.hold(key):
                order.append(f"{key}{n}")
                await gates[f"{key}{n}"].wait()

        tasks = [asyncio.create_task(work("a", 0)), asyncio.create_task(work("a", 1))]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(work("b", 0)))  # takes the second slot
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(work("c", 0)))  # waits: every slot is held
        await asyncio.sleep(0)
        assert slots.waiting_keys() == {"a", "c"}
        gates["a0"].set()  # a's slot frees: a1 had its turn first
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert order == ["a0", "b0", "a1"]
        for gate in gates.values():
            gate.set()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(main()) == ["a0", "b0", "a1", "c0"]


def test_a_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        FairSlots(2, per_key=0)
