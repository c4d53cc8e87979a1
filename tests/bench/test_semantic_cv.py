"""The word vectors' weight cross-validation (bench/semantic_cv.py) picks what it says it picks."""

from __future__ import annotations

from bench.semantic_cv import WEIGHTS, Table, choose, held_out


def _table(rights: dict[str, tuple[bool, tuple[int, ...]]]) -> Table:
    """Question -> (answerable, the indexes of WEIGHTS it is right at)."""
    return {q: (a, tuple(i in good for i in range(len(WEIGHTS)))) for q, (a, good) in rights.items()}


def test_the_weight_right_most_often_wins() -> None:
    table = _table({"a": (True, (2, 3)), "b": (True, (3,)), "c": (False, (0, 3))})
    assert choose(table, ["a", "b", "c"]) == WEIGHTS[3]


def test_ties_go_to_the_median_of_the_tied_weights() -> None:
    table = _table({"a": (True, (1, 2, 3)), "b": (True, (1, 2, 3))})
    assert choose(table, ["a", "b"]) == WEIGHTS[2]
    # An even number of tied weights: the lower middle one.
    table = _table({"a": (True, (2, 3))})
    assert choose(table, ["a"]) == WEIGHTS[2]


def test_held_out_rates_split_answerable_from_unanswerable() -> None:
    table = _table({"a": (True, (2,)), "b": (True, ()), "c": (False, (2,))})
    assert held_out(table, ["a", "b", "c"], WEIGHTS[2]) == (0.5, 1.0)
