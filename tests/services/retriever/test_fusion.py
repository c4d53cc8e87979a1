"""Weighted reciprocal rank fusion, as every backend applies it."""

from __future__ import annotations

import pytest

from services.retriever.fusion import (
    DENSE_ONLY,
    RELEVANCE,
    Calibration,
    Fusion,
    Ranked,
    dense_relevance,
    fuse,
    ordered,
    weighted_rrf,
)


def test_scores_are_weight_over_k_plus_rank() -> None:
    fused = dict(weighted_rrf([["a", "b"], ["b", "c"]], [0.7, 0.3], k=60))
    assert fused["a"] == pytest.approx(0.7 / 61)
    assert fused["b"] == pytest.approx(0.7 / 62 + 0.3 / 61)
    assert fused["c"] == pytest.approx(0.3 / 62)


def test_equal_weights_are_plain_rrf_and_only_the_ratio_matters() -> None:
    rankings = [["a", "b", "c", "d"], ["d", "c", "e"]]
    plain = [p for p, _ in weighted_rrf(rankings, [1.0, 1.0], k=60)]
    assert plain == [p for p, _ in weighted_rrf(rankings, [0.5, 0.5], k=60)]
    assert [p for p, _ in weighted_rrf(rankings, [0.8, 0.2], k=10)] == [
        p for p, _ in weighted_rrf(rankings, [4.0, 1.0], k=10)
    ]
    assert plain[:2] == ["d", "c"]  # in both rankings


def test_the_weight_moves_the_order() -> None:
    rankings = [["dense1", "dense2", "both"], ["sparse1", "both"]]
    dense_heavy = [p for p, _ in weighted_rrf(rankings, [0.9, 0.1], k=1)]
    sparse_heavy = [p for p, _ in weighted_rrf(rankings, [0.1, 0.9], k=1)]
    assert dense_heavy[0] == "dense1"
    assert sparse_heavy[0] == "sparse1"


def test_a_zero_weight_ranking_takes_no_part() -> None:
    [(point, score)] = weighted_rrf([["a", "b"], ["c"]], [0.0, 1.0], k=60)
    assert point == "c" and score == pytest.approx(1 / 61)
    [(point, score)] = weighted_rrf([["a"], ["b"]], [1.0, 0.0], k=60)
    assert point == "a" and score == pytest.approx(1 / 61)


def test_ties_go_to_the_best_rank_then_the_id() -> None:
    fused = weighted_rrf([["b", "a"], ["a", "b"]], [0.5, 0.5], k=60)
    assert [p for p, _ in fused] == ["a", "b"]  # same score and best rank: by id
    fused = weighted_rrf([["q", "p"], ["z"]], [0.5, 0.5], k=60)
    assert [p for p, _ in fused] == ["q", "z", "p"]  # q and z tie at rank 1: by id


def test_equal_fused_scores_go_to_the_point_closer_to_the_question() -> None:
    # Ranks 1 and 2 against 2 and 1: equal fused scores, equal best ranks.
    rankings = [["b-near", "a-far"], ["a-far", "b-near"]]
    assert [p for p, _ in weighted_rrf(rankings, [0.5, 0.5], 5)] == ["a-far", "b-near"]  # by id
    closer = {"b-near": 0.7, "a-far": 0.6}
    assert [p for p, _ in weighted_rrf(rankings, [0.5, 0.5], 5, closer)] == ["b-near", "a-far"]
    # fuse breaks them by the dense cosine.
    dense = [Ranked("b-near", 0.7), Ranked("a-far", 0.6)]
    sparse = [Ranked("a-far", 9.0), Ranked("b-near", 8.0)]
    fused = fuse(dense, sparse, Fusion(dense_weight=0.5, k=5), top_k=2)
    assert [f.id for f in fused] == ["b-near", "a-far"]


def test_weights_must_match_rankings() -> None:
    with pytest.raises(ValueError):
        weighted_rrf([["a"]], [0.5, 0.5], k=60)


def test_branch_order_rounds_scores_so_engines_agree() -> None:
    # float32 and float64 engines give the same points a hair apart: ordered by id then.
    assert ordered([Ranked("b", 0.81234561), Ranked("a", 0.8123457), Ranked("c", 0.9)]) == ["c", "a", "b"]


def test_fuse_keeps_the_cosine_as_score() -> None:
    dense = [Ranked("d1", 0.9), Ranked("d2", 0.8)]
    sparse = [Ranked("s1", 7.5), Ranked("d2", 3.0)]
    fused = fuse(dense, sparse, Fusion(dense_weight=0.5, k=60), top_k=3, cosines={"s1": 0.1, "d2": 0.8})
    assert [(f.id, f.cosine) for f in fused] == [("d2", 0.8), ("d1", 0.9), ("s1", 0.1)]
    # A candidate whose cosine nobody measured scores 0.
    assert [(f.id, f.cosine) for f in fuse([], [Ranked("s1", 1.0)], Fusion(), top_k=1)] == [("s1", 0.0)]


def test_relevance_rewards_a_close_hit_both_rankings_put_first() -> None:
    # "both" is first in both rankings and close; "dense" and "words" each top one ranking only.
    dense = [Ranked("both", 0.62), Ranked("dense", 0.55)]
    sparse = [Ranked("both", 9.0), Ranked("words", 8.0)]
    fused = fuse(dense, sparse, Fusion(dense_weight=0.5, k=10), top_k=3, cosines={"words": 0.2})
    relevance = {f.id: f.relevance for f in fused}
    assert relevance["both"] > relevance["dense"] > relevance["words"]
    assert all(0.0 <= r <= 1.0 for r in relevance.values())
    # The same hit found by one ranking only is weaker evidence than found by both.
    alone = fuse(dense[:1], [Ranked("other", 9.0)], Fusion(dense_weight=0.5, k=10), top_k=2)
    assert {f.id: f.relevance for f in alone}["both"] < relevance["both"]


def test_weak_evidence_scores_low_and_strong_high() -> None:
    # The calibration's reading: an unrelated chunk (cosine 0.1) that neither ranking
    # agrees on is unlikely evidence, a near duplicate first in both most likely.
    assert RELEVANCE(0.1, 0.25) < 0.1
    assert RELEVANCE(0.8, 1.0) > 0.5
    for cosine in (0.0, 0.3, 0.6):
        assert RELEVANCE(cosine, 0.5) < RELEVANCE(cosine + 0.1, 0.5)
        assert RELEVANCE(cosine, 0.5) < RELEVANCE(cosine, 0.9)


def test_relevance_does_not_depend_on_rrf_k() -> None:
    dense = [Ranked("a", 0.7), Ranked("b", 0.6), Ranked("c", 0.5)]
    sparse = [Ranked("b", 3.0), Ranked("a", 2.0)]
    one, other = ({f.id: f.relevance for f in fuse(dense, sparse, Fusion(k=k), top_k=3)} for k in (5, 60))
    assert one == pytest.approx(other)


def test_relevance_stays_finite_far_out() -> None:
    extreme = Calibration(intercept=0.0, cosine=1e6, support=0.0)
    assert extreme(1.0, 0.0) == pytest.approx(1.0)
    assert extreme(-1.0, 0.0) == pytest.approx(0.0)


def test_dense_only_relevance_falls_down_the_ranking() -> None:
    scores = dense_relevance([0.7, 0.7, 0.5])
    assert scores[0] > scores[1] > scores[2]  # support 1/rank, then the cosine


def test_fusion_settings() -> None:
    assert DENSE_ONLY.dense_only
    assert not Fusion(dense_weight=0.99).dense_only
    assert Fusion(candidates=50).limit(10) == 50
    assert Fusion(candidates=50).limit(80) == 80
    for bad in [{"dense_weight": 1.5}, {"dense_weight": -0.1}, {"k": 0}, {"candidates": 0}]:
        with pytest.raises(ValueError):
            Fusion(**bad)  # type: ignore[arg-type]
