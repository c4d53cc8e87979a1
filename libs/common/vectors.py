"""Compact vector transport: float32 little-endian bytes, base64 in JSON."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np


def encode_vector(vector: Sequence[float] | np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(data: str) -> list[float]:
    values: list[float] = np.frombuffer(base64.b64decode(data), dtype="<f4").tolist()
    return values
