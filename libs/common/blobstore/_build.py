"""The blob store the settings name."""

from __future__ import annotations

from libs.common.blobstore._base import BlobStore
from libs.common.blobstore._directory import DirectoryBlobStore
from libs.common.blobstore._s3 import S3BlobStore
from libs.common.settings import CommonSettings


def build_blob_store(settings: CommonSettings) -> BlobStore:
    """``DOCUMIND_BLOB_STORE``: "dir" (``blob_root``) or "s3" (the ``DOCUMIND_S3_*`` settings)."""
    if settings.blob_store == "s3":
        secret = settings.s3_secret_access_key
        return S3BlobStore(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
            timeout_s=settings.s3_timeout_s,
            connect_timeout_s=settings.s3_connect_timeout_s,
        )
    return DirectoryBlobStore(settings.blob_root)
