"""``documind init-streams``: create every partition's stage streams and consumer groups.

A worker creates its groups as it starts (``Worker.ensure_group``), but a stage
scaled to zero has no worker: nothing would create them, the gateway's ``/readyz``
(which looks for every group of every partition) would never pass, and an
autoscaler that reads a group would find none. Run before the workers (in
Kubernetes, the gateway pods' init container), this creates, in every partition,
the group of each stage on each lane's stream: the interactive stream, the default
tenant's bulk stream and the bulk stream of every tenant already in the partition's
set of bulk tenants. Groups start at id 0, so entries queued before them are kept;
an existing group is left as it is, so running it again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from libs.common.constants import BULK, STAGE_LANES
from libs.common.decode import as_text
from libs.common.fair_read import create_group
from libs.common.keys import DEFAULT_TENANT, KeySpace, Partition, Stage, group_name


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """One consumer group on one stream."""

    stream: str
    group: str


async def stream_groups(client: aioredis.Redis, partition: Partition) -> list[GroupSpec]:
    """The groups every stage of ``partition`` reads through, on the streams they read."""
    specs: list[GroupSpec] = []
    for stage, lanes in STAGE_LANES.items():
        group = group_name(stage)
        for lane in lanes:
            specs.append(GroupSpec(partition.stream(stage, lane), group))
            if lane == BULK:
                specs += [GroupSpec(s, group) for s in await _other_tenants(client, partition, stage)]
    return specs


async def _other_tenants(client: aioredis.Redis, partition: Partition, stage: Stage) -> list[str]:
    """The bulk streams of the tenants (other than the default one) that queued bulk work."""
    members: Any = await client.smembers(partition.bulk_tenants(stage))
    tenants = sorted({as_text(m) for m in members} - {DEFAULT_TENANT})
    return [partition.stream(stage, BULK, tenant) for tenant in tenants]


async def init_streams(client: aioredis.Redis, partitions: int) -> list[GroupSpec]:
    """Create (where missing) every group of every partition; the groups, in order."""
    done: list[GroupSpec] = []
    for partition in KeySpace(partitions).all():
        for spec in await stream_groups(client, partition):
            await create_group(client, spec.stream, spec.group)
            done.append(spec)
    return done
