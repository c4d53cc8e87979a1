"""The tuning harness fuses rankings exactly as the stores' fusion does (bench/retrieval_cv.py)."""

from __future__ import annotations

import random

from bench.retrieval_cv import Rankings, fused_ids
from services.retriever.fusion import Fusion, Ranked, fuse, ordered


def test_fused_ids_are_fuses_order_for_every_setting() -> None:
    rng = random.Random(7)
    for _ in range(200):
        points = [f"p{n}" for n in range(rng.randint(1, 60))]
        dense = [Ranked(p, round(rng.random(), 2)) for p in rng.sample(points, rng.randint(0, len(points)))]
        sparse = [
            Ranked(p, round(rng.random() * 9, 1)) for p in rng.sample(points, rng.randint(0, len(points)))
        ]
        fusion = Fusion(
            dense_weight=rng.choice([0.3, 0.5, 0.7]),
            k=rng.choice([5, 10, 60]),
            candidates=rng.choice([5, 20]),
        )
        top_k = rng.choice([3, 10])
        limit = fusion.limit(top_k)
        # The engine returns each ranking's best ``limit``; the harness reads them deeper, once.
        engine_dense = sorted(dense, key=lambda r: (-r.score, r.id))[:limit]
        engine_sparse = sorted(sparse, key=lambda r: (-r.score, r.id))[:limit]
        # Every point's cosine (equal fused scores go to the closer point): the dense ones'
        # from the dense ranking, the others' measured apart, some equal to 2 decimals.
        cosines = {p: round(rng.random(), 2) for p in points} | {r.id: r.score for r in dense}
        expected = [f.id for f in fuse(engine_dense, engine_sparse, fusion, top_k, cosines)]
        setting = ("words", 1.2, 0.75, 100.0)
        read = Rankings(dense, ordered(dense), {setting: ordered(sparse)}, cosines)
        assert fused_ids(read, setting, fusion, top_k) == expected
