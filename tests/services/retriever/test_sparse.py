"""BM25 sparse vectors: tokenisation, stable term ids, the document and query weights."""

from __future__ import annotations

import subprocess
import sys

import pytest

from services.retriever.sparse import Bm25, SparseVector, term_index, terms


def test_words_are_lowercased_stemmed_and_stopwords_dropped() -> None:
    assert terms("The Running dogs AND the running DOG") == [
        term_index("run"),
        term_index("dog"),
        term_index("run"),
        term_index("dog"),
    ]


def test_words_are_letters_and_digits_of_any_script() -> None:
    assert terms("IL-6 naïve_café, 3.5mg; Ωμέγα") == [
        term_index(t) for t in ["il", "6", "naïv", "café", "3", "5mg", "ωμέγα"]
    ]


def test_only_stopwords_or_punctuation_give_nothing() -> None:
    assert terms("") == []
    assert terms("it is what it is, isn't it?") == []
    assert terms("-- ... !!") == []


def test_overlong_tokens_are_dropped() -> None:
    assert terms("a" * 41 + " ok") == [term_index("ok")]
    assert terms("b" * 40) == [term_index("b" * 40)]


def test_term_index_is_stable_across_processes_and_32_bit() -> None:
    code = "from services.retriever.sparse import term_index; print(term_index('protein'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == term_index("protein")
    assert all(0 <= term_index(w) < 2**32 for w in ["protein", "", "ωμέγα", "x" * 40])
    assert term_index("protein") != term_index("proteins")


def test_document_weights_follow_bm25_term_frequency() -> None:
    bm25 = Bm25(k1=1.2, b=0.75, avgdl=4.0)
    vector = bm25.document("cell cell cell membrane")  # 4 terms: length == avgdl
    weights = dict(zip(vector.indices, vector.values, strict=True))
    # tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avgdl)), len / avgdl = 1
    assert weights[term_index("cell")] == pytest.approx(3 * 2.2 / (3 + 1.2))
    assert weights[term_index("membran")] == pytest.approx(1 * 2.2 / (1 + 1.2))
    assert list(vector.indices) == sorted(vector.indices)


def test_longer_documents_weigh_a_term_less() -> None:
    bm25 = Bm25(avgdl=10.0)
    short = bm25.document("enzyme kinetics")
    long = bm25.document("enzyme kinetics " + " ".join(f"filler{i}" for i in range(30)))
    assert (
        dict(zip(short.indices, short.values, strict=True))[term_index("enzym")]
        > dict(zip(long.indices, long.values, strict=True))[term_index("enzym")]
    )


def test_b_zero_ignores_length_and_saturation_is_bounded() -> None:
    bm25 = Bm25(k1=1.2, b=0.0)
    one = bm25.document("gene")
    many = bm25.document(" ".join(["gene"] * 1000))
    assert one.values == pytest.approx((1.0,))
    assert many.values[0] < 2.2  # never more than k1 + 1


def test_query_has_weight_one_per_distinct_term() -> None:
    vector = Bm25().query("Does the gene regulate the genes of other cells?")
    assert vector.indices == tuple(sorted({term_index(t) for t in ["gene", "regul", "cell"]}))
    assert vector.values == (1.0, 1.0, 1.0)


def test_empty_vectors_are_falsy() -> None:
    assert not Bm25().document("the of and")
    assert not Bm25().query("")
    assert not SparseVector()
    assert Bm25().query("gene")


@pytest.mark.parametrize(("k1", "b", "avgdl"), [(-0.1, 0.75, 100.0), (1.2, 1.5, 100.0), (1.2, 0.75, 0.0)])
def test_bad_parameters_are_refused(k1: float, b: float, avgdl: float) -> None:
    with pytest.raises(ValueError):
        Bm25(k1=k1, b=b, avgdl=avgdl)


def test_technical_tokens_are_kept_whole_beside_their_words() -> None:
    found = terms("Set null_terminated, run --posix or -e with bash 5.2.15.", technical=True)
    assert term_index("null_terminated") in found and term_index("null") in found
    assert term_index("--posix") in found and term_index("posix") in found
    assert term_index("-e") in found
    assert term_index("5.2.15") in found
    # A sentence's full stop is no part of a token; plain words add nothing new.
    assert term_index("5.2.15.") not in found
    assert terms("Running dogs.", technical=True) == terms("Running dogs.")


def _overlap(bm25: Bm25, question: str, text: str) -> set[int]:
    return set(bm25.query(question).indices) & set(bm25.document(text).indices)


def test_an_identifier_matches_exactly_only_with_the_technical_tokenizer() -> None:
    words, technical = Bm25(), Bm25(tokenizer="technical")
    text = "The attribute null_terminated applies to arrays."
    # Both match the parts; only "technical" also matches the identifier whole, so a chunk
    # naming it outscores one that merely has the words "null" and "terminated" apart.
    assert len(_overlap(technical, "where is null_terminated allowed?", text)) == 3
    assert len(_overlap(words, "where is null_terminated allowed?", text)) == 2
    apart = "A null value is terminated here."
    assert len(_overlap(technical, "null_terminated", apart)) < len(
        _overlap(technical, "null_terminated", text)
    )


def test_the_qdrant_tokenizer_gives_bm25_vectors_that_match_shared_words() -> None:
    bm25 = Bm25(avgdl=10.0, tokenizer="qdrant")
    doc = bm25.document("The shell ignores SIGTERM when interactive.")
    query = bm25.query("Which signal does an interactive shell ignore?")
    assert doc and query
    assert list(doc.indices) == sorted(doc.indices) and all(v == 1.0 for v in query.values)
    # "ignores"/"ignore" and "interactive" stem alike; "which", "does", "an" are stopwords.
    assert len(set(doc.indices) & set(query.indices)) == 3
    assert not bm25.query("the of and")


def test_an_unknown_tokenizer_is_refused() -> None:
    with pytest.raises(ValueError, match="tokenizer"):
        Bm25(tokenizer="letters")


def test_the_retriever_builds_bm25_with_the_configured_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    from libs.common.settings import RetrieverSettings
    from services.retriever.stores import build_bm25

    monkeypatch.setenv("DOCUMIND_BM25_TOKENIZER", "technical")
    bm25 = build_bm25(RetrieverSettings())
    assert term_index("null_terminated") in bm25.query("null_terminated").indices
    monkeypatch.setenv("DOCUMIND_BM25_TOKENIZER", "letters")
    with pytest.raises(ValueError):
        RetrieverSettings()
