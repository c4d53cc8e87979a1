"""Cross-validation of retrieval settings (bench/cv.py): folds, choice, calibration fit."""

from __future__ import annotations

import numpy as np
import pytest

from bench import cv


def groups_of(sizes: dict[str, int]) -> dict[str, str]:
    return {f"{g}:{i}": g for g, n in sizes.items() for i in range(n)}


def test_folds_are_disjoint_cover_everything_and_hold_each_set_evenly() -> None:
    groups = groups_of({"scifact": 188, "pdfqa": 36})
    folds = cv.stratified_folds(groups, 5, seed=15)
    assert sum(len(f) for f in folds) == len(groups) and set().union(*folds) == set(groups)
    for name, n in (("scifact", 188), ("pdfqa", 36)):
        sizes = [sum(1 for q in f if groups[q] == name) for f in folds]
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n
    assert folds == cv.stratified_folds(groups, 5, seed=15)  # fixed seed, same folds
    assert folds != cv.stratified_folds(groups, 5, seed=16)


def test_each_query_set_weighs_the_same_in_the_objective() -> None:
    groups = {"a:1": "a", "a:2": "a", "a:3": "a", "b:1": "b"}
    figures = {"a:1": 1.0, "a:2": 1.0, "a:3": 1.0, "b:1": 0.0}
    assert cv.objective(figures, groups, sorted(groups)) == pytest.approx(0.5)


def test_the_choice_is_made_without_the_held_out_fold() -> None:
    groups = groups_of({"x": 10})
    folds = cv.stratified_folds(groups, 5, seed=1)
    # "lucky" is perfect on fold 0's queries alone and poor elsewhere; "steady" is good everywhere.
    lucky = {q: (1.0 if q in folds[0] else 0.2) for q in groups}
    steady = dict.fromkeys(groups, 0.6)
    report = cv.cross_validate({"lucky": lucky, "steady": steady}, groups, k=5, seed=1)
    assert all(f.chosen == "steady" for f in report.folds)
    mean, spread = report.held_out("x")
    assert mean == pytest.approx(0.6) and spread == pytest.approx(0.0)
    # Picked on all the data, "lucky" would have shown 1.0 on fold 0: held out it cannot.
    assert report.final == "steady" and report.agreement == 5


def test_ties_go_to_the_setting_listed_first() -> None:
    groups = groups_of({"x": 4})
    same = dict.fromkeys(groups, 0.5)
    assert cv.cross_validate({"today": same, "new": dict(same)}, groups, k=2).final == "today"


def test_logistic_fit_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 2))
    p = 1.0 / (1.0 + np.exp(-(-1.0 + 2.0 * x[:, 0] + 0.5 * x[:, 1])))
    y = (rng.random(20_000) < p).astype(float)
    assert cv.fit_logistic(x, y) == pytest.approx([-1.0, 2.0, 0.5], abs=0.1)
    # A perfectly separable set stays finite.
    assert np.isfinite(cv.fit_logistic(np.array([[0.0], [1.0]]), np.array([0.0, 1.0]))).all()


def test_auc_and_losses() -> None:
    assert cv.auc([0.9, 0.8], [0.1, 0.8]) == pytest.approx(0.875)
    assert np.isnan(cv.auc([0.5], []))
    y = np.array([1.0, 0.0])
    assert cv.log_loss(np.array([0.9, 0.1]), y) < cv.log_loss(np.array([0.6, 0.4]), y)
    assert cv.brier(np.array([1.0, 0.0]), y) == 0.0
