"""L2 normalisation, the last step of every embedding backend.

Its own module so that the ONNX backend can use it without importing
:mod:`.backends`, which imports the ONNX backend.
"""

from __future__ import annotations

import numpy as np


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32; all-zero rows stay zero."""
    out = np.asarray(vectors, dtype=np.float32)
    if out.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {out.shape}")
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0.0] = 1.0
    normalised: np.ndarray = (out / norms).astype(np.float32, copy=False)
    return normalised
