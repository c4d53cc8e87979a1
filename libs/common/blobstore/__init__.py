"""Where uploads' originals and their extracted text are kept: a small blob store.

``BlobStore`` is the protocol; ``DirectoryBlobStore`` keeps blobs under a directory
(the embedded stack's ``DATA_DIR/originals``), ``S3BlobStore`` in an S3-compatible
bucket (production), ``MemoryBlobStore`` in a dict (unit tests). ``build_blob_store``
picks one from the settings (``DOCUMIND_BLOB_STORE``). Keys are built here from a
tenant's name and a document id only (``original_key``, ``text_key``), never from a
filename. Who writes and who deletes which blob: see ``_documents.py``.
"""

from libs.common.blobstore._base import (
    ORIGINAL,
    TEXT,
    Blob,
    BlobInfo,
    BlobStore,
    check_key,
    check_prefix,
    document_of,
    document_prefix,
    original_key,
    text_key,
)
from libs.common.blobstore._build import build_blob_store
from libs.common.blobstore._directory import DirectoryBlobStore
from libs.common.blobstore._documents import (
    TEXT_CONTENT_TYPE,
    delete_document_blobs,
    put_original,
    put_text,
    sweep_orphans,
)
from libs.common.blobstore._memory import MemoryBlobStore
from libs.common.blobstore._s3 import S3BlobStore

__all__ = [
    "ORIGINAL",
    "TEXT",
    "TEXT_CONTENT_TYPE",
    "Blob",
    "BlobInfo",
    "BlobStore",
    "DirectoryBlobStore",
    "MemoryBlobStore",
    "S3BlobStore",
    "build_blob_store",
    "check_key",
    "check_prefix",
    "delete_document_blobs",
    "document_of",
    "document_prefix",
    "original_key",
    "put_original",
    "put_text",
    "sweep_orphans",
    "text_key",
]
