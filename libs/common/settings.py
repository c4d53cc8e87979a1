"""Typed settings: one class per service on a shared base, env prefix ``DOCUMIND_``.

Each service builds its settings once at start-up and passes them down. The classes
live one concern a module, and every name is imported from here:

  settings_base.py       CommonSettings (every process), WorkerSettings (every worker)
  settings_gateway.py    GatewaySettings, the operator key's rules, the rate limit's bound
  settings_embedder.py   EmbedderSettings
  settings_retriever.py  RetrieverSettings
  settings_generator.py  GeneratorSettings
"""

from __future__ import annotations

from libs.common.settings_base import CommonSettings, WorkerSettings
from libs.common.settings_embedder import EmbedderSettings
from libs.common.settings_gateway import (
    ADMIN_KEY_MIN_CHARS,
    MAX_REQUESTS_PER_MINUTE,
    GatewaySettings,
    admin_key_problem,
    is_loopback,
)
from libs.common.settings_generator import GeneratorSettings
from libs.common.settings_retriever import RetrieverSettings

__all__ = [
    "ADMIN_KEY_MIN_CHARS",
    "MAX_REQUESTS_PER_MINUTE",
    "CommonSettings",
    "EmbedderSettings",
    "GatewaySettings",
    "GeneratorSettings",
    "RetrieverSettings",
    "WorkerSettings",
    "admin_key_problem",
    "is_loopback",
]
