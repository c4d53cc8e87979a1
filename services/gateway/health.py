"""The probes, public (no key): liveness and readiness."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from redis.exceptions import BusyLoadingError, RedisError, ResponseError

from libs.common.constants import STAGE_LANES
from libs.common.decode import as_text
from libs.common.keys import group_name
from services.gateway.deps import submitter

router = APIRouter()
logger = logging.getLogger(__name__)


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    # "ready" or "unavailable".
    status: str
    # Why not ready.
    reason: str | None = None


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    response_model_exclude_none=True,
    responses={503: {"model": Readiness, "description": "Not ready: `reason` says why"}},
)
async def readyz(request: Request, response: Response) -> dict[str, object]:
    sub = submitter(request)
    r = sub.r
    partitions = sub.space.all()
    missing: list[str] = []
    try:
        await r.ping()
        for partition in partitions:
            for stage, lanes in STAGE_LANES.items():
                for lane in lanes:
                    try:
                        groups = await r.xinfo_groups(partition.stream(stage, lane))
                    except ResponseError:  # no such stream yet
                        groups = []
                    names = {as_text(g["name"]) for g in groups}
                    if group_name(stage) not in names:
                        name = stage if lane == "interactive" else f"{stage}:{lane}"
                        missing.append(name if len(partitions) == 1 else f"{name} ({partition.tag})")
    except BusyLoadingError:
        # Restarted (by `documind up`'s supervisor, say) and still reading its AOF.
        response.status_code = 503
        return {"status": "unavailable", "reason": "valkey is loading its data"}
    except RedisError as exc:
        # The probe is public: the details (addresses) go to the log only.
        logger.warning("readyz: valkey: %s", exc)
        response.status_code = 503
        return {"status": "unavailable", "reason": "valkey does not answer"}
    if missing:
        response.status_code = 503
        return {"status": "unavailable", "reason": f"no consumer group yet for: {', '.join(missing)}"}
    return {"status": "ready"}
