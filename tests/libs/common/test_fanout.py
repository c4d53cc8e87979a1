"""The waiters' fan-out against a real Valkey: many watches, a few connections, nothing lost."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from libs.common import keys
from libs.common.decode import as_text
from libs.common.fanout import Fanout, hash_tag
from libs.common.keys import Partition
from libs.common.watch import DirectReads, Entry, Watch, Watcher

NAME = "documind-test-waiters"
# Longer than any test's patience: a watch served in time was not served by a timeout.
LONG_BLOCK_MS = 60_000


def stream(partition: int, n: int) -> str:
    return keys.job(keys.new_id(Partition(partition))).events + f":{n}"


async def waiter_connections(r: aioredis.Redis) -> int:
    clients: Any = await r.client_list()
    return sum(1 for c in clients if c.get("name") == NAME)


async def take(watch: Watch, n: int, timeout_s: float = 10) -> list[Entry]:
    """The next ``n`` entries of ``watch``, failing when they do not come in time."""
    got: list[Entry] = []
    while len(got) < n:
        more = await watch.next(timeout_s)
        assert more, f"only {len(got)} of {n} entries came"
        got += more
    return got


def run(valkey_url: str, test: Callable[[Fanout, aioredis.Redis], Awaitable[None]], readers: int = 2) -> None:
    async def main() -> None:
        r = aioredis.Redis.from_url(valkey_url)
        fanout = Fanout.from_url(valkey_url, readers=readers, block_ms=LONG_BLOCK_MS, client_name=NAME)
        try:
            await test(fanout, r)
        finally:
            await fanout.aclose()
            await r.aclose()

    asyncio.run(main())


def test_hundreds_of_watches_get_every_entry_in_order_over_a_few_connections(valkey_url: str) -> None:
    async def test(fanout: Fanout, r: aioredis.Redis) -> None:
        names = [stream(i % 3, i) for i in range(300)]

        async def follow(key: str) -> list[str]:
            async with fanout.watch(key, "0-0") as watch:
                return [fields[b"n"].decode() for _, fields in await take(watch, 5)]

        followers = [asyncio.create_task(follow(key)) for key in names]
        async with r.pipeline(transaction=False) as pipe:
            for n in range(5):
                for key in names:
                    pipe.xadd(key, {"n": str(n)})
            await pipe.execute()
        assert await asyncio.gather(*followers) == [["0", "1", "2", "3", "4"]] * len(names)
        # Two readers for each of the three partitions' slots, and one to wake them.
        assert await waiter_connections(r) <= 2 * 3 + 1
        assert fanout.watching == 0

    run(valkey_url, test)


def test_a_new_watch_is_read_at_once_though_its_reader_is_blocked(valkey_url: str) -> None:
    async def test(fanout: Fanout, r: aioredis.Redis) -> None:
        first, second = stream(0, 1), stream(0, 2)
        async with fanout.watch(first, "0-0") as a:
            await r.xadd(first, {"n": "1"})
            assert len(await take(a, 1)) == 1  # the only reader now blocks for a minute
            async with fanout.watch(second, "0-0") as b:
                await r.xadd(second, {"n": "2"})
                assert [f[b"n"] for _, f in await take(b, 1, timeout_s=5)] == [b"2"]

    run(valkey_url, test, readers=1)


def test_watches_of_one_stream_each_get_what_comes_after_their_own_id(valkey_url: str) -> None:
    async def test(fanout: Fanout, r: aioredis.Redis) -> None:
        key = stream(0, 1)
        ids = [as_text(await r.xadd(key, {"n": str(n)})) for n in range(4)]
        async with fanout.watch(key, "0-0") as everything:
            assert [i for i, _ in await take(everything, 4)] == ids
            # Joins while the read from ids[3] is in flight, and an entry ends that read
            # (most likely before the wake does): the newcomer still gets ids[2:] first.
            async with fanout.watch(key, ids[1]) as resumed:
                last = as_text(await r.xadd(key, {"n": "4"}))
                assert [i for i, _ in await take(resumed, 3)] == [*ids[2:], last]
                assert [i for i, _ in await take(everything, 1)] == [last]
            assert fanout.watching == 1
        assert fanout.watching == 0

    run(valkey_url, test)


def test_a_cancelled_waiter_leaves_nothing_behind(valkey_url: str) -> None:
    async def test(fanout: Fanout, r: aioredis.Redis) -> None:
        entered = asyncio.Event()

        async def wait_forever(key: str) -> None:
            async with fanout.watch(key, "0-0") as watch:
                entered.set()
                await watch.next(3600)

        task = asyncio.create_task(wait_forever(stream(0, 1)))
        await entered.wait()
        assert fanout.watching == 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert fanout.watching == 0

    run(valkey_url, test)


def test_a_reader_whose_connection_is_killed_reads_on_without_losing_entries(valkey_url: str) -> None:
    async def test(fanout: Fanout, r: aioredis.Redis) -> None:
        key = stream(0, 1)
        async with fanout.watch(key, "0-0") as watch:
            await r.xadd(key, {"n": "0"})
            assert len(await take(watch, 1)) == 1
            assert await r.client_kill_filter(_type="normal", skipme=True) >= 1
            await r.xadd(key, {"n": "1"})
            await r.xadd(key, {"n": "2"})
            assert [f[b"n"] for _, f in await take(watch, 2)] == [b"1", b"2"]

    run(valkey_url, test, readers=1)


@pytest.mark.parametrize("source", ["fanout", "direct"])
def test_both_sources_time_out_on_a_quiet_stream(valkey_url: str, source: str) -> None:
    async def test(fanout: Fanout, r: aioredis.Redis) -> None:
        watcher: Watcher = fanout if source == "fanout" else DirectReads(r)
        async with watcher.watch(stream(0, 1), "0-0") as watch:
            assert await watch.next(0.05) == []

    run(valkey_url, test)


def test_a_stream_must_name_its_slot() -> None:
    assert hash_tag(keys.job("p7-ab").done) == "{p7}"
    with pytest.raises(ValueError, match="hash tag"):
        hash_tag("documind:plain")
    with pytest.raises(ValueError, match="hash tag"):
        hash_tag("documind:{}:empty")
