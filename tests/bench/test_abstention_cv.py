"""The abstention threshold's cross-validation (bench/abstention_cv.py) picks what it says it picks."""

from __future__ import annotations

import math

from bench.abstention_cv import Row, choose, leave_one_out, objective, rates


def _rows() -> list[Row]:
    # Answerable: right ones score high, wrong ones low; unanswerable ones lowest.
    right = [Row(True, True, c, c) for c in (0.6, 0.7, 0.8, 0.9, 0.65, 0.75, 0.85, 0.95)]
    wrong = [Row(True, False, 0.3, 0.3), Row(True, False, 0.35, 0.35)]
    unanswerable = [Row(False, False, 0.2, 0.2), Row(False, False, 0.25, 0.25)]
    return right + wrong + unanswerable


def test_the_chosen_threshold_separates_what_the_features_separate() -> None:
    rows = _rows()
    w, t = choose(rows)
    right, wrong, abstained = rates([(r, r.score(w) < t) for r in rows])
    # Both unanswerable abstain; abstaining on both wrong answerable ones too would be 20%
    # of the answerable, over the 10% limit.
    assert abstained == 1.0
    assert wrong <= 0.10
    assert right == 0.8


def test_abstaining_on_too_many_answerable_questions_never_wins() -> None:
    rows = _rows()
    # A threshold above everything abstains on every question: worse than any allowed one.
    assert objective(rows, 0.5, 2.0) < objective(rows, 0.5, -1.0)


def test_a_question_with_nothing_to_quote_always_abstains() -> None:
    nothing = Row(True, False, None, None)
    assert nothing.score(0.5) == -math.inf


def test_leave_one_out_decides_each_question_without_it() -> None:
    rows = _rows()
    decided, chosen = leave_one_out(rows)
    assert [r for r, _ in decided] == rows
    assert len(chosen) == len(rows)
