from __future__ import annotations

import pytest

from services.generator.text import clip, content_terms, split_sentences, stem


@pytest.mark.parametrize(
    ("forms", "key"),
    [
        (["refund", "refunds", "refunded", "refunding"], "refund"),
        (["policy", "policies"], "policy"),
        (["ship", "ships", "shipped", "shipping"], "ship"),
        (["price", "prices", "priced", "pricing"], "pric"),
    ],
)
def test_stem_maps_inflections_to_one_key(forms: list[str], key: str) -> None:
    assert {stem(form) for form in forms} == {key}


def test_stem_leaves_short_words_numbers_and_ss_alone() -> None:
    assert [stem(w) for w in ["run", "2024", "class", "status", "analysis"]] == [
        "run",
        "2024",
        "class",
        "status",
        "analysis",
    ]


def test_content_terms_drop_stopwords_and_contractions() -> None:
    assert content_terms("What is the company's refund policy? Don't tell me; we're finished") == [
        "company",
        "refund",
        "policy",
        "finish",
    ]


def test_split_sentences_keeps_abbreviations_and_splits_paragraphs() -> None:
    text = (
        "Customers may ask for a refund within 30 days. Refunds go to the card used "
        "(e.g. Visa).\nSee the U.S. Office for details!\n\n- first item\n- second item"
    )
    assert split_sentences(text) == [
        "Customers may ask for a refund within 30 days.",
        "Refunds go to the card used (e.g. Visa).",
        "See the U.S. Office for details!",
        "- first item",
        "- second item",
    ]


def test_split_sentences_cuts_text_without_punctuation() -> None:
    pieces = split_sentences("word " * 200, max_chars=100)
    assert len(pieces) == 10
    assert all(len(p) <= 100 for p in pieces)


def test_clip_cuts_at_a_word_boundary() -> None:
    assert clip("alpha  beta\ngamma", 100) == "alpha beta gamma"
    clipped = clip("alpha beta gamma delta epsilon", 20)
    assert clipped == "alpha beta gamma\u2026"
    assert len(clipped) <= 20
