"""From uploaded documents to a cited answer, through the real services and model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fpdf import FPDF

from tests.integration.backends import Backend
from tests.integration.harness import Stack

PAGES = [
    "Chapter one introduces the harbour town of Elmsworth and its fishing fleet. "
    "The fleet sails at dawn and returns before the evening market opens.",
    "The Elmsworth lighthouse was built in 1887 from granite quarried on the northern cliffs. "
    "Its lamp is visible for twenty-two nautical miles on a clear night.",
    "The town council meets on the first Monday of every month in the old customs house. "
    "Minutes of each meeting are posted on the church door.",
]
TXT = (
    "Maintenance notes. The bakery on Quay Street uses a wood-fired oven that is cleaned every Sunday. "
    "Its sourdough starter is more than forty years old."
)


def make_pdf(path: Path) -> Path:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in PAGES:
        pdf.add_page()
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


@pytest.fixture(scope="module")
def stack(module_backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack on one Valkey server, then on a Valkey Cluster with 3 partitions."""
    tmp = tmp_path_factory.mktemp("e2e")
    s = Stack(module_backend.url, tmp, **module_backend.env, DOCUMIND_EMBEDDINGS="local")
    try:
        s.start_all()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def documents(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    pdf = make_pdf(tmp_path_factory.mktemp("docs") / "elmsworth.pdf")
    ids = {}
    with stack.client(timeout=30) as client:
        for name, data in (("elmsworth.pdf", pdf.read_bytes()), ("bakery.txt", TXT.encode())):
            resp = client.post("/v1/collections/town/documents", files={"file": (name, data)})
            assert resp.status_code == 202, resp.text
            body = resp.json()
            job = stack.wait_job(body["job_id"], timeout_s=120)
            assert job["status"] == "done", (job, stack.logs())
            ids[name] = body["document_id"]
    return ids


def ask(stack: Stack, question: str, collection: str = "town") -> dict[str, object]:
    resp = httpx.post(
        f"{stack.url}/v1/chat",
        json={"question": question, "collection": collection},
        headers=stack.headers,
        timeout=10,
    )
    assert resp.status_code == 202, resp.text
    job = stack.wait_job(resp.json()["job_id"])
    assert job["status"] == "done", (job, stack.logs())
    assert set(job["timings"]) >= {"embedder", "retriever", "generator"}
    result: dict[str, object] = job["result"]
    return result


@pytest.mark.slow
def test_pdf_question_cites_the_right_page(stack: Stack, documents: dict[str, str]) -> None:
    result = ask(stack, "When was the lighthouse built?")
    assert result["mode"] == "extractive"
    assert "1887" in str(result["answer"])
    citations = result["citations"]
    assert isinstance(citations, list) and citations
    first = citations[0]
    assert first["document_id"] == documents["elmsworth.pdf"]
    assert first["filename"] == "elmsworth.pdf"
    assert first["page"] == 2
    assert "1887" in first["snippet"]
    assert f"[{first['n']}]" in str(result["answer"])


@pytest.mark.slow
def test_txt_question_cites_the_text_file(stack: Stack, documents: dict[str, str]) -> None:
    result = ask(stack, "How old is the bakery's sourdough starter?")
    citations = result["citations"]
    assert isinstance(citations, list) and citations
    assert citations[0]["document_id"] == documents["bakery.txt"]
    assert citations[0]["page"] == 1
    assert "forty years" in str(result["answer"])


@pytest.mark.slow
def test_search_returns_hits_with_pages(stack: Stack, documents: dict[str, str]) -> None:
    resp = httpx.post(
        f"{stack.url}/v1/search",
        json={"query": "town council meeting", "collection": "town", "top_k": 3},
        headers=stack.headers,
        timeout=10,
    )
    assert resp.status_code == 202
    job = stack.wait_job(resp.json()["job_id"])
    hits = job["result"]["hits"]
    assert 1 <= len(hits) <= 3
    assert set(hits[0]) == {"document_id", "filename", "page", "score", "text"}
    assert hits[0]["filename"] == "elmsworth.pdf" and hits[0]["page"] == 3
    # Hits come in hybrid (dense + BM25) order; each score is the chunk's cosine similarity.
    assert all(-1.0 <= h["score"] <= 1.0 for h in hits)
    assert len({(h["document_id"], h["text"]) for h in hits}) == len(hits)


@pytest.mark.slow
def test_unrelated_question_says_nothing_relevant(stack: Stack, documents: dict[str, str]) -> None:
    result = ask(stack, "What is the boiling point of liquid nitrogen in kelvin?")
    assert result["citations"] == []
    assert "could not find" in str(result["answer"]).lower()


@pytest.mark.slow
def test_seed_compatible_endpoints(stack: Stack, documents: dict[str, str]) -> None:
    resp = httpx.post(
        f"{stack.url}/chat",
        params={"query": "When was the lighthouse built?", "collection": "town"},
        headers=stack.headers,
        timeout=10,
    )
    assert resp.status_code == 202
    job_id = resp.json()["job_id"]
    stack.wait_job(job_id)
    result = httpx.get(f"{stack.url}/result/{job_id}", headers=stack.headers, timeout=10).json()
    assert result["status"] == "done"
    assert result["result"]["citations"][0]["page"] == 2


DEBIAN_PDF = Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf")


def _squash(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.slow
@pytest.mark.skipif(
    not DEBIAN_PDF.exists(), reason="Debian's shared-mime-info documentation is not installed"
)
def test_citations_on_a_real_published_pdf_point_at_the_page_holding_the_snippet(stack: Stack) -> None:
    from pypdf import PdfReader

    pages = [_squash(p.extract_text() or "") for p in PdfReader(DEBIAN_PDF).pages]
    with stack.client(timeout=30) as client:
        resp = client.post(
            "/v1/collections/debian/documents",
            files={"file": (DEBIAN_PDF.name, DEBIAN_PDF.read_bytes())},
        )
        assert resp.status_code == 202
        job = stack.wait_job(resp.json()["job_id"], timeout_s=180)
        assert job["status"] == "done", (job, stack.logs())
        assert job["result"]["pages"] == len(pages)
    questions = {
        "Which alias does audio/midi have?": "audio/x-midi",
        "What does the magic-deleteall element indicate?": "magic-deleteall",
        "What do acronym elements give users?": "acronym",
    }
    for question, expected in questions.items():
        result = ask(stack, question, collection="debian")
        citations = result["citations"]
        assert isinstance(citations, list) and citations, result
        assert expected in str(result["answer"])
        for c in citations:
            assert c["filename"] == DEBIAN_PDF.name
            # The quoted snippet is really on the page it cites (whitespace aside).
            snippet = _squash(c["snippet"]).removesuffix("...").removesuffix("…").strip()
            assert snippet[:80] in pages[c["page"] - 1], (question, c)
