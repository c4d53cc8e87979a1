"""What a stage hands the stream runtime: its handler, its outcomes, its rules.

A stage's work is a :class:`Handler`: a batch of envelopes in, one outcome per
envelope out. An outcome is an :class:`Output` (or a plain payload dict), or an
exception whose type says whether to retry (see ``errors.py``). A stage may also
own a rule for jobs that end in failure (:class:`FailureRule`): the ingest
stages mark the job's document failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from libs.common.commit import Op
from libs.common.envelope import Envelope


@dataclass
class Output:
    """A handler's successful output for one message.

    ``ops`` are applied with the commit that forwards the output; at the last
    stage, with the job's completion.
    """

    payload: dict[str, Any]
    # Applied with the commit (e.g. delete a parsed upload, update a document's hash).
    ops: Sequence[Op] = ()
    # Continue the job at this same stage as these payloads, one bounded message
    # each (a large document's parts), instead of forwarding ``payload``.
    split: Sequence[dict[str, Any]] = ()
    # This message is one of ``parts`` messages of its job: the job's status moves
    # on when the last part is forwarded, and the job completes when the last part
    # finishes the last stage.
    parts: int = 1
    # Applied only with the job's completion, after its final status.
    on_complete: Sequence[Op] = ()
    # Data for the event that says this stage finished its part of the job (e.g. hits).
    event: dict[str, Any] = field(default_factory=dict)
    # More events for the job's stream, (type, data), appended with the commit: at the
    # last stage ahead of the final "done" (e.g. the last answer tokens), else after the
    # stage's own event. Of a job in parts, only the last part's commit writes them.
    events: Sequence[tuple[str, dict[str, Any]]] = ()
    # Events of this message alone, written with its commit even when it is one part of
    # several (ahead of the parts' join): e.g. one part's progress.
    part_events: Sequence[tuple[str, dict[str, Any]]] = ()


Outcome = Output | dict[str, Any] | BaseException


class Handler(Protocol):
    """A stage's work: one outcome per envelope, in order."""

    async def __call__(self, batch: Sequence[Envelope]) -> Sequence[Outcome]: ...


@runtime_checkable
class FailureRule(Protocol):
    """A stage's own writes for a job of its that ends failed, expired or dead-lettered."""

    def on_failure(self, env: Envelope, error: str, now: float) -> list[Op]: ...


def failure_ops(rule: FailureRule | None, env: Envelope, error: str, now: float) -> list[Op]:
    return rule.on_failure(env, error, now) if rule is not None else []
